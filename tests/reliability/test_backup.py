"""``nrrlab backup`` / ``nrrlab restore`` on this run's database (SQLite, or PostgreSQL on
the ``db`` pass): refusals, a backup taken while writers commit, and a restore that
gives a working app at the migration head."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from experiments import migrate
from experiments.cli import main
from experiments.db import make_engine
from tests.helpers import TEST_PASSWORD, Auth, dispose_app

pytestmark = pytest.mark.db


def _cli(url: str, *args: str):
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": url})


def _count(url: str, sql: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(text(sql)).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture
def migrated(scratch_database) -> str:
    url = scratch_database()
    migrate.upgrade(url)
    return url


def test_backup_under_write_load_restores_to_a_working_app_at_head(
        migrated, scratch_database, tmp_path: Path):
    from webapp import create_app

    assert _cli(migrated, "create-user", "ana@example.com", "--role", "admin",
                "--password", TEST_PASSWORD).exit_code == 0
    engine = make_engine(migrated)
    stop, written, errors = threading.Event(), [], []

    def writer() -> None:
        # A steady stream of small committed writes while the backup runs.
        n = 0
        while not stop.is_set() and n < 5000:
            try:
                with engine.begin() as connection:
                    connection.execute(text("INSERT INTO team (slug, name, created_at) "
                                            "VALUES (:s, :s, CURRENT_TIMESTAMP)"), {"s": f"t{n}"})
                written.append(n)
            except Exception as exc:  # noqa: BLE001 — any failure fails the test below
                errors.append(exc)
                return
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        while len(written) < 50 and thread.is_alive():
            threading.Event().wait(0.01)
        backup = tmp_path / "under-load.backup"
        before = len(written)
        result = _cli(migrated, "backup", str(backup))
        after = len(written)
        while len(written) < after + 20 and thread.is_alive():  # the writer goes on
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join()
        engine.dispose()
    assert result.exit_code == 0, result.output
    assert errors == []
    assert len(written) >= after + 20 and before >= 50

    target = scratch_database()
    result = _cli(target, "restore", str(backup))
    assert result.exit_code == 0, result.output
    assert "(at head;" in result.output
    teams = _count(target, "SELECT count(*) FROM team")
    # one consistent snapshot from while the backup ran: a prefix of the writes (+1: a
    # commit the writer had not yet counted when the backup returned)
    assert before <= teams <= after + 1
    assert _count(target, "SELECT count(*) FROM team WHERE slug = 't0'") == 1
    assert _count(target, f"SELECT count(*) FROM team WHERE slug = 't{teams - 1}'") == 1

    app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "b" * 48, "DATABASE_URL": target,
                      "INSTANCE_PATH": str(tmp_path / "instance")})
    try:
        client = app.test_client()
        assert Auth(client).login("ana@example.com").status_code == 303
        assert client.get("/admin/teams").status_code == 200
    finally:
        dispose_app(app)


def test_restore_refuses_a_database_with_data_unless_forced(migrated, tmp_path: Path):
    backup = tmp_path / "one.backup"
    assert _cli(migrated, "backup", str(backup)).exit_code == 0
    refused = _cli(migrated, "restore", str(backup))
    assert refused.exit_code == 1
    assert "already holds data; pass --force" in refused.output
    forced = _cli(migrated, "restore", str(backup), "--force")
    assert forced.exit_code == 0, forced.output


def test_backup_refuses_to_overwrite_and_restore_refuses_a_foreign_file(
        migrated, scratch_database, tmp_path: Path):
    existing = tmp_path / "taken.backup"
    existing.write_bytes(b"keep me")
    result = _cli(migrated, "backup", str(existing))
    assert result.exit_code == 1 and "already exists; pass --force" in result.output
    assert existing.read_bytes() == b"keep me"
    assert list(tmp_path.iterdir()) == [existing], "no partial file left behind"

    not_a_backup = tmp_path / "notes.txt"
    not_a_backup.write_text("hello")
    result = _cli(scratch_database(), "restore", str(not_a_backup))
    assert result.exit_code == 1
    assert "is not" in result.output  # "not an SQLite database" / "not a pg_dump … file"
    assert _cli(migrated, "restore", str(tmp_path / "missing.backup")).exit_code != 0


def test_a_backup_behind_the_head_restores_and_says_to_upgrade(scratch_database, tmp_path: Path):
    old = scratch_database()
    migrate.upgrade(old, "3576cee3ecc2")  # the first revision
    backup = tmp_path / "old.backup"
    assert _cli(old, "backup", str(backup)).exit_code == 0
    result = _cli(scratch_database(), "restore", str(backup))
    assert result.exit_code == 3
    assert "schema revision 3576cee3ecc2 (behind head: run nrrlab db upgrade" in result.output
