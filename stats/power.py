"""Sample size and power for the two-sample t-test on the linearised NRR metric.

The figures are those of ``pingouin.power_ttest`` / ``power_ttest2n`` (DESIGN §4):
the two-sided noncentral-t power of Cohen's d. They are computed here with the
noncentral-t distribution of ``scipy.special`` (the same functions pingouin's
``scipy.stats.nct`` calls) because importing pingouin costs about a second and a
half on the project's machines (it loads pandas, matplotlib and seaborn), more
than the whole budget of ``nrrlab analyze`` on a million accounts. The test
suite checks every figure against pingouin itself and against statsmodels.
"""

from __future__ import annotations

import math

from scipy import special

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
    Cohen's effect size is :math:`d = \\mathrm{mde} / \\sigma`. The answer is
    the smallest integer :math:`n_C \\ge 2` whose power
    (:func:`two_sample_power` with :math:`n_T = \\mathrm{ratio} \\cdot n_C`)
    reaches the target, i.e. :math:`\\lceil n \\rceil` of the root ``n`` that
    ``pingouin.power_ttest(d=d, power=power, alpha=alpha)`` solves for equal
    arms and ``pingouin.power_ttest2n(n, ratio * n, d=d, alpha=alpha) = power``
    for unequal ones. Power grows with :math:`n_C`, so a bisection over the
    integers finds it exactly (no solver tolerance at the rounding step).

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

    def enough(n_control: int) -> bool:
        return two_sample_power(d, n_control, ratio * n_control, alpha=alpha) >= power

    low = max(MIN_SAMPLE_SIZE, math.ceil(MIN_SAMPLE_SIZE / ratio))
    if enough(low):
        return low
    if not enough(MAX_SAMPLE_SIZE):
        return None
    high = MAX_SAMPLE_SIZE  # invariant: not enough(low), enough(high)
    while high - low > 1:
        middle = (low + high) // 2
        if enough(middle):
            high = middle
        else:
            low = middle
    return high


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
    ``pingouin.power_ttest2n(n_C, n_T, d=mde/sigma, alpha=alpha)``, computed by
    :func:`two_sample_power`.

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
    return two_sample_power(d, n_control, n_treatment, alpha=alpha)


def two_sample_power(
    d: float, n_control: float, n_treatment: float, *, alpha: float = 0.05
) -> float:
    """Two-sided power of the two-sample t-test for Cohen's ``d``.

    Parameters
    ----------
    d : float
        Cohen's effect size, > 0.
    n_control, n_treatment : float
        Arm sizes (may be fractional while solving), each >= 2.
    alpha : float, default 0.05
        Two-sided significance level.

    Returns
    -------
    float
        Probability of rejecting the null at ``alpha`` when the true standardised
        difference is ``d``.

    Notes
    -----
    With :math:`\\nu = n_C + n_T - 2`, noncentrality
    :math:`\\delta = d / \\sqrt{1/n_C + 1/n_T}` and
    :math:`t^* = t_{1-\\alpha/2,\\nu}`,

    .. math:: \\mathrm{power} = 1 - F_{\\nu,\\delta}(t^*) + F_{\\nu,\\delta}(-t^*)

    where :math:`F_{\\nu,\\delta}` is the noncentral-t CDF
    (``scipy.special.nctdtr``), exactly as ``pingouin.power_ttest2n`` computes it
    through ``scipy.stats.nct``.

    References
    ----------
    .. [1] Cohen, J. (1988). Statistical Power Analysis for the Behavioral
       Sciences, 2nd ed., ch. 2. Lawrence Erlbaum.
    .. [2] Vallat, R. (2018). Pingouin: statistics in Python. Journal of Open
       Source Software, 3(31), 1026 (``power_ttest2n``).

    Examples
    --------
    >>> round(two_sample_power(0.5, 64, 64), 4)  # Cohen's classic: d = 0.5, n = 64 → 0.80
    0.8015
    """
    dof = n_control + n_treatment - 2
    noncentrality = d / math.sqrt(1 / n_control + 1 / n_treatment)
    critical = special.stdtrit(dof, 1 - alpha / 2)
    upper = 1.0 - float(special.nctdtr(dof, noncentrality, critical))
    lower = float(special.nctdtr(dof, noncentrality, -critical))
    # The noncentral-t CDF answers NaN deep in a tail once δ is large (scipy's
    # algorithm underflows); the probability there is 0 (or 1 for the other tail).
    if math.isnan(lower):
        lower = 0.0
    if math.isnan(upper):
        upper = 1.0 if noncentrality > critical else 0.0
    return min(1.0, max(0.0, upper + lower))
