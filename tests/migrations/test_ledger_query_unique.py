"""Revision e18a1c2d3f41: a database holding several ledger queries (stored before the
unique index) is upgraded to one, the newest, and the index then refuses a second."""

from __future__ import annotations

from datetime import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from experiments import migrate
from experiments.db import make_engine

pytestmark = pytest.mark.db

BEFORE = "d16b3c7e9a14"
REVISION = "e18a1c2d3f41"


def _insert_source(connection) -> None:
    """Data source 1, which the queries read from."""
    connection.execute(text(
        "INSERT INTO data_source (id, name, url_env, dialect, created_at, version) "
        "VALUES (1, 'prod', 'NRRLAB_TEST_NOT_SET', 'duckdb', :now, 1)"),
        {"now": datetime(2026, 11, 1)})


def _insert_query(connection, *, query_id: int, target: str, experiment_id: int | None,
                  sql: str, updated_at: datetime) -> None:
    connection.execute(text(
        "INSERT INTO warehouse_query (id, source_id, target, experiment_id, sql_text, "
        "schedule, last_status, last_message, updated_at, version) VALUES (:id, 1, :target, "
        ":experiment_id, :sql, 'manual', 'never', '', :updated_at, 1)"),
        {"id": query_id, "target": target, "experiment_id": experiment_id, "sql": sql,
         "updated_at": updated_at})


def test_upgrade_keeps_the_newest_ledger_query_and_the_index_refuses_a_second(
        scratch_database):
    url = scratch_database()
    migrate.upgrade(url, BEFORE)
    engine = make_engine(url)
    with engine.begin() as connection:
        _insert_source(connection)
        # The newest by updated_at has neither the highest nor the lowest id.
        _insert_query(connection, query_id=1, target="ledger", experiment_id=None,
                      sql="select 1 as oldest", updated_at=datetime(2026, 11, 2))
        _insert_query(connection, query_id=2, target="ledger", experiment_id=None,
                      sql="select 2 as newest", updated_at=datetime(2026, 11, 20))
        _insert_query(connection, query_id=3, target="ledger", experiment_id=None,
                      sql="select 3 as middle", updated_at=datetime(2026, 11, 10))
    migrate.upgrade(url, REVISION)
    with engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT id, sql_text FROM warehouse_query WHERE target = 'ledger'")).all()
    assert [tuple(r) for r in rows] == [(2, "select 2 as newest")]

    with pytest.raises(IntegrityError), engine.begin() as connection:
        _insert_query(connection, query_id=4, target="ledger", experiment_id=None,
                      sql="select 4", updated_at=datetime(2026, 11, 21))

    migrate.downgrade(url, BEFORE)  # the index goes; a second ledger query is storable again
    with engine.begin() as connection:
        _insert_query(connection, query_id=4, target="ledger", experiment_id=None,
                      sql="select 4", updated_at=datetime(2026, 11, 21))
        count = connection.execute(text(
            "SELECT count(*) FROM warehouse_query WHERE target = 'ledger'")).scalar_one()
    assert count == 2
    engine.dispose()


def test_upgrade_with_one_or_no_ledger_query_changes_no_row(scratch_database):
    url = scratch_database()
    migrate.upgrade(url, BEFORE)
    engine = make_engine(url)
    with engine.begin() as connection:
        _insert_source(connection)
        _insert_query(connection, query_id=7, target="ledger", experiment_id=None,
                      sql="select 7", updated_at=datetime(2026, 11, 2))
    migrate.upgrade(url, REVISION)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id FROM warehouse_query")).scalars().all()
    assert rows == [7]
    engine.dispose()
