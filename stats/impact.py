"""Portfolio shrinkage of uplift estimates and their revenue impact.

Among many experiments, the ones that came out significant are, on average,
those whose noise happened to point up: their raw uplifts overstate the truth
(the winner's curse). Empirical Bayes pulls every estimate toward the
portfolio's mean by how noisy it is relative to the real spread of effects,
which removes most of that bias. The revenue figures then turn an NRR uplift
into MRR and company NRR points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from stats._checks import check_finite

ShrinkageMethod = Literal["dl", "pm"]

#: Fewer estimates than this are not shrunk: the spread of true effects
#: (τ²) cannot be estimated from one or two numbers.
MIN_ESTIMATES = 3

_METHOD_NAMES = {"dl": "DerSimonian-Laird", "pm": "Paule-Mandel"}


@dataclass(frozen=True)
class Shrinkage:
    """Normal-normal empirical Bayes over a portfolio of uplift estimates.

    Attributes
    ----------
    prior_mean : float or None
        Precision-weighted mean :math:`m` of the estimates under the
        random-effects model (``None`` for no estimates).
    prior_var : float or None
        Estimated spread of true effects :math:`\\hat\\tau^2` (``None`` when
        not estimated, i.e. fewer than ``MIN_ESTIMATES``).
    shrunk : tuple of float
        :math:`m + B_i (x_i - m)`; the raw estimates when not shrunk.
    method : str
        How :math:`\\tau^2` was estimated, or why nothing was shrunk.
    factors : tuple of float
        :math:`B_i = \\tau^2 / (\\tau^2 + se_i^2)`, the weight kept on each
        estimate (1 when not shrunk).
    shrunk_se : tuple of float
        Posterior standard deviations :math:`\\sqrt{B_i}\\, se_i` (the raw
        standard errors when not shrunk).
    note : str or None
        A sentence for the page when the result needs one (too few estimates,
        or :math:`\\hat\\tau^2 = 0`).
    """

    prior_mean: float | None
    prior_var: float | None
    shrunk: tuple[float, ...]
    method: str
    factors: tuple[float, ...] = ()
    shrunk_se: tuple[float, ...] = ()
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe form."""
        return {
            "prior_mean": self.prior_mean,
            "prior_var": self.prior_var,
            "shrunk": list(self.shrunk),
            "method": self.method,
            "factors": list(self.factors),
            "shrunk_se": list(self.shrunk_se),
            "note": self.note,
        }


def _vectors(estimates: ArrayLike, standard_errors: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(estimates, dtype=np.float64)
    se = np.asarray(standard_errors, dtype=np.float64)
    if x.ndim != 1 or se.ndim != 1:
        raise ValueError("estimates and standard_errors must be one-dimensional")
    if x.shape != se.shape:
        raise ValueError(
            f"estimates and standard_errors must have the same length; got {x.size} and {se.size}"
        )
    bad = ~np.isfinite(x)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"estimate {index} must be a finite number; got {x[index]!r}")
    bad = ~(np.isfinite(se) & (se > 0))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"standard error {index} must be a finite number > 0; got {se[index]!r}")
    return x, se


def _q_statistic(x: np.ndarray, variance: np.ndarray, tau2: float) -> tuple[float, float]:
    """Generalised Cochran Q at ``tau2`` and the weighted mean it is centred on."""
    weights = 1.0 / (variance + tau2)
    mean = float(np.sum(weights * x) / np.sum(weights))
    return float(np.sum(weights * (x - mean) ** 2)), mean


def between_variance(
    estimates: ArrayLike, standard_errors: ArrayLike, method: ShrinkageMethod = "dl"
) -> float:
    """Estimate the variance of true effects :math:`\\tau^2` (truncated at 0).

    Parameters
    ----------
    estimates, standard_errors : array_like of float
        At least two estimates with standard errors > 0.
    method : {"dl", "pm"}
        DerSimonian-Laird (moments, closed form) or Paule-Mandel (solves
        the generalised Q equation).

    Returns
    -------
    float

    Notes
    -----
    With :math:`w_i = 1/se_i^2`, fixed-effect mean :math:`\\bar x_w` and
    :math:`Q = \\sum w_i (x_i - \\bar x_w)^2`, DerSimonian-Laird is

    .. math::
        \\hat\\tau^2 = \\max\\left(0, \\frac{Q - (k - 1)}
                     {\\sum w_i - \\sum w_i^2 / \\sum w_i}\\right)

    and Paule-Mandel the root of :math:`\\sum (x_i - m)^2/(se_i^2 + \\tau^2)
    = k - 1` (0 when :math:`Q(0) \\le k - 1`).

    References
    ----------
    .. [1] DerSimonian, R. & Laird, N. (1986). Meta-analysis in clinical
       trials. Controlled Clinical Trials, 7(3), 177-188.
    .. [2] Paule, R. C. & Mandel, J. (1982). Consensus values and weighting
       factors. J. Research of the National Bureau of Standards, 87(5),
       377-385.

    Examples
    --------
    >>> round(between_variance([0.0, 0.1, -0.1, 0.2], [0.05, 0.05, 0.05, 0.05]), 6)
    0.014167
    """
    x, se = _vectors(estimates, standard_errors)
    if x.size < 2:
        raise ValueError(f"at least 2 estimates are needed to estimate tau²; got {x.size}")
    variance = se * se
    q0, _ = _q_statistic(x, variance, 0.0)
    k = x.size
    if method == "dl":
        w = 1.0 / variance
        denominator = float(np.sum(w) - np.sum(w * w) / np.sum(w))
        return max(0.0, (q0 - (k - 1)) / denominator)
    if method == "pm":
        if q0 <= k - 1:
            return 0.0
        from scipy.optimize import brentq

        # Q(τ²) decreases from Q(0) > k - 1 towards 0; bracket the root.
        upper = float(np.var(x, ddof=1)) + float(variance.max())
        while _q_statistic(x, variance, upper)[0] > k - 1:
            upper *= 2.0
        return float(
            brentq(lambda t: _q_statistic(x, variance, t)[0] - (k - 1), 0.0, upper, xtol=1e-15)
        )
    raise ValueError(f"method must be 'dl' or 'pm'; got {method!r}")


