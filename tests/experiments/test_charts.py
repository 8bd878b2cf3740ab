"""Chart geometry (experiments/charts.py): every drawn position maps back to its number.

Expectations are computed here by hand with numpy (linear interpolation between the
axis ticks, running sums for the waterfall), never with the module's own scale.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.charts import (
    SeriesData,
    compact_money,
    line_chart,
    nice_scale,
    small_multiples,
    sparkline,
    waterfall,
)

PERIODS = (*(f"2025-{m:02d}" for m in range(1, 13)), "2026-01", "2026-02")


def value_at(chart, y: float) -> float:
    """The value at height ``y``, interpolated from the chart's own tick labels."""
    ys = np.array([t.pos for t in chart.y_ticks])
    values = np.array([float(t.label.rstrip("%")) / 100 for t in chart.y_ticks])
    order = np.argsort(ys)
    return float(np.interp(y, ys[order], values[order]))


def test_line_chart_points_read_back_as_their_values_through_the_tick_labels():
    rng = np.random.default_rng(4)
    nrr = 1 + rng.normal(0, 0.01, len(PERIODS))
    chart = line_chart(PERIODS, [SeriesData("nrr", "NRR", list(nrr))], title="t")
    dots = chart.series[0].dots
    assert len(dots) == len(PERIODS)
    for dot, value in zip(dots, nrr, strict=True):
        assert value_at(chart, dot.y) == pytest.approx(value, abs=1e-4)
    xs = np.array([d.x for d in dots])
    assert np.allclose(np.diff(xs), np.diff(xs)[0], atol=0.011)  # evenly spaced (2 decimals)
    assert xs[0] == chart.left and xs[-1] == chart.right
    # every value lies inside the plotted range
    assert all(chart.top <= d.y <= chart.bottom for d in dots)


def test_gaps_start_a_new_subpath_and_references_sit_at_their_value():
    values = [0.98, 0.99, None, None, 1.01, 1.02]
    chart = line_chart(PERIODS[:6], [SeriesData("ttm-nrr", "TTM", values)], title="t",
                       references=[("hundred", "100%", 1.0), ("target", "Target", 1.05),
                                   ("none", "Nothing", None)])
    path = chart.series[0].path
    assert path.count("M") == 2 and path.count("L") == 2
    assert [r.key for r in chart.references] == ["hundred", "target"]  # None is left out
    for ref in chart.references:
        assert value_at(chart, ref.y) == pytest.approx(ref.value, abs=1e-9)
    assert "Target: 105.0%" in chart.description and "lowest 98.0% in 2025-01" in chart.description


def test_x_labels_are_thinned_but_the_last_period_is_always_labelled():
    chart = line_chart(PERIODS, [SeriesData("nrr", "NRR", [1.0] * len(PERIODS))], title="t",
                       x_labels=5)
    labels = [t.label for t in chart.x_ticks]
    assert len(labels) <= 5 and labels[-1] == PERIODS[-1]


def test_an_empty_chart_is_well_formed():
    chart = line_chart(PERIODS[:3], [SeriesData("nrr", "NRR", [None, None, None])], title="t")
    assert chart.empty and chart.series[0].path == "" and "NRR: no values" in chart.description
    assert len(chart.y_ticks) >= 2


@given(st.floats(-1e6, 1e6, allow_nan=False), st.floats(0, 1e6, allow_nan=False))
@settings(max_examples=500, deadline=None)
def test_nice_scale_covers_the_range_in_round_steps(low, width):
    high = low + width
    lo, hi, step = nice_scale(low, high)
    assert lo <= low and hi >= high
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))
    assert 1 <= round((hi - lo) / step) <= 10


def test_nice_scale_keeps_a_value_just_below_zero_inside_a_wide_range():
    # hypothesis found it: -1.2e-7 .. 1e6 had its lower bound rounded up to 0
    lo, hi, _step = nice_scale(-1.192092896e-07, 1e6)
    assert lo < -1.192092896e-07 and hi >= 1e6


def test_nice_scale_refuses_non_finite_bounds():
    with pytest.raises(ValueError, match="finite"):
        nice_scale(float("nan"), 1.0)


