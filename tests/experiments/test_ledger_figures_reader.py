"""One reader of the stored ledger figures (experiments.ledger.stored_figures) for the
planner, the registration hint, the NRR page and the impact totals: parsed once per ledger
version and process, a new version read at once, and a stored document this code cannot
read taken as "no ledger figures" with a logged warning, never a 500.

Expected σ: numpy over the CSV rows, as in tests/experiments/test_planning_ledger.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pytest
from sqlmodel import Session, select

from experiments import planning
from experiments.ledger import import_ledger, ledger_plain_sigma
from experiments.ledger_models import LedgerFigures
from experiments.models import DriverNode, utcnow
from experiments.planning import ledger_segment, sample_size_hint
from stats import ledger as stats_ledger
from tests.experiments.test_planning import experiment_with_snapshot
from tests.experiments.test_planning_ledger import CSV, HEADER, ROWS, by_hand
from tests.webapp.test_planner_ledger import HINT_QUERY

pytestmark = pytest.mark.db

HX = {"HX-Request": "true"}

#: A second upload of 2026-10: a2 no longer contracts, a5 no longer churns.
ROWS_2 = [r if r[0] not in ("a2", "a5") or r[1] != "2026-10" else (*r[:4], 0, 0, r[6])
          for r in ROWS if r[1] == "2026-10"]
CSV_2 = (HEADER + "".join(",".join(str(v) for v in row) + "\n" for row in ROWS_2)).encode()

#: Stored documents that are not figures this code can read (each made a 500 somewhere).
MALFORMED = {
    "dimensions as a list": {"periods": ["2026-10"], "monthly": [], "ttm": [],
                             "dimensions": [], "cohorts": [], "velocity_cohorts": [],
                             "sigma": {}},
    "monthly missing": {"periods": ["2026-10"]},
    "not an object": ["2026-10"],
    "a period row without numbers": {"periods": ["2026-10"], "monthly": [{"period": 1}],
                                     "ttm": [], "dimensions": {}, "cohorts": [],
                                     "velocity_cohorts": [], "sigma": {}},
}


def sigma_by_hand(rows) -> float:
    """sigma_lin of 2026-10 = sd(end − R·start, ddof 1) / mean(start), numpy only."""
    last = [r for r in rows if r[1] == "2026-10"]
    start = np.array([r[2] for r in last], dtype=float)
    end = start + np.array([r[3] - r[4] - r[5] for r in last], dtype=float)
    return float(np.std(end - end.sum() / start.sum() * start, ddof=1) / start.mean())


@pytest.fixture
def ledger(db_engine):
    with Session(db_engine) as session:
        import_ledger(session, CSV, dimensions="plan", actor=None, filename="ledger.csv")
        session.commit()


@pytest.fixture
def warnings_logged(caplog) -> Iterator[pytest.LogCaptureFixture]:
    """The app's ``nrrlab`` logger does not propagate: listen on it directly."""
    logger = logging.getLogger("nrrlab.ledger")
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def _store(db_engine, document) -> None:
    with Session(db_engine) as session:
        row = session.exec(select(LedgerFigures)).one()
        row.figures = document
        row.computed_at = utcnow() + timedelta(seconds=1)  # as a new row would be
        session.add(row)
        session.commit()


@pytest.fixture
def parses(monkeypatch) -> list[int]:
    """One entry per parse of a stored figures document."""
    calls: list[int] = []
    real = stats_ledger.LedgerFigures.from_dict.__func__

    def counted(cls, data):
        calls.append(1)
        return real(cls, data)

    monkeypatch.setattr(stats_ledger.LedgerFigures, "from_dict", classmethod(counted))
    return calls


