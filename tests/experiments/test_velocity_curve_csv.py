"""The experiment's CSV export carries the journey-velocity (Kaplan–Meier) curves: the
control's and each row's treatment's, one cell each, as ``day:share`` steps — the stored
``velocity_curves`` exactly (they were in the JSON, Markdown and HTML exports only).

Expected shares: the product-limit estimator written out here with numpy (Kaplan & Meier
1958: S(t) = Π_{t_i ≤ t} (1 − d_i / n_i); share reached = 1 − S), not the code under test.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from experiments.export_formats import experiment_csv, velocity_curve_cell
from stats import analyze, arm_from_arrays
from tests.experiments.test_nrr_figures_exports import document_of

#: (days_to_value, days_observed) per account; NaN = value not reached (censored there).
ARMS = {
    "control": ([3, np.nan, 7, 7, np.nan, 12], [30, 5, 30, 30, 20, 30]),
    "fast": ([1, 2, 2, np.nan, 4, 9], [30, 30, 30, 10, 30, 30]),
    "slow": ([np.nan, 14, np.nan, 20, 6, np.nan], [25, 30, 8, 30, 30, 30]),
}


def report() -> dict:
    arms = {}
    for variant, (reached, observed) in ARMS.items():
        n = len(reached)
        start = np.full(n, 100.0)
        arms[variant] = arm_from_arrays(
            start, np.zeros(n), np.zeros(n), np.zeros(n),
            days_to_value=np.array(reached, dtype=float),
            days_observed=np.array(observed, dtype=float))
    return analyze(arms, control="control").to_dict()


def kaplan_meier_by_hand(variant: str) -> dict[float, float]:
    """Share reached at each event day (numpy, product-limit)."""
    reached, observed = (np.array(a, dtype=float) for a in ARMS[variant])
    time = np.where(np.isnan(reached), observed, reached)
    event = ~np.isnan(reached)
    survival, shares = 1.0, {}
    for day in np.unique(time[event]):
        at_risk = np.sum(time >= day)
        events = np.sum((time == day) & event)
        survival *= 1 - events / at_risk
        shares[float(day)] = 1 - survival
    return shares


def steps(cell: str) -> list[tuple[float, float]]:
    return [(float(d), float(s)) for d, s in (step.split(":") for step in cell.split("; "))]


def test_each_row_carries_the_control_curve_and_its_own_treatment_curve():
    stored = report()
    rows = list(csv.DictReader(io.StringIO(experiment_csv(document_of(stored)))))
    assert [r["variant"] for r in rows] == ["fast", "slow"]
    for row in rows:
        for column, variant in (("velocity_curve_control", "control"),
                                ("velocity_curve_treatment", row["variant"])):
            found = steps(row[column])
            # as stored, step for step
            assert found == [tuple(p) for p in stored["velocity_curves"][variant]], column
            # and those are the Kaplan–Meier shares at each event day
            by_hand = kaplan_meier_by_hand(variant)
            assert {d: s for d, s in found if d in by_hand} == pytest.approx(by_hand, abs=1e-12)
            assert found[0] == (0.0, 0.0)
    assert dict(steps(rows[0]["velocity_curve_treatment"]))[2.0] == pytest.approx(0.5)


def test_without_curves_the_cells_are_blank_and_bad_points_are_skipped():
    stored = report()
    stored.pop("velocity_curves")
    (first, _second) = csv.DictReader(io.StringIO(experiment_csv(document_of(stored))))
    assert first["velocity_curve_control"] == "" and first["velocity_curve_treatment"] == ""
    # a hand-edited or damaged stored curve: only its numeric pairs, in day order
    assert velocity_curve_cell([[5, 0.5], ["x", 1], [1, 0.25], [2], None, [3, float("nan")],
                                [0, 0]]) == "0:0; 1:0.25; 5:0.5"
    assert velocity_curve_cell("0:0") is None and velocity_curve_cell([]) is None