def shrink(
    estimates: ArrayLike, standard_errors: ArrayLike, method: ShrinkageMethod = "dl"
) -> Shrinkage:
    """Shrink a portfolio's uplift estimates toward their common mean (empirical Bayes).

    Parameters
    ----------
    estimates : array_like of float
        Uplift estimates :math:`x_i` (e.g. absolute NRR uplifts of the
        portfolio's comparisons).
    standard_errors : array_like of float
        Their standard errors :math:`se_i > 0`.
    method : {"dl", "pm"}
        Estimator of :math:`\\tau^2`, see :func:`between_variance`.

    Returns
    -------
    Shrinkage
        With fewer than ``MIN_ESTIMATES`` estimates nothing is shrunk and the
        note says so; with :math:`\\hat\\tau^2 = 0` every estimate becomes the
        portfolio mean and the note says so.

    Raises
    ------
    ValueError
        If the lengths differ, an estimate is not finite or a standard error
        is not > 0.

    Notes
    -----
    Model: :math:`x_i \\mid \\mu_i \\sim N(\\mu_i, se_i^2)`,
    :math:`\\mu_i \\sim N(m, \\tau^2)`. With :math:`\\hat\\tau^2` from
    :func:`between_variance` and
    :math:`m = \\sum x_i/(se_i^2 + \\hat\\tau^2) / \\sum 1/(se_i^2 + \\hat\\tau^2)`,
    the posterior mean and standard deviation of :math:`\\mu_i` are

    .. math::
        \\hat\\mu_i = m + B_i (x_i - m), \\quad B_i =
        \\frac{\\hat\\tau^2}{\\hat\\tau^2 + se_i^2}, \\quad
        sd_i = \\sqrt{B_i}\\, se_i

    (plug-in; the uncertainty of :math:`m` and :math:`\\hat\\tau^2` is
    ignored, which matters little with dozens of experiments).

    References
    ----------
    .. [1] Efron, B. & Morris, C. (1975). Data analysis using Stein's
       estimator and its generalizations. JASA, 70(350), 311-319.
    .. [2] DerSimonian, R. & Laird, N. (1986). Meta-analysis in clinical
       trials. Controlled Clinical Trials, 7(3), 177-188.

    Examples
    --------
    >>> result = shrink([0.0, 0.1, -0.1, 0.2], [0.05, 0.05, 0.05, 0.05])
    >>> round(result.prior_mean, 3), [round(v, 4) for v in result.shrunk]
    (0.05, [0.0075, 0.0925, -0.0775, 0.1775])
    """
    x, se = _vectors(estimates, standard_errors)
    if method not in _METHOD_NAMES:
        raise ValueError(f"method must be 'dl' or 'pm'; got {method!r}")
    if x.size < MIN_ESTIMATES:
        mean = None
        if x.size:
            weights = 1.0 / (se * se)
            mean = float(np.sum(weights * x) / np.sum(weights))
        return Shrinkage(
            prior_mean=mean,
            prior_var=None,
            shrunk=tuple(x.tolist()),
            method="none",
            factors=(1.0,) * x.size,
            shrunk_se=tuple(se.tolist()),
            note=(
                f"not shrunk: {x.size} estimate{'s' if x.size != 1 else ''}; the spread of "
                f"true effects needs at least {MIN_ESTIMATES}"
            ),
        )
    tau2 = between_variance(x, se, method)
    variance = se * se
    _, mean = _q_statistic(x, variance, tau2)
    factors = tau2 / (tau2 + variance)
    note = None
    if tau2 == 0:
        note = (
            "the estimates vary no more than their noise: every one is shrunk to the portfolio mean"
        )
    return Shrinkage(
        prior_mean=mean,
        prior_var=tau2,
        shrunk=tuple((mean + factors * (x - mean)).tolist()),
        method=_METHOD_NAMES[method],
        factors=tuple(factors.tolist()),
        shrunk_se=tuple(np.sqrt(factors * variance).tolist()),
        note=note,
    )


