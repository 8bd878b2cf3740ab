"""Issue 16 item 5: the ledger's planning σ is DESIGN §4's linearised sigma_lin.

sigma_lin = sd(end − R·start, ddof 1) / mean(start) with R = Σ end / Σ start over the last
period's active accounts (overall and per dimension value). Every expected value is
computed here with numpy by hand (and once through DESIGN §4's delta-method variance of a
ratio with ``np.cov``), never with ``stats.ledger``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from stats.ledger import LedgerArrays, LedgerFigures, ledger_figures
from tests.ledger_gen import DIMENSIONS, generate_ledger

RTOL = 1e-9


def by_hand(start: np.ndarray, end: np.ndarray) -> float | None:
    """sd(end − R·start, ddof 1) / mean(start), R = Σ end / Σ start (DESIGN §4)."""
    if start.size < 2:
        return None
    ratio = end.sum() / start.sum()
    return float(np.std(end - ratio * start, ddof=1) / start.mean())


@pytest.fixture(scope="module")
def ledger():
    return generate_ledger(3_000, months=6, seed=16_5)


@pytest.fixture(scope="module")
def last_rows(ledger):
    """The last period's active rows as a pandas frame with ``end`` (pandas, not stats)."""
    df = ledger.to_frame()
    df = df[(df.period == ledger.periods[-1]) & (df.start_mrr > 0)].copy()
    df["end"] = df.start_mrr + df.expansion_mrr - df.contraction_mrr - df.churned_mrr
    return df


@pytest.fixture(scope="module")
def figures(ledger):
    return ledger_figures(ledger.to_arrays())


def test_overall_sigma_lin_equals_numpy_by_hand(figures, last_rows):
    start, end = last_rows.start_mrr.to_numpy(), last_rows.end.to_numpy()
    expected = by_hand(start, end)
    assert figures.linearised_sigma() == pytest.approx(expected, rel=RTOL)
    # DESIGN §4's delta-method variance of a ratio: sigma_lin² = n · var(R).
    n = start.size
    (vx, cxy), (_, vy) = np.cov(end, start, ddof=1)
    mx, my = end.mean(), start.mean()
    var_r = (vx / my**2 - 2 * mx * cxy / my**3 + mx**2 * vy / my**4) / n
    assert figures.linearised_sigma() == pytest.approx(math.sqrt(n * var_r), rel=1e-7)


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_sigma_lin_per_dimension_value_equals_numpy_by_hand(figures, last_rows, dimension):
    seen = 0
    for value, rows in last_rows.groupby(dimension):
        expected = by_hand(rows.start_mrr.to_numpy(), rows.end.to_numpy())
        got = figures.linearised_sigma(dimension, value)
        assert got == pytest.approx(expected, rel=RTOL), (dimension, value)
        seen += 1
    assert seen >= 2
    assert figures.linearised_sigma(dimension, "no such value") is None
    assert figures.linearised_sigma("no such dimension", "pro") is None


def test_sigma_lin_differs_from_plain_sd_when_mrr_varies():
    """Two small accounts double, one large stays flat: end/start spreads a lot, but in the
    ratio NRR the large account dominates, so the linearised σ is what sizing needs."""
    start = np.array([100.0, 100.0, 10_000.0, 100.0])
    expansion = np.array([100.0, 100.0, 0.0, 0.0])
    zeros = np.zeros(4)
    arrays = LedgerArrays(
        account=np.arange(4),
        period=np.zeros(4, dtype=np.int64),
        start=start,
        expansion=expansion,
        contraction=zeros,
        churned=zeros,
        periods=("2026-10",),
    )
    figures = ledger_figures(arrays)
    end = start + expansion
    assert figures.linearised_sigma() == pytest.approx(by_hand(start, end), rel=RTOL)
    assert figures.plain_sigma() == pytest.approx(np.std(end / start, ddof=1), rel=RTOL)
    # 0.577 (plain) vs 0.0535 (linearised): sizing on the plain sd would ask ~116× the accounts.
    assert figures.plain_sigma() > 10 * figures.linearised_sigma()


def test_missing_dimension_value_counts_overall_only_and_small_groups_are_null():
    # Three accounts in the last period: two "a", one without a value; one "b" only before.
    arrays = LedgerArrays(
        account=np.array([0, 1, 2, 3, 0, 1, 2]),
        period=np.array([0, 0, 0, 0, 1, 1, 1]),
        start=np.array([50.0, 60.0, 70.0, 80.0, 100.0, 300.0, 40.0]),
        expansion=np.array([0.0, 0.0, 0.0, 0.0, 20.0, 0.0, 0.0]),
        contraction=np.array([0.0, 0.0, 0.0, 0.0, 0.0, 30.0, 0.0]),
        churned=np.array([0.0, 0.0, 0.0, 80.0, 0.0, 0.0, 40.0]),
        dimensions={"plan": (np.array([0, 0, -1, 1, 0, 0, -1]), ("a", "b"))},
        periods=("2026-09", "2026-10"),
    )
    figures = ledger_figures(arrays)
    start, end = np.array([100.0, 300.0, 40.0]), np.array([120.0, 270.0, 0.0])
    assert figures.linearised_sigma() == pytest.approx(by_hand(start, end), rel=RTOL)
    assert figures.linearised_sigma("plan", "a") == pytest.approx(
        by_hand(start[:2], end[:2]), rel=RTOL
    )
    assert figures.linearised_sigma("plan", "b") is None  # no account in the last period
    single = ledger_figures(
        LedgerArrays(
            account=np.array([0]),
            period=np.array([0]),
            start=np.array([10.0]),
            expansion=np.zeros(1),
            contraction=np.zeros(1),
            churned=np.zeros(1),
            periods=("2026-10",),
        )
    )
    assert single.linearised_sigma() is None


def test_stored_form_keeps_sigma_lin_and_old_documents_still_load(figures):
    document = json.loads(json.dumps(figures.to_dict(), allow_nan=False))
    assert set(document["sigma_lin"]) == {"overall", "by_dimension"}
    again = LedgerFigures.from_dict(document)
    assert again.linearised_sigma("plan", "pro") == figures.linearised_sigma("plan", "pro")
    assert again.to_dict() == document
    # A document stored before sigma_lin existed: loads, σ_lin unknown (not recomputable).
    old = {k: v for k, v in document.items() if k != "sigma_lin"}
    loaded = LedgerFigures.from_dict(old)
    assert loaded.sigma_lin is None and loaded.linearised_sigma() is None
    assert loaded.linearised_sigma("plan", "pro") is None
    assert loaded.plain_sigma() == figures.plain_sigma()


def test_no_name_calls_the_plain_sd_a_planning_sigma():
    """The planning σ is ``linearised_sigma`` (DESIGN §4); the plain sd is ``plain_sigma``."""
    import experiments.ledger as service

    assert not hasattr(LedgerFigures, "planning_sigma")
    assert hasattr(LedgerFigures, "plain_sigma") and hasattr(LedgerFigures, "linearised_sigma")
    assert not hasattr(service, "ledger_sigma") and hasattr(service, "ledger_plain_sigma")
