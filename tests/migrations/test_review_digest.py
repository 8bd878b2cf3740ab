"""Revision e18c3e4f5a63: review items stored before it get the digest of their frozen row
(the rule of :func:`experiments.review_rows.seen_digest`), an empty copy none; downgrade
drops the column and upgrade backfills again."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from sqlalchemy import inspect, text

from experiments import migrate
from experiments.db import make_engine
from experiments.review_rows import seen_digest

pytestmark = pytest.mark.db

BEFORE = "e18a1c2d3f41"
REVISION = "e18c3e4f5a63"

SEEN = {
    # the analysis's own keys (fixed by snapshot_id) and the moment of observation …
    "alpha": 0.05, "comparisons": [{"variant": "treatment", "p_value": 0.03}],
    "as_of": "2026-11-20T10:00:00+00:00",
    # … and what the digest covers
    "verdict": "win", "snapshot_id": 7, "computed_at": "2026-11-19T09:00:00+00:00",
    "experiment": {"id": 1, "key": "exp", "name": "Träger exp", "status": "running"},
    "plan": {"mde": 0.02}, "analysis_plan": None, "amendments": [], "dataset": None,
    "review": {"needs_decision": ["stopped without a decision"], "changes": []},
}


def _row(connection, table: str, **values) -> None:
    """Insert ``values`` into ``table`` as the schema stands, filling the other required
    columns with a neutral value of their type."""
    for column in inspect(connection).get_columns(table):
        name, kind = column["name"], str(column["type"]).upper()
        if name in values or column["nullable"] or column.get("default") is not None:
            continue
        values[name] = (datetime(2026, 11, 1) if "DATE" in kind or "TIME" in kind
                        else "[]" if "JSON" in kind
                        else 0 if any(t in kind for t in ("INT", "FLOAT", "REAL", "NUMERIC",
                                                             "BOOL"))
                        else "")
    names = ", ".join(values)
    connection.execute(text(f"INSERT INTO {table} ({names}) VALUES "
                            f"({', '.join(':' + n for n in values)})"), values)


def _insert(connection, item_id: int, experiment_id: int, seen: dict) -> None:
    connection.execute(text(
        "INSERT INTO review_item (id, meeting_id, experiment_id, note, decision_rationale, "
        "seen, version, updated_at) VALUES (:id, 1, :experiment_id, '', '', :seen, 1, :now)"),
        {"id": item_id, "experiment_id": experiment_id, "seen": json.dumps(seen),
         "now": datetime(2026, 11, 20)})


def test_upgrade_backfills_each_item_s_digest_and_downgrade_drops_it(scratch_database):
    url = scratch_database()
    migrate.upgrade(url, BEFORE)
    engine = make_engine(url)
    with engine.begin() as connection:
        _row(connection, "driver_node", id=1, name="NRR", kind="root", status="active")
        for experiment_id in (1, 2):
            _row(connection, "experiment", id=experiment_id, key=f"exp-{experiment_id}",
                 node_id=1, status="running", mde=0.02, alpha=0.05, power=0.8,
                 ttv_target_days=14)
        _row(connection, "review_meeting", id=1, iso_week="2026-W47")
        _insert(connection, 1, 1, SEEN)
        _insert(connection, 2, 2, {})
    migrate.upgrade(url, REVISION)
    with engine.connect() as connection:
        digests = dict(connection.execute(text(
            "SELECT id, seen_digest FROM review_item ORDER BY id")).all())
    assert digests == {1: seen_digest(SEEN), 2: None}
    # The rule: the moment and the analysis's keys do not count, the rest does.
    assert seen_digest({**SEEN, "as_of": "2026-11-21T08:00:00+00:00", "alpha": 0.1}) \
        == digests[1]
    assert seen_digest({**SEEN, "experiment": {**SEEN["experiment"], "name": "Renamed"}}) \
        != digests[1]

    migrate.downgrade(url, BEFORE)
    assert "seen_digest" not in {c["name"] for c in inspect(engine).get_columns("review_item")}
    migrate.upgrade(url, REVISION)
    with engine.connect() as connection:
        again = dict(connection.execute(text(
            "SELECT id, seen_digest FROM review_item ORDER BY id")).all())
    assert again == digests
    engine.dispose()
