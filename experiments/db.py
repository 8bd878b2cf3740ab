"""Database URL resolution, engine creation and the session factory.

The web app, the CLI and Alembic's ``env.py`` all resolve the database through
:func:`database_url` so the three never disagree about which database they mean.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlmodel import Session, create_engine

from experiments import sqlite_waiters
from experiments.generation import track_data_generation

DEFAULT_SQLITE_NAME = "nrrlab.db"


class DatabaseConfigError(RuntimeError):
    """The configured database cannot be used; the message is one line for the operator."""


def default_instance_path() -> Path:
    """``instance/`` beside the checkout (or ``NRRLAB_INSTANCE_PATH``)."""
    configured = os.environ.get("NRRLAB_INSTANCE_PATH")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "instance"


def database_url(instance_path: Path | None = None) -> str:
    """``DATABASE_URL`` when set, else the embedded SQLite file under ``instance/``."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if url:
        return normalise_url(url)
    folder = instance_path or default_instance_path()
    return f"sqlite:///{folder / DEFAULT_SQLITE_NAME}"


def normalise_url(url: str) -> str:
    """Map the bare ``postgres://``/``postgresql://`` schemes to the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


# --------------------------------------------------------------------------- SQLite
#
# pysqlite's own transaction handling is switched off (``isolation_level = None``, the
# recipe of SQLAlchemy's pysqlite dialect docs, "Serializable isolation / Savepoints /
# Transactional DDL") and BEGIN is emitted here, so each transaction says what it is:
#
# - ``immediate`` (web requests that may write — every method but GET/HEAD/OPTIONS —,
#   the CLI, background jobs): ``BEGIN IMMEDIATE`` at the first statement. The write
#   lock is taken before anything is read, so a read-then-write cannot be overtaken;
#   a second writer waits up to ``busy_timeout`` instead of failing, and never hits
#   SQLITE_BUSY on upgrading a read snapshot (which the busy timeout cannot help).
# - ``snapshot``: plain deferred ``BEGIN`` — a consistent read across statements that
#   never takes the write lock (for long reports; nothing in the app needs it yet).
# - default (a session that states nothing: GET requests, tests): statements before
#   the first write run on their own, each seeing the latest commit, as pysqlite did;
#   the first INSERT/UPDATE/DELETE/DDL/SAVEPOINT starts ``BEGIN IMMEDIATE``. A page
#   that only reads never takes the write lock.
#
# Pick with ``engine.execution_options(sqlite_begin=…)`` or :func:`write_engine` /
# :func:`snapshot_engine`. On PostgreSQL the option is ignored.

#: Milliseconds a writer waits for another to finish before "database is locked".
SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_BEGIN_OPTION = "sqlite_begin"
_SQLITE_FILE = "nrrlab_sqlite_file"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "SAVEPOINT")


def _sqlite_connect(dbapi_connection, record) -> None:
    dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (see above)
    # Where a BEGIN IMMEDIATE announces that it waits (experiments.sqlite_waiters).
    record.info[_SQLITE_FILE] = sqlite_waiters.database_file(dbapi_connection)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    # WAL: readers never block the writer and the writer never blocks readers.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # NORMAL under WAL syncs at checkpoints, not at every commit: the database cannot be
    # corrupted by a crash, and a process kill (even -9) loses nothing; only an OS crash
    # or power cut may roll back the last commits before the latest checkpoint. FULL
    # would fsync every commit for durability against power loss at several ms a write.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection) -> None:
    mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION)
    if mode == "immediate":
        with sqlite_waiters.announced(connection.connection.info.get(_SQLITE_FILE)):
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    elif mode == "snapshot":
        connection.exec_driver_sql("BEGIN")
    elif mode is not None:
        raise ValueError(f"{SQLITE_BEGIN_OPTION} must be 'immediate' or 'snapshot', not {mode!r}")


def _sqlite_begin_on_first_write(conn, cursor, statement, _params, _context, _many) -> None:
    dbapi_connection = cursor.connection
    if not dbapi_connection.in_transaction and statement.lstrip()[:9].upper().startswith(_WRITES):
        sqlite_waiters.begin_immediate(dbapi_connection,
                                       conn.connection.info.get(_SQLITE_FILE))


def write_engine(engine: Engine) -> Engine:
    """``engine`` whose transactions take SQLite's write lock at their first statement."""
    return engine.execution_options(**{SQLITE_BEGIN_OPTION: "immediate"})


