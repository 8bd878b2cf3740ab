"""CUPED for the NRR ratio metric (DESIGN §4c "CUPED").

An account's NRR in the experiment period is correlated with its NRR in an
equally long period before enrolment. Subtracting the part of the outcome that
the pre-period predicts removes variance without bias (the pre-period cannot be
affected by the treatment), so the same data gives a narrower interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from scipy import special

from stats._checks import check_alpha, finite_or_none
from stats.moments import Moments

Interval = tuple[float | None, float | None]

#: Columns CUPED needs in each arm's moments.
CUPED_COLUMNS = ("start", "expansion", "contraction", "churned", "pre_start", "pre_end")


@dataclass(frozen=True)
class CupedResult:
    """CUPED-adjusted NRR uplift of one comparison.

    Attributes
    ----------
    uplift_abs : float
        :math:`(R_T - R_C) - \\theta (Q_T - Q_C)`.
    ci_abs : tuple of (float or None, float or None)
        Two-sided ``1 - alpha`` Welch interval; ``(None, None)`` when the
        adjusted variance is 0.
    p_value : float or None
        Two-sided Welch p-value.
    variance_reduction : float or None
        ``1 - var / var_abs`` against the unadjusted delta-method variance
        (``None`` when that is 0).
    theta : float
        The pooled within-arm regression coefficient.
    sigma_adjusted : float or None
        ``sd(z - θw)`` (ddof 1) on the control arm: the CUPED counterpart of
        §4's ``sigma_lin`` (``None`` with fewer than two control accounts).
    """

    uplift_abs: float
    ci_abs: Interval
    p_value: float | None
    variance_reduction: float | None
    theta: float
    sigma_adjusted: float | None

    def to_dict(self) -> dict[str, Any]:
        """The ``"cuped"`` object of a comparison (DESIGN §4b)."""
        return {
            "uplift_abs": self.uplift_abs,
            "ci_abs": list(self.ci_abs),
            "p_value": self.p_value,
            "variance_reduction": self.variance_reduction,
        }


def _linearised(arm: Moments) -> tuple[float, float, dict[str, float], dict[str, float]]:
    """``R``, ``Q`` and the coefficient vectors of ``z`` and ``w`` over the columns."""
    total_start, total_pre = arm.total("start"), arm.total("pre_start")
    end_total = (
        total_start + arm.total("expansion") - arm.total("contraction") - arm.total("churned")
    )
    ratio = end_total / total_start
    pre_ratio = arm.total("pre_end") / total_pre
    mean_start, mean_pre = total_start / arm.n, total_pre / arm.n
    z = {
        "start": (1.0 - ratio) / mean_start,
        "expansion": 1.0 / mean_start,
        "contraction": -1.0 / mean_start,
        "churned": -1.0 / mean_start,
    }
    w = {"pre_end": 1.0 / mean_pre, "pre_start": -pre_ratio / mean_pre}
    return ratio, pre_ratio, z, w


def _combine(z: dict[str, float], w: dict[str, float], theta: float) -> dict[str, float]:
    coef = dict(z)
    for name, value in w.items():
        coef[name] = coef.get(name, 0.0) - theta * value
    return coef


def cuped(control: Moments, treatment: Moments, *, alpha: float) -> CupedResult | None:
    """CUPED-adjusted NRR uplift with the pre-period NRR as covariate.

    Parameters
    ----------
    control, treatment : Moments
        Per-arm moments of ``start, expansion, contraction, churned,
        pre_start, pre_end``.
    alpha : float
        The plan's alpha (two-sided interval, unadjusted).

    Returns
    -------
    CupedResult or None
        ``None`` unless both arms have the pre-period columns, at least two
        accounts, and positive ``Σstart`` and ``Σpre_start``.

    Raises
    ------
    ValueError
        If ``alpha`` is out of range.

    Notes
    -----
    Per arm :math:`R = \\sum end / \\sum start`,
    :math:`Q = \\sum pre\\_end / \\sum pre\\_start` and the linearised
    (influence-function) variables

    .. math::
        z = \\frac{end - R\\,start}{\\overline{start}}, \\qquad
        w = \\frac{pre\\_end - Q\\,pre\\_start}{\\overline{pre\\_start}}

    :math:`\\theta = \\sum_{arms} \\sum (z - \\bar z)(w - \\bar w) /
    \\sum_{arms} \\sum (w - \\bar w)^2` (pooled within the two arms; 0 when
    every :math:`w` is constant). Then

    .. math::
        \\Delta = (R_T - R_C) - \\theta (Q_T - Q_C), \\qquad
        V = \\frac{\\operatorname{var}(z_T - \\theta w_T)}{n_T}
          + \\frac{\\operatorname{var}(z_C - \\theta w_C)}{n_C}

    with Welch-Satterthwaite degrees of freedom from these two terms, the
    interval :math:`\\Delta \\mp t_{1-\\alpha/2,\\nu}\\sqrt V` and
    ``variance_reduction`` :math:`= 1 - V / V_{abs}`, :math:`V_{abs}` the
    unadjusted delta-method variance :math:`\\operatorname{var}(z_T)/n_T +
    \\operatorname{var}(z_C)/n_C`.

    References
    ----------
    .. [1] Deng, A., Xu, Y., Kohavi, R. & Walker, T. (2013). Improving the
       Sensitivity of Online Controlled Experiments by Utilizing
       Pre-Experiment Data. WSDM '13.
    .. [2] Deng, A., Knoblich, U. & Lu, J. (2018). Applying the Delta Method in
       Metric Analytics: A Practical Guide with Novel Ideas. KDD '18, §4
       (CUPED for ratio metrics).

    Examples
    --------
    >>> def arm(start, end, pre_start, pre_end):
    ...     return Moments.from_arrays({"start": start, "expansion": [max(e - s, 0.0)
    ...         for s, e in zip(start, end)], "contraction": [max(s - e, 0.0)
    ...         for s, e in zip(start, end)], "churned": [0.0] * len(start),
    ...         "pre_start": pre_start, "pre_end": pre_end})
    >>> c = arm([100.0, 100.0, 100.0, 100.0], [90.0, 110.0, 100.0, 120.0],
    ...         [100.0, 100.0, 100.0, 100.0], [92.0, 108.0, 99.0, 121.0])
    >>> t = arm([100.0, 100.0, 100.0, 100.0], [100.0, 125.0, 105.0, 110.0],
    ...         [100.0, 100.0, 100.0, 100.0], [96.0, 123.0, 104.0, 108.0])
    >>> result = cuped(c, t, alpha=0.05)
    >>> round(result.uplift_abs, 4), round(result.variance_reduction, 3)
    (0.0228, 0.983)
    """
    alpha = check_alpha(alpha)
    for arm in (control, treatment):
        if not arm.has(*CUPED_COLUMNS) or arm.n < 2:
            return None
        if arm.total("start") <= 0 or arm.total("pre_start") <= 0:
            return None
    r_c, q_c, z_c, w_c = _linearised(control)
    r_t, q_t, z_t, w_t = _linearised(treatment)
    s_zw = control.linear_comoment(z_c, w_c) + treatment.linear_comoment(z_t, w_t)
    s_ww = control.linear_comoment(w_c, w_c) + treatment.linear_comoment(w_t, w_t)
    theta = s_zw / s_ww if s_ww > 0 else 0.0
    uplift = (r_t - r_c) - theta * (q_t - q_c)

    var_c = control.linear_var(_combine(z_c, w_c, theta)) / control.n
    var_t = treatment.linear_var(_combine(z_t, w_t, theta)) / treatment.n
    var_abs = control.linear_var(z_c) / control.n + treatment.linear_var(z_t) / treatment.n
    var = var_c + var_t
    reduction = finite_or_none(1.0 - var / var_abs) if var_abs > 0 else None
    sigma_adjusted = math.sqrt(var_c * control.n)

    ci: Interval = (None, None)
    p_value = None
    if var > 0:
        df = var**2 / (var_t**2 / (treatment.n - 1) + var_c**2 / (control.n - 1))
        se = math.sqrt(var)
        critical = float(special.stdtrit(df, 1.0 - alpha / 2.0))
        ci = (uplift - critical * se, uplift + critical * se)
        p_value = finite_or_none(2.0 * special.stdtr(df, -abs(uplift) / se))
    return CupedResult(uplift, ci, p_value, reduction, theta, sigma_adjusted)
