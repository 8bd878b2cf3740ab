"""Geometry of the NRR charts, in SVG units: line charts with reference lines, the
movements waterfall, sparklines and small multiples.

Pure layout, like :mod:`experiments.forest`: the numbers come from the stored ledger
figures (or a node's dated actuals); this module decides where they go so the
templates (``webapp/templates/nrr/_charts.html``, the tree's node card, the dashboard
and the printable export) only draw what it returns. Every chart carries a ``title``
and a ``description`` in words (the SVG's ``<title>``/``<desc>``); the pages also
print the same numbers as a table, so nothing is only in the picture.

Scales follow the usual "nice numbers" rule (steps of 1, 2, 2.5 or 5 × 10ⁿ;
Heckbert, "Nice numbers for graph labels", *Graphics Gems*, 1990).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

ValueFormat = Callable[[float], str]


def percent(value: float) -> str:
    """0.9876 → '98.8%' (the NRR page's unit)."""
    return f"{value * 100:.1f}%"


def percent2(value: float) -> str:
    """0.01234 → '1.23%' (monthly rates are small)."""
    return f"{value * 100:.2f}%"


def compact_money(value: float) -> str:
    """1_234_567 → '1.235M', 12_300 → '12.3k', 950 → '950' (four significant digits)."""
    size = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return f"{value / limit:.4g}{suffix}"
    return f"{value:.0f}"


def plain(value: float) -> str:
    """A leading metric of unknown unit: up to four significant digits."""
    return f"{value:.4g}"


@dataclass(frozen=True)
class Tick:
    pos: float  # x for the horizontal axis, y for the vertical one
    label: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    label: str  # e.g. "2025-03: 101.2%" (the dot's <title>)


@dataclass(frozen=True)
class SeriesData:
    """One line to draw: ``values`` align with the chart's periods (``None`` = gap)."""

    key: str  # CSS hook: the line is drawn with class ``series-<key>``
    name: str
    values: Sequence[float | None]


@dataclass(frozen=True)
class Series:
    key: str
    name: str
    path: str  # SVG path data; a gap in the values starts a new sub-path
    dots: tuple[Dot, ...]
    last: Dot | None


@dataclass(frozen=True)
class Reference:
    """A horizontal reference line (the 100 % line, a target, a baseline)."""

    key: str
    label: str
    value: float
    y: float


@dataclass(frozen=True)
class PlotFrame:
    """What every chart with axes has: its title and text description (the SVG's title
    and desc), its size and the plot area inside the margins, in SVG units."""

    title: str
    description: str
    width: int
    height: int
    left: float
    right: float
    top: float
    bottom: float


@dataclass(frozen=True)
class LineChart(PlotFrame):
    series: tuple[Series, ...]
    references: tuple[Reference, ...]
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]

    @property
    def empty(self) -> bool:
        return not any(s.dots for s in self.series)


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def nice_scale(low: float, high: float, steps: int = 4) -> tuple[float, float, float]:
    """``(lo, hi, step)``: a range covering ``[low, high]`` in about ``steps`` nice steps.

    >>> nice_scale(0.97, 1.04)
    (0.96, 1.04, 0.02)
    >>> nice_scale(5.0, 5.0)
    (4.0, 6.0, 0.5)
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"scale bounds must be finite, got {low!r} and {high!r}")
    if high < low:
        low, high = high, low
    if high - low <= 1e-9 * max(1.0, abs(low), abs(high)):  # one value: pad around it
        pad = abs(low) * 0.2 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / steps
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    # the tolerance keeps an exact multiple on its tick; a value just past it gets one more
    lo = math.floor(low / step + 1e-9) * step
    hi = math.ceil(high / step - 1e-9) * step
    digits = max(0, -math.floor(math.log10(step)) + 2)
    lo, hi, step = round(lo, digits), round(hi, digits), round(step, digits)
    if lo > low:
        lo = round(lo - step, digits)
    if hi < high:
        hi = round(hi + step, digits)
    return lo, hi, step


def _x_positions(count: int, left: float, right: float) -> list[float]:
    if count == 1:
        return [round((left + right) / 2, 2)]
    return [round(left + (right - left) * i / (count - 1), 2) for i in range(count)]


def _x_ticks(labels: Sequence[str], xs: Sequence[float], most: int) -> tuple[Tick, ...]:
    if not labels:
        return ()
    every = max(1, math.ceil(len(labels) / most))
    chosen = list(range(len(labels) - 1, -1, -every))[::-1]  # always label the last period
    return tuple(Tick(xs[i], labels[i]) for i in chosen)


def line_chart(
    periods: Sequence[str],
    series: Sequence[SeriesData],
    *,
    title: str,
    references: Sequence[tuple[str, str, float | None]] = (),
    value_format: ValueFormat = percent,
    y_range: tuple[float, float] | None = None,
    width: int = 720,
    height: int = 260,
    margins: tuple[float, float, float, float] = (14, 118, 18, 28),
    x_labels: int = 8,
) -> LineChart:
    """Layout of a line chart over ``periods`` with horizontal ``references``.

    ``references`` are ``(key, label, value)``; a ``None`` value is left out. The
    vertical scale covers every value and reference (or ``y_range`` when given, so
    small multiples share one scale). ``margins`` are (top, right, bottom, left) in
    SVG units: the right margin holds the end labels of the lines.
    """
    top, right_margin, bottom_margin, left_margin = margins
    left, right = float(left_margin + 30), float(width - right_margin)
    bottom = float(height - bottom_margin)
    refs_in = [(k, label, _finite(v)) for k, label, v in references]
    refs_in = [(k, label, v) for k, label, v in refs_in if v is not None]
    values = [v for s in series for v in (_finite(x) for x in s.values) if v is not None]
    if y_range is not None:
        lo, hi, step = nice_scale(*y_range)
    elif values or refs_in:
        everything = values + [v for _k, _l, v in refs_in]
        lo, hi, step = nice_scale(min(everything), max(everything))
    else:
        lo, hi, step = 0.0, 1.0, 0.25

    def y_of(value: float) -> float:
        return round(bottom - (value - lo) / (hi - lo) * (bottom - top), 2)

    xs = _x_positions(len(periods), left, right) if periods else []
    drawn = []
    said = []
    for item in series:
        parts: list[str] = []
        dots: list[Dot] = []
        pen_down = False
        for i, raw in enumerate(item.values[: len(periods)]):
            value = _finite(raw)
            if value is None:
                pen_down = False
                continue
            x, y = xs[i], y_of(value)
            parts.append(f"{'L' if pen_down else 'M'}{x:g} {y:g}")
            pen_down = True
            dots.append(Dot(x, y, f"{periods[i]}: {value_format(value)}"))
        drawn.append(Series(item.key, item.name, " ".join(parts), tuple(dots),
                            dots[-1] if dots else None))
        shown = [(periods[i], _finite(v)) for i, v in enumerate(item.values[: len(periods)])]
        shown = [(p, v) for p, v in shown if v is not None]
        if shown:
            low_p, low_v = min(shown, key=lambda pv: pv[1])
            high_p, high_v = max(shown, key=lambda pv: pv[1])
            said.append(
                f"{item.name}: {value_format(shown[0][1])} in {shown[0][0]}, "
                f"{value_format(shown[-1][1])} in {shown[-1][0]} (lowest {value_format(low_v)} "
                f"in {low_p}, highest {value_format(high_v)} in {high_p})"
            )
        else:
            said.append(f"{item.name}: no values")
    refs = tuple(Reference(k, label, v, y_of(v)) for k, label, v in refs_in)
    said += [f"{r.label}: {value_format(r.value)}" for r in refs]
    count = round((hi - lo) / step)
    y_ticks = tuple(Tick(y_of(lo + i * step), value_format(lo + i * step))
                    for i in range(count + 1))
    return LineChart(
        title=title,
        description="; ".join(said) + ".",
        width=width,
        height=height,
        left=left,
        right=right,
        top=float(top),
        bottom=bottom,
        series=tuple(drawn),
        references=refs,
        y_ticks=y_ticks,
        x_ticks=_x_ticks(periods, xs, x_labels),
    )


def small_multiples(
    periods: Sequence[str],
    groups: Sequence[SeriesData],
    *,
    what: str,
    references: Sequence[tuple[str, str, float | None]] = (),
    value_format: ValueFormat = percent,
    width: int = 240,
    height: int = 130,
) -> tuple[LineChart, ...]:
    """One small line chart per group, all on the same vertical scale (so they compare).

    ``what`` names the measure in each chart's title, e.g. "monthly NRR".
    """
    values = [v for g in groups for v in (_finite(x) for x in g.values) if v is not None]
    values += [v for _k, _l, v in references if _finite(v) is not None]
    shared = (min(values), max(values)) if values else None
    return tuple(
        line_chart(
            periods,
            [group],
            title=f"{what}: {group.name}",
            references=references,
            value_format=value_format,
            y_range=shared,
            width=width,
            height=height,
            margins=(8, 10, 18, 12),
            x_labels=2,
        )
        for group in groups
    )


@dataclass(frozen=True)
class WaterfallBar:
    label: str
    kind: str  # "total", "increase" or "decrease"
    amount: float  # signed: a decrease is negative
    x: float
    width: float
    y: float
    height: float
    value_text: str
    text_y: float


@dataclass(frozen=True)
class Waterfall(PlotFrame):
    bars: tuple[WaterfallBar, ...]
    connectors: tuple[tuple[float, float, float], ...]  # (x1, x2, y)
    y_ticks: tuple[Tick, ...]
    floor: float  # the value at the bottom of the plot
    truncated: bool  # the vertical axis does not start at 0


def waterfall(
    period: str,
    start: float,
    expansion: float,
    contraction: float,
    churned: float,
    *,
    value_format: ValueFormat = compact_money,
    width: int = 720,
    height: int = 280,
) -> Waterfall:
    """Start MRR → + expansion − contraction − churn → end MRR of one period.

    The vertical axis starts just below the lowest running total (not at 0), so the
    movements — a few percent of the base — stay visible; ``truncated`` says so and
    the page prints the floor value beside the chart.

    Raises
    ------
    ValueError
        A figure is not a finite number, or a movement is negative.
    """
    figures = {"start": start, "expansion": expansion, "contraction": contraction,
               "churned": churned}
    for name, value in figures.items():
        if _finite(value) is None:
            raise ValueError(f"waterfall {name} must be a finite number, got {value!r}")
    for name in ("expansion", "contraction", "churned"):
        if figures[name] < 0:
            raise ValueError(f"waterfall {name} must be ≥ 0, got {figures[name]!r}")
    end = start + expansion - contraction - churned
    steps = [
        ("Start MRR", "total", start, 0.0, start),
        ("+ Expansion", "increase", expansion, start, start + expansion),
        ("− Contraction", "decrease", -contraction, start + expansion,
         start + expansion - contraction),
        ("− Churn", "decrease", -churned, start + expansion - contraction, end),
        ("End MRR", "total", end, 0.0, end),
    ]
    running = [start, start + expansion, start + expansion - contraction, end]
    low_total, high_total = min(running), max(running)
    span = high_total - low_total
    if low_total <= 0 or span == 0 or low_total < 0.5 * high_total:
        floor, truncated = 0.0, False
        lo, hi, step = nice_scale(0.0, high_total or 1.0)
    else:
        lo, hi, step = nice_scale(low_total - span * 0.6, high_total + span * 0.1)
        floor, truncated = max(lo, 0.0), lo > 0
    top, bottom, left, right = 16.0, float(height - 40), 78.0, float(width - 12)

    def y_of(value: float) -> float:
        return round(bottom - (max(value, lo) - lo) / (hi - lo) * (bottom - top), 2)

    slot = (right - left) / len(steps)
    bar_width = round(slot * 0.62, 2)
    bars = []
    for i, (label, kind, amount, base, level) in enumerate(steps):
        x = round(left + slot * i + (slot - bar_width) / 2, 2)
        y_top, y_bottom = y_of(max(base, level)), y_of(min(base, level))
        text = value_format(amount) if kind == "total" else (
            ("+" if amount >= 0 else "−") + value_format(abs(amount)))
        bars.append(WaterfallBar(label, kind, amount, x, bar_width, y_top,
                                 round(max(y_bottom - y_top, 1.0), 2), text,
                                 round(y_top - 4, 2)))
    connectors = tuple(
        (round(bars[i].x + bar_width, 2), bars[i + 1].x, y_of(level))
        for i, (_l, _k, _a, _b, level) in enumerate(steps[:-1])
    )
    count = round((hi - lo) / step)
    ticks = tuple(Tick(y_of(lo + i * step), value_format(lo + i * step)) for i in range(count + 1))
    description = (
        f"{period}: start MRR {value_format(start)}, plus expansion {value_format(expansion)}, "
        f"minus contraction {value_format(contraction)}, minus churn {value_format(churned)}, "
        f"end MRR {value_format(end)}."
        + (f" The vertical axis starts at {value_format(floor)}, not at 0." if truncated else "")
    )
    return Waterfall(
        title=f"MRR movements in {period}",
        description=description,
        width=width,
        height=height,
        left=left,
        right=right,
        top=top,
        bottom=bottom,
        bars=tuple(bars),
        connectors=connectors,
        y_ticks=ticks,
        floor=floor,
        truncated=truncated,
    )


@dataclass(frozen=True)
class Sparkline:
    title: str
    description: str
    width: int
    height: int
    path: str
    dots: tuple[Dot, ...]
    last: Dot | None
    baseline: Reference | None
    target: Reference | None

    @property
    def empty(self) -> bool:
        return not self.dots


def sparkline(
    points: Sequence[tuple[str, float | None]],
    *,
    title: str,
    baseline: float | None = None,
    target: float | None = None,
    value_format: ValueFormat = plain,
    width: int = 168,
    height: int = 40,
) -> Sparkline:
    """A small line of dated actuals with the baseline and target as horizontal lines.

    ``points`` are ``(label, value)`` in time order (``None`` values are skipped); the
    description reads "baseline → target → latest actual" in words.
    """
    pad = 4.0
    kept = [(label, v) for label, raw in points if (v := _finite(raw)) is not None]
    base, goal = _finite(baseline), _finite(target)
    everything = [v for _l, v in kept] + [v for v in (base, goal) if v is not None]
    lo, hi = (min(everything), max(everything)) if everything else (0.0, 1.0)
    # Halved: the span of two finite extremes (±1.7e308) overflows to inf, its half does
    # not (halving a float is exact). One value alone sits in the middle.
    half_span = hi / 2 - lo / 2

    def y_of(value: float) -> float:
        share = (value / 2 - lo / 2) / half_span if half_span else 0.5
        return round(height - pad - share * (height - 2 * pad), 2)

    xs = _x_positions(len(kept), pad, width - pad) if kept else []
    dots = tuple(Dot(x, y_of(v), f"{label}: {value_format(v)}")
                 for x, (label, v) in zip(xs, kept, strict=True))
    path = " ".join(f"{'M' if i == 0 else 'L'}{d.x:g} {d.y:g}" for i, d in enumerate(dots))
    words = [f"baseline {value_format(base)}" if base is not None else "no baseline",
             f"target {value_format(goal)}" if goal is not None else "no target"]
    if kept:
        words.append(f"latest actual {value_format(kept[-1][1])} in {kept[-1][0]} "
                     f"({len(kept)} value{'s' if len(kept) != 1 else ''} since {kept[0][0]})")
    else:
        words.append("no actuals yet")
    return Sparkline(
        title=title,
        description=", ".join(words) + ".",
        width=width,
        height=height,
        path=path,
        dots=dots,
        last=dots[-1] if dots else None,
        baseline=Reference("baseline", "Baseline", base, y_of(base)) if base is not None else None,
        target=Reference("target", "Target", goal, y_of(goal)) if goal is not None else None,
    )
