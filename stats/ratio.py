"""Small named formulas for the ratio metric NRR = Σend / Σstart.

Each function takes :class:`~stats.sums.SufficientStats` (or plain numbers)
and returns ``None`` when the data cannot support the figure; the caller
turns that into a warning.
"""

from __future__ import annotations

import math

from stats.sums import (
    CENTRED_NOISE_FLOOR,
    COMOMENT_TOLERANCE,
    ROUNDING_TOLERANCE,
    SufficientStats,
)


def ratio_estimate(sums: SufficientStats) -> float | None:
    """Ratio estimate ``R = Σx / Σy`` (the arm's NRR).

    Parameters
    ----------
    sums : SufficientStats
        Sums of one arm, ``x`` = end MRR, ``y`` = start MRR.

    Returns
    -------
    float or None
        ``None`` for an empty arm or a zero start MRR.

    Notes
    -----
    .. math:: R = \\frac{\\sum_i x_i}{\\sum_i y_i} = \\frac{\\bar x}{\\bar y}

    References
    ----------
    .. [1] Cochran, W. G. (1977). Sampling Techniques, 3rd ed., ch. 6
       "Ratio estimators". Wiley.

    Examples
    --------
    >>> ratio_estimate(SufficientStats.from_arrays([120.0, 0.0, 90.0], [100.0, 50.0, 100.0]))
    0.84
    """
    if sums.n == 0 or sums.sum_y == 0:
        return None
    return sums.sum_x / sums.sum_y


def _linearised_sum_of_squares(sums: SufficientStats, ratio: float) -> float:
    """``Σ(u - ū)²`` of the linearised variable ``u = x - ratio·y``, from sums alone."""
    moments = sums.moments
    if moments is not None:
        # Σ((x - x̄) - R(y - ȳ))², from centred co-moments: no mean² terms to cancel.
        value = moments.m2x - 2.0 * ratio * moments.cxy + ratio * ratio * moments.m2y
        scale = moments.m2x + 2.0 * abs(ratio * moments.cxy) + ratio * ratio * moments.m2y
        # Centring leaves each deviation off by about eps·|x_i|: a floor for
        # arms whose accounts are all alike (every co-moment is then noise).
        mx, my = moments.mean_x, moments.mean_y
        raw = scale + moments.n * (mx * mx + ratio * ratio * my * my)
        if value <= COMOMENT_TOLERANCE * scale or value <= CENTRED_NOISE_FLOOR * raw:
            return 0.0
        return value
    sum_u = sums.sum_x - ratio * sums.sum_y
    sum_uu = sums.sum_xx - 2.0 * ratio * sums.sum_xy + ratio * ratio * sums.sum_yy
    scale = sums.sum_xx + 2.0 * abs(ratio * sums.sum_xy) + ratio * ratio * sums.sum_yy
    # When every account has the same end/start ratio, u is zero everywhere and
    # the raw expansion cancels to rounding noise that would fake a tiny variance.
    value = sum_uu - sum_u * sum_u / sums.n
    if value <= ROUNDING_TOLERANCE * scale:
        return 0.0
    return value


def delta_method_variance(sums: SufficientStats) -> float | None:
    """Delta-method variance of the ratio estimate ``R = Σx / Σy``.

    Parameters
    ----------
    sums : SufficientStats
        Sums of one arm.

    Returns
    -------
    float or None
        ``var(R)``; ``0.0`` when every account has the same end/start ratio;
        ``None`` when ``n < 2`` or the mean start MRR is zero.

    Notes
    -----
    With means :math:`m_x, m_y`, sample variances :math:`v_x, v_y` and
    covariance :math:`c_{xy}` (ddof = 1), a first-order Taylor expansion of
    :math:`m_x / m_y` gives

    .. math::
        \\operatorname{var}(R) = \\frac{1}{n}\\left(\\frac{v_x}{m_y^2}
            - \\frac{2 m_x c_{xy}}{m_y^3} + \\frac{m_x^2 v_y}{m_y^4}\\right)

    It is computed in the algebraically identical linearised form
    :math:`\\operatorname{var}(x - R y) / (n m_y^2)`, whose single centred sum
    can be snapped to zero when it is rounding noise.

    References
    ----------
    .. [1] Deng, A., Knoblich, U. & Lu, J. (2018). Applying the Delta Method in
       Metric Analytics: A Practical Guide with Novel Ideas. KDD '18.
    .. [2] Cochran, W. G. (1977). Sampling Techniques, 3rd ed., eq. 6.9. Wiley.

    Examples
    --------
    >>> sums = SufficientStats.from_arrays([110.0, 0.0, 95.0, 130.0], [100.0, 50.0, 100.0, 120.0])
    >>> round(delta_method_variance(sums), 6)
    0.028282
    >>> delta_method_variance(SufficientStats.from_arrays([1.0], [1.0])) is None
    True
    """
    if sums.n < 2 or sums.sum_y == 0:
        return None
    ratio = sums.sum_x / sums.sum_y
    mean_y = sums.sum_y / sums.n
    var_u = _linearised_sum_of_squares(sums, ratio) / (sums.n - 1)
    return var_u / (sums.n * mean_y * mean_y)


