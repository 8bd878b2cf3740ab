"""The registration hint's reads of the branch: the newest usable sigma found although the
newest snapshots have none (the stored results are read a few at a time, not all at once),
and the enrolment rate of a branch with several experiments read in one query (it was one
query per experiment) with the same answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event
from sqlmodel import Session

from experiments.models import AnalysisSnapshot, Dataset, DriverNode
from experiments.planning import branch_enrolment_rate, branch_history
from tests.factories import make_experiment

pytestmark = pytest.mark.db

DAY = datetime(2026, 11, 2, tzinfo=UTC)


def _lever(session: Session, root, name: str = "Lever") -> DriverNode:
    node = DriverNode(parent_id=root.id, name=name, kind="lever")
    session.add(node)
    session.flush()
    return node


def _snapshot(session: Session, experiment, version: int, sigma: float | None,
              at: datetime) -> None:
    dataset = Dataset(experiment_id=experiment.id, version=version, sha256=f"{version:064x}")
    session.add(dataset)
    session.flush()
    session.add(AnalysisSnapshot(
        experiment_id=experiment.id, dataset_id=dataset.id, verdict="inconclusive",
        computed_at=at,
        result={"control": "control",
                "arms": [{"variant": "control", "nrr": 1.01}],
                "comparisons": [{"variant": "treatment", "sigma_lin": sigma}]}))
    session.flush()


def test_the_newest_usable_sigma_is_found_behind_many_unusable_snapshots(session, admin,
                                                                         root):
    lever = _lever(session, root)
    old = make_experiment(session, "measured", node=lever)
    _snapshot(session, old, 1, 0.31, DAY)
    older = make_experiment(session, "older", node=lever)
    _snapshot(session, older, 1, 0.99, DAY - timedelta(days=1))
    newer = make_experiment(session, "unmeasured", node=lever)
    for version in range(1, 21):  # 20 newer snapshots without a sigma
        _snapshot(session, newer, version, None, DAY + timedelta(hours=version))
    session.commit()
    found = branch_history(session, admin, lever.id)
    assert (found.experiment_key, found.sigma, found.baseline_nrr) == ("measured", 0.31, 1.01)
    assert found.computed_at == DAY


def test_the_branch_enrolment_rate_reads_every_experiment_s_uploads_at_once(
        session, admin, root, db_engine):
    lever = _lever(session, root)
    uploads = {  # experiment → (day, rows) per version: rate = growth / days × 7
        "early": [(0, 100), (7, 450)],      # 350 a week, but its last upload is older
        "late": [(0, 200), (2, 400), (9, 1100)],  # last two: 700 rows over 7 days → 700
        "single": [(10, 5000)],            # one upload: undated
        "shrunk": [(0, 900), (12, 300)],   # fewer rows: no rate
    }
    for key, versions in uploads.items():
        experiment = make_experiment(session, key, node=lever)
        for version, (day, rows) in enumerate(versions, start=1):
            session.add(Dataset(experiment_id=experiment.id, version=version,
                                sha256=f"{key}{version}".ljust(64, "0"), row_count=rows,
                                uploaded_at=DAY + timedelta(days=day)))
    session.commit()
    statements: list[str] = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(db_engine, "before_cursor_execute", record)
    try:
        rate = branch_enrolment_rate(session, admin, lever.id)
    finally:
        event.remove(db_engine, "before_cursor_execute", record)
    assert rate == pytest.approx(700.0)  # "late": its last upload is the newest dated one
    assert sum("FROM dataset" in s for s in statements) == 1
