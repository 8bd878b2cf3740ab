"""Sample size and power for the two-sample t-test on the linearised NRR metric.

``pingouin`` is imported inside the functions, not at module top: importing it
costs about a second, and ``import stats`` must stay cheap for the CLI and the
web app's start-up.
"""

from __future__ import annotations

import math

from stats._checks import check_alpha, check_count, check_positive, check_power

#: pingouin's own solver bracket for n; beyond it the sample size is reported
#: as not reachable rather than extrapolated.
MAX_SAMPLE_SIZE = 10_000_000
#: A two-sample t-test needs at least two observations per arm.
MIN_SAMPLE_SIZE = 2


def _effect_size(mde: float, sigma: float | None) -> float | None:
    if sigma is None:
        return None
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0 or None; got {sigma!r}")
    if sigma == 0:
        # No noise: any difference is detectable and Cohen's d is infinite.
        return None
    return mde / sigma


def required_sample_size(
    mde: float,
    sigma: float | None,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> int | None:
    """Accounts needed in the control arm to detect ``mde`` with the given power.

    Parameters
    ----------
    mde : float
        Minimum detectable effect in absolute NRR (0.02 = 2 points), > 0.
    sigma : float or None
        Per-account standard deviation of the linearised metric
        (:func:`stats.ratio.sigma_lin` of the control arm).
    alpha : float, default 0.05
        Two-sided significance level, in (0, 0.5].
    power : float, default 0.8
        Target power, in [0.5, 0.99].
    ratio : float, default 1.0
        Planned treatment-to-control size ratio; the treatment arm then
        needs ``ceil(ratio * n)`` accounts.

    Returns
    -------
    int or None
        Control-arm sample size (per arm when ``ratio == 1``), at least 2.
        ``None`` when ``sigma`` is ``None`` or 0 (no noise estimate) or the
        answer exceeds ten million accounts.

    Raises
    ------
    ValueError
        If ``mde``, ``alpha``, ``power``, ``ratio`` or ``sigma`` is out of range.

    Notes
    -----
    Cohen's effect size is :math:`d = \\mathrm{mde} / \\sigma`. For equal arms
    the answer is :math:`\\lceil n \\rceil` with ``n`` solved by
    ``pingouin.power_ttest(d=d, power=power, alpha=alpha)``, i.e. the
    noncentral-t power of a two-sample t-test with
    :math:`\\delta = d\\sqrt{n/2}` and :math:`2(n-1)` degrees of freedom.
    For unequal arms, :math:`n_C` is solved with Brent's method
    (``scipy.optimize.brentq``) on
    ``pingouin.power_ttest2n(n_C, ratio * n_C, d=d, alpha=alpha) = power``,
    where :math:`\\delta = d / \\sqrt{1/n_C + 1/n_T}` and
    :math:`n_C + n_T - 2` degrees of freedom; at ``ratio = 1`` both agree.

    References
    ----------
    .. [1] Cohen, J. (1988). Statistical Power Analysis for the Behavioral
       Sciences, 2nd ed. Lawrence Erlbaum.
    .. [2] Vallat, R. (2018). Pingouin: statistics in Python. Journal of Open
       Source Software, 3(31), 1026.

    Examples
    --------
    >>> required_sample_size(0.02, 0.25)
    2454
    >>> required_sample_size(0.02, 0.25, ratio=2.0)
    1841
    >>> required_sample_size(0.02, None) is None
    True
    """
    mde = check_positive("mde", mde)
    alpha = check_alpha(alpha)
    power = check_power(power)
    ratio = check_positive("ratio", ratio)
    d = _effect_size(mde, sigma)
    if d is None:
        return None

    import pingouin

    smallest = max(MIN_SAMPLE_SIZE, MIN_SAMPLE_SIZE / ratio)
    if ratio == 1.0:
        n = pingouin.power_ttest(d=d, n=None, power=power, alpha=alpha, contrast="two-samples")
        if math.isfinite(n):
            return max(MIN_SAMPLE_SIZE, math.ceil(n))
        # pingouin answers NaN when the root lies outside [2, 1e7]; tell which side.
        below = pingouin.power_ttest(
            d=d, n=smallest, power=None, alpha=alpha, contrast="two-samples"
        )
        return MIN_SAMPLE_SIZE if below >= power else None

    def shortfall(n_control: float) -> float:
        return pingouin.power_ttest2n(nx=n_control, ny=ratio * n_control, d=d, alpha=alpha) - power

    if shortfall(smallest) >= 0:
        return math.ceil(smallest)
    if shortfall(MAX_SAMPLE_SIZE) < 0:
        return None
    from scipy.optimize import brentq

    return math.ceil(brentq(shortfall, smallest, MAX_SAMPLE_SIZE, xtol=1e-6, rtol=1e-12))


def achieved_power(
    mde: float,
    sigma: float | None,
    n_control: int,
    n_treatment: int,
    *,
    alpha: float = 0.05,
) -> float | None:
    """Power to detect ``mde`` with the sample sizes actually observed.

    Parameters
    ----------
    mde : float
        Minimum detectable effect in absolute NRR, > 0.
    sigma : float or None
        Per-account standard deviation of the linearised metric.
    n_control, n_treatment : int
        Accounts in each arm.
    alpha : float, default 0.05
        Two-sided significance level, in (0, 0.5].

    Returns
    -------
    float or None
        ``None`` when ``sigma`` is ``None`` or 0, or an arm has fewer than 2
        accounts.

    Raises
    ------
    ValueError
        If ``mde``, ``alpha``, ``sigma`` or a sample size is out of range.

    Notes
    -----
    ``pingouin.power_ttest2n(n_C, n_T, d=mde/sigma, alpha=alpha)``: the
    two-sided noncentral-t power with
    :math:`\\delta = d / \\sqrt{1/n_C + 1/n_T}` and :math:`n_C + n_T - 2`
    degrees of freedom.

    References
    ----------
    .. [1] Cohen, J. (1988). Statistical Power Analysis for the Behavioral
       Sciences, 2nd ed. Lawrence Erlbaum.
    .. [2] Vallat, R. (2018). Pingouin: statistics in Python. Journal of Open
       Source Software, 3(31), 1026.

    Examples
    --------
    >>> round(achieved_power(0.02, 0.25, 2454, 2454), 4)
    0.8
    >>> achieved_power(0.02, 0.25, 1, 100) is None
    True
    """
    mde = check_positive("mde", mde)
    alpha = check_alpha(alpha)
    n_control = check_count("n_control", n_control)
    n_treatment = check_count("n_treatment", n_treatment)
    d = _effect_size(mde, sigma)
    if d is None or n_control < MIN_SAMPLE_SIZE or n_treatment < MIN_SAMPLE_SIZE:
        return None

    import pingouin

    return float(pingouin.power_ttest2n(nx=n_control, ny=n_treatment, d=d, alpha=alpha))
