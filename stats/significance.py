"""Significance tests: multiplicity adjustment, sample-ratio mismatch, Mann-Whitney.

The module is deliberately not named ``tests`` so pytest never collects it.
``scipy.stats`` is imported inside the functions that need it because it is slow
to import and ``import stats`` must stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from stats._checks import check_count, check_positive, finite_or_none

#: One vocabulary for p-value adjustment across NRR Lab (pingouin's names).
Adjustment = Literal["holm", "fdr_bh"]

#: DESIGN §4: a sample-ratio mismatch is flagged below this p-value.
SRM_THRESHOLD = 0.001
#: Below this expected count per variant the chi-square approximation is poor.
MIN_EXPECTED_COUNT = 5.0


def _adjust(pvalues: Sequence[float | None], method: Adjustment) -> list[float | None]:
    values = []
    for index, p in enumerate(pvalues):
        if p is None:
            values.append(math.nan)
            continue
        if isinstance(p, bool) or not (0.0 <= float(p) <= 1.0):
            raise ValueError(
                f"p-values must lie in [0, 1] or be None; got {p!r} at position {index}"
            )
        values.append(float(p))
    present = [i for i, v in enumerate(values) if not math.isnan(v)]
    if not present:
        return [None] * len(values)
    # Unavailable tests are left out of the family, as pingouin.multicomp does with NaN.
    family = np.asarray([values[i] for i in present])
    m = family.size
    order = np.argsort(family, kind="stable")
    ranked = family[order]
    if method == "holm":
        # Step-down: (m - j + 1)·p_(j), made non-decreasing from the smallest p up.
        stepped = np.maximum.accumulate((m - np.arange(m)) * ranked)
    else:
        # Step-up: m/j·p_(j), made non-increasing from the largest p down.
        stepped = np.minimum.accumulate((m / np.arange(m, 0, -1)) * ranked[::-1])[::-1]
    adjusted_sorted = np.minimum(stepped, 1.0)
    adjusted = np.empty(m)
    adjusted[order] = adjusted_sorted
    result: list[float | None] = [None] * len(values)
    for position, index in enumerate(present):
        result[index] = finite_or_none(float(adjusted[position]))
    return result


def holm_adjust(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm step-down adjusted p-values (family-wise error control).

    Parameters
    ----------
    pvalues : sequence of float or None
        Unadjusted p-values; ``None`` entries (tests that could not be run)
        are left out of the family and returned as ``None``.

    Returns
    -------
    list of float or None
        Adjusted p-values in the input order.

    Raises
    ------
    ValueError
        If a p-value lies outside [0, 1].

    Notes
    -----
    With the ``m`` available p-values sorted ascending,

    .. math::
        \\tilde p_{(i)} = \\min\\Big(1, \\max_{j \\le i} (m - j + 1)\\, p_{(j)}\\Big)

    as ``pingouin.multicomp(method="holm")`` computes it (checked against pingouin
    and statsmodels in the test suite; computed here with numpy so the CLI need
    not import pingouin).

    References
    ----------
    .. [1] Holm, S. (1979). A simple sequentially rejective multiple test
       procedure. Scandinavian Journal of Statistics, 6(2), 65-70.

    Examples
    --------
    >>> holm_adjust([0.01, None, 0.04, 0.03])
    [0.03, None, 0.06, 0.06]
    """
    return _adjust(pvalues, "holm")