def welch_satterthwaite_df(
    var_t: float | None,
    n_t: int,
    var_c: float | None,
    n_c: int,
) -> float | None:
    """Welch-Satterthwaite degrees of freedom for the difference of two estimates.

    Parameters
    ----------
    var_t, var_c : float or None
        Variances of the two *estimates* (e.g. ``var(R_T)``, ``var(R_C)``),
        not of the raw observations.
    n_t, n_c : int
        Sample sizes behind them.

    Returns
    -------
    float or None
        ``None`` when a variance is missing, an arm has fewer than 2
        observations, or both variances are zero.

    Notes
    -----
    .. math::
        \\nu = \\frac{(V_T + V_C)^2}{V_T^2/(n_T - 1) + V_C^2/(n_C - 1)}

    References
    ----------
    .. [1] Welch, B. L. (1947). The generalization of "Student's" problem when
       several different population variances are involved. Biometrika,
       34(1/2), 28-35.
    .. [2] Satterthwaite, F. E. (1946). An approximate distribution of
       estimates of variance components. Biometrics Bulletin, 2(6), 110-114.

    Examples
    --------
    >>> round(welch_satterthwaite_df(0.0004, 50, 0.0001, 40), 3)
    70.988
    """
    if var_t is None or var_c is None or n_t < 2 or n_c < 2:
        return None
    if var_t < 0 or var_c < 0:
        raise ValueError(f"variances cannot be negative; got var_t={var_t!r}, var_c={var_c!r}")
    denominator = var_t * var_t / (n_t - 1) + var_c * var_c / (n_c - 1)
    if denominator == 0:
        return None
    return (var_t + var_c) ** 2 / denominator


def sigma_lin(control_sums: SufficientStats) -> float | None:
    """Standard deviation of the linearised NRR metric on the control arm.

    It is the per-account noise level that converts an MDE in NRR points
    into Cohen's ``d = mde / sigma_lin`` for power calculations.

    Parameters
    ----------
    control_sums : SufficientStats
        Sums of the control arm.

    Returns
    -------
    float or None
        ``None`` when ``n < 2`` or the mean start MRR is zero; ``0.0`` when
        every control account has the same end/start ratio.

    Notes
    -----
    With :math:`R_C = \\sum x / \\sum y` on the control arm,

    .. math::
        \\sigma_{lin} = \\frac{\\operatorname{sd}(x - R_C\\,y)}{m_y}
        \\quad (\\text{ddof} = 1)

    computed from sums via :math:`\\sum(u-\\bar u)^2 = \\sum x^2 - 2R\\sum xy
    + R^2\\sum y^2 - (\\sum x - R\\sum y)^2/n`. Note
    :math:`\\sigma_{lin}^2 = n \\operatorname{var}(R_C)`.

    References
    ----------
    .. [1] Deng, A., Knoblich, U. & Lu, J. (2018). Applying the Delta Method in
       Metric Analytics: A Practical Guide with Novel Ideas. KDD '18.

    Examples
    --------
    >>> sums = SufficientStats.from_arrays([110.0, 0.0, 95.0, 130.0], [100.0, 50.0, 100.0, 120.0])
    >>> round(sigma_lin(sums), 6)
    0.336344
    """
    if control_sums.n < 2 or control_sums.sum_y == 0:
        return None
    ratio = control_sums.sum_x / control_sums.sum_y
    mean_y = control_sums.sum_y / control_sums.n
    sum_of_squares = _linearised_sum_of_squares(control_sums, ratio)
    return math.sqrt(sum_of_squares / (control_sums.n - 1)) / abs(mean_y)


def relative_uplift_variance(
    ratio_t: float, var_t: float, ratio_c: float, var_c: float
) -> float | None:
    """Delta-method variance of the relative uplift ``R_T / R_C - 1``.

    Parameters
    ----------
    ratio_t, ratio_c : float
        Ratio estimates of treatment and control.
    var_t, var_c : float
        Their delta-method variances.

    Returns
    -------
    float or None
        ``None`` when ``ratio_c`` is zero (e.g. all control revenue churned).

    Notes
    -----
    The arms are independent, so

    .. math::
        \\operatorname{var}\\left(\\frac{R_T}{R_C}\\right) =
        \\frac{V_T}{R_C^2} + \\frac{R_T^2 V_C}{R_C^4}

    References
    ----------
    .. [1] Deng, A., Knoblich, U. & Lu, J. (2018). Applying the Delta Method in
       Metric Analytics: A Practical Guide with Novel Ideas. KDD '18.

    Examples
    --------
    >>> round(relative_uplift_variance(1.1, 0.0004, 1.0, 0.0001), 8)
    0.000521
    """
    if ratio_c == 0:
        return None
    return var_t / ratio_c**2 + ratio_t**2 * var_c / ratio_c**4
