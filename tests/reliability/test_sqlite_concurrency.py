"""SQLite under concurrent writers (issue 12, "Also deliver"): separate processes doing
read-then-write transactions lose nothing and never see "database is locked"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from experiments.db import make_engine, snapshot_engine, write_engine

ROOT = Path(__file__).resolve().parents[2]
PROCESSES, TRANSACTIONS = 4, 500


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'concurrency.db'}"
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        connection.execute(text("INSERT INTO counter VALUES (1, 0)"))
        connection.execute(text("CREATE TABLE ledger (worker INTEGER, i INTEGER, seen INTEGER, "
                                "PRIMARY KEY (worker, i))"))
    engine.dispose()
    return url


def test_four_processes_of_500_read_then_write_transactions_lose_nothing(sqlite_url):
    workers = [subprocess.Popen([sys.executable, "-m", "tests.reliability.sqlite_workload",
                                 sqlite_url, str(w), str(TRANSACTIONS)],
                                cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for w in range(PROCESSES)]
    outputs = [w.communicate(timeout=300) for w in workers]
    assert [out.strip() for out, _err in outputs] == [f"ok {TRANSACTIONS}"] * PROCESSES, outputs
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 2000
        assert connection.execute(text("SELECT count(*) FROM ledger")).scalar_one() == 2000
        # every transaction saw a different value: none read a stale counter
        distinct = connection.execute(text("SELECT count(DISTINCT seen) FROM ledger")).scalar_one()
        assert distinct == 2000
    engine.dispose()


def test_pragmas_and_transaction_kinds(sqlite_url):
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        pragmas = {name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                   for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")}
    assert pragmas == {"journal_mode": "wal", "busy_timeout": 5000, "foreign_keys": 1,
                       "synchronous": 1}  # 1 = NORMAL

    def in_transaction_after_a_read(kind_of_engine) -> bool:
        with kind_of_engine.connect() as connection:
            connection.execute(text("SELECT n FROM counter"))
            return connection.connection.dbapi_connection.in_transaction

    # a reader takes no lock; a writer holds the write lock from its first statement
    assert in_transaction_after_a_read(engine) is False
    assert in_transaction_after_a_read(write_engine(engine)) is True
    assert in_transaction_after_a_read(snapshot_engine(engine)) is True

    writer = write_engine(engine).connect()
    writer.execute(text("SELECT n FROM counter"))
    other = make_engine(sqlite_url)
    blocked = other.connect()
    blocked.exec_driver_sql("PRAGMA busy_timeout=50")
    with pytest.raises(Exception, match="database is locked"):
        blocked.execute(text("UPDATE counter SET n = n + 1"))
    blocked.rollback()
    # a reader still reads while the writer holds the lock (WAL)
    assert blocked.execute(text("SELECT n FROM counter")).scalar_one() == 0
    writer.rollback()
    writer.close()
    blocked.close()
    other.dispose()
    engine.dispose()


def test_a_rolled_back_write_leaves_nothing(sqlite_url):
    engine = make_engine(sqlite_url)
    with engine.connect() as connection:
        connection.execute(text("UPDATE counter SET n = 7"))
        connection.execute(text("INSERT INTO ledger VALUES (9, 9, 9)"))
        connection.rollback()
        assert connection.execute(text("SELECT n FROM counter")).scalar_one() == 0
        assert connection.execute(text("SELECT count(*) FROM ledger")).scalar_one() == 0
    engine.dispose()
