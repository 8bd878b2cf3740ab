"""A ledger upload cut off mid-import (its process killed: a web worker past its timeout,
a restart) leaves what it committed: an importing version and its first row chunks. Its
own clean-up never runs, and no page shows them, so before the sweep they stayed for
good (each retry of a million-row file left up to a million more rows). The next ledger
upload, and the upload sweep of a starting job worker, now delete an importing version
reserved more than an hour ago, with its rows; a younger one (an import still running)
is left alone. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update
from sqlmodel import Session, func, select

from experiments import ledger_import
from experiments.imports import sweep_stale_uploads
from experiments.ledger_import import store_ledger_upload
from experiments.ledger_models import LedgerRow, LedgerVersion
from tests.ledger_gen import write_csv

pytestmark = pytest.mark.db

DIMS = "plan,region,size"


class Killed(BaseException):
    """The process dying: nothing after it runs (the test stops the clean-up too)."""


def _ledger(tmp_path, name: str, seed: int) -> tuple[bytes, int]:
    generated = write_csv(tmp_path / name, n_accounts=60, months=6, seed=seed)
    return (tmp_path / name).read_bytes(), generated.rows


def _cut_off_upload(db_engine, data: bytes, monkeypatch) -> None:
    """Run an upload that dies after its second row chunk, before its clean-up."""
    real_insert = ledger_import.insert_rows
    chunks: list[int] = []

    def insert(session, version, table, *, start, stop):
        if len(chunks) == 2:
            raise Killed
        real_insert(session, version, table, start=start, stop=stop)
        chunks.append(stop)

    with monkeypatch.context() as patch:
        patch.setattr(ledger_import, "STORE_CHUNK", 40)
        patch.setattr(ledger_import, "insert_rows", insert)
        patch.setattr(ledger_import, "discard_version", lambda *_args, **_kw: None)
        with pytest.raises(Killed):
            store_ledger_upload(db_engine, data, dimensions=DIMS, actor_id=None,
                                filename="cut.csv")


def _stored(db_engine) -> tuple[list[str], int]:
    with Session(db_engine) as session:
        return (sorted(session.exec(select(LedgerVersion.status)).all()),
                session.exec(select(func.count()).select_from(LedgerRow)).one())


def _age_importing(db_engine, hours: float) -> None:
    with Session(db_engine) as session:
        session.exec(update(LedgerVersion).where(LedgerVersion.status == "importing")
                     .values(uploaded_at=datetime.now(UTC) - timedelta(hours=hours)))
        session.commit()


def test_the_next_ledger_upload_removes_what_a_cut_off_one_left(
        db_engine, tmp_path, monkeypatch):
    first, _ = _ledger(tmp_path, "first.csv", 7)
    _cut_off_upload(db_engine, first, monkeypatch)
    assert _stored(db_engine) == (["importing"], 80)  # two chunks of 40 were committed
    _age_importing(db_engine, 2)

    second, rows = _ledger(tmp_path, "second.csv", 8)
    version = store_ledger_upload(db_engine, second, dimensions=DIMS, actor_id=None,
                                  filename="second.csv")
    assert version.version == 1
    # Before: (['importing', 'ready'], rows + 80), for good.
    assert _stored(db_engine) == (["ready"], rows)


def test_a_starting_worker_removes_it_and_leaves_a_running_import_alone(
        db_engine, tmp_path, monkeypatch):
    first, _ = _ledger(tmp_path, "first.csv", 7)
    _cut_off_upload(db_engine, first, monkeypatch)
    _age_importing(db_engine, 0.5)  # half an hour: may still be running
    uploads = tmp_path / "uploads"
    assert sweep_stale_uploads(db_engine, uploads, only_worker=True) == 0
    assert _stored(db_engine) == (["importing"], 80)

    # An hour and a half later it is not running any more.
    later = datetime.now(UTC) + timedelta(hours=1)
    assert sweep_stale_uploads(db_engine, uploads, now=later, only_worker=True) == 1
    assert _stored(db_engine) == ([], 0)


def test_a_ready_version_is_never_swept(db_engine, tmp_path):
    data, rows = _ledger(tmp_path, "ready.csv", 9)
    store_ledger_upload(db_engine, data, dimensions=DIMS, actor_id=None, filename="r.csv")
    far = datetime.now(UTC) + timedelta(days=30)
    assert ledger_import.sweep_stale_ledger_imports(db_engine, now=far) == 0
    assert _stored(db_engine) == (["ready"], rows)


def test_a_version_made_current_after_it_was_listed_keeps_its_rows(db_engine, tmp_path):
    # The sweep lists importing versions, then removes each under its lock: one that an
    # import made current in between is left whole.
    data, rows = _ledger(tmp_path, "ready.csv", 9)
    version = store_ledger_upload(db_engine, data, dimensions=DIMS, actor_id=None,
                                  filename="r.csv")
    assert ledger_import._discard_if_importing(db_engine, version.id) is False
    assert _stored(db_engine) == (["ready"], rows)
