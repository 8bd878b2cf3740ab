"""The ledger import on SQLite pauses between its chunks only when a writer waits for the
lock (``experiments.sqlite_waiters``), as the background upload does: no sleep when
nobody waits; a save waiting during a long import gets in within about a chunk; a writer
outside the app (it cannot announce its wait) still gets in, by the blind pause."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session, func, select

from experiments import ledger_import
from experiments.db import make_engine
from experiments.ledger_import import store_ledger_upload
from experiments.ledger_models import LedgerRow, LedgerVersion
from experiments.models import User
from tests.factories import make_user
from tests.ledger_gen import write_csv

pytestmark = [pytest.mark.db, pytest.mark.usefixtures("sqlite_only")]

DIMS = "plan,region,size"


@pytest.fixture
def sqlite_only(database_url):
    if make_url(database_url).get_backend_name() != "sqlite":
        pytest.skip("SQLite's write lock")


def _ledger(tmp_path, n_accounts: int, months: int) -> tuple[bytes, int]:
    ledger = write_csv(tmp_path / "ledger.csv", n_accounts=n_accounts, months=months, seed=7)
    return (tmp_path / "ledger.csv").read_bytes(), ledger.rows


def _stored_rows(engine) -> tuple[list[str], int]:
    with Session(engine) as session:
        return (session.exec(select(LedgerVersion.status)).all(),
                session.exec(select(func.count()).select_from(LedgerRow)).one())


def test_no_pause_between_chunks_when_nobody_waits(db_engine, tmp_path, monkeypatch):
    data, rows = _ledger(tmp_path, 60, 6)
    monkeypatch.setattr(ledger_import, "STORE_CHUNK", 40)
    monkeypatch.setattr(ledger_import, "SQLITE_BLIND_SECONDS", 60)
    assert -(-rows // 40) >= 5  # chunks
    here = threading.get_ident()
    sleeps: list[float] = []
    real_sleep = time.sleep

    def counted(seconds):
        if threading.get_ident() == here:
            sleeps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", counted)
    store_ledger_upload(db_engine, data, dimensions=DIMS, actor_id=None, filename="l.csv")
    # Before: a 0.15 s pause after every chunk but the last (here >= 0.6 s of sleep).
    assert sleeps == []
    assert _stored_rows(db_engine) == (["ready"], rows)


def _slow_chunks(monkeypatch, seconds: float) -> list[int]:
    """Each chunk holds the lock ``seconds`` longer (a bigger ledger); returns the chunks
    committed so far, as a list the test can read."""
    real_insert = ledger_import.insert_rows
    written: list[int] = []

    def slow(session, version, table, *, start, stop):
        real_insert(session, version, table, start=start, stop=stop)
        time.sleep(seconds)  # inside the chunk's transaction: the lock is held
        written.append(stop)

    monkeypatch.setattr(ledger_import, "insert_rows", slow)
    return written


def test_a_save_waiting_during_a_long_ledger_import_gets_in_within_a_chunk(
        database_url, db_engine, session, tmp_path, monkeypatch):
    user = make_user(session, "rita@example.com", "analyst")
    session.commit()
    user_id = user.id
    data, rows = _ledger(tmp_path, 600, 12)
    monkeypatch.setattr(ledger_import, "STORE_CHUNK", 180)
    monkeypatch.setattr(ledger_import, "SQLITE_BLIND_SECONDS", 60)  # only the hand-over
    assert rows // 180 >= 25
    written = _slow_chunks(monkeypatch, 0.05)  # the import holds the lock ~1.5 s or more
    saver = make_engine(database_url)
    failed: list[BaseException] = []

    def run():
        try:
            store_ledger_upload(db_engine, data, dimensions=DIMS, actor_id=None,
                                filename="long.csv")
        except BaseException as exc:  # noqa: BLE001  (shown below)
            failed.append(exc)

    importer = threading.Thread(target=run)
    waits, seen, errors = [], [], []
    try:
        importer.start()
        while not written and importer.is_alive():
            time.sleep(0.005)
        while importer.is_alive():
            began = time.perf_counter()
            try:
                with saver.begin() as connection:
                    connection.execute(text("UPDATE user_account SET name = :name WHERE id = :id"),
                                       {"name": f"Rita {len(waits)}", "id": user_id})
                waits.append(time.perf_counter() - began)
                seen.append(len(written))
            except Exception as exc:  # noqa: BLE001  (counted and shown below)
                errors.append(exc)
            time.sleep(0.02)
    finally:
        importer.join(120)
        saver.dispose()
    assert not failed and not errors, (failed, errors)
    assert _stored_rows(db_engine) == (["ready"], rows)
    # Measured (load ~4): the longest wait ~0.1 s (one chunk, then the busy handler's
    # retry); without the hand-over the save waits for the whole import (or fails).
    assert len(waits) >= 3 and max(waits) < 0.6, sorted(waits)[-3:]
    # The saves got in while the import went on, between its chunks.
    chunks = -(-rows // 180)
    assert len({n for n in seen if 0 < n < chunks}) >= 2, seen
    with Session(db_engine) as fresh:
        assert fresh.get(User, user_id).name.startswith("Rita ")


def test_a_writer_outside_the_app_still_gets_in_during_a_ledger_import(
        database_url, db_engine, session, tmp_path, monkeypatch):
    # A plain sqlite3 connection does not announce its wait: the blind pause lets it in.
    user = make_user(session, "otto@example.com", "analyst")
    session.commit()
    user_id = user.id
    data, rows = _ledger(tmp_path, 600, 12)
    monkeypatch.setattr(ledger_import, "STORE_CHUNK", 180)
    monkeypatch.setattr(ledger_import, "SQLITE_BLIND_SECONDS", 0.3)
    _slow_chunks(monkeypatch, 0.05)
    importer = threading.Thread(target=store_ledger_upload, args=(db_engine, data),
                                kwargs={"dimensions": DIMS, "actor_id": None,
                                        "filename": "long.csv"})
    waits, errors = [], []
    outsider = sqlite3.connect(make_url(database_url).database, timeout=1.0,
                               isolation_level=None)
    try:
        importer.start()
        time.sleep(0.2)
        while importer.is_alive():
            began = time.perf_counter()
            try:
                outsider.execute("BEGIN IMMEDIATE")
                outsider.execute("UPDATE user_account SET name = 'outside' WHERE id = ?",
                                 (user_id,))
                outsider.execute("COMMIT")
                waits.append(time.perf_counter() - began)
            except sqlite3.OperationalError as exc:
                errors.append(exc)
            time.sleep(0.02)
    finally:
        importer.join(120)
        outsider.close()
    assert not errors and len(waits) >= 2, (errors, waits)
    assert _stored_rows(db_engine) == (["ready"], rows)