def bh_adjust(pvalues: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate control).

    Parameters
    ----------
    pvalues : sequence of float or None
        Unadjusted p-values; ``None`` entries pass through as ``None``.

    Returns
    -------
    list of float or None
        Adjusted p-values in the input order.

    Raises
    ------
    ValueError
        If a p-value lies outside [0, 1].

    Notes
    -----
    With the ``m`` available p-values sorted ascending,

    .. math::
        \\tilde p_{(i)} = \\min\\Big(1, \\min_{j \\ge i} \\frac{m}{j}\\, p_{(j)}\\Big)

    as ``pingouin.multicomp(method="fdr_bh")`` computes it. Meant for a
    portfolio of experiments, where a share of false wins is acceptable.

    References
    ----------
    .. [1] Benjamini, Y. & Hochberg, Y. (1995). Controlling the false
       discovery rate: a practical and powerful approach to multiple testing.
       Journal of the Royal Statistical Society B, 57(1), 289-300.

    Examples
    --------
    >>> [round(p, 4) for p in bh_adjust([0.01, 0.04, 0.03])]
    [0.03, 0.04, 0.04]
    """
    return _adjust(pvalues, "fdr_bh")


@dataclass(frozen=True)
class SRMResult:
    """Outcome of the sample-ratio-mismatch check.

    Attributes
    ----------
    p_value : float or None
        Chi-square goodness-of-fit p-value; ``None`` when it cannot be
        computed (see ``warnings``).
    observed : dict of str to int
        Accounts per variant, planned variants first in plan order.
    expected_weights : dict of str to float
        Planned allocation, normalised to sum to 1.
    flag : bool
        ``True`` when the allocation is broken: ``p_value < threshold``, or
        accounts turned up in a variant that is not in the plan.
    warnings : tuple of str
        Why a figure is missing or should be read with care.
    """

    p_value: float | None
    observed: Mapping[str, int]
    expected_weights: Mapping[str, float]
    flag: bool
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, object]:
        """The ``"srm"`` object of the JSON report (warnings are reported at top level)."""
        return {
            "p_value": self.p_value,
            "observed": dict(self.observed),
            "expected_weights": dict(self.expected_weights),
            "flag": self.flag,
        }


def srm_test(
    observed: Mapping[str, int],
    weights: Mapping[str, float] | None = None,
    *,
    threshold: float = SRM_THRESHOLD,
) -> SRMResult:
    """Chi-square test of observed arm sizes against the planned allocation.

    Parameters
    ----------
    observed : mapping of str to int
        Accounts per variant. A planned variant may be missing (0 accounts).
    weights : mapping of str to float, optional
        Planned weights, > 0; normalised internally. Defaults to equal weights
        over the variants of ``observed``.
    threshold : float, default 0.001
        Flag a mismatch when the p-value is below it.

    Returns
    -------
    SRMResult

    Raises
    ------
    ValueError
        If a count is not a whole number >= 0, a weight is not > 0, or
        ``threshold`` is not in (0, 1).

    Notes
    -----
    With total :math:`N`, normalised weights :math:`w_k` and counts
    :math:`O_k`, the statistic is

    .. math:: \\chi^2 = \\sum_k \\frac{(O_k - N w_k)^2}{N w_k}

    on :math:`K - 1` degrees of freedom (``scipy.stats.chisquare``).
    Accounts in a variant without a planned weight make the statistic
    infinite: the result is flagged with ``p_value = None`` and a warning.
    With fewer than two planned variants, or no accounts, nothing can
    mismatch and ``p_value`` is ``None``.

    References
    ----------
    .. [1] Fabijan, A. et al. (2019). Diagnosing Sample Ratio Mismatch in
       Online Controlled Experiments. KDD '19.
    .. [2] Pearson, K. (1900). On the criterion that a given system of
       deviations from the probable ... Philosophical Magazine, 50(302),
       157-175.

    Examples
    --------
    >>> result = srm_test({"control": 5000, "treatment": 5200})
    >>> round(result.p_value, 4), result.flag
    (0.0477, False)
    >>> srm_test({"control": 5000, "treatment": 4500}, {"control": 1, "treatment": 1}).flag
    True
    """
    if isinstance(threshold, bool) or not 0.0 < float(threshold) < 1.0:
        raise ValueError(f"threshold must be in (0, 1); got {threshold!r}")
    counts = {
        str(variant): check_count(f"observed[{variant!r}]", n) for variant, n in observed.items()
    }
    if weights is None:
        planned = dict.fromkeys(counts, 1.0)
    else:
        planned = {
            str(variant): check_positive(f"weights[{variant!r}]", w)
            for variant, w in weights.items()
        }
    total_weight = sum(planned.values())
    expected_weights = {variant: w / total_weight for variant, w in planned.items()}

    ordered = {variant: counts.get(variant, 0) for variant in planned}
    unplanned = {variant: n for variant, n in counts.items() if variant not in planned}
    ordered.update(unplanned)
    total = sum(ordered.values())

    intruders = [variant for variant, n in unplanned.items() if n > 0]
    if intruders:
        names = ", ".join(repr(v) for v in intruders)
        return SRMResult(
            p_value=None,
            observed=ordered,
            expected_weights=expected_weights,
            flag=True,
            warnings=(
                f"sample ratio mismatch: accounts were assigned to {names}, "
                "which the plan does not include; "
                "the chi-square p-value is undefined",
            ),
        )
    if total == 0:
        return SRMResult(
            None,
            ordered,
            expected_weights,
            False,
            ("SRM check not run: no accounts in any variant",),
        )
    if len(planned) < 2:
        return SRMResult(
            None,
            ordered,
            expected_weights,
            False,
            ("SRM check not run: the plan has a single variant",),
        )

    expected = [total * expected_weights[variant] for variant in planned]
    p_value = finite_or_none(_chi_square_p([ordered[v] for v in planned], expected))
    notes: list[str] = []
    if min(expected) < MIN_EXPECTED_COUNT:
        notes.append(
            f"SRM check has fewer than {MIN_EXPECTED_COUNT:g} expected accounts in a variant; "
            "the chi-square p-value is approximate"
        )
    flag = p_value is not None and p_value < threshold
    if flag:
        notes.append(
            f"sample ratio mismatch: observed counts {ordered} deviate from the planned weights "
            f"(p = {p_value:.2g} < {threshold:g}); the assignment is suspect and the comparisons "
            "are not trustworthy"
        )
    return SRMResult(p_value, ordered, expected_weights, flag, tuple(notes))


def mann_whitney_p(a: ArrayLike, b: ArrayLike) -> float | None:
    """Two-sided Mann-Whitney U p-value, a rank-based robustness check.

    Parameters
    ----------
    a, b : array_like of float
        Per-account end/start ratios of two arms.

    Returns
    -------
    float or None
        ``None`` when either sample is empty.

    Notes
    -----
    ``scipy.stats.mannwhitneyu(a, b, alternative="two-sided")``: exact for
    small samples without ties, otherwise the tie-corrected normal
    approximation with continuity correction,

    .. math:: z = \\frac{U - n_a n_b / 2}{\\sigma_U}

    It is :math:`O((n_a + n_b)\\log(n_a + n_b))`; ``pingouin.mwu`` is avoided
    because it builds an :math:`n_a \\times n_b` matrix.

    References
    ----------
    .. [1] Mann, H. B. & Whitney, D. R. (1947). On a test of whether one of
       two random variables is stochastically larger than the other. Annals
       of Mathematical Statistics, 18(1), 50-60.

    Examples
    --------
    >>> round(mann_whitney_p([1.0, 1.1, 0.9, 1.2], [0.5, 0.7, 0.6, 0.8]), 4)
    0.0286
    >>> mann_whitney_p([], [1.0]) is None
    True
    """
    return mann_whitney(a, b).p_value


@dataclass(frozen=True)
class MannWhitneyResult:
    """Mann-Whitney check with a direction and a size.

    Attributes
    ----------
    p_value : float or None
        Two-sided p-value.
    prob_superiority : float or None
        ``P(a > b) + P(a = b)/2`` for a random account of each arm: 0.5 is no
        shift, above 0.5 means accounts of ``a`` tend to have the higher NRR.
    """

    p_value: float | None
    prob_superiority: float | None

    @property
    def direction(self) -> str | None:
        """``"higher"``, ``"lower"`` or ``"same"``: where the typical ``a`` account sits."""
        if self.prob_superiority is None:
            return None
        if self.prob_superiority > 0.5:
            return "higher"
        return "lower" if self.prob_superiority < 0.5 else "same"


def mann_whitney(a: ArrayLike, b: ArrayLike) -> MannWhitneyResult:
    """Mann-Whitney U test of ``a`` against ``b`` with the probability of superiority.

    Parameters
    ----------
    a, b : array_like of float
        Per-account end/start ratios (``a`` = treatment, ``b`` = control).

    Returns
    -------
    MannWhitneyResult
        Both figures ``None`` when either sample is empty.

    Notes
    -----
    :math:`U_a` counts the pairs with :math:`a_i > b_j` plus half the ties
    (``scipy.stats.mannwhitneyu(a, b).statistic``), so the common-language
    effect size is

    .. math:: \\mathrm{PS} = \\frac{U_a}{n_a n_b} = P(A > B) + \\tfrac12 P(A = B)

    It describes the typical account, unweighted; NRR weights accounts by
    their start MRR, so the two can point in opposite directions when the
    largest accounts move against the crowd.

    References
    ----------
    .. [1] Mann, H. B. & Whitney, D. R. (1947). On a test of whether one of
       two random variables is stochastically larger than the other. Annals
       of Mathematical Statistics, 18(1), 50-60.
    .. [2] McGraw, K. O. & Wong, S. P. (1992). A common language effect size
       statistic. Psychological Bulletin, 111(2), 361-365.

    Examples
    --------
    >>> r = mann_whitney([1.0, 1.1, 0.9, 1.2], [0.5, 0.7, 0.6, 0.8])
    >>> round(r.p_value, 4), r.prob_superiority, r.direction
    (0.0286, 1.0, 'higher')
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        return MannWhitneyResult(None, None)
    if a.size > _EXACT_MWU_MAX and b.size > _EXACT_MWU_MAX and np.isfinite(a).all() \
            and np.isfinite(b).all():
        u1, p_value = _mann_whitney_asymptotic(a, b)
    else:  # small samples (scipy's exact distribution) and NaN propagation
        from scipy.stats import mannwhitneyu

        result = mannwhitneyu(a, b, alternative="two-sided")
        u1, p_value = float(result.statistic), result.pvalue
    return MannWhitneyResult(finite_or_none(p_value), finite_or_none(u1 / (a.size * b.size)))


