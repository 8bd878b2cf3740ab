"""The data generation: one number that moves whenever a committed transaction wrote data.

The page cache (``webapp.page_cache``) keys rendered pages by it, so a page rendered
before any write can never be served after it. The rule it rests on: **every transaction
that changes a row of the application database also adds one to** ``data_generation.n``
**before it commits, in the same transaction.** The number therefore becomes visible
exactly when the data does (never before: a reader that sees the new number sees the new
data), and a rolled-back transaction moves nothing.

How writes are noticed — at the engine, not in the services, so a new write path cannot
forget it. :func:`track_data_generation` (installed by ``experiments.db.make_engine`` on
every engine of the app, the CLI, background jobs, Alembic and the tests) listens to the
engine's ``commit`` event, which every commit of a ``Session`` or a ``Connection`` passes
through, and asks the database itself whether this transaction wrote anything:

* **SQLite** counts the rows each connection changed (``sqlite3.Connection.total_changes``,
  SQLite's ``sqlite3_total_changes``); the count at ``begin`` is compared at ``commit``.
  It counts the ORM's flushes, Core statements, text SQL and the upload's raw-cursor
  ``executemany`` alike (they all run on the connection), at no cost per statement.
* **PostgreSQL** gives a transaction an id only when it first writes
  (``txid_current_if_assigned()`` is NULL until then): ORM, Core, raw cursors and
  ``COPY ... FROM STDIN`` alike. One ``SELECT`` at each commit asks.

When the transaction wrote, one statement moves it on::

    INSERT INTO data_generation (id, n) VALUES (1, :now)
    ON CONFLICT (id) DO UPDATE SET n = max(data_generation.n + 1, :now)

``now`` is the committing process's clock in microseconds since 1970, so the number
never goes back and is never reused: not when the row was deleted (the tests empty every
table between tests; the upsert brings it back), nor after ``nrrlab restore`` put an older
number back (the next write jumps past every number the old timeline used; until then the
restored number names the restored data, which is what a page kept under it showed).
Fewer than one write a microsecond keeps ``n`` at about the clock; a slower clock on
another machine only means ``+ 1``.
It runs on the raw DBAPI cursor inside the commit, just before the driver's ``COMMIT``.

Two writers at once. SQLite serialises writing transactions (``BEGIN IMMEDIATE``), so
the increments are serial. On PostgreSQL (READ COMMITTED) the second writer's upsert waits
for the first's row lock and then adds one to the committed value: no lost increment. The
lock is taken last, at commit, and released by that commit a moment later; a transaction
holding it waits for nothing else, so it cannot be part of a deadlock, and writers
serialise only for the length of a commit. (A sequence would not do: ``nextval`` is
visible before the data commits and moves on rollback.)

The table is checked for in the same commit (a catalog lookup, only when the transaction
wrote): Alembic's engine runs the revisions before this table exists and the downgrade
that drops it.

Connection writes outside any transaction are not seen: on SQLite every write starts
``BEGIN IMMEDIATE`` (``experiments.db``), so none happens; warehouse engines
(``experiments.warehouse``) are other databases and are never tracked.
"""

from __future__ import annotations

import time

from sqlalchemy import BigInteger, Column, Integer, PrimaryKeyConstraint, Table, event
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

TABLE = "data_generation"
#: The one row's id.
ROW_ID = 1

# A Core table rather than a model: nothing in the domain reads or writes it through the
# ORM. The constraint is named as the metadata's naming convention would name it (this
# module can be imported before experiments.models sets the convention).
data_generation = Table(
    TABLE,
    SQLModel.metadata,
    Column("id", Integer, nullable=False, autoincrement=False),
    Column("n", BigInteger, nullable=False),
    PrimaryKeyConstraint("id", name="pk_data_generation"),
)

_INCREMENT = (
    f"INSERT INTO {TABLE} (id, n) VALUES ({ROW_ID}, {{now}}) "  # noqa: S608 — numbers only
    f"ON CONFLICT (id) DO UPDATE SET n = {{larger}}({TABLE}.n + 1, {{now}})"
)
#: The two-argument maximum of each dialect.
_LARGER = {"sqlite": "max", "postgresql": "GREATEST"}
_READ = f"SELECT n FROM {TABLE} WHERE id = {ROW_ID}"  # noqa: S608 — constants only
_SQLITE_HAS_TABLE = f"SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '{TABLE}'"  # noqa: S608
_PG_WROTE_AND_HAS_TABLE = (
    f"SELECT txid_current_if_assigned() IS NOT NULL AND to_regclass('{TABLE}') IS NOT NULL"
)
_CHANGES_AT_BEGIN = "nrrlab_total_changes_at_begin"
#: Dialects whose writes :func:`track_data_generation` can see.
TRACKED_DIALECTS = frozenset({"sqlite", "postgresql"})


def track_data_generation(engine: Engine) -> None:
    """Make every transaction of ``engine`` that wrote add one to the generation.

    Engines of other dialects are left alone (and :func:`read_generation` says ``None``
    for them, so nothing is cached against them).
    """
    dialect = engine.dialect.name
    if dialect == "sqlite":
        event.listen(engine, "begin", _sqlite_begin)
        event.listen(engine, "commit", _sqlite_commit)
    elif dialect == "postgresql":
        event.listen(engine, "commit", _postgresql_commit)


def _increment(dialect: str) -> str:
    return _INCREMENT.format(now=time.time_ns() // 1000, larger=_LARGER[dialect])


def _sqlite_begin(connection: Connection) -> None:
    connection.info[_CHANGES_AT_BEGIN] = connection.connection.dbapi_connection.total_changes


def _sqlite_commit(connection: Connection) -> None:
    raw = connection.connection.dbapi_connection
    # No count from begin (a listener added mid-transaction): assume it wrote.
    if raw.total_changes == connection.info.pop(_CHANGES_AT_BEGIN, None):
        return
    cursor = raw.cursor()
    try:
        if cursor.execute(_SQLITE_HAS_TABLE).fetchone() is not None:
            cursor.execute(_increment("sqlite"))
    finally:
        cursor.close()


def _postgresql_commit(connection: Connection) -> None:
    raw = connection.connection.dbapi_connection
    from psycopg.pq import TransactionStatus

    # An aborted transaction's COMMIT is a rollback: nothing to count (and no statement
    # could run in it).
    if raw.info.transaction_status != TransactionStatus.INTRANS:
        return
    cursor = raw.cursor()
    try:
        wrote = cursor.execute(_PG_WROTE_AND_HAS_TABLE).fetchone()[0]
        if wrote:
            cursor.execute(_increment("postgresql"))
    finally:
        cursor.close()


def read_generation(connection: Connection) -> int | None:
    """The current generation, one primary-key read; ``None`` when it cannot be trusted
    (an untracked dialect, or no row yet: nothing has been written since the table was
    emptied)."""
    if connection.dialect.name not in TRACKED_DIALECTS:
        return None
    return connection.exec_driver_sql(_READ).scalar()


def has_generation_table(connection: Connection) -> bool:
    """Whether the database has been migrated to hold the generation."""
    from sqlalchemy import inspect

    return inspect(connection).has_table(TABLE)
