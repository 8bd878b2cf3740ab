"""NRR levers, logo churn and non-inferiority guardrails (DESIGN §4c).

NRR moves through three levers: ``NRR = 1 + expansion/start - contraction/start
- churned/start``, so the NRR uplift of a comparison splits exactly into
``Δexpansion - Δcontraction - Δchurn``. Each lever (and GRR, the churn plus
contraction view) is a ratio of sums tested like the NRR uplift itself:
delta method, Welch-Satterthwaite degrees of freedom, Student t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

from scipy import special

from stats._checks import check_alpha, check_count, finite_or_none
from stats.moments import Moments

Interval = tuple[float | None, float | None]
_NO_INTERVAL: Interval = (None, None)

#: Lever name → ``(numerator coefficients over the account columns)``; the
#: denominator is always ``start``. GRR's numerator is start - contraction - churned.
LEVERS: dict[str, dict[str, float]] = {
    "expansion": {"expansion": 1.0},
    "contraction": {"contraction": 1.0},
    "churn": {"churned": 1.0},
    "grr": {"start": 1.0, "contraction": -1.0, "churned": -1.0},
}

GuardrailMetric = Literal["grr", "logo_churn"]
GuardrailStatus = Literal["pass", "fail", "inconclusive"]


@dataclass(frozen=True)
class LeverFigure:
    """One lever of one comparison (treatment vs control).

    Attributes
    ----------
    control, treatment : float or None
        The arm's ``Σx / Σstart`` (``None`` without start MRR).
    uplift_abs : float or None
        ``treatment - control``.
    ci_abs : tuple of (float or None, float or None)
        Two-sided ``1 - alpha`` interval; ``(None, None)`` when ``var_abs = 0``
        or an arm has fewer than two accounts.
    p_value : float or None
        Two-sided Welch p-value, raw (no multiplicity adjustment).
    se : float or None
        :math:`\\sqrt{var_{abs}}`.
    df : float or None
        Welch-Satterthwaite degrees of freedom.
    """

    control: float | None
    treatment: float | None
    uplift_abs: float | None
    ci_abs: Interval
    p_value: float | None
    se: float | None
    df: float | None

    def to_dict(self) -> dict[str, Any]:
        """The lever's object in a comparison's ``"levers"`` (DESIGN §4b)."""
        return {
            "control": self.control,
            "treatment": self.treatment,
            "uplift_abs": self.uplift_abs,
            "ci_abs": list(self.ci_abs),
            "p_value": self.p_value,
        }


def _ratio_and_variance(arm: Moments, numerator: dict[str, float]) -> tuple[Any, Any]:
    """``R = Σx/Σstart`` and its delta-method variance ``var(x - R·start)/(n·m_start²)``."""
    total_start = arm.total("start") if arm.n else 0.0
    if arm.n == 0 or total_start == 0:
        return None, None
    total_x = sum(coef * arm.total(name) for name, coef in numerator.items())
    ratio = total_x / total_start
    coef = dict(numerator)
    coef["start"] = coef.get("start", 0.0) - ratio
    var_u = arm.linear_var(coef)
    if var_u is None:
        return ratio, None
    mean_start = total_start / arm.n
    return ratio, var_u / (arm.n * mean_start * mean_start)


def _welch(
    ratio_c: float | None,
    var_c: float | None,
    n_c: int,
    ratio_t: float | None,
    var_t: float | None,
    n_t: int,
    alpha: float,
) -> LeverFigure:
    """Welch comparison of two independent estimates (the §4 NRR-uplift rule)."""
    if ratio_c is None or ratio_t is None:
        return LeverFigure(ratio_c, ratio_t, None, _NO_INTERVAL, None, None, None)
    uplift = ratio_t - ratio_c
    if var_c is None or var_t is None or var_c + var_t == 0:
        return LeverFigure(ratio_c, ratio_t, uplift, _NO_INTERVAL, None, None, None)
    var_abs = var_t + var_c
    df = var_abs**2 / (var_t**2 / (n_t - 1) + var_c**2 / (n_c - 1))
    se = math.sqrt(var_abs)
    critical = float(special.stdtrit(df, 1.0 - alpha / 2.0))
    p_value = finite_or_none(2.0 * special.stdtr(df, -abs(uplift) / se))
    ci = (uplift - critical * se, uplift + critical * se)
    return LeverFigure(ratio_c, ratio_t, uplift, ci, p_value, se, df)


def lever_figures(control: Moments, treatment: Moments, *, alpha: float) -> dict[str, LeverFigure]:
    """Expansion, contraction, churn and GRR of a comparison with Welch intervals.

    Parameters
    ----------
    control, treatment : Moments
        Per-arm moments holding at least ``start, expansion, contraction, churned``.
    alpha : float
        The plan's alpha; intervals are two-sided ``1 - alpha``, unadjusted.

    Returns
    -------
    dict of str to LeverFigure
        Keys ``"expansion"``, ``"contraction"``, ``"churn"``, ``"grr"``.

    Raises
    ------
    ValueError
        If ``alpha`` is out of range or a column is missing.

    Notes
    -----
    For part :math:`x` (expansion, contraction, churned, or
    :math:`start - contraction - churned` for GRR) and :math:`y = start`,
    per arm :math:`R = \\sum x / \\sum y` and

    .. math::
        \\operatorname{var}(R) = \\frac{\\operatorname{var}(x - R y)}{n\\, \\bar y^2}

    (ddof 1, the delta method of DESIGN §4 in linearised form). With
    :math:`V = V_T + V_C`,
    :math:`\\nu = V^2 / (V_T^2/(n_T-1) + V_C^2/(n_C-1))`,
    ``ci_abs`` :math:`= \\Delta \\mp t_{1-\\alpha/2,\\nu}\\sqrt V` and
    ``p_value`` :math:`= 2\\,T_\\nu(-|\\Delta|/\\sqrt V)`; both ``None`` when
    :math:`V = 0`. Because every arm shares the denominator,
    :math:`\\Delta NRR = \\Delta exp - \\Delta contr - \\Delta churn` exactly.

    References
    ----------
    .. [1] Deng, A., Knoblich, U. & Lu, J. (2018). Applying the Delta Method in
       Metric Analytics: A Practical Guide with Novel Ideas. KDD '18.
    .. [2] Welch, B. L. (1947). The generalization of "Student's" problem when
       several different population variances are involved. Biometrika,
       34(1/2), 28-35.

    Examples
    --------
    >>> c = Moments.from_arrays({"start": [100.0, 200.0, 100.0], "expansion": [0.0, 20.0, 10.0],
    ...                          "contraction": [0.0, 0.0, 0.0], "churned": [0.0, 0.0, 100.0]})
    >>> t = Moments.from_arrays({"start": [100.0, 100.0, 200.0], "expansion": [30.0, 0.0, 20.0],
    ...                          "contraction": [10.0, 0.0, 0.0], "churned": [0.0, 0.0, 0.0]})
    >>> figures = lever_figures(c, t, alpha=0.05)
    >>> figures["expansion"].control, figures["expansion"].treatment
    (0.075, 0.125)
    >>> round(figures["churn"].uplift_abs, 4), round(figures["grr"].uplift_abs, 4)
    (-0.25, 0.225)
    """
    alpha = check_alpha(alpha)
    result = {}
    for lever, numerator in LEVERS.items():
        ratio_c, var_c = _ratio_and_variance(control, numerator)
        ratio_t, var_t = _ratio_and_variance(treatment, numerator)
        result[lever] = _welch(ratio_c, var_c, control.n, ratio_t, var_t, treatment.n, alpha)
    return result


@dataclass(frozen=True)
class Proportions:
    """Difference of two independent proportions (treatment - control).

    Attributes
    ----------
    control, treatment : float or None
        Shares, ``None`` for an empty arm.
    diff : float or None
        ``treatment - control``.
    p_value : float or None
        Two-sided Wald z p-value; ``None`` when ``se = 0``.
    se : float or None
        Unpooled standard error; ``None`` when it is 0.
    """

    control: float | None
    treatment: float | None
    diff: float | None
    p_value: float | None
    se: float | None

    def to_dict(self) -> dict[str, Any]:
        """The ``"logo_churn"`` / ``"expansion_incidence"`` object (DESIGN §4b)."""
        return {
            "control": self.control,
            "treatment": self.treatment,
            "diff": self.diff,
            "p_value": self.p_value,
        }


def two_proportions(count_c: int, n_c: int, count_t: int, n_t: int) -> Proportions:
    """Unpooled Wald z-test of two proportions (DESIGN §4c "Logo churn").

    Parameters
    ----------
    count_c, n_c : int
        Accounts with the event (e.g. fully churned) and accounts in control.
    count_t, n_t : int
        The same for the treatment arm.

    Returns
    -------
    Proportions

    Raises
    ------
    ValueError
        If a count is not a whole number >= 0 or exceeds its arm size.

    Notes
    -----
    .. math::
        se = \\sqrt{\\frac{p_C(1-p_C)}{n_C} + \\frac{p_T(1-p_T)}{n_T}}, \\qquad
        p = 2\\,(1 - \\Phi(|p_T - p_C| / se))

    ``p_value`` and ``se`` are ``None`` when ``se = 0`` (e.g. no account
    churned in either arm).

    References
    ----------
    .. [1] Agresti, A. (2013). Categorical Data Analysis, 3rd ed., §1.4 and
       §3.1 (Wald interval and test for a difference of proportions). Wiley.

    Examples
    --------
    >>> result = two_proportions(10, 100, 5, 100)
    >>> round(result.diff, 4), round(result.p_value, 4)
    (-0.05, 0.1775)
    """
    count_c, n_c = check_count("count_c", count_c), check_count("n_c", n_c)
    count_t, n_t = check_count("count_t", count_t), check_count("n_t", n_t)
    for name, count, n in (("control", count_c, n_c), ("treatment", count_t, n_t)):
        if count > n:
            raise ValueError(f"{name} count {count} exceeds its {n} accounts")
    p_c = count_c / n_c if n_c else None
    p_t = count_t / n_t if n_t else None
    if p_c is None or p_t is None:
        return Proportions(p_c, p_t, None, None, None)
    diff = p_t - p_c
    se = math.sqrt(p_c * (1.0 - p_c) / n_c + p_t * (1.0 - p_t) / n_t)
    if se == 0:
        return Proportions(p_c, p_t, diff, None, None)
    p_value = float(special.erfc(abs(diff) / se / math.sqrt(2.0)))
    return Proportions(p_c, p_t, diff, p_value, se)


@dataclass(frozen=True)
class GuardrailSpec:
    """A non-inferiority guardrail: metric and margin (a fraction, 0.01 = 1 point).

    Examples
    --------
    >>> GuardrailSpec.parse("grr:0.01")
    GuardrailSpec(metric='grr', margin=0.01)
    """

    metric: GuardrailMetric
    margin: float

    def __post_init__(self) -> None:
        if self.metric not in get_args(GuardrailMetric):
            allowed = " or ".join(get_args(GuardrailMetric))
            raise ValueError(f"guardrail metric must be {allowed}; got {self.metric!r}")
        if isinstance(self.margin, bool) or not isinstance(self.margin, int | float):
            raise ValueError(f"guardrail margin must be a number; got {self.margin!r}")
        margin = float(self.margin)
        if not (math.isfinite(margin) and 0 < margin < 1):
            raise ValueError(
                "guardrail margin is a fraction between 0 and 1 (0.01 = 1 point); "
                f"got {self.margin!r}"
            )
        object.__setattr__(self, "margin", margin)

    @classmethod
    def parse(cls, text: str) -> GuardrailSpec:
        """Parse ``"metric:margin"``, e.g. ``"grr:0.01"`` or ``"logo_churn:0.005"``.

        Raises
        ------
        ValueError
            With a message naming the text and what is wrong with it.
        """
        if not isinstance(text, str):
            raise ValueError(f"guardrail must be text like 'grr:0.01'; got {text!r}")
        metric, colon, margin = text.strip().partition(":")
        if not colon:
            raise ValueError(f"guardrail {text!r} must look like 'grr:0.01' (metric:margin)")
        metric = metric.strip().lower()
        try:
            value = float(margin.strip())
        except ValueError:
            raise ValueError(
                f"guardrail {text!r}: margin {margin.strip()!r} is not a number "
                "(a fraction, 0.01 = 1 point)"
            ) from None
        try:
            return cls(metric, value)  # type: ignore[arg-type]
        except ValueError as error:
            raise ValueError(f"guardrail {text!r}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        """``{"metric", "margin"}`` for the report's ``"guardrails_plan"``."""
        return {"metric": self.metric, "margin": self.margin}