#: Up to this many accounts in an arm ``scipy.stats.mannwhitneyu`` may choose its exact
#: distribution (``method="auto"``); above it in both arms it uses the normal
#: approximation, which :func:`_mann_whitney_asymptotic` computes without importing
#: ``scipy.stats`` (about 0.8 s of CPU, most of ``nrrlab analyze``'s import time).
_EXACT_MWU_MAX = 8


def _mann_whitney_asymptotic(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """:math:`U_a` and the two-sided p-value of the tie-corrected normal approximation.

    Average ranks of the pooled sample; :math:`U_a = R_a - n_a(n_a+1)/2`,
    :math:`U = \\max(U_a, n_a n_b - U_a)`,

    .. math:: z = \\frac{U - n_a n_b/2 - 1/2}
                  {\\sqrt{\\frac{n_a n_b}{12}\\left(n + 1 - \\frac{\\sum_j (t_j^3 - t_j)}
                  {n(n-1)}\\right)}}, \\qquad p = \\min(1, 2\\,\\Phi(-z))

    with :math:`t_j` the sizes of the groups of tied values (continuity correction 1/2).
    Equal to ``scipy.stats.mannwhitneyu(a, b, alternative="two-sided")`` whenever that
    chooses its asymptotic method (both arms above 8 accounts); the tests compare them.

    References
    ----------
    .. [1] Mann, H. B. & Whitney, D. R. (1947). Annals of Mathematical Statistics, 18(1).
    .. [2] Lehmann, E. L. (1975). Nonparametrics: Statistical Methods Based on Ranks,
       §1.4 (the tie-corrected variance).
    """
    from scipy import special

    n1, n2 = a.size, b.size
    pooled = np.concatenate([a, b])
    n = pooled.size
    order = np.argsort(pooled, kind="stable")
    ordered = pooled[order]
    first = np.empty(n, dtype=bool)
    first[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    ties = np.diff(np.append(starts, n)).astype(np.float64)
    average_rank = starts + (ties + 1.0) / 2.0  # ranks start+1 … start+t, 1-based
    ranks = np.repeat(average_rank, ties.astype(np.int64))
    r1 = float(ranks[order < n1].sum())
    u1 = r1 - n1 * (n1 + 1) / 2.0
    u = max(u1, n1 * n2 - u1)
    tie_term = float(np.sum(ties**3 - ties))
    spread = math.sqrt(n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1))))
    if spread == 0.0:  # every value tied: U is its mean, z = -0.5/0 = -inf, p = 1 (as scipy)
        return u1, 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / spread
    return u1, min(1.0, 2.0 * float(special.ndtr(-z)))