@pytest.mark.parametrize("document", list(MALFORMED.values()), ids=list(MALFORMED))
def test_a_malformed_stored_document_is_no_ledger_figures_not_a_500(
        ledger, db_engine, login_as, warnings_logged, document):
    _store(db_engine, document)
    client = login_as("admin")

    planner = client.get("/planner/")
    body = planner.get_data(as_text=True)
    assert planner.status_code == 200
    assert 'name="segment"' not in body  # as without a ledger
    assert ("Spread sigma = 0.25 — the planner's default (a typical B2B SaaS value), "
            "not a measurement.") in body
    chosen = client.get("/planner/?segment=all")  # a link from when the figures were read
    assert chosen.status_code == 422
    assert "No revenue ledger with a measured spread has been uploaded." in chosen.get_data(
        as_text=True)

    hint = client.get(f"/experiments/sample-size-hint?{HINT_QUERY}", headers=HX)
    assert hint.status_code == 200
    assert "Sized with sigma = 0.250, assumed — no measurement yet." in hint.get_data(
        as_text=True)

    nrr = client.get("/nrr")
    assert nrr.status_code == 200
    assert "the stored figures cannot be read" in nrr.get_data(as_text=True)
    for page in ("/", "/tree/"):  # the headline and the tree's actuals read them too
        assert client.get(page).status_code == 200, page

    assert any("cannot be read" in r.getMessage() and r.levelno == logging.WARNING
               for r in warnings_logged.records), warnings_logged.records
    with Session(db_engine) as session:
        assert ledger_plain_sigma(session) is None
        assert ledger_segment(session) is None


def test_the_figures_are_parsed_once_per_version_and_a_new_version_is_seen_at_once(
        ledger, db_engine, login_as, parses):
    client = login_as("admin")
    with Session(db_engine) as session:
        assert ledger_segment(session).sigma == pytest.approx(by_hand()[0], rel=1e-9)
    for path in ("/planner/", "/planner/?segment=plan%3Dpro", "/nrr"):
        assert client.get(path).status_code == 200
    assert client.get(f"/experiments/sample-size-hint?{HINT_QUERY}",
                      headers=HX).status_code == 200
    assert len(parses) == 1

    with Session(db_engine) as session:
        import_ledger(session, CSV_2, dimensions="plan", actor=None, filename="second.csv")
        session.commit()
    with Session(db_engine) as session:
        found = ledger_segment(session).sigma
    assert found == pytest.approx(sigma_by_hand(ROWS_2), rel=1e-9)
    assert found != pytest.approx(sigma_by_hand(ROWS), rel=1e-6)  # the change is visible
    body = client.get("/planner/").get_data(as_text=True)
    assert f"Spread sigma = {sigma_by_hand(ROWS_2):.3f}" in body
    assert len(parses) == 2


@pytest.mark.parametrize("with_ledger", [True, False], ids=["ledger", "no ledger"])
def test_the_registration_hint_reads_the_branch_history_once_and_only_without_a_ledger(
        session, admin, root, db_engine, monkeypatch, with_ledger):
    if with_ledger:
        import_ledger(session, CSV, dimensions="plan", actor=admin, filename="ledger.csv")
    node = DriverNode(parent_id=root.id, name="Lever", kind="lever")
    session.add(node)
    session.flush()
    experiment_with_snapshot(session, node, "earlier", sigma=0.44)
    session.commit()
    calls: list[int] = []
    real = planning.branch_history

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(planning, "branch_history", counted)
    hint = sample_size_hint(session, admin, {
        "mde": "0.02", "alpha": "0.05", "power": "0.8", "node_id": str(node.id),
        "control": "0",
        "variants": [{"key": "control", "weight": "1"}, {"key": "treat", "weight": "1"}]})
    # With a ledger its sigma is used: the branch's stored results are not read at all.
    assert len(calls) == (0 if with_ledger else 1)
    assert (hint.history is None) if with_ledger else (hint.history.experiment_key == "earlier")
    if with_ledger:
        assert hint.sigma == pytest.approx(by_hand()[0], rel=1e-9)
        assert hint.source.startswith("measured on the revenue ledger")
    else:
        assert hint.sigma == 0.44 and "'earlier' on this branch" in hint.source