def test_small_multiples_share_one_vertical_scale():
    groups = [SeriesData("nrr", "basic", [0.95, 0.97]), SeriesData("nrr", "pro", [1.05, 1.1])]
    charts = small_multiples(PERIODS[:2], groups, what="NRR",
                             references=[("hundred", "100%", 1.0)])
    assert [c.title for c in charts] == ["NRR: basic", "NRR: pro"]
    assert charts[0].y_ticks == charts[1].y_ticks
    # same value, same height in both
    assert charts[0].references[0].y == charts[1].references[0].y
    assert charts[0].series[0].dots[0].y > charts[1].series[0].dots[0].y  # 0.95 below 1.05


def test_waterfall_steps_add_up_and_bar_heights_are_proportional():
    start, expansion, contraction, churned = 1_000_000.0, 42_000.0, 9_000.0, 18_000.0
    chart = waterfall("2026-02", start, expansion, contraction, churned)
    bars = {b.label: b for b in chart.bars}
    assert [b.kind for b in chart.bars] == ["total", "increase", "decrease", "decrease", "total"]
    end = start + expansion - contraction - churned
    assert bars["End MRR"].amount == end
    # pixels per unit from the ticks, by hand
    ys = np.array([t.pos for t in chart.y_ticks])
    span = (ys.max() - ys.min())
    ticks = [t.label for t in chart.y_ticks]
    assert chart.truncated and ticks[0] != "0"
    first, last = chart.y_ticks[0], chart.y_ticks[-1]
    per_unit = span / (_money(last.label) - _money(first.label))
    for label, amount in (("+ Expansion", expansion), ("− Contraction", contraction),
                          ("− Churn", churned)):
        assert bars[label].height == pytest.approx(amount * per_unit, abs=0.02)
    # each movement starts where the previous running total ended (the connectors)
    running = np.cumsum([start, expansion, -contraction, -churned])
    for (_x1, _x2, y), total in zip(chart.connectors, running, strict=True):
        assert y == pytest.approx(first.pos - (total - _money(first.label)) * per_unit, abs=0.02)
    assert "not at 0" in chart.description and compact_money(end) in chart.description


def _money(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)([kMB]?)", text)
    return float(match.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "B": 1e9}[match.group(2)]


def test_waterfall_of_a_collapse_starts_at_zero():
    chart = waterfall("2026-02", 100.0, 0.0, 30.0, 60.0)
    assert not chart.truncated and chart.floor == 0.0
    assert chart.bars[-1].amount == pytest.approx(10.0)


@pytest.mark.parametrize(("figures", "message"), [
    ((100.0, -1.0, 0.0, 0.0), "expansion must be ≥ 0"),
    ((100.0, 0.0, float("nan"), 0.0), "contraction must be a finite number"),
])
def test_waterfall_refuses_impossible_movements(figures, message):
    with pytest.raises(ValueError, match=message):
        waterfall("2026-02", *figures)


def test_sparkline_places_baseline_target_and_last_actual():
    chart = sparkline([("2026-01", 0.55), ("2026-02", None), ("2026-03", 0.62)],
                      title="Activation", baseline=0.5, target=0.7)
    assert len(chart.dots) == 2  # the blank value is skipped
    # higher value, smaller y; baseline below the actuals, target above
    assert chart.target.y < chart.last.y < chart.dots[0].y < chart.baseline.y
    # linear: (y(0.55) - y(0.62)) / (y(0.5) - y(0.7)) = 0.07 / 0.2
    ratio = (chart.dots[0].y - chart.last.y) / (chart.baseline.y - chart.target.y)
    assert ratio == pytest.approx(0.07 / 0.2, abs=0.01)
    assert chart.description == ("baseline 0.5, target 0.7, latest actual 0.62 in 2026-03 "
                                 "(2 values since 2026-01).")


def test_sparkline_without_actuals_says_so():
    chart = sparkline([], title="t", target=1.1)
    assert chart.empty and chart.baseline is None and "no actuals yet" in chart.description