def _chi_square_p(observed: Sequence[float], expected: Sequence[float]) -> float:
    """Pearson's goodness-of-fit p-value on ``K - 1`` degrees of freedom.

    :math:`X^2 = \\sum_k (O_k - E_k)^2 / E_k`, :math:`p = P(\\chi^2_{K-1} > X^2)`
    (``scipy.special.chdtrc``, what ``scipy.stats.chisquare`` evaluates), so the SRM check
    does not import ``scipy.stats``.

    References
    ----------
    .. [1] Pearson, K. (1900). On the criterion that a given system of deviations from the
       probable... Philosophical Magazine, 50(302), 157-175.
    """
    from scipy import special

    observed_ = np.asarray(observed, dtype=np.float64)
    expected_ = np.asarray(expected, dtype=np.float64)
    statistic = float(np.sum((observed_ - expected_) ** 2 / expected_))
    return float(special.chdtrc(observed_.size - 1, statistic))


def segment_adjust(pvalues: Mapping[str, float | None]) -> dict[str, float | None]:
    """Benjamini-Hochberg across segments: one adjusted p-value per segment.

    Parameters
    ----------
    pvalues : mapping of str to float or None
        Per segment, the p-value of its comparison (for several treatments,
        the segment's smallest Holm-adjusted p-value, or one entry per
        ``"segment/treatment"`` key).

    Returns
    -------
    dict of str to float or None
        Same keys; segments without a p-value stay ``None`` and are left out
        of the family.

    Notes
    -----
    Segment results are exploratory: up to 20 segments each tested at
    :math:`\\alpha` would show a false "win" somewhere most of the time.
    :func:`bh_adjust` over the segments bounds the expected share of false
    discoveries among the segments shown as significant.

    References
    ----------
    .. [1] Benjamini, Y. & Hochberg, Y. (1995). Controlling the false
       discovery rate. Journal of the Royal Statistical Society B, 57(1),
       289-300.

    Examples
    --------
    >>> segment_adjust({"smb": 0.01, "mid": None, "ent": 0.04})
    {'smb': 0.02, 'mid': None, 'ent': 0.04}
    """
    keys = list(pvalues)
    return dict(zip(keys, bh_adjust([pvalues[key] for key in keys]), strict=True))
