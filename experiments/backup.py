"""``nrrlab backup FILE`` and ``nrrlab restore FILE``: safe while the app is running.

SQLite uses the online backup API (``sqlite3.Connection.backup``): the copy is one
consistent snapshot even while requests write, because SQLite restarts or locks around
concurrent changes itself; it is written beside the target and renamed into place, so a
half-written backup never carries the final name. A restore copies the file back through
the same API into the live database, under SQLite's own locking.

PostgreSQL wraps the client tools: ``pg_dump --format=custom`` and
``pg_restore --clean --if-exists --no-owner --single-transaction`` (all or nothing).
They must be installed (``apt-get install postgresql-client``, matching the server's
major version); when they are not, the command says so instead of failing obscurely.
The password travels in ``PGPASSWORD``, never on a command line.

After a restore the schema revision is compared with the code's migration head.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine, make_url

from experiments.migrate import alembic_config

SQLITE_HEADER = b"SQLite format 3\x00"
PG_DUMP_HEADER = b"PGDMP"


class BackupError(RuntimeError):
    """The backup or restore could not be done; the message is one line for the operator."""


@dataclass(frozen=True)
class BackupReport:
    path: Path
    size_bytes: int
    revision: str | None


@dataclass(frozen=True)
class RestoreReport:
    revision: str | None
    head: str
    #: "at head", "behind head: run nrrlab db upgrade", or "unknown revision".
    state: str

    @property
    def at_head(self) -> bool:
        return self.revision == self.head


def migration_head() -> str:
    """The newest Alembic revision this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    if head is None:  # pragma: no cover — the repository always has revisions
        raise BackupError("no migration revisions found")
    return head


def current_revision(engine: Engine) -> str | None:
    """The database's ``alembic_version``, or ``None`` when it has none."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _has_tables(engine: Engine) -> bool:
    with engine.connect() as connection:
        return bool(inspect(connection).get_table_names())


def _sqlite_path(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(database)


def _libpq(engine: Engine) -> tuple[str, dict[str, str]]:
    """A libpq connection URL without the password, and an environment carrying it."""
    url = make_url(engine.url.render_as_string(hide_password=False))
    env = dict(os.environ)
    if url.password:
        env["PGPASSWORD"] = str(url.password)
    plain = url.set(drivername="postgresql", password=None)
    return plain.render_as_string(hide_password=False), env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} is not installed or not on PATH: install the PostgreSQL client tools "
            f"(for example `apt-get install postgresql-client`) matching the server's version")
    return found


def _run(command: list[str], env: dict[str, str], what: str) -> None:
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: {detail[-1] if detail else f'exit {result.returncode}'}")


def backup(engine: Engine, destination: Path, *, force: bool = False) -> BackupReport:
    """Write a consistent copy of the database to ``destination``.

    Raises
    ------
    BackupError
        ``destination`` exists (without ``force``) or cannot be written, or the client
        tools are missing.
    """
    destination = Path(destination)
    if destination.exists() and not force:
        raise BackupError(f"{destination} already exists; pass --force to replace it")
    if not destination.parent.is_dir():
        raise BackupError(f"{destination.parent} is not a folder")
    partial = destination.with_name(f".{destination.name}.partial")
    try:
        if engine.dialect.name == "sqlite":
            _sqlite_backup(_sqlite_path(engine), partial)
        elif engine.dialect.name == "postgresql":
            url, env = _libpq(engine)
            _run([_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={partial}",
                  f"--dbname={url}"], env, "pg_dump")
        else:
            raise BackupError(f"backups of {engine.dialect.name} databases are not supported")
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return BackupReport(destination, destination.stat().st_size, current_revision(engine))


def _sqlite_backup(source: Path, target: Path) -> None:
    if not source.is_file():
        raise BackupError(f"the database file {source} does not exist")
    target.unlink(missing_ok=True)
    with _closing(sqlite3.connect(source, timeout=30)) as src, \
            _closing(sqlite3.connect(target)) as dst:
        # One step: the copy reads one WAL snapshot, so writers carry on meanwhile and
        # the copy never restarts under load (as a stepwise copy would).
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        problem = dst.execute("PRAGMA integrity_check").fetchone()[0]
    if problem != "ok":
        raise BackupError(f"the copy failed its integrity check: {problem}")


class _closing:
    """``sqlite3.Connection`` as a context manager that closes (its own only commits)."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection

    def __enter__(self) -> sqlite3.Connection:
        return self.connection

    def __exit__(self, *_exc) -> None:
        self.connection.close()


def restore(engine: Engine, source: Path, *, force: bool = False) -> RestoreReport:
    """Replace the database's contents with the backup ``source``.

    Raises
    ------
    BackupError
        ``source`` is missing or not a backup of this kind of database; the database
        already holds tables and ``force`` was not given; the client tools are missing
        or the restore failed (PostgreSQL: nothing changed, it is one transaction).
    """
    source = Path(source)
    if not source.is_file():
        raise BackupError(f"{source}: no such file")
    with source.open("rb") as handle:
        header = handle.read(16)
    if _has_tables(engine) and not force:
        where = engine.url.render_as_string(hide_password=True)
        raise BackupError(f"{where} already holds data; pass --force to replace it with {source}")
    if engine.dialect.name == "sqlite":
        if header != SQLITE_HEADER:
            raise BackupError(f"{source} is not an SQLite database (is it a PostgreSQL dump?)")
        _sqlite_restore(source, _sqlite_path(engine))
    elif engine.dialect.name == "postgresql":
        if not header.startswith(PG_DUMP_HEADER):
            raise BackupError(f"{source} is not a pg_dump custom-format file")
        url, env = _libpq(engine)
        _run([_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
              f"--dbname={url}", str(source)], env, "pg_restore")
    else:
        raise BackupError(f"restores into {engine.dialect.name} databases are not supported")
    engine.dispose()  # pooled connections may have cached the old schema
    revision, head = current_revision(engine), migration_head()
    script = ScriptDirectory.from_config(alembic_config())
    if revision == head:
        state = "at head"
    elif revision is not None and _known(script, revision):
        state = "behind head: run nrrlab db upgrade"
    else:
        state = "unknown revision: this backup was made by a different version of NRR Lab"
    return RestoreReport(revision, head, state)


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:  # noqa: BLE001 — alembic raises several kinds for an unknown id
        return False


def _sqlite_restore(source: Path, target: Path) -> None:
    with _closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src:
        problem = src.execute("PRAGMA integrity_check").fetchone()[0]
        if problem != "ok":
            raise BackupError(f"{source} failed its integrity check: {problem}")
        target.parent.mkdir(parents=True, exist_ok=True)
        with _closing(sqlite3.connect(target, timeout=30)) as dst:
            src.backup(dst)
