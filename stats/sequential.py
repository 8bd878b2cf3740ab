"""Always-valid inference for results read every week (DESIGN §4c "Sequential").

An asymptotic confidence sequence covers the true uplift at every look at once,
so an experiment can be read as often as its data arrives without inflating the
false-positive rate the way repeated fixed-horizon t-tests do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from stats._checks import check_alpha, check_positive, finite_or_none


@dataclass(frozen=True)
class SequentialResult:
    """Always-valid figures of one comparison.

    Attributes
    ----------
    tuning : float
        The sample size the sequence is tightest at (``τ``).
    ci_abs : tuple of (float or None, float or None)
        Always-valid interval of the absolute uplift at level ``1 - alpha``.
    p_value : float or None
        Always-valid p-value, compared with ``alpha`` (not Holm-adjusted).
    """

    tuning: float
    ci_abs: tuple[float | None, float | None]
    p_value: float | None

    def to_dict(self) -> dict[str, Any]:
        """The ``"sequential"`` object of a comparison in the JSON report."""
        return {"tuning": self.tuning, "ci_abs": list(self.ci_abs), "p_value": self.p_value}


def _rho(alpha: float, tuning: Any) -> Any:
    log_term = -2.0 * math.log(alpha)
    return np.sqrt((log_term + math.log(log_term + 1.0)) / tuning)


def sequential_half_width(var_abs: Any, n_total: Any, tuning: float, alpha: float) -> Any:
    """Half-width of the asymptotic confidence sequence (numpy-vectorised).

    Parameters
    ----------
    var_abs : float or ndarray
        Variance of the uplift estimate (``var(R_T) + var(R_C)``).
    n_total : float or ndarray
        Accounts in the comparison, ``n_C + n_T``.
    tuning : float
        ``τ`` > 0.
    alpha : float
        Level of the sequence.

    Returns
    -------
    float or ndarray

    Notes
    -----
    With :math:`N` accounts, :math:`s^2 = V_\\Delta N`,
    :math:`\\rho = \\sqrt{(-2\\ln\\alpha + \\ln(-2\\ln\\alpha + 1))/\\tau}`:

    .. math::
        h = s \\sqrt{\\frac{2(N\\rho^2 + 1)}{N^2\\rho^2}
                      \\ln\\frac{\\sqrt{N\\rho^2 + 1}}{\\alpha}}

    References
    ----------
    .. [1] Waudby-Smith, I., Arbour, D., Sinha, R., Kennedy, E. H. &
       Ramdas, A. (2023). Time-uniform central limit theory and asymptotic
       confidence sequences. arXiv:2103.06476, eq. (9) and appendix eqs.
       (155), (161).
    .. [2] GrowthBook gbstats 0.8, ``SequentialTwoSidedTTest``.

    Examples
    --------
    >>> round(float(sequential_half_width(0.0001, 10_000, 10_000, 0.05)), 5)
    0.03035
    """
    rho = _rho(alpha, tuning)
    n_rho2 = n_total * rho * rho
    s = np.sqrt(var_abs * n_total)
    return s * np.sqrt(2.0 * (n_rho2 + 1.0) * np.log(np.sqrt(n_rho2 + 1.0) / alpha)) / (
        n_total * rho
    )


def sequential_p_value(
    uplift: Any, var_abs: Any, n_total: Any, tuning: float, alpha: float
) -> Any:
    """Always-valid p-value of the confidence sequence (numpy-vectorised).

    Notes
    -----
    With :math:`s_t^2 = \\Delta^2 N / V_\\Delta`,

    .. math::
        p = \\min\\Big(1, \\sqrt{N\\rho^2 + 1}\\,
            \\exp\\Big(-\\frac{\\rho^2 s_t^2}{2(N\\rho^2 + 1)}\\Big)\\Big)

    and :math:`p < \\alpha` exactly when 0 lies outside the sequence at level
    :math:`\\alpha` (:func:`sequential_half_width`).

    References
    ----------
    .. [1] Waudby-Smith, I. et al. (2023), as in :func:`sequential_half_width`.

    Examples
    --------
    >>> round(float(sequential_p_value(0.03, 0.0001, 10_000, 10_000, 0.05)), 4)
    0.0549
    """
    rho = _rho(alpha, tuning)
    n_rho2 = n_total * rho * rho
    st2 = uplift * uplift * n_total / var_abs
    exponent = -rho * rho * st2 / (2.0 * (n_rho2 + 1.0))
    return np.minimum(1.0, np.sqrt(n_rho2 + 1.0) * np.exp(exponent))


def sequential_test(
    uplift: float, var_abs: float, n_total: int, *, tuning: float, alpha: float
) -> SequentialResult:
    """Always-valid interval and p-value of an uplift at one look.

    Parameters
    ----------
    uplift : float
        ``R_T - R_C``.
    var_abs : float
        Its variance (> 0; zero variance gives null figures).
    n_total : int
        ``n_C + n_T``.
    tuning : float
        ``τ`` > 0, usually the planned total ``required_n[C] + required_n[T]``.
    alpha : float
        ``α*`` (the per-comparison level, ``alpha / k``).

    Returns
    -------
    SequentialResult

    Raises
    ------
    ValueError
        If ``tuning`` or ``alpha`` is out of range.

    Notes
    -----
    See :func:`sequential_half_width` and :func:`sequential_p_value`.

    References
    ----------
    .. [1] Waudby-Smith, I. et al. (2023). Time-uniform central limit theory
       and asymptotic confidence sequences. arXiv:2103.06476.

    Examples
    --------
    >>> r = sequential_test(0.03, 0.0001, 10_000, tuning=10_000, alpha=0.05)
    >>> [round(v, 4) for v in r.ci_abs], round(r.p_value, 4)
    ([-0.0004, 0.0604], 0.0549)
    """
    tuning = check_positive("tuning", tuning)
    alpha = check_alpha(alpha)
    if not (var_abs > 0 and n_total > 0 and math.isfinite(var_abs)):
        return SequentialResult(tuning, (None, None), None)
    half = float(sequential_half_width(var_abs, n_total, tuning, alpha))
    p_value = float(sequential_p_value(uplift, var_abs, n_total, tuning, alpha))
    return SequentialResult(
        tuning,
        (finite_or_none(uplift - half), finite_or_none(uplift + half)),
        finite_or_none(p_value),
    )
