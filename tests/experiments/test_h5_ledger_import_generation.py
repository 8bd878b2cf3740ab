"""A ledger import's reservation and row chunks leave kept pages kept; its last
transaction, which makes the version current, shows on the pages at once
(``experiments.ledger_import``, ``experiments.generation.unseen_write``).

Runs on SQLite and in the PostgreSQL pass."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from experiments import ledger_import
from experiments.ledger_import import store_ledger_upload
from experiments.ledger_models import LedgerVersion
from tests.experiments.test_generation import generation
from tests.factories import store_ledger_file
from tests.ledger_gen import write_csv
from tests.webapp.test_page_cache_unseen_writes import Kept, _reader

pytestmark = pytest.mark.db

#: Cached pages: the NRR page shows the ledger; the dashboard and an experiment do not.
PATHS = ["/nrr", "/", "/experiments/seat-nudge"]


@pytest.mark.parametrize("path", PATHS)
def test_ledger_chunks_leave_kept_pages_kept_until_the_version_is_current(
        app, login_as, factory, db_engine, monkeypatch, tmp_path, path):
    reader = _reader(factory, db_engine, login_as)
    admin = login_as("admin")
    write_csv(tmp_path / "first.csv", n_accounts=60, months=4, seed=3)
    with Session(db_engine, expire_on_commit=False) as session:
        store_ledger_file(session, tmp_path / "first.csv", admin.user)
    second = write_csv(tmp_path / "second.csv", n_accounts=90, months=5, seed=11)
    data = (tmp_path / "second.csv").read_bytes()
    chunk = 100
    assert second.rows > 3 * chunk
    monkeypatch.setattr(ledger_import, "STORE_CHUNK", chunk)
    kept = Kept(app, reader, path)  # kept before the import starts
    before = generation(db_engine)
    seen: list[tuple[int, tuple[bool, bool], int | None]] = []
    real_insert = ledger_import.insert_rows

    def insert(session, version, table, *, start, stop):
        # Before each chunk: the reservation and the chunks before it are committed.
        seen.append((start, kept.view_again(), generation(db_engine)))
        real_insert(session, version, table, start=start, stop=stop)

    monkeypatch.setattr(ledger_import, "insert_rows", insert)
    version = store_ledger_upload(db_engine, data, dimensions="plan,region,size",
                                  actor_id=admin.user.id, filename="second.csv")

    starts = list(range(0, second.rows, chunk))
    assert [(start, view, n) for start, view, n in seen] == \
        [(start, (True, True), before) for start in starts]
    # The last transaction made the version current: it moved the number, and the NRR
    # page shows the new version at once.
    assert generation(db_engine) != before
    with Session(db_engine) as session:
        stored = session.get(LedgerVersion, version.id)
        assert (stored.status, stored.version) == ("ready", 2)
        assert session.exec(select(LedgerVersion.status)).all() == ["ready", "ready"]
    after = reader.get(path)
    assert after.status_code == 200
    if path == "/nrr":
        assert "ledger version 1 (ledger.csv)" in kept.body
        assert "ledger version 2 (second.csv)" in after.get_data(as_text=True)


def test_a_failed_ledger_import_leaves_nothing_and_the_pages_as_they_were(
        app, login_as, factory, db_engine, monkeypatch, tmp_path):
    """An import failing half-way deletes what it wrote; the NRR page shows the old
    version (the deletion moves the number: the page is rendered again, identical)."""
    reader = _reader(factory, db_engine, login_as)
    admin = login_as("admin")
    write_csv(tmp_path / "first.csv", n_accounts=60, months=4, seed=3)
    with Session(db_engine, expire_on_commit=False) as session:
        store_ledger_file(session, tmp_path / "first.csv", admin.user)
    write_csv(tmp_path / "second.csv", n_accounts=90, months=5, seed=11)
    monkeypatch.setattr(ledger_import, "STORE_CHUNK", 100)
    kept = Kept(app, reader, "/nrr")
    real_insert = ledger_import.insert_rows

    def insert(session, version, table, *, start, stop):
        if start >= 200:
            raise RuntimeError("disk full")
        real_insert(session, version, table, start=start, stop=stop)

    monkeypatch.setattr(ledger_import, "insert_rows", insert)
    with pytest.raises(RuntimeError, match="disk full"):
        store_ledger_upload(db_engine, (tmp_path / "second.csv").read_bytes(),
                            dimensions="plan,region,size", actor_id=admin.user.id,
                            filename="second.csv")
    with Session(db_engine) as session:
        assert session.exec(select(LedgerVersion.status)).all() == ["ready"]
    assert kept.view_again()[1] is True
    assert "ledger version 1 (ledger.csv)" in kept.body
