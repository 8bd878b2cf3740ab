"""Review of SQLite's upload writer (issue 18, fourth pass): what a user would notice.

Every stored value equals what ``read_accounts`` gives, on every column layout, at the
contract's extremes, and the export bundle reads back the same file; the cheaper
multi-row INSERT works on an SQLite built with a low parameter limit; the upload job
works on an in-memory database; a failing writer leaves nothing and a clear job
message; the page cache is given back after a failed insert; a process forked while a
thread waits for the write lock does not keep that wait announced; a wait is announced
beside its own database only.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

import numpy as np
import pytest
from sqlalchemy import text
from sqlmodel import Session, SQLModel, func, select

import experiments.imports as imports
from experiments import sqlite_waiters
from experiments.accounts_csv import MAX_CENTS, read_accounts
from experiments.db import make_engine
from experiments.export_bundle import _account_rows, account_lines
from experiments.imports import import_accounts, run_upload_job
from experiments.models import AccountRow, Dataset, UploadJob
from experiments.setup import ensure_defaults
from tests.experiments.test_upload_jobs import make_experiment, plain_csv, spool
from tests.experiments.test_upload_sqlite_rows import full_csv

pytestmark = pytest.mark.usefixtures("sqlite_only")


@pytest.fixture
def sqlite_only(database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's row writer")


REQUIRED = "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr"
BIGGEST = f"{(MAX_CENTS - 1) // 100}.{(MAX_CENTS - 1) % 100:02d}"  # 99999999999.99


def layout_csv(optional: tuple[str, ...], rows: int = 700) -> bytes:
    """Ascending ids (multi-row statements), money at the contract's largest and
    smallest, blanks in every optional column present."""
    values = {
        "segment": lambda i: "" if i % 3 == 0 else f"seg{i % 4}",
        "days_to_value": lambda i: "" if i % 4 == 0 else ("0" if i % 5 == 0 else f"{i % 50}.25"),
        "days_observed": lambda i: "" if i % 6 == 0 else f"{100 + i % 400}",
        "pre_start_mrr": lambda i: "" if i % 7 == 0 else (BIGGEST if i % 2 else "0.01"),
        "pre_end_mrr": lambda i: "" if i % 7 == 0 else ("0" if i % 3 else BIGGEST),
        "enrolled_on": lambda i: "" if i % 8 == 0 else f"20{10 + i % 20}-0{1 + i % 9}-1{i % 10}",
    }
    lines = [",".join((REQUIRED, *optional))]
    for i in range(rows):
        start = BIGGEST if i % 2 else "0.01"
        loss = "0.01" if i % 2 else "0"
        fields = [f"id{i:06d}", "control" if i % 2 else "treatment", start,
                  BIGGEST if i % 9 == 0 else "0", loss, "0"]
        lines.append(",".join(fields + [values[name](i) for name in optional]))
    return ("\n".join(lines) + "\n").encode()


def _expected(table, attribute: str) -> list:
    values = getattr(table, attribute)
    if values is None:
        return [None] * len(table)
    if attribute == "enrolled_on":
        return [None if np.isnat(v) else v.astype(object) for v in values]
    if values.dtype.kind == "f":
        as_int = attribute.endswith("_cents")
        return [None if v != v else (int(v) if as_int else v) for v in values.tolist()]
    return [v or None if attribute == "segment" else v for v in values.tolist()]


ATTRIBUTES = ("account_id", "variant", "start_cents", "expansion_cents", "contraction_cents",
              "churned_cents", "segment", "days_to_value", "days_observed", "pre_start_cents",
              "pre_end_cents", "enrolled_on")


def assert_stored_as_read(session, dataset_id: int, table) -> None:
    r = AccountRow
    stored = session.exec(select(*(getattr(r, a) for a in ATTRIBUTES))
                          .where(r.dataset_id == dataset_id).order_by(r.id)).all()
    for position, attribute in enumerate(ATTRIBUTES):
        got = [row[position] for row in stored]
        assert got == _expected(table, attribute), attribute
    # Cents are INTEGER (exact), never REAL; blanks and absent columns NULL, never '' or 0.
    kinds = session.execute(text(
        "SELECT DISTINCT typeof(start_cents), typeof(pre_start_cents), typeof(pre_end_cents),"
        " typeof(segment), typeof(days_to_value) FROM account_row WHERE dataset_id = :d"),
        {"d": dataset_id}).all()
    for start, pre_start, pre_end, segment, days in kinds:
        assert start == "integer"
        assert {pre_start, pre_end} <= {"integer", "null"}
        assert segment in ("text", "null") and days in ("real", "null")
    assert session.execute(text(
        "SELECT count(*) FROM account_row WHERE dataset_id = :d AND segment = ''"),
        {"d": dataset_id}).scalar() == 0


LAYOUTS = {
    "required only": (),
    "segment": ("segment",),
    "days": ("days_to_value",),
    "pre-period": ("pre_start_mrr", "pre_end_mrr"),
    "issue 15 without segment": ("days_observed", "pre_start_mrr", "pre_end_mrr",
                                 "enrolled_on"),
    "every column": ("segment", "days_to_value", "days_observed", "pre_start_mrr",
                     "pre_end_mrr", "enrolled_on"),
}


@pytest.mark.parametrize("optional", LAYOUTS.values(), ids=LAYOUTS.keys())
def test_every_layout_is_stored_as_read_accounts_gives_it(session, optional):
    experiment = make_experiment(session)
    data = layout_csv(optional)
    table = read_accounts(data, variants=["control", "treatment"])
    assert int(table.start_cents.max()) == MAX_CENTS - 1
    report = import_accounts(session, experiment, data, filename="l.csv", actor=None)
    session.commit()
    assert_stored_as_read(session, report.dataset.id, table)


def test_a_low_parameter_limit_of_the_sqlite_build_is_respected(session):
    # SQLite before 3.32 allows 999 parameters a statement (SQLITE_MAX_VARIABLE_NUMBER);
    # Python links the system's library, so a 500-row statement of 12 columns (6,000)
    # must not be what an ascending file needs.
    experiment = make_experiment(session)
    data = layout_csv(LAYOUTS["every column"], rows=1234)
    raw = session.connection().connection.driver_connection
    limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    try:
        report = import_accounts(session, experiment, data, filename="l.csv", actor=None)
        session.commit()
    finally:
        raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, limit)
    assert_stored_as_read(session, report.dataset.id,
                          read_accounts(data, variants=["control", "treatment"]))


def test_the_export_bundle_gives_back_the_uploaded_file(db_engine, session, tmp_path):
    # Through the background job (the overlapped writer) and ids in random order.
    experiment = make_experiment(session)
    data = full_csv(3_000, shuffled=True)[0]
    job_id = spool(session, experiment, tmp_path, data, "full.csv")
    run_upload_job(db_engine, job_id, tmp_path)
    session.expire_all()
    job = session.get(UploadJob, job_id)
    assert job.state == "done", job.message
    exported = "".join(account_lines(_account_rows(session, job.dataset_id))).encode()
    back = read_accounts(exported, variants=["control", "treatment"])
    original = read_accounts(data, variants=["control", "treatment"])
    for attribute in ("account_id", "variant", "start_cents", "expansion_cents",
                      "contraction_cents", "churned_cents", "segment"):
        assert getattr(back, attribute).tolist() == getattr(original, attribute).tolist()
    np.testing.assert_array_equal(back.days_to_value, original.days_to_value)
    assert_stored_as_read(session, job.dataset_id, original)


def test_an_upload_job_on_an_in_memory_database_is_stored(tmp_path):
    # Each connection to ':memory:' is a database of its own: the rows cannot be written
    # on a second connection there.
    engine = make_engine("sqlite://")
    try:
        SQLModel.metadata.create_all(engine)
        with Session(engine, expire_on_commit=False) as session:
            ensure_defaults(session)
            session.commit()
            experiment = make_experiment(session)
            job_id = spool(session, experiment, tmp_path, plain_csv(3_000), "m.csv")
        run_upload_job(engine, job_id, tmp_path)
        with Session(engine) as session:
            job = session.get(UploadJob, job_id)
            assert (job.state, job.message) == ("done", "")
            assert session.exec(select(func.count()).select_from(AccountRow)).one() == 3_000
    finally:
        engine.dispose()


def test_a_failing_writer_keeps_nothing_and_fails_the_job(db_engine, session, tmp_path,
                                                           monkeypatch):
    monkeypatch.setattr(imports, "STORE_CHUNK", 500)
    real, calls = imports.bulk_insert_rows, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        real(*args, **kwargs)

    monkeypatch.setattr(imports, "bulk_insert_rows", failing)
    experiment = make_experiment(session)
    job_id = spool(session, experiment, tmp_path, plain_csv(5_000), "w.csv")
    run_upload_job(db_engine, job_id, tmp_path)
    session.expire_all()
    job = session.get(UploadJob, job_id)
    assert job.state == "failed" and "nothing from it was kept" in job.message
    assert len(calls) == 3
    assert session.exec(select(func.count()).select_from(Dataset)).one() == 0
    assert session.exec(select(func.count()).select_from(AccountRow)).one() == 0


def test_the_page_cache_is_given_back_when_an_insert_fails(session):
    from dataclasses import replace

    from experiments.datasets import bulk_insert_rows

    experiment = make_experiment(session)
    report = import_accounts(session, experiment, plain_csv(600), filename="a.csv",
                             actor=None)
    session.commit()
    raw = session.connection().connection.driver_connection
    before = raw.execute("PRAGMA cache_size").fetchone()[0]
    table = read_accounts(plain_csv(600), variants=["control", "treatment"])
    twice = replace(table, account_id=np.array(["a1"] * len(table), dtype=object))
    with pytest.raises(sqlite3.IntegrityError):
        bulk_insert_rows(session, report.dataset.id, twice)
    assert raw.execute("PRAGMA cache_size").fetchone()[0] == before
    session.rollback()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork")
def test_a_fork_does_not_keep_a_threads_wait_announced(tmp_path):
    # A process forked (gunicorn, a job worker) while one of its threads waits for the
    # write lock must not hold that announcement for its whole life: every long writer
    # would then pause for nothing after each transaction.
    database = str(tmp_path / "f.db")
    inside, leave = threading.Event(), threading.Event()

    def announce():
        with sqlite_waiters.announced(database):
            inside.set()
            leave.wait(5)

    waiter = threading.Thread(target=announce)
    waiter.start()
    assert inside.wait(5)
    ready, said = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child only lives on for a while
        # os.fork has returned here, so the child's after-fork hooks have run: say so. (The
        # parent checked too early otherwise, before a busy machine ran the child at all.)
        os.write(said, b"x")
        time.sleep(3)
        os._exit(0)
    try:
        assert os.read(ready, 1) == b"x"
        leave.set()
        waiter.join()
        with sqlite_waiters.Watch(database) as watch:
            assert not watch.someone_waiting()
    finally:
        os.kill(child, 9)
        os.waitpid(child, 0)
        os.close(ready)
        os.close(said)


def test_an_announced_wait_costs_little(tmp_path):
    # Every write transaction of the app announces itself: open, flock, close.
    database = str(tmp_path / "c.db")
    began = time.process_time()
    for _ in range(2_000):
        with sqlite_waiters.announced(database):
            pass
    assert (time.process_time() - began) / 2_000 < 100e-6  # measured ~4 µs


def test_a_wait_is_announced_for_its_own_database_only(tmp_path, monkeypatch):
    # Two databases in one process, one named relatively and by a URL with query
    # arguments: each engine announces on the file beside its own database.
    monkeypatch.chdir(tmp_path)
    first = make_engine("sqlite:///one.db?timeout=3")
    second = make_engine(f"sqlite:///{tmp_path / 'two.db'}")
    try:
        with first.connect() as connection:
            raw = connection.connection.driver_connection
            assert sqlite_waiters.database_file(raw) == str(tmp_path / "one.db")
        inside, leave = threading.Event(), threading.Event()

        def save_on_first():
            with first.begin() as connection:  # the first write announces, then waits
                connection.execute(text("CREATE TABLE IF NOT EXISTS t (x)"))
                inside.set()
                leave.wait(5)

        with sqlite_waiters.Watch(str(tmp_path / "one.db")) as one, \
                sqlite_waiters.Watch(str(tmp_path / "two.db")) as two:
            blocker = sqlite3.connect(tmp_path / "one.db", isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # holds the write lock: the save waits
            saver = threading.Thread(target=save_on_first)
            saver.start()
            deadline = time.monotonic() + 5
            while not one.someone_waiting() and time.monotonic() < deadline:
                time.sleep(0.005)
            assert one.someone_waiting() and not two.someone_waiting()
            blocker.execute("COMMIT")
            assert inside.wait(5)
            assert not one.someone_waiting()  # it holds the lock now: no longer waiting
            leave.set()
            saver.join()
            blocker.close()
    finally:
        first.dispose()
        second.dispose()
