"""Geometry of the forest plot: uplift and confidence interval per treatment, in SVG units.

The one layout of the plot, shared by the results page
(``webapp/templates/results/_forest.html``) and the HTML export
(``experiments/templates/exports/_forest.html``). Pure geometry: the numbers come
from a stored analysis (a :class:`stats.ExperimentResult` or its DESIGN §4 dict);
this module decides where they go on a 720-unit-wide canvas so the templates stay
free of arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH = 720
LABEL_RIGHT = 150  # variant names are right-aligned here
PLOT_LEFT, PLOT_RIGHT = 165, 545
VALUE_LEFT = 560  # the numeric label of each row starts here
TOP = 34
ROW_HEIGHT = 34
BOTTOM = 40


@dataclass(frozen=True)
class ForestRow:
    variant: str
    y: float
    x: float | None  # the uplift point; None when not computed
    x_low: float | None
    x_high: float | None
    label: str
    verdict: str


@dataclass(frozen=True)
class Marker:
    x: float
    label: str
    kind: str  # "zero" or "mde"


@dataclass(frozen=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True)
class ForestPlot:
    width: int
    height: int
    plot_left: int
    plot_right: int
    plot_top: int
    plot_bottom: float
    label_right: int
    value_left: int
    rows: tuple[ForestRow, ...]
    markers: tuple[Marker, ...]
    ticks: tuple[Tick, ...]
    description: str
    level: str  # the confidence level, e.g. "95%"


def _nice_step(span: float) -> float:
    raw = span / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _points(value: float) -> str:
    return f"{value:+.1f}"


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def forest_plot(result: Any) -> ForestPlot | None:
    """Layout for a stored analysis: an :class:`stats.ExperimentResult` or its §4 dict."""
    if result is None:
        return None
    return forest_layout(_field(result, "comparisons") or (), mde=_field(result, "mde"),
                         alpha=_field(result, "alpha"))


def forest_layout(comparisons: Sequence[Any], *, mde: float | None,
                  alpha: float | None) -> ForestPlot | None:
    """Layout of the forest plot (NRR points), or ``None`` with no treatments.

    ``comparisons`` are :class:`stats.Comparison` objects or their dicts (``variant``,
    ``uplift_abs``, ``ci_abs``, ``verdict``, and ``ci_abs_adjusted``/``ci_method``). With
    k > 1 treatments the bars are the Bonferroni-adjusted intervals (level 1 − α/k), the
    ones consistent with the verdict (DESIGN §4c); with one, the raw interval.
    """
    rows_in = [c for c in comparisons if c is not None]
    if not rows_in:
        return None
    alpha = _number(alpha) or 0.05
    mde_points = (_number(mde) or 0.0) * 100
    values = [0.0, mde_points, -mde_points]
    parsed = []
    adjusted = any(_field(c, "ci_method") == "bonferroni" for c in rows_in)
    for c in rows_in:
        ci = _field(c, "ci_abs_adjusted" if adjusted else "ci_abs")
        lo, hi = (ci[0], ci[1]) if isinstance(ci, list | tuple) and len(ci) == 2 else (None, None)
        uplift, lo, hi = _number(_field(c, "uplift_abs")), _number(lo), _number(hi)
        parsed.append((str(_field(c, "variant")), uplift, lo, hi, str(_field(c, "verdict"))))
        values += [v * 100 for v in (uplift, lo, hi) if v is not None]
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or 1.0
    low, high = low - pad, high + pad
    step = _nice_step(high - low)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step

    def x_of(points: float) -> float:
        return round(PLOT_LEFT + (points - low) / (high - low) * (PLOT_RIGHT - PLOT_LEFT), 2)

    k = len(rows_in)
    level = (f"{(1 - alpha / k) * 100:.4g}% Bonferroni-adjusted ({k} treatments)" if adjusted
             else f"{(1 - alpha) * 100:g}%")
    rows = []
    described = []
    for i, (variant, uplift, lo, hi, verdict) in enumerate(parsed):
        y = TOP + ROW_HEIGHT * i + ROW_HEIGHT / 2
        has_ci = lo is not None and hi is not None
        if uplift is None:
            label, point = "not computed", None
            described.append(f"{variant}: uplift not computed")
        else:
            point = x_of(uplift * 100)
            if has_ci:
                label = f"{_points(uplift * 100)} [{_points(lo * 100)}, {_points(hi * 100)}]"
                described.append(f"{variant}: {_points(uplift * 100)} NRR points, "
                                 f"{level} CI {_points(lo * 100)} to {_points(hi * 100)}")
            else:
                label = f"{_points(uplift * 100)} (no CI)"
                described.append(f"{variant}: {_points(uplift * 100)} NRR points, "
                                 "no confidence interval")
        rows.append(ForestRow(
            variant=variant, y=y, x=point,
            x_low=x_of(lo * 100) if point is not None and has_ci else None,
            x_high=x_of(hi * 100) if point is not None and has_ci else None,
            label=label, verdict=verdict,
        ))
    bottom = TOP + ROW_HEIGHT * len(rows)
    ticks = []
    count = round((high - low) / step)
    for k in range(count + 1):
        value = low + k * step
        ticks.append(Tick(x_of(value), f"{value:+g}" if abs(value) > 1e-12 else "0"))
    markers = (
        Marker(x_of(0.0), "0", "zero"),
        Marker(x_of(-mde_points), "\N{MINUS SIGN}MDE", "mde"),
        Marker(x_of(mde_points), "+MDE", "mde"),
    )
    description = (
        f"Absolute NRR uplift in points with {level} confidence intervals, against zero and "
        f"the minimum detectable effect of ±{mde_points:g} points. " + "; ".join(described) + "."
    )
    return ForestPlot(WIDTH, int(bottom + BOTTOM), PLOT_LEFT, PLOT_RIGHT, TOP, bottom,
                      LABEL_RIGHT, VALUE_LEFT, tuple(rows), markers, tuple(ticks), description,
                      level)