def snapshot_engine(engine: Engine) -> Engine:
    """``engine`` whose transactions read one consistent SQLite snapshot, without locking."""
    return engine.execution_options(**{SQLITE_BEGIN_OPTION: "snapshot"})


# ------------------------------------------------------------- PostgreSQL time zone
#
# Moments are ``timestamp with time zone`` through SQLModel's ``UTCDateTime``, which
# binds and returns UTC, so the models do not depend on the session's zone. What does:
# a ``text()`` statement's moments come back in the session's ``TimeZone`` (on a server
# whose initdb took the host's zone, 18:14+01:00 for 17:14Z, which ``isoformat`` and
# string comparisons then carry), and a moment bound to a ``timestamp`` without zone is
# shifted by it. Each connection therefore asks for UTC at start-up (libpq ``options``,
# no round trip; options given in the URL are kept, ours last so they win), and one that
# still reports another zone — a pooler such as PgBouncer drops start-up options — gets
# ``SET TIME ZONE 'UTC'`` before first use. Behind a transaction-pooling PgBouncer, set
# the database's own zone as well: ``ALTER DATABASE … SET timezone TO 'UTC'`` (README).

UTC_OPTION = "-c TimeZone=UTC"
#: The names PostgreSQL reports for UTC itself.
UTC_NAMES = frozenset({"utc", "etc/utc", "uct", "etc/uct", "gmt", "etc/gmt", "zulu",
                       "etc/zulu", "universal", "etc/universal", "gmt0", "etc/gmt0",
                       "etc/gmt+0", "etc/gmt-0", "greenwich", "etc/greenwich"})


def _utc_options(parsed) -> str:
    """The URL's own libpq ``options`` (if any) followed by :data:`UTC_OPTION`."""
    given = parsed.query.get("options")
    if isinstance(given, tuple):
        given = " ".join(given)
    return f"{given} {UTC_OPTION}" if given else UTC_OPTION


def session_time_zone_is_utc(name: str | None) -> bool:
    """Whether PostgreSQL's reported ``TimeZone`` is UTC itself."""
    return bool(name) and name.strip().lower() in UTC_NAMES


def _postgres_connect(dbapi_connection, _record) -> None:
    info = getattr(dbapi_connection, "info", None)
    reported = info.parameter_status("TimeZone") if info is not None else None
    if session_time_zone_is_utc(reported):
        return
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'UTC'")
    dbapi_connection.commit()  # a SET in a rolled-back transaction would not stay


#: Seconds a PostgreSQL connection attempt may take.
CONNECT_TIMEOUT_SECONDS = 5


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url``; SQLite is set up for concurrent use (see above).

    Raises
    ------
    DatabaseConfigError
        The URL cannot be parsed or names a driver that is not installed.
    """
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseConfigError(f"DATABASE_URL is not a valid database URL: {exc}") from None
    kwargs: dict = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"check_same_thread": False}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_SECONDS,
                                  "options": _utc_options(parsed)}
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise DatabaseConfigError(f"DATABASE_URL cannot be used: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "before_cursor_execute", _sqlite_begin_on_first_write)
    else:
        event.listen(engine, "connect", _postgres_connect)
    # Every committed write moves the data generation (the page cache's key).
    track_data_generation(engine)
    return engine


# ----------------------------------------------------------------------- retrying
#
# PostgreSQL may abort a transaction that lost a race: a serialization failure
# (SQLSTATE 40001, under REPEATABLE READ/SERIALIZABLE or an exclusion) or a deadlock
# (40P01). Repeating the whole transaction is the documented remedy. The web app
# repeats a request's view (``webapp.db``); the CLI and background jobs use
# :func:`run_transaction`. After :data:`TRANSACTION_ATTEMPTS` tries the error stands.

TRANSACTION_ATTEMPTS = 3
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def is_retryable(exc: BaseException) -> bool:
    """True for a PostgreSQL serialization failure or deadlock (worth repeating)."""
    original = getattr(exc, "orig", None)
    return getattr(original, "sqlstate", None) in RETRYABLE_SQLSTATES


def retry_pause(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: 20 ms, 40 ms, … with jitter."""
    return 0.02 * 2 ** (attempt - 1) * (0.5 + random.random())  # noqa: S311 — jitter only