@dataclass(frozen=True)
class Impact:
    """Revenue impact of rolling out a treatment.

    Attributes
    ----------
    monthly_mrr : float or None
        ``uplift × base_start_mrr × rollout_share`` (MRR per month).
    annual : float or None
        ``12 × monthly_mrr``.
    annual_ci : tuple of (float or None, float or None)
        The uplift interval carried through the same factors.
    company_points : float or None
        ``monthly_mrr / company_start_mrr``: company NRR points (a fraction,
        0.01 = 1 point); ``None`` without the company's start MRR.
    company_points_ci : tuple of (float or None, float or None)
    monthly_ci : tuple of (float or None, float or None)
    """

    monthly_mrr: float | None
    annual: float | None
    annual_ci: tuple[float | None, float | None]
    company_points: float | None
    company_points_ci: tuple[float | None, float | None]
    monthly_ci: tuple[float | None, float | None] = (None, None)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-safe form."""
        return {
            "monthly_mrr": self.monthly_mrr,
            "monthly_ci": list(self.monthly_ci),
            "annual": self.annual,
            "annual_ci": list(self.annual_ci),
            "company_points": self.company_points,
            "company_points_ci": list(self.company_points_ci),
        }


def _times(value: float | None, factor: float | None) -> float | None:
    if value is None or factor is None:
        return None
    return value * factor


def revenue_impact(
    uplift: float | None,
    ci: tuple[float | None, float | None],
    base_start_mrr: float,
    rollout_share: float,
    company_start_mrr: float | None = None,
) -> Impact:
    """MRR and company NRR points gained by rolling out an uplift.

    Parameters
    ----------
    uplift : float or None
        Absolute NRR uplift (a fraction; ``None`` gives an all-``None`` result).
    ci : tuple of (float or None, float or None)
        Its interval.
    base_start_mrr : float
        Monthly start MRR of the population the change would reach, >= 0.
    rollout_share : float
        Share of that population that gets the change, in [0, 1].
    company_start_mrr : float, optional
        The company's start MRR (> 0), for NRR points.

    Returns
    -------
    Impact

    Raises
    ------
    ValueError
        If a money figure is negative or not finite, or ``rollout_share`` is
        outside [0, 1].

    Notes
    -----
    .. math::
        \\mathrm{monthly} = \\Delta \\cdot B \\cdot s, \\quad
        \\mathrm{annual} = 12\\,\\mathrm{monthly}, \\quad
        \\mathrm{points} = \\mathrm{monthly} / C

    The interval endpoints are carried through the same (positive) factors.
    The annual figure assumes the monthly uplift recurs for twelve months on
    the same base (no compounding, no decay).

    References
    ----------
    .. [1] NRR Lab design, section 4c; Kohavi, R., Tang, D. & Xu, Y. (2020).
       Trustworthy Online Controlled Experiments, ch. 7 (translating a
       metric delta into business impact). Cambridge University Press.

    Examples
    --------
    >>> impact = revenue_impact(0.02, (0.01, 0.03), 1_000_000.0, 0.5, 4_000_000.0)
    >>> impact.monthly_mrr, impact.annual, impact.annual_ci
    (10000.0, 120000.0, (60000.0, 180000.0))
    >>> impact.company_points
    0.0025
    """
    base = check_finite("base_start_mrr", base_start_mrr)
    if base < 0:
        raise ValueError(f"base_start_mrr must be >= 0; got {base_start_mrr!r}")
    share = check_finite("rollout_share", rollout_share)
    if not 0 <= share <= 1:
        raise ValueError(f"rollout_share must be between 0 and 1; got {rollout_share!r}")
    company = None
    if company_start_mrr is not None:
        company = check_finite("company_start_mrr", company_start_mrr)
        if company <= 0:
            raise ValueError(f"company_start_mrr must be > 0; got {company_start_mrr!r}")
    lo, hi = ci
    value = None if uplift is None else check_finite("uplift", uplift)
    lo = None if lo is None else check_finite("ci lower bound", lo)
    hi = None if hi is None else check_finite("ci upper bound", hi)
    factor = base * share
    monthly = _times(value, factor)
    monthly_ci = (_times(lo, factor), _times(hi, factor))
    per_company = None if company is None else 1.0 / company
    return Impact(
        monthly_mrr=monthly,
        annual=_times(monthly, 12.0),
        annual_ci=(_times(monthly_ci[0], 12.0), _times(monthly_ci[1], 12.0)),
        company_points=_times(monthly, per_company),
        company_points_ci=(
            _times(monthly_ci[0], per_company),
            _times(monthly_ci[1], per_company),
        ),
        monthly_ci=monthly_ci,
    )
