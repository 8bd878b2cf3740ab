"""Sample sizes per arm for an allocation and a family of comparisons (DESIGN §4c).

Each treatment is sized against the shared control at the Bonferroni level
``alpha / k`` (k treatment arms) for its own allocation ratio, so the plan holds
the power the verdict (Holm, never stricter than Bonferroni) actually delivers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from stats._checks import check_alpha, check_positive, check_power
from stats.power import required_sample_size


@dataclass(frozen=True)
class SizingPlan:
    """Accounts each arm needs, and the level they were sized at.

    Attributes
    ----------
    required_n : dict of str to int or None
        Accounts per variant (control first). ``None`` when the size cannot
        be computed (no noise estimate, or beyond ten million).
    control_n_for : dict of str to int or None
        Per treatment T, the control size ``n_C(T)`` that T's comparison
        needs (``required_n[control]`` is the largest of them).
    alpha_sizing : float
        ``alpha / k``, the per-comparison level of the sizing.
    """

    required_n: dict[str, int | None]
    control_n_for: dict[str, int | None]
    alpha_sizing: float


def plan_sample_sizes(
    mde: float,
    sigma: float | None,
    *,
    control: str,
    weights: Mapping[str, float],
    alpha: float = 0.05,
    power: float = 0.8,
) -> SizingPlan:
    """Size every arm for its allocation weight and for ``alpha / k``.

    Parameters
    ----------
    mde : float
        Minimum detectable effect in absolute NRR (0.02 = 2 points), > 0.
    sigma : float or None
        Planning noise of the linearised metric (a given sigma or the control's
        ``sigma_lin``); ``None`` or 0 leaves every size ``None``.
    control : str
        The control variant, a key of ``weights``.
    weights : mapping of str to float
        Planned allocation weights (> 0) of every variant.
    alpha : float, default 0.05
        Family-wise two-sided level, in (0, 0.5].
    power : float, default 0.8
        Target power of each comparison, in [0.5, 0.99].

    Returns
    -------
    SizingPlan

    Raises
    ------
    ValueError
        If a parameter is out of range or ``control`` has no weight.

    Notes
    -----
    With :math:`k` treatments, :math:`\\alpha^* = \\alpha / k`,
    :math:`d = \\mathrm{mde}/\\sigma` and :math:`r_T = w_T / w_C`, the control
    size for T is :math:`n_C(T) = \\lceil x_T \\rceil` where :math:`x_T` solves

    .. math:: \\mathrm{power}_{t}(d;\\ n_C = x_T,\\ n_T = r_T x_T,\\ \\alpha^*) = \\mathrm{power}

    (statsmodels ``TTestIndPower().solve_power(effect_size=d, alpha=α*,
    power=power, ratio=r_T)``, pingouin's ``power_ttest2n``), then
    :math:`\\mathrm{required\\_n}[T] = \\lceil r_T n_C(T) \\rceil` and
    :math:`\\mathrm{required\\_n}[C] = \\max_T n_C(T)`. With one treatment and
    equal weights this is the per-arm size of DESIGN §4.

    References
    ----------
    .. [1] Cohen, J. (1988). Statistical Power Analysis for the Behavioral
       Sciences, 2nd ed., ch. 2. Lawrence Erlbaum.
    .. [2] Bonferroni, C. E. (1936). Teoria statistica delle classi e calcolo
       delle probabilità. Pubblicazioni del R. Istituto Superiore di Scienze
       Economiche e Commerciali di Firenze, 8, 3-62.
    .. [3] Holm, S. (1979). A simple sequentially rejective multiple test
       procedure. Scandinavian Journal of Statistics, 6(2), 65-70.

    Examples
    --------
    >>> plan = plan_sample_sizes(0.02, 0.25, control="c", weights={"c": 1, "t": 1})
    >>> plan.required_n, plan.alpha_sizing
    ({'c': 2454, 't': 2454}, 0.05)
    >>> plan_sample_sizes(0.02, 0.25, control="c", weights={"c": 3, "t": 1}).required_n
    {'c': 4907, 't': 1636}
    """
    mde = check_positive("mde", mde)
    alpha = check_alpha(alpha)
    power = check_power(power)
    if control not in weights:
        raise ValueError(f"control {control!r} has no weight in {dict(weights)}")
    checked = {name: check_positive(f"weights[{name!r}]", w) for name, w in weights.items()}
    treatments = [name for name in checked if name != control]
    alpha_sizing = alpha / max(1, len(treatments))
    control_n_for: dict[str, int | None] = {}
    required: dict[str, int | None] = {control: None}
    usable = sigma is not None and math.isfinite(sigma) and sigma > 0
    for name in treatments:
        ratio = checked[name] / checked[control]
        n_control = (
            required_sample_size(mde, sigma, alpha=alpha_sizing, power=power, ratio=ratio)
            if usable
            else None
        )
        control_n_for[name] = n_control
        # r·n is rounded to 9 decimals first so that 3·(1/3)·n does not round up past n.
        required[name] = (
            None if n_control is None else math.ceil(round(ratio * n_control, 9))
        )
    sizes = list(control_n_for.values())
    if sizes and all(size is not None for size in sizes):
        required[control] = max(size for size in sizes if size is not None)
    return SizingPlan(required_n=required, control_n_for=control_n_for, alpha_sizing=alpha_sizing)
