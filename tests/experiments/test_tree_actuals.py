"""Which ledger figure a tree node reads, and "as of" for the reviews (issue 16 item 3)."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.charts import sparkline
from experiments.models import LEDGER_METRICS, DriverNode
from experiments.tree_actuals import (
    METRIC_LABELS,
    NodeActuals,
    _ledger_actuals,
    actual_as_of,
    ledger_series,
    node_metric,
)
from stats.ledger import LedgerArrays, ledger_figures


def figures(months: int):
    """A small ledger by hand: 30 accounts, 5 % of the base churns each month."""
    rng = np.random.default_rng(2)
    rows = [(a, p) for a in range(30) for p in range(months) if p <= a % months + 20]
    account = np.array([a for a, _ in rows])
    period = np.array([p for _, p in rows])
    start = rng.uniform(100, 200, len(rows)).round(2)
    churned = np.where(rng.random(len(rows)) < 0.05, start, 0.0)
    expansion = rng.uniform(0, 10, len(rows)).round(2)
    periods = tuple(f"{2025 + (m // 12)}-{m % 12 + 1:02d}" for m in range(months))
    return ledger_figures(LedgerArrays(account=account, period=period, start=start,
                                       expansion=expansion, contraction=np.zeros(len(rows)),
                                       churned=churned, periods=periods))


def test_every_ledger_metric_has_a_label_and_reads_its_stored_field():
    assert tuple(METRIC_LABELS) == LEDGER_METRICS
    f = figures(14)
    assert ledger_series(f, "nrr") == [(t.period, t.nrr) for t in f.ttm]
    assert ledger_series(f, "grr") == [(t.period, t.grr) for t in f.ttm]
    assert ledger_series(f, "nrr_monthly") == [(m.period, m.nrr) for m in f.monthly]
    for metric in ("expansion_rate", "contraction_rate", "churn_rate", "logo_churn"):
        assert ledger_series(f, metric) == [(m.period, getattr(m, metric)) for m in f.monthly]
    with pytest.raises(ValueError, match="unknown ledger metric"):
        ledger_series(f, "arr")
    assert ledger_series(None, "nrr") == []


def test_the_root_reads_ttm_nrr_unless_told_otherwise():
    assert node_metric(DriverNode(name="NRR", kind="root")) == "nrr"
    assert node_metric(DriverNode(name="NRR", kind="root", metric="nrr_monthly")) == "nrr_monthly"
    assert node_metric(DriverNode(name="Lever", kind="lever", parent_id=1)) is None


def test_a_short_ledger_says_ttm_needs_twelve_periods():
    node = DriverNode(id=1, name="NRR", kind="root", baseline=1.0, target=1.1)
    actuals = _ledger_actuals(node, "nrr", figures(6))
    assert actuals.points == () and actuals.spark is None  # nothing to draw: no chart
    assert actuals.note == ("Needs 12 periods of ledger for a trailing-twelve-month figure "
                            "(the ledger has 6).")
    monthly = _ledger_actuals(node, "nrr_monthly", figures(6))
    assert len(monthly.points) == 6 and monthly.note == ""
    assert _ledger_actuals(node, "nrr", None).note.startswith("No revenue ledger yet")


def test_as_of_takes_the_newest_actual_dated_on_or_before_the_day():
    points = (("2026-09", 1.01), ("2026-10", 1.02), ("2026-11", 1.03))
    actuals = NodeActuals(1, "nrr", "ledger", "NRR", points, sparkline(points, title="t"))
    assert actual_as_of(actuals, "2026-11-30") == ("2026-11", 1.03)
    assert actual_as_of(actuals, "2026-10-01") == ("2026-10", 1.02)  # a month counts from its start
    assert actual_as_of(actuals, "2026-08-31") is None
    dated = (("2026-11-02", 0.5), ("2026-11-20", 0.6))
    entered = NodeActuals(2, None, "entered", "x", dated, sparkline(dated, title="t"))
    assert actual_as_of(entered, "2026-11-19") == ("2026-11-02", 0.5)
    assert actual_as_of(entered, "2026-11-20") == ("2026-11-20", 0.6)