T = TypeVar("T")


def run_transaction(engine: Engine, work: Callable[[Session], T], *,
                    attempts: int = TRANSACTION_ATTEMPTS) -> T:
    """Run ``work(session)`` and commit, repeating it on a serialization failure or deadlock.

    ``work`` must be repeatable (it runs again from scratch on a fresh session). SQLite
    transactions begin ``IMMEDIATE``.

    Raises
    ------
    sqlalchemy.exc.DBAPIError
        The last failure, after ``attempts`` tries (or at once when not retryable).
    """
    for attempt in range(1, attempts + 1):
        with Session(write_engine(engine), expire_on_commit=False) as session:
            try:
                result = work(session)
                session.commit()
                return result
            except DBAPIError as exc:
                session.rollback()
                if attempt == attempts or not is_retryable(exc):
                    raise
        time.sleep(retry_pause(attempt))
    raise AssertionError("unreachable")  # pragma: no cover


def check_connection(engine: Engine) -> None:
    """Open one connection, so a bad ``DATABASE_URL`` fails at start, not on a first request.

    A PostgreSQL database must keep text as UTF8: VARCHAR(n) counts characters only in a
    multi-byte encoding (SQL_ASCII counts bytes: 255 × é is 510 "characters" and refused),
    and LATIN1 cannot hold most scripts; the readers count characters as UTF8 does.

    Raises
    ------
    DatabaseConfigError
        With one line naming the host (never the password) and the driver's reason, or
        the database's text encoding when it is not UTF8.
    """
    where = engine.url.render_as_string(hide_password=True)
    postgres = engine.dialect.name == "postgresql"
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            encodings = connection.execute(text(_ENCODINGS)).one() if postgres else None
    except (SQLAlchemyError, engine.dialect.loaded_dbapi.Error) as exc:
        message = str(getattr(exc, "orig", exc)).strip()
        reason = message.splitlines()[0] if message else type(exc).__name__
        raise DatabaseConfigError(f"cannot connect to the database {where}: {reason}") from None
    except Exception:
        if postgres:
            # On SQL_ASCII, SQLAlchemy's first connection fails reading the server version
            # (text comes back as bytes, a TypeError): ask the driver alone.
            _refuse_encoding(where, *_raw_encodings(engine))
        raise
    if encodings is not None:
        _refuse_encoding(where, *encodings)


_ENCODINGS = "SELECT current_setting('server_encoding'), current_setting('client_encoding')"


def _raw_encodings(engine: Engine) -> tuple[str, str]:
    """The server's and the client's text encodings, read without SQLAlchemy."""
    cargs, cparams = engine.dialect.create_connect_args(engine.url)
    cparams.setdefault("connect_timeout", CONNECT_TIMEOUT_SECONDS)
    connection = engine.dialect.loaded_dbapi.connect(*cargs, **cparams)
    try:
        found = connection.execute(_ENCODINGS).fetchone()
    finally:
        connection.close()
    server, client = (v.decode("ascii") if isinstance(v, bytes) else v for v in found)
    return server, client


def _refuse_encoding(where: str, server: str, client: str) -> None:
    """A PostgreSQL database (or client) whose text encoding is not UTF8 is refused."""
    if (server, client) != ("UTF8", "UTF8"):
        raise DatabaseConfigError(
            f"the database {where} keeps text as {server} (client {client}); NRR Lab needs"
            " UTF8 for both (otherwise a 255-character id or name with accents does not fit"
            " its column, or cannot be stored at all): create the database with ENCODING 'UTF8'"
            " TEMPLATE template0, and leave PGCLIENTENCODING unset")


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error (CLI use).

    On SQLite its transactions begin ``IMMEDIATE`` (a CLI command is a writer).
    """
    with Session(write_engine(engine), expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