@dataclass(frozen=True)
class GuardrailResult:
    """Outcome of one guardrail for one comparison (``status`` ``None`` when not computable)."""

    metric: GuardrailMetric
    margin: float
    diff: float | None
    p_value: float | None
    status: GuardrailStatus | None

    def to_dict(self) -> dict[str, Any]:
        """The guardrail's object in a comparison's ``"guardrails"`` (DESIGN §4b)."""
        return {
            "metric": self.metric,
            "margin": self.margin,
            "diff": self.diff,
            "p_value": self.p_value,
            "status": self.status,
        }


def guardrail(
    spec: GuardrailSpec, *, grr: LeverFigure, logo_churn: Proportions, alpha: float
) -> GuardrailResult:
    """One-sided non-inferiority test of a guardrail at the plan's alpha.

    Parameters
    ----------
    spec : GuardrailSpec
        Metric and margin ``m``.
    grr : LeverFigure
        The comparison's GRR lever (used for ``metric == "grr"``).
    logo_churn : Proportions
        The comparison's logo churn (used for ``metric == "logo_churn"``).
    alpha : float
        One-sided level, no multiplicity adjustment.

    Returns
    -------
    GuardrailResult
        ``p_value`` and ``status`` are ``None`` when the standard error is
        missing or zero.

    Notes
    -----
    GRR (higher is better; :math:`d, se, \\nu` from the GRR lever):
    :math:`p = 1 - T_\\nu((d + m)/se)`; ``pass`` if
    :math:`d - t_{1-\\alpha,\\nu} se > -m` (equivalently :math:`p < \\alpha`),
    ``fail`` if :math:`d + t_{1-\\alpha,\\nu} se < -m`, else ``inconclusive``.

    Logo churn (lower is better): :math:`p = 1 - \\Phi((m - d)/se)`; ``pass``
    if :math:`d + z_{1-\\alpha} se < m`, ``fail`` if
    :math:`d - z_{1-\\alpha} se > m`, else ``inconclusive``.

    References
    ----------
    .. [1] Schuirmann, D. J. (1987). A comparison of the two one-sided tests
       procedure and the power approach for assessing the equivalence of
       average bioavailability. J. Pharmacokinetics and Biopharmaceutics,
       15(6), 657-680.
    .. [2] Wellek, S. (2010). Testing Statistical Hypotheses of Equivalence and
       Noninferiority, 2nd ed. CRC Press.

    Examples
    --------
    >>> churn = two_proportions(50, 1000, 52, 1000)
    >>> result = guardrail(GuardrailSpec("logo_churn", 0.03), grr=None, logo_churn=churn,
    ...                    alpha=0.05)
    >>> result.status, round(result.p_value, 4)
    ('pass', 0.0022)
    """
    alpha = check_alpha(alpha)
    if not isinstance(spec, GuardrailSpec):
        raise ValueError(f"spec must be a GuardrailSpec; got {spec!r}")
    m = spec.margin
    status: GuardrailStatus | None = None
    p_value = None
    if spec.metric == "grr":
        diff, se, df = grr.uplift_abs, grr.se, grr.df
        if diff is not None and se and df is not None:
            p_value = finite_or_none(special.stdtr(df, -(diff + m) / se))
            critical = float(special.stdtrit(df, 1.0 - alpha))
            if diff - critical * se > -m:
                status = "pass"
            elif diff + critical * se < -m:
                status = "fail"
            else:
                status = "inconclusive"
    else:
        diff, se = logo_churn.diff, logo_churn.se
        if diff is not None and se:
            p_value = float(special.ndtr((diff - m) / se))
            critical = float(special.ndtri(1.0 - alpha))
            if diff + critical * se < m:
                status = "pass"
            elif diff - critical * se > m:
                status = "fail"
            else:
                status = "inconclusive"
    return GuardrailResult(spec.metric, m, diff, p_value, status)
