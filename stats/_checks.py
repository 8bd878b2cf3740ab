"""Argument checks and number hygiene shared by the ``stats`` modules.

Bad *arguments* (a caller error) raise ``ValueError`` naming the value;
degenerate *data* never comes through here, it is answered with ``None`` and a
warning by the functions that meet it.
"""

from __future__ import annotations

import math
from numbers import Real

#: Planning bounds used across NRR Lab: an alpha above one half or a power
#: outside [0.5, 0.99] is almost certainly a typo (percent for a fraction).
ALPHA_BOUNDS = (0.0, 0.5)
POWER_BOUNDS = (0.5, 0.99)


def _as_real(name: str, value: object) -> float:
    # bool is a Real subclass, but `alpha=True` is never meant as 1.0.
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name} must be a number; got {value!r}")
    return float(value)


def check_alpha(alpha: object) -> float:
    """Return ``alpha`` as a float, or raise ``ValueError`` unless 0 < alpha <= 0.5."""
    value = _as_real("alpha", alpha)
    low, high = ALPHA_BOUNDS
    if not low < value <= high:
        raise ValueError(f"alpha must be in ({low:g}, {high:g}]; got {alpha!r}")
    return value


def check_power(power: object) -> float:
    """Return ``power`` as a float, or raise ``ValueError`` unless 0.5 <= power <= 0.99."""
    value = _as_real("power", power)
    low, high = POWER_BOUNDS
    if not low <= value <= high:
        raise ValueError(f"power must be in [{low:g}, {high:g}]; got {power!r}")
    return value


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` unless it is finite and > 0."""
    number = _as_real(name, value)
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number greater than 0; got {value!r}")
    return number


def check_count(name: str, value: object) -> int:
    """Return ``value`` as an int, or raise ``ValueError`` unless it is a whole number >= 0."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a whole number >= 0; got {value!r}")
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a whole number >= 0; got {value!r}") from None
    if number != value or number < 0:
        raise ValueError(f"{name} must be a whole number >= 0; got {value!r}")
    return number


def check_finite(name: str, value: object) -> float:
    """Return ``value`` as a float, or raise ``ValueError`` unless it is finite.

    Accepts anything ``float()`` understands exactly enough for money totals,
    such as ``decimal.Decimal`` sums coming back from SQL.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number; got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    return number


def finite_or_none(value: float | None) -> float | None:
    """Return ``value`` as a plain float, or ``None`` when it is missing, NaN or infinite.

    Results pass through here so that reports are always JSON-safe.
    """
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None
