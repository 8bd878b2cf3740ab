"""H7: three gaps of the warehouse refresh left after H1.

1. A ledger query's ``timestamptz`` period, customer_since (or any timestamp column) was
   cut to a date in Python in the warehouse session's time zone. It is now its date (and
   month) in UTC, as H1 made an experiment's ``enrolled_on``; a plain ``timestamp`` keeps
   its own date. (DuckDB here has no ICU: its sessions are always UTC.)
2. The ledger refresh and the experiment refresh job read the data source (and the
   experiment) before a pull that may take minutes, kept a transaction of the app's
   database open across it, and wrote the old name afterwards. Now the read transaction
   ends before the pull, and what is stored is read again after it.
3. A ledger pull moves every row through the app: when the time limit stops it, the
   message says how many rows had come and which setting to raise.

The app's database is SQLite or PostgreSQL (the PostgreSQL pass); the warehouse is a
DuckDB file or a scratch schema on the PostgreSQL server.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, select

from experiments import warehouse as wh
from experiments.db import SQLITE_BUSY_TIMEOUT_MS, write_engine
from experiments.ledger import versions
from experiments.models import Dataset, Experiment
from experiments.warehouse_models import DataSource, WarehouseQuery
from tests.factories import make_experiment
from tests.warehouse.test_h1_trust_gaps import _zoned
from tests.warehouse.test_ledger_and_jobs import ENV, _ledger_query
from tests.warehouse.test_ledger_and_jobs import ledger_warehouse as ledger_warehouse

# ------------------------------------------------------------ 1. ledger instants in UTC

#: Two accounts whose period and customer_since are instants 30 minutes from midnight
#: UTC: in Berlin (UTC+2 then) the first falls on the next day and month, in Los Angeles
#: (UTC-7) the second on the day and month before.
LEDGER_INSTANTS = """
CREATE TABLE ledger AS SELECT * FROM (VALUES
  ('a1', TIMESTAMPTZ '2025-06-30 23:30:00+00', 100.00,
   TIMESTAMPTZ '2025-03-31 23:30:00+00', TIMESTAMP '2025-06-30 23:30:00',
   TIMESTAMP '2025-03-31 23:30:00', TIMESTAMPTZ '2025-05-31 23:30:00+00'),
  ('a2', TIMESTAMPTZ '2025-07-01 00:30:00+00', 200.00,
   TIMESTAMPTZ '2025-04-01 00:30:00+00', TIMESTAMP '2025-07-01 00:30:00',
   TIMESTAMP '2025-04-01 00:30:00', TIMESTAMPTZ '2025-06-01 00:30:00+00')
) AS t(account_id, period, start_mrr, customer_since, local_period, local_since, signed)
"""

#: The rows as their UTC dates give them (written by hand, not by the code under test).
INSTANT_CSV = ("account_id,period,start_mrr,customer_since,signed\n"
               "a1,2025-06,100.00,2025-03-31,2025-05-31\n"
               "a2,2025-07,200.00,2025-04-01,2025-06-01\n")
#: Plain timestamps: their own dates, in every zone.
LOCAL_CSV = ("account_id,period,start_mrr,customer_since\n"
             "a1,2025-06,100.00,2025-03-31\n"
             "a2,2025-07,200.00,2025-04-01\n")


@pytest.fixture
def pg_ledger(pg_warehouse):
    url, _schema = pg_warehouse
    admin = create_engine(url)
    with admin.begin() as connection:
        connection.execute(text(LEDGER_INSTANTS))
    admin.dispose()
    return url


def _pg_source() -> DataSource:
    return DataSource(name="pg", url_env=ENV, dialect="postgresql")


def pg_ledger_query(db_engine, sql: str) -> int:
    """A committed ledger query on a PostgreSQL source named "pg"; its id."""
    with Session(db_engine) as session:
        source = _pg_source()
        session.add(source)
        session.flush()
        query = WarehouseQuery(source_id=source.id, target="ledger", sql_text=sql)
        session.add(query)
        session.commit()
        return query.id


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Los_Angeles", "UTC"])
def test_ledger_instants_are_their_utc_dates_in_any_session_zone(pg_ledger, zone):
    url = _zoned(pg_ledger, zone)

    instants, dimensions = wh.pull_ledger(
        _pg_source(), "SELECT account_id, period, start_mrr, customer_since, signed "
                      "FROM ledger ORDER BY account_id", environ={ENV: url})
    local, _ = wh.pull_ledger(
        _pg_source(), "SELECT account_id, local_period AS period, start_mrr, "
                      "local_since AS customer_since FROM ledger ORDER BY account_id",
        environ={ENV: url})

    # period, customer_since and a dimension of timestamptz: the UTC date and month
    assert instants.decode() == INSTANT_CSV
    assert dimensions == ("signed",)
    assert local.decode() == LOCAL_CSV


def test_ledger_instants_on_duckdb_are_their_utc_dates(tmp_path):
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql(LEDGER_INSTANTS)
    engine.dispose()
    source = DataSource(name="duck", url_env=ENV, dialect="duckdb")

    data, _ = wh.pull_ledger(source, "SELECT account_id, period, start_mrr, customer_since, "
                                     "signed FROM ledger ORDER BY account_id",
                             environ={ENV: url})

    assert data.decode() == INSTANT_CSV


# ------------------------------------------------- 2. nothing held, names read after the pull


def _rename_and_lock(db_engine, table, row_id: int, name: str) -> str | None:
    """From another session, rename a row of ``table`` (committed) after checking that the
    refresh holds nothing of the app's database: on PostgreSQL an exclusive lock of the
    tables it reads is granted at once (``NOWAIT``; a transaction left open across the
    pull holds them), on SQLite the write waits at most 0.3 s (the write lock is free).
    Returns what got in the way, or ``None``."""
    if db_engine.dialect.name == "postgresql":
        with db_engine.connect() as connection:
            try:
                connection.exec_driver_sql(
                    "LOCK TABLE data_source, warehouse_query, experiment "
                    "IN ACCESS EXCLUSIVE MODE NOWAIT")
            except OperationalError as error:
                return str(error.orig)
            finally:
                connection.rollback()
    with Session(db_engine) as other:
        raw = other.connection().connection.dbapi_connection  # kept across the commit
        if db_engine.dialect.name == "sqlite":
            raw.execute("PRAGMA busy_timeout = 300")
        try:
            other.get(table, row_id).name = name
            other.commit()
        except OperationalError as error:
            other.rollback()
            return str(error.orig)
        finally:
            if db_engine.dialect.name == "sqlite":
                raw.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    return None


def test_a_source_renamed_during_the_ledger_pull_shows_its_new_name(
        db_engine, ledger_warehouse, monkeypatch):
    url, _data = ledger_warehouse
    query_id = _ledger_query(db_engine, "SELECT * FROM ledger")
    with Session(db_engine) as session:
        source_id = session.get(WarehouseQuery, query_id).source_id
    real_pull = wh.pull_ledger
    blocked: list[str | None] = []

    def pull(*args, **kwargs):
        result = real_pull(*args, **kwargs)
        # The rows have come; the source is renamed before they are stored.
        blocked.append(_rename_and_lock(db_engine, DataSource, source_id, "duck (EU)"))
        return result

    monkeypatch.setattr(wh, "pull_ledger", pull)
    # A writer's engine (as the web's POST requests): on SQLite its transactions take the
    # write lock at their first statement.
    outcome = wh.refresh_ledger(write_engine(db_engine), query_id, actor_id=None,
                                environ={ENV: url})

    assert blocked == [None]
    assert outcome.status == "ok", outcome.message
    assert re.fullmatch(r"Ledger version stored from duck \(EU\) \([\d,]+ rows\)\.",
                        outcome.message), outcome.message
    with Session(db_engine) as session:
        assert versions(session)[0].filename == "duck (EU) (warehouse query)"
        assert session.get(WarehouseQuery, query_id).last_message == outcome.message


@pytest.fixture
def experiment_query(db_engine, duckdb_url):
    """A running experiment with a committed query on the DuckDB ``accounts`` table."""
    return (*duck_experiment_query(db_engine, "split", name="Split"), duckdb_url)


def duck_experiment_query(db_engine, key: str, **experiment) -> tuple[int, int, int]:
    """A running experiment ``key`` (``make_experiment``'s options) with a committed query
    on the DuckDB ``accounts`` table: the query's, the experiment's and the source's ids."""
    with Session(db_engine) as session:
        made = make_experiment(session, key, **experiment)
        source = DataSource(name="duck", url_env=ENV, dialect="duckdb")
        session.add(source)
        session.flush()
        query = WarehouseQuery(source_id=source.id, experiment_id=made.id,
                               sql_text="SELECT * FROM accounts")
        session.add(query)
        session.commit()
        return query.id, made.id, source.id


def test_a_source_and_experiment_renamed_during_the_experiment_pull(
        db_engine, experiment_query, monkeypatch):
    query_id, experiment_id, source_id, url = experiment_query
    real_pull = wh.pull_experiment
    blocked: list[str | None] = []

    def pull(*args, **kwargs):
        pulled = real_pull(*args, **kwargs)
        blocked.append(_rename_and_lock(db_engine, DataSource, source_id, "duck (EU)"))
        blocked.append(_rename_and_lock(db_engine, Experiment, experiment_id,
                                        "Split pricing test"))
        return pulled

    monkeypatch.setattr(wh, "pull_experiment", pull)
    outcome = wh.run_refresh(write_engine(db_engine), query_id, environ={ENV: url})

    assert blocked == [None, None]
    assert outcome.status == "ok", outcome.message
    with Session(db_engine) as session:
        dataset = session.get(Dataset, outcome.dataset_id)
        assert dataset.filename == "duck (EU) (warehouse query)"
        assert session.get(Experiment, experiment_id).name == "Split pricing test"
        assert session.get(WarehouseQuery, query_id).last_status == "ok"


def test_a_caller_session_kept_across_the_pull_stores_the_new_source_name(
        db_engine, experiment_query, monkeypatch):
    """refresh_experiment on the caller's session (kept open across the pull): the source
    and experiment loaded before it are read again under the experiment's lock."""
    query_id, _experiment_id, source_id, url = experiment_query
    real_pull = wh.pull_experiment

    def pull(*args, **kwargs):
        pulled = real_pull(*args, **kwargs)
        with Session(db_engine) as other:
            other.get(DataSource, source_id).name = "duck (EU)"
            other.commit()
        return pulled

    monkeypatch.setattr(wh, "pull_experiment", pull)
    with Session(db_engine, expire_on_commit=False) as session:
        query = session.get(WarehouseQuery, query_id)
        outcome = wh.refresh_experiment(session, query, actor=None, environ={ENV: url})
        session.commit()

    assert outcome.status == "ok", outcome.message
    with Session(db_engine) as session:
        assert session.get(Dataset, outcome.dataset_id).filename == "duck (EU) (warehouse query)"


def test_an_experiment_decided_during_the_pull_gets_no_new_version(
        db_engine, experiment_query, monkeypatch):
    query_id, experiment_id, _source_id, url = experiment_query
    real_pull = wh.pull_experiment

    def pull(*args, **kwargs):
        pulled = real_pull(*args, **kwargs)
        with Session(db_engine) as other:
            other.get(Experiment, experiment_id).status = "decided"
            other.commit()
        return pulled

    monkeypatch.setattr(wh, "pull_experiment", pull)
    outcome = wh.run_refresh(db_engine, query_id, environ={ENV: url})

    assert outcome.status == "failed"
    assert outcome.message == ("The experiment is decided: data is read while it is running "
                               "or stopped. It changed while the warehouse was read; nothing "
                               "was stored.")
    with Session(db_engine) as session:
        assert session.exec(select(Dataset)).all() == []
        assert session.get(WarehouseQuery, query_id).last_message == outcome.message


# ------------------------------------------------------------ 3. a ledger pull's time limit

#: 400,000 rows, every 1,000th pausing 20 ms: a chunk of 50,000 rows (one fetch, within
#: the statement timeout) takes ~1 s, the whole pull ~8 s.
SLOW_LEDGER = ("SELECT 'a' || g AS account_id, '2025-01' AS period, 1.00 AS start_mrr "
               "FROM generate_series(1, 400000) AS g "
               "WHERE CASE WHEN g % 1000 = 0 THEN pg_sleep(0.02) IS NOT NULL ELSE true END")


def test_a_ledger_pull_stopped_by_the_time_limit_says_which_setting_to_raise(
        db_engine, pg_warehouse):
    url, _schema = pg_warehouse
    query_id = pg_ledger_query(db_engine, SLOW_LEDGER)

    outcome = wh.refresh_ledger(db_engine, query_id, actor_id=None,
                                environ={ENV: url, wh.LEDGER_TIMEOUT_VARIABLE: "2"})

    assert outcome.status == "failed"
    assert outcome.message.startswith(
        "The warehouse refused the query: the query ran longer than 2 s and was stopped"
    ), outcome.message
    match = re.search(r"The ledger query had returned ([\d,]+) rows by then: a ledger "
                      r"refresh reads every row, which takes far longer than an experiment's "
                      r"sums\. Raise NRRLAB_WAREHOUSE_LEDGER_TIMEOUT \(seconds; now 2\) where the "
                      r"refresh jobs run, or return fewer rows \(one per account and period, "
                      r"fewer periods\)\.$", outcome.message)
    assert match, outcome.message
    assert 0 < int(match[1].replace(",", "")) < 400_000
    with Session(db_engine) as session:
        assert versions(session) == []


@pytest.mark.parametrize("value", ["abc", "0", "nan", "-5", "100000"])
def test_a_bad_time_limit_setting_is_named(db_engine, ledger_warehouse, value):
    url, _data = ledger_warehouse
    query_id = _ledger_query(db_engine, "SELECT * FROM ledger")

    outcome = wh.refresh_ledger(db_engine, query_id, actor_id=None,
                                environ={ENV: url, wh.LEDGER_TIMEOUT_VARIABLE: value})

    assert outcome.status == "failed"
    assert outcome.message == (f'NRRLAB_WAREHOUSE_LEDGER_TIMEOUT must be a number of seconds '
                               f'from 1 '
                               f'to 86400, not "{value}".')
    with Session(db_engine) as session:
        assert versions(session) == []


def test_ledger_pulls_and_experiment_refreshes_have_their_own_time_limits():
    # A ledger pull brings every row through the worker (~30-50 s per million on a loaded
    # PostgreSQL): the experiments' 120 s stopped ledgers of ~3M rows, inside the 5M bound.
    assert wh.refresh_timeout({}) == 120
    assert wh.refresh_timeout({}, ledger=True) == 900
    assert wh.refresh_timeout({wh.TIMEOUT_VARIABLE: "30"}, ledger=True) == 900
    assert wh.refresh_timeout({wh.LEDGER_TIMEOUT_VARIABLE: "3600"}, ledger=True) == 3600
    assert wh.refresh_timeout({wh.LEDGER_TIMEOUT_VARIABLE: "3600"}) == 120
