"""Geometry of the forest plot: uplift and confidence interval per treatment, in SVG units.

Presentation only: the numbers come from a stored :class:`stats.ExperimentResult`;
this module decides where they go on a 720-unit-wide canvas so the template stays
free of arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stats import ExperimentResult

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


def _nice_step(span: float) -> float:
    raw = span / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _points(value: float) -> str:
    return f"{value:+.1f}"


def forest_plot(result: ExperimentResult | None) -> ForestPlot | None:
    """Layout of the forest plot for ``result`` (NRR points), or ``None`` with no treatments."""
    if result is None or not result.comparisons:
        return None
    mde = result.mde * 100
    values = [0.0, mde, -mde]
    for c in result.comparisons:
        for v in (c.uplift_abs, *c.ci_abs):
            if v is not None:
                values.append(v * 100)
    low, high = min(values), max(values)
    pad = (high - low) * 0.08 or 1.0
    low, high = low - pad, high + pad
    step = _nice_step(high - low)
    low, high = math.floor(low / step) * step, math.ceil(high / step) * step

    def x_of(points: float) -> float:
        return round(PLOT_LEFT + (points - low) / (high - low) * (PLOT_RIGHT - PLOT_LEFT), 2)

    level = f"{(1 - result.alpha) * 100:g}%"
    rows = []
    described = []
    for i, c in enumerate(result.comparisons):
        y = TOP + ROW_HEIGHT * i + ROW_HEIGHT / 2
        lo, hi = c.ci_abs
        if c.uplift_abs is None:
            label, point = "not computed", None
            described.append(f"{c.variant}: uplift not computed")
        else:
            point = x_of(c.uplift_abs * 100)
            if lo is not None and hi is not None:
                label = f"{_points(c.uplift_abs * 100)} [{_points(lo * 100)}, {_points(hi * 100)}]"
                described.append(f"{c.variant}: {_points(c.uplift_abs * 100)} NRR points, "
                                 f"{level} CI {_points(lo * 100)} to {_points(hi * 100)}")
            else:
                label = f"{_points(c.uplift_abs * 100)} (no CI)"
                described.append(f"{c.variant}: {_points(c.uplift_abs * 100)} NRR points, no confidence interval")
        rows.append(ForestRow(
            variant=c.variant, y=y, x=point,
            x_low=x_of(lo * 100) if point is not None and lo is not None and hi is not None else None,
            x_high=x_of(hi * 100) if point is not None and lo is not None and hi is not None else None,
            label=label, verdict=c.verdict,
        ))
    bottom = TOP + ROW_HEIGHT * len(rows)
    ticks = []
    count = round((high - low) / step)
    for k in range(count + 1):
        value = low + k * step
        ticks.append(Tick(x_of(value), f"{value:+g}" if abs(value) > 1e-12 else "0"))
    markers = (
        Marker(x_of(0.0), "0", "zero"),
        Marker(x_of(-mde), "\N{MINUS SIGN}MDE", "mde"),
        Marker(x_of(mde), "+MDE", "mde"),
    )
    description = (
        f"Absolute NRR uplift in points with {level} confidence intervals, against zero and "
        f"the minimum detectable effect of ±{mde:g} points. " + "; ".join(described) + "."
    )
    return ForestPlot(WIDTH, int(bottom + BOTTOM), PLOT_LEFT, PLOT_RIGHT, TOP, bottom, LABEL_RIGHT,
                      VALUE_LEFT, tuple(rows), markers, tuple(ticks), description)
