"""Database URL resolution, engine creation and the session factory.

The web app, the CLI and Alembic's ``env.py`` all resolve the database through
:func:`database_url` so the three never disagree about which database they mean.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlmodel import Session, create_engine

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


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers proceed during an upload; the busy timeout turns brief
    # writer contention into a wait instead of "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Create an engine for ``url``; SQLite gets foreign keys, WAL and a busy timeout.

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
        kwargs["connect_args"] = {"connect_timeout": 5}
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise DatabaseConfigError(f"DATABASE_URL cannot be used: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def check_connection(engine: Engine) -> None:
    """Open one connection, so a bad ``DATABASE_URL`` fails at start, not on a first request.

    Raises
    ------
    DatabaseConfigError
        With one line naming the host (never the password) and the driver's reason.
    """
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc).__name__
        where = engine.url.render_as_string(hide_password=True)
        raise DatabaseConfigError(f"cannot connect to the database {where}: {reason}") from None


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error (CLI use)."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
