"""The one forest-plot layout (experiments.forest), shared by the results page and the
HTML export."""

from __future__ import annotations

import stats
from experiments.forest import forest_layout, forest_plot


def _result() -> stats.ExperimentResult:
    srm = stats.SRMResult(0.5, {}, {}, False)

    def comparison(variant, uplift, low, high):
        return stats.Comparison(
            variant, uplift, (low, high), None, (None, None), 0.01, 0.01, 0.02, 0.3, 100, 0.9, "win"
        )

    return stats.ExperimentResult(
        0.05,
        0.8,
        0.02,
        "control",
        srm,
        (),
        (
            comparison("a", 0.03, 0.01, 0.05),
            comparison("b", -0.01, -0.04, 0.02),
            stats.Comparison(
                "c",
                None,
                (None, None),
                None,
                (None, None),
                None,
                None,
                None,
                None,
                None,
                None,
                "inconclusive",
            ),
        ),
    )


def test_forest_plot_geometry_orders_values_left_to_right():
    plot = forest_plot(_result())
    a, b, c = plot.rows
    assert a.x_low < a.x < a.x_high and b.x_low < b.x < b.x_high
    zero = next(m.x for m in plot.markers if m.kind == "zero")
    assert b.x < zero < a.x
    assert c.x is None and c.label == "not computed"
    assert plot.plot_left <= min(t.x for t in plot.ticks)
    assert max(t.x for t in plot.ticks) <= plot.plot_right
    assert "a: +3.0 NRR points, 95% CI +1.0 to +5.0" in plot.description
    assert plot.level == "95%"
    assert forest_plot(None) is None
    assert forest_layout([], mde=0.02, alpha=0.05) is None


def test_the_stored_dict_and_the_result_object_lay_out_identically():
    result = _result()
    assert forest_plot(result.to_dict()) == forest_plot(result)


def test_scale_runs_from_the_padded_extremes_in_round_steps():
    # Values -4 … +5 points and ±2 MDE: padded by 8 % of the 9-point span (0.72) to
    # -4.72 … 5.72; a 10.44 span over 5 gives a raw step 2.088 → 2.5; rounded out to
    # -5 … 7.5 (literal arithmetic, not the module's).
    plot = forest_plot(_result())
    labels = [t.label for t in plot.ticks]
    assert labels == ["-5", "-2.5", "0", "+2.5", "+5", "+7.5"]
    assert plot.ticks[0].x == plot.plot_left and plot.ticks[-1].x == plot.plot_right
    zero = next(m.x for m in plot.markers if m.kind == "zero")
    assert zero == round(plot.plot_left + 5 / 12.5 * (plot.plot_right - plot.plot_left), 2)
