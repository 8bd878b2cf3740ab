"""A test of the NRR difference that holds its level where Welch's t does not.

With unequal arms and heavily skewed MRR (a few accounts carry most of the
revenue), the delta-method Welch t is anti-conservative: the skewness of the two
arms' estimates no longer cancels. A studentised permutation test keeps the
level exactly when the arms do not differ and asymptotically otherwise
(Janssen 1997; Chung & Romano 2013); its reference distribution also sets the
interval's critical value, so the interval and the p-value always agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from stats._checks import check_alpha, check_count

#: Random relabellings; (B + 1)·α is not a whole number for the usual levels,
#: so the test's size is within 1/(B + 1) of α from below.
DEFAULT_PERMUTATIONS = 1000
#: A fixed seed: the same file always gives the same p-value.
DEFAULT_SEED = 20261130
#: Above this many accounts the Welch t's skewness error is negligible and the
#: permutation cost (B × accounts) is not worth paying.
MAX_PERMUTATION_ACCOUNTS = 20_000
#: Allocation ratio (larger arm / smaller arm) from which skewness stops cancelling.
UNEQUAL_ALLOCATION = 1.5
#: Skewness index ``max |γ| / √n`` over the arms (the order of the Edgeworth
#: error of the t) from which the Welch t is not trusted; halved for unequal arms.
#: Lognormal(σ = 2) MRR reaches it at any size below the cap; σ = 1 below a few
#: thousand accounts per arm.
SKEWNESS_INDEX = 0.1
#: Rows per block of relabellings (bounds one block to ~40 MB).
_BLOCK_CELLS = 1_000_000


@dataclass(frozen=True)
class PermutationResult:
    """Outcome of :func:`permutation_test`.

    Attributes
    ----------
    statistic : float
        Observed studentised uplift ``Δ / √V_Δ``.
    p_value : float
        ``(1 + #{|t*| >= |t|}) / (B + 1)``.
    critical : tuple of float or None
        For each requested level ``a``, the critical value ``q`` with
        ``p < a`` exactly when ``|t| > q``; ``None`` when ``B`` is too small.
    permutations : int
    seed : int
    """

    statistic: float
    p_value: float
    critical: tuple[float | None, ...]
    permutations: int
    seed: int


def _lin_variance(sums: np.ndarray, n: int, shift_x: float, shift_y: float) -> tuple:
    """Ratio and delta-method variance of groups from shifted sums (rows of 5)."""
    s_x, s_y, s_xx, s_yy, s_xy = (sums[..., i] for i in range(5))
    total_x = s_x + n * shift_x
    total_y = s_y + n * shift_y
    ratio = total_x / total_y
    c_xx = s_xx - s_x * s_x / n
    c_yy = s_yy - s_y * s_y / n
    c_xy = s_xy - s_x * s_y / n
    lin = np.maximum(c_xx - 2.0 * ratio * c_xy + ratio * ratio * c_yy, 0.0)
    mean_y = total_y / n
    return ratio, lin / (n - 1) / (n * mean_y * mean_y)


def linearised_skewness(x: ArrayLike, y: ArrayLike) -> float | None:
    """Sample skewness of ``u = x - R·y`` (``R = Σx/Σy``), the metric's per-account shape.

    Returns
    -------
    float or None
        ``m3 / m2^1.5``; ``None`` for fewer than 3 accounts or no spread.

    Examples
    --------
    >>> round(linearised_skewness([1.0, 1.0, 1.0, 5.0], [1.0, 1.0, 1.0, 1.0]), 4)
    1.1547
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.size < 3 or ys.sum() == 0:
        return None
    u = xs - xs.sum() / ys.sum() * ys
    d = u - u.mean()
    m2 = float(np.mean(d * d))
    if m2 <= 0:
        return None
    return float(np.mean(d * d * d)) / m2**1.5


def needs_permutation(
    n_treatment: int, n_control: int, skew_treatment: float | None, skew_control: float | None
) -> str | None:
    r"""Why the Welch t cannot be trusted for this comparison, or ``None``.

    Parameters
    ----------
    n_treatment, n_control : int
        Accounts per arm.
    skew_treatment, skew_control : float or None
        :func:`linearised_skewness` of each arm.

    Returns
    -------
    str or None
        A short reason for the report, or ``None`` when Welch is fine.

    Notes
    -----
    With :math:`g = \max_{arm} |\gamma| / \sqrt{n}` (skewness shrinks as
    :math:`1/\sqrt n` in a mean) and :math:`r` = larger arm / smaller arm, the
    permutation test is used when there are at most
    ``MAX_PERMUTATION_ACCOUNTS`` accounts and :math:`g \ge 0.1`, or
    :math:`g \ge 0.05` with :math:`r \ge 1.5` (unequal arms do not cancel
    the skewness of their estimates).

    References
    ----------
    .. [1] Hall, P. (1992). The Bootstrap and Edgeworth Expansion, §2.6.
       Springer.

    Examples
    --------
    >>> needs_permutation(4000, 400, 40.0, 12.0)
    'unequal arms (4000:400) with skewed MRR (skewness 40.0 in 4000 accounts)'
    >>> needs_permutation(20000, 20000, 2.0, 2.0) is None
    True
    """
    if n_treatment + n_control > MAX_PERMUTATION_ACCOUNTS or min(n_treatment, n_control) < 2:
        return None
    measured = [
        (abs(skew) / math.sqrt(size), abs(skew), size)
        for skew, size in ((skew_treatment, n_treatment), (skew_control, n_control))
        if skew is not None
    ]
    if not measured:
        return None
    index, skew, n = max(measured)
    ratio = max(n_treatment, n_control) / min(n_treatment, n_control)
    shape = f"skewed MRR (skewness {skew:.1f} in {n} accounts)"
    if ratio >= UNEQUAL_ALLOCATION and index >= SKEWNESS_INDEX / 2:
        return f"unequal arms ({n_treatment}:{n_control}) with {shape}"
    if index >= SKEWNESS_INDEX:
        return shape
    return None


def permutation_test(
    x_treatment: ArrayLike,
    y_treatment: ArrayLike,
    x_control: ArrayLike,
    y_control: ArrayLike,
    *,
    levels: Sequence[float] = (0.05,),
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = DEFAULT_SEED,
) -> PermutationResult | None:
    """Studentised permutation test of ``NRR_T - NRR_C``.

    Parameters
    ----------
    x_treatment, y_treatment, x_control, y_control : array_like
        End MRR (``x``) and start MRR (``y``) per account of each arm.
    levels : sequence of float
        Two-sided levels to return critical values for (e.g. ``α`` and ``α/k``).
    permutations : int
        Number of random relabellings ``B``.
    seed : int
        Seed of the relabellings (reproducible reports).

    Returns
    -------
    PermutationResult or None
        ``None`` when an arm has fewer than 2 accounts or the observed
        uplift has zero variance.

    Raises
    ------
    ValueError
        If a level is out of range or ``permutations`` < 1.

    Notes
    -----
    The statistic is the Welch/delta-method :math:`t = \\Delta/\\sqrt{V_T + V_C}`
    (DESIGN §4). Its reference distribution is that of :math:`t^*` over
    ``B`` random reassignments of the pooled accounts to arms of the observed
    sizes; :math:`p = (1 + \\#\\{|t^*| \\ge |t|\\})/(B + 1)`. For level
    :math:`a` with :math:`j = \\lceil a(B+1) \\rceil - 1`, the critical value
    :math:`q_a` is the :math:`j`-th largest :math:`|t^*|`, so
    :math:`p < a \\iff |t| > q_a` and the interval
    :math:`\\Delta \\mp q_a \\sqrt{V_\\Delta}` excludes 0 exactly when the
    test rejects. Studentising makes the test asymptotically valid when the
    arms differ in spread, not only under exchangeability.

    References
    ----------
    .. [1] Janssen, A. (1997). Studentized permutation tests for non-i.i.d.
       hypotheses and the generalized Behrens-Fisher problem. Statistics &
       Probability Letters, 36(1), 9-21.
    .. [2] Chung, E. & Romano, J. P. (2013). Exact and asymptotically robust
       permutation tests. The Annals of Statistics, 41(2), 484-507.
    .. [3] Phipson, B. & Smyth, G. K. (2010). Permutation p-values should
       never be zero. Statistical Applications in Genetics and Molecular
       Biology, 9(1), article 39.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> y = rng.lognormal(5, 2, 300)
    >>> x = y * rng.choice([0.0, 1.0, 1.3], 300, p=[0.1, 0.7, 0.2])
    >>> r = permutation_test(x[:60], y[:60], x[60:], y[60:], permutations=500)
    >>> 0 < r.p_value <= 1, r.permutations
    (True, 500)
    """
    permutations = check_count("permutations", permutations)
    if permutations < 1:
        raise ValueError("permutations must be at least 1")
    levels = tuple(check_alpha(level) for level in levels)
    xt = np.asarray(x_treatment, dtype=np.float64)
    yt = np.asarray(y_treatment, dtype=np.float64)
    xc = np.asarray(x_control, dtype=np.float64)
    yc = np.asarray(y_control, dtype=np.float64)
    n_t, n_c = xt.size, xc.size
    if n_t < 2 or n_c < 2:
        return None
    x = np.concatenate([xt, xc])
    y = np.concatenate([yt, yc])
    # A canonical order of the pooled accounts makes the relabellings, and so the
    # p-value, the same whichever arm is called control.
    canonical = np.lexsort((x, y))
    x, y = x[canonical], y[canonical]
    n = n_t + n_c
    shift_x, shift_y = float(x.mean()), float(y.mean())
    dx, dy = x - shift_x, y - shift_y
    columns = np.stack([dx, dy, dx * dx, dy * dy, dx * dy], axis=1)
    total = columns.sum(axis=0)

    def studentised(treatment_sums: np.ndarray) -> np.ndarray:
        ratio_t, var_t = _lin_variance(treatment_sums, n_t, shift_x, shift_y)
        ratio_c, var_c = _lin_variance(total - treatment_sums, n_c, shift_x, shift_y)
        with np.errstate(divide="ignore", invalid="ignore"):
            return (ratio_t - ratio_c) / np.sqrt(var_t + var_c)

    observed_t = np.stack([xt - shift_x, yt - shift_y], axis=1)
    observed = float(
        studentised(
            np.concatenate([
                observed_t.sum(axis=0),
                (observed_t * observed_t).sum(axis=0),
                [np.dot(observed_t[:, 0], observed_t[:, 1])],
            ])
        )
    )
    if not math.isfinite(observed):
        return None
    rng = np.random.default_rng(seed)
    # Draw the smaller arm's members; the other arm is the complement.
    small = min(n_t, n_c)
    block = max(1, _BLOCK_CELLS // n)
    draws = []
    done = 0
    while done < permutations:
        rows = min(block, permutations - done)
        keys = rng.random((rows, n))
        threshold = np.partition(keys, small - 1, axis=1)[:, small - 1 : small]
        # A 0/1 membership matrix turns every relabelling's sums into one matmul.
        group_sums = (keys <= threshold).astype(np.float64) @ columns
        treatment_sums = group_sums if small == n_t else total - group_sums
        draws.append(np.abs(studentised(treatment_sums)))
        done += rows
    null = np.nan_to_num(np.concatenate(draws), nan=0.0)
    # Relabellings that reproduce |t| up to rounding count as ties (>=), not below it.
    exceed = int(np.count_nonzero(null >= abs(observed) * (1 - 1e-9) - 1e-12))
    p_value = (1 + exceed) / (permutations + 1)
    descending = np.sort(null)[::-1]
    critical = []
    for level in levels:
        j = math.ceil(level * (permutations + 1)) - 1
        critical.append(float(descending[j - 1]) if j >= 1 else None)
    return PermutationResult(observed, p_value, tuple(critical), permutations, seed)
