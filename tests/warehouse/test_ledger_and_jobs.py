"""The revenue ledger read from a warehouse query, and refreshes as jobs on a schedule."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, select

from experiments import warehouse as wh
from experiments.jobs import make_jobs
from experiments.ledger import current_figures, versions
from experiments.ledger_import import store_ledger_upload
from experiments.models import Dataset, utcnow
from experiments.warehouse_models import DataSource, WarehouseQuery
from tests.factories import make_experiment
from tests.ledger_gen import write_csv

ENV = "NRRLAB_TEST_WAREHOUSE_URL"


@pytest.fixture
def ledger_warehouse(tmp_path):
    """A DuckDB file whose ``ledger`` table holds a generated §3b ledger; its URL and CSV."""
    path = tmp_path / "ledger.csv"
    write_csv(path, n_accounts=300, months=14, seed=5)
    url = f"duckdb:///{tmp_path / 'ledger.duckdb'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        # period as text (YYYY-MM), customer_since as a DATE: as a warehouse would hold them
        connection.exec_driver_sql(
            f"CREATE TABLE ledger AS SELECT * FROM read_csv('{path}', header = true, "
            "types = {'period': 'VARCHAR', 'customer_since': 'DATE'})")
    engine.dispose()
    return url, path.read_bytes()


def _duck_source(session: Session) -> DataSource:
    """The data source whose URL is in ``ENV`` (flushed: it has its id)."""
    source = DataSource(name="duck", url_env=ENV, dialect="duckdb")
    session.add(source)
    session.flush()
    return source


def _ledger_query(db_engine, sql: str) -> int:
    with Session(db_engine) as session:
        source = _duck_source(session)
        query = WarehouseQuery(source_id=source.id, target="ledger", sql_text=sql)
        session.add(query)
        session.commit()
        return query.id


def test_ledger_from_a_query_has_the_figures_of_the_same_rows_uploaded(db_engine,
                                                                       ledger_warehouse):
    url, data = ledger_warehouse
    # The same rows uploaded as a file (L16's path) are the reference.
    store_ledger_upload(db_engine, data, dimensions=("plan", "region", "size"), actor_id=None,
                        filename="ledger.csv")
    with Session(db_engine) as session:
        expected = current_figures(session)
    query_id = _ledger_query(db_engine, "SELECT * FROM ledger")

    outcome = wh.refresh_ledger(db_engine, query_id, actor_id=None, environ={ENV: url})

    assert outcome.status == "ok", outcome.message
    with Session(db_engine) as session:
        got = current_figures(session)
        history = versions(session)
        query = session.get(WarehouseQuery, query_id)
    assert [v.filename for v in history][:2] == ["duck (warehouse query)", "ledger.csv"]
    assert history[0].dimensions == ("plan", "region", "size")
    assert got == expected
    assert query.last_status == "ok" and "rows" in query.last_message


def test_ledger_rows_breaking_the_contract_are_reported_by_query_row(db_engine,
                                                                     ledger_warehouse):
    url, _data = ledger_warehouse
    query_id = _ledger_query(
        db_engine, "SELECT account_id, period, start_mrr FROM ledger "
                   "UNION ALL SELECT 'x', '2025-13', 10")

    outcome = wh.refresh_ledger(db_engine, query_id, actor_id=None, environ={ENV: url})

    assert outcome.status == "failed"
    assert "line n = the query's row n − 1" in outcome.message and "period" in outcome.message
    with Session(db_engine) as session:
        assert versions(session) == []


def test_ledger_query_over_the_row_bound_is_refused(db_engine, ledger_warehouse):
    url, _data = ledger_warehouse
    query_id = _ledger_query(db_engine, "SELECT * FROM ledger")

    outcome = wh.refresh_ledger(db_engine, query_id, actor_id=None, environ={ENV: url},
                                max_rows=100)

    assert outcome.status == "failed" and "more than 100 rows" in outcome.message


def test_due_queries_are_refreshed_by_the_job(db_engine, tmp_path, duckdb_url, monkeypatch):
    monkeypatch.setenv(ENV, duckdb_url)
    with Session(db_engine) as session:
        source = _duck_source(session)
        hourly = make_experiment(session, "hourly")
        manual = make_experiment(session, "manual")
        due = WarehouseQuery(source_id=source.id, experiment_id=hourly.id, schedule="hourly",
                             sql_text="SELECT * FROM accounts")
        session.add(due)
        session.add(WarehouseQuery(source_id=source.id, experiment_id=manual.id,
                                   sql_text="SELECT * FROM accounts"))
        session.commit()
        due_id = due.id
    jobs = make_jobs(db_engine, tmp_path / "instance", "immediate")

    assert jobs.queue_due_warehouse_refreshes() == [due_id]

    with Session(db_engine) as session:
        query = session.get(WarehouseQuery, due_id)
        assert query.last_status == "ok", query.last_message
        assert len(session.exec(select(Dataset)).all()) == 1
        # Refreshed just now: due again only after its hour.
        assert wh.due_queries(session) == []
        assert wh.due_queries(session, utcnow() + timedelta(minutes=60)) == [due_id]


def test_cli_refreshes_a_query_and_reports_the_warehouses_message(
    db_engine, database_url, duckdb_url, monkeypatch
):
    from click.testing import CliRunner

    from experiments.cli import main

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv(ENV, duckdb_url)
    with Session(db_engine) as session:
        source = _duck_source(session)
        good = make_experiment(session, "cli-good")
        bad = make_experiment(session, "cli-bad")
        session.add(WarehouseQuery(source_id=source.id, experiment_id=good.id,
                                   sql_text="SELECT * FROM accounts"))
        session.add(WarehouseQuery(source_id=source.id, experiment_id=bad.id,
                                   sql_text="SELECT * FROM nowhere"))
        session.commit()
    runner = CliRunner()

    listed = runner.invoke(main, ["warehouse", "sources"])
    assert listed.exit_code == 0 and f"${ENV}\t{ENV} is set (duckdb)" in listed.output
    ok = runner.invoke(main, ["warehouse", "refresh", "--experiment", "cli-good"])
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("ok: Dataset version 1: 800 accounts")
    failed = runner.invoke(main, ["warehouse", "refresh", "--experiment", "cli-bad"])
    assert failed.exit_code == 1 and "nowhere" in failed.stderr
    usage = runner.invoke(main, ["warehouse", "refresh"])
    assert usage.exit_code == 2 and "exactly one of --experiment KEY or --ledger" in usage.stderr
