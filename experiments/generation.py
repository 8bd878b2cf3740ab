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

**Writes no cached page shows** (issue 18: a probe must not keep everyone's pages cold).
A few frequent writes only append rows to tables that no cached view reads, so moving the
number for them only empties the page cache. The code making such a write wraps it in
:func:`unseen_write`, naming the tables; a transaction moves nothing when *everything* it
wrote was written inside such blocks, which the commit hook checks with the database
rather than trusting the mark:

* **SQLite**: the rows each block changed are counted (``total_changes`` before and after
  the block's flush; the session is flushed before the block, so pending writes of
  other code land outside it) and must equal the rows it appended to the named tables
  (their largest ``rowid`` before and after, read under the write lock, which the block
  takes first: no other connection appends meanwhile); at commit the transaction's count
  since ``begin`` must equal the blocks' sum. Anything else moves the number as any write.
* **PostgreSQL**: the same counts from the backend's statistics of the transaction
  (``pg_stat_xact_all_tables``: rows inserted, updated or deleted in every table, catalogs
  and TOAST tables included, so DDL and ``TRUNCATE`` count too): each block's change in
  the total must equal its change in the rows inserted into the named tables; the
  transaction must have had no id before its first block (nothing written yet); at
  commit the total since that block must equal the blocks' sum. (The view may include
  earlier transactions' counts not yet reported, which do not change inside this one;
  with ``track_counts = off`` nothing counts, so a transaction with an id whose blocks
  counted no row moves the number.) One query before and after each block and one at commit,
  only in transactions that hold a mark.

The mark lives on the connection for one transaction: ``begin``, ``commit`` and
``rollback`` all drop it. What is marked, and why no cached page (``webapp.page_cache``:
dashboard, experiments, results, tree, review, NRR, My week, quarter, journeys) shows it:

* ``authz.denied`` audit rows (``experiments.denials``), one per refused request: the
  audit log is read only by the admin audit pages, the sign-in and API-token checks and
  edit-conflict messages, none of them cached.
* the sign-in limiter's counters (``login_throttle``, updated and swept: ``rewrites``)
  and its ``auth.login_failed`` / ``auth.login_throttled`` rows (``experiments.signin``),
  one or two per attempt, anonymous ones included: read only by the limiter.
* an API token's use (``experiments.api_tokens.record_use``): its ``last_used_at``/``_ip``
  stamp (``rewrites``; at most once a minute per token) and ``api_token.use`` row, shown
  only by the owner's token list (``/account/tokens``) and the admin audit log, neither
  cached. Without the mark a pipeline calling the API kept every page uncached.
* ``export.<format>`` audit rows of every download (``experiments.exports``,
  ``experiments.nrr_export``, the audit log's own CSV in ``experiments.audit``): read only
  by the admin audit log. (A review export that freezes a week also writes the week:
  that write is outside the mark, so the number moves.)
* a notification being sent (``experiments.notify.deliver``): the claim and the outcome
  (``rewrites`` of ``notification_delivery``), shown only by the admin delivery log.
* the background upload before its version is visible (``experiments.imports._save``,
  ``rows_sqlite.store_rows``, ``rows_postgres.store_while_analysing``): the job's state and
  progress (``upload_job``, ``rewrites``), shown only by the upload's status component
  and the API's job resource, never by a cached page (they render the upload form idle),
  and the row chunks of the still importing dataset (``account_row``), which every reader
  leaves out (``Dataset.status``). The transactions that reserve the version and make it
  ready write other tables and move the number as any write.
* the ledger upload before its version is current (``experiments.ledger_import``): the
  *importing* ``ledger_version`` row and its row chunks (``ledger_row``, and the
  version's row-id range: ``rewrites``). Every reader of versions asks for
  ``status = 'ready'``; rows are read only through the periods' pointers, which the
  activating transaction moves (and that one moves the number).
* the review's copies of a *running* week (``experiments.review_rows.meeting_state``:
  ``review_item`` rows and their ``seen``, ``rewrites``; ``experiments.review_tree``:
  ``review_tree_seen``), written by the week's own view when an experiment's row or the
  tree summary changed. While the week runs its page renders the fresh rows and tree;
  only a past week renders from the copies. Without the mark the first view after any
  edit moved the number a second time: every kept page was emptied again and the review
  itself rendered twice. A view begun in the week's last five minutes is not marked
  (``review_rows.UNSEEN_COPIES_BEFORE_END``): its commit may land when the week is past,
  and a past week's page and frozen rows kept under the same generation would show the
  older copies for up to two minutes (the kept rows' minute, then a page's). A past
  week's first freeze is not marked.

On PostgreSQL a named table's TOAST table counts as the table (a long ``seen`` document is
stored out of line).

Not marked, and so still moving the number: a successful sign-in (it changes the user
row); rare admin actions on deliveries (a test message, a retry: audited, and the
delivery's creation is a write of the action itself); deliveries made by an event (in the
event's own transaction).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
#: ``connection.info`` key of this transaction's :func:`unseen_write` mark.
_UNSEEN = "nrrlab_unseen_writes"
#: ``connection.info`` key of this transaction's :func:`read_generation`: (transaction, n).
_READ_IN = "nrrlab_generation_read"
#: Rows this backend inserted, updated or deleted in every table (catalogs and TOAST
#: included) as its statistics count them within the transaction, the rows inserted into
#: the named tables, the rows changed in them, and whether the transaction has written
#: before (it has an id). The relations and functions of ``pg_stat_xact_all_tables``,
#: without its index join and grouping (1.6 ms instead of 2.5 ms here).
_PG_COUNTS = """
SELECT coalesce(sum(changed), 0),
       coalesce(sum(inserted) FILTER (WHERE named), 0),
       coalesce(sum(changed) FILTER (WHERE named), 0),
       txid_current_if_assigned() IS NOT NULL
FROM (SELECT pg_stat_get_xact_tuples_inserted(c.oid) AS inserted,
             pg_stat_get_xact_tuples_inserted(c.oid) + pg_stat_get_xact_tuples_updated(c.oid)
             + pg_stat_get_xact_tuples_deleted(c.oid) AS changed,
             c.oid IN (SELECT o.oid_ FROM pg_class AS n,
                         LATERAL (VALUES (n.oid), (n.reltoastrelid)) AS o (oid_)
                       WHERE n.relname = ANY(%s) AND n.relkind IN ('r', 'p')
                         AND n.relnamespace NOT IN
                         ('pg_catalog'::regnamespace, 'pg_toast'::regnamespace,
                          'information_schema'::regnamespace)) AS named
      FROM pg_class AS c WHERE c.relkind IN ('r', 't', 'm', 'p')) AS counts
"""
# A named table's TOAST table is that table's data (a long JSON or text value stored out of
# line): its rows count as the named table's, not as a write elsewhere.
#: A change count no transaction reaches: a block that wrote something else.
_SPOILT = -(10**18)
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
        event.listen(engine, "begin", _drop_mark)
        event.listen(engine, "commit", _postgresql_commit)
    if dialect in TRACKED_DIALECTS:
        event.listen(engine, "rollback", _drop_mark)


@contextmanager
def unseen_write(session: Any, *tables: str, rewrites: bool = False) -> Iterator[None]:
    """Mark the rows ``session`` writes to ``tables`` inside the block as shown by no
    cached page.

    The block may only *insert* into ``tables`` (checked: the changes must be new rows of
    those tables), unless ``rewrites``: then it may also update or delete rows of them
    (checked on PostgreSQL; SQLite cannot tell one table's changes from another's, so
    there only "nothing outside the block" is checked: keep such a block to statements on
    the named tables). Use it only for tables no view under ``webapp.page_cache`` reads,
    and list the write in the module docstring. The session is flushed before and after
    the block; an exception inside leaves nothing marked. The mark only spares the
    transaction from moving the generation when the database confirms it wrote nothing
    else (module docstring).
    """
    session.flush()
    connection = session.connection()
    if connection.dialect.name not in TRACKED_DIALECTS:
        yield
        return
    if connection.dialect.name == "sqlite":
        _sqlite_write_lock(connection)
        counts = _sqlite_counts
    else:
        counts = _postgresql_counts
    total, named, wrote_before = counts(connection, tables, rewrites)
    yield
    session.flush()
    total_after, named_after, _ = counts(connection, tables, rewrites)
    mark = connection.info.get(_UNSEEN)
    if mark is None:
        # PostgreSQL counts from the first block on, so nothing may have been written
        # before it (SQLite counts from ``begin``).
        mark = connection.info[_UNSEEN] = {"base": total,
                                           "changes": _SPOILT if wrote_before else 0}
    made = total_after - total
    # Every row the block changed must be a row of a named table (appended unless
    # ``rewrites``); SQLite's rewriting blocks have no per-table count (``None``).
    checked = named is None or made == named_after - named
    mark["changes"] += made if checked else _SPOILT


def _sqlite_write_lock(connection: Connection) -> None:
    """Take SQLite's write lock before the block is counted, as ``experiments.db`` does at
    a first write (announced to a long upload). Until then another connection may append
    to the named tables, and its rows would pass for rows of the block."""
    raw = connection.connection.dbapi_connection
    if not raw.in_transaction:
        from experiments import sqlite_waiters
        from experiments.db import _SQLITE_FILE

        sqlite_waiters.begin_immediate(raw, connection.connection.info.get(_SQLITE_FILE))


def _sqlite_counts(connection: Connection, tables: tuple[str, ...],
                   rewrites: bool) -> tuple[int, int | None, bool]:
    """Rows the connection changed so far, and the named tables' largest rowids summed
    (one B-tree descent each: an insert-only block moves it by the rows it appended;
    ``None`` for a block that may rewrite rows)."""
    raw = connection.connection.dbapi_connection
    if rewrites:
        return raw.total_changes, None, False
    quote = connection.dialect.identifier_preparer.quote
    cursor = raw.cursor()
    try:
        ends = sum(cursor.execute(f"SELECT coalesce(max(rowid), 0) FROM {quote(t)}")  # noqa: S608
                   .fetchone()[0] for t in tables)
    finally:
        cursor.close()
    return raw.total_changes, ends, False


def _postgresql_counts(connection: Connection, tables: tuple[str, ...],
                       rewrites: bool = False) -> tuple[int, int, bool]:
    """The backend's row counts of this transaction (``_PG_COUNTS``). Pending counts of
    earlier transactions may be included, but they do not change inside this one: only
    differences are compared."""
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        total, appended, changed, wrote = cursor.execute(
            _PG_COUNTS, (list(tables),)).fetchone()
    finally:
        cursor.close()
    return int(total), int(changed if rewrites else appended), bool(wrote)


def _drop_mark(connection: Connection) -> None:
    connection.info.pop(_UNSEEN, None)
    connection.info.pop(_READ_IN, None)


def _increment(dialect: str) -> str:
    return _INCREMENT.format(now=time.time_ns() // 1000, larger=_LARGER[dialect])


def _sqlite_begin(connection: Connection) -> None:
    connection.info.pop(_UNSEEN, None)
    connection.info.pop(_READ_IN, None)
    connection.info[_CHANGES_AT_BEGIN] = connection.connection.dbapi_connection.total_changes


def _sqlite_commit(connection: Connection) -> None:
    raw = connection.connection.dbapi_connection
    connection.info.pop(_READ_IN, None)
    mark = connection.info.pop(_UNSEEN, None)
    at_begin = connection.info.pop(_CHANGES_AT_BEGIN, None)
    # No count from begin (a listener added mid-transaction): assume it wrote.
    if raw.total_changes == at_begin:
        return
    if mark is not None and at_begin is not None \
            and raw.total_changes - at_begin == mark["changes"]:
        return  # every row it changed was changed inside an unseen_write block
    cursor = raw.cursor()
    try:
        if cursor.execute(_SQLITE_HAS_TABLE).fetchone() is not None:
            cursor.execute(_increment("sqlite"))
    finally:
        cursor.close()


def _postgresql_commit(connection: Connection) -> None:
    raw = connection.connection.dbapi_connection
    from psycopg.pq import TransactionStatus

    connection.info.pop(_READ_IN, None)
    mark = connection.info.pop(_UNSEEN, None)
    # An aborted transaction's COMMIT is a rollback: nothing to count (and no statement
    # could run in it).
    if raw.info.transaction_status != TransactionStatus.INTRANS:
        return
    cursor = raw.cursor()
    try:
        wrote = cursor.execute(_PG_WROTE_AND_HAS_TABLE).fetchone()[0]
        # A mark that counted no row proves nothing: with ``track_counts = off`` nothing
        # counts, the blocks' rows and any write after them alike.
        if wrote and mark is not None and mark["changes"] > 0:
            total = _postgresql_counts(connection, ())[0]
            wrote = total - mark["base"] != mark["changes"]
        if wrote:
            cursor.execute(_increment("postgresql"))
    finally:
        cursor.close()


def read_generation(connection: Connection) -> int | None:
    """The current generation, one primary-key read; ``None`` when it cannot be trusted
    (an untracked dialect, or no row yet: nothing has been written since the table was
    emptied).

    Read once per transaction: a second call in the transaction of the first answers the
    first read (issue 18: the page cache and the kept review rows both ask on every first
    view after a write). The first read is the right answer for every later caller in the
    transaction: each keys something computed from data it reads *after* asking, and
    that data is at least as new as the first read (the number only moves when a write
    commits, which is also when its data becomes visible), so "kept under *g* shows data
    at least as new as *g*" holds for both. A newer number read later (PostgreSQL's READ
    COMMITTED can see another commit mid-transaction) would not be safe for the page
    cache, whose key is read before the page's data. The memo is the transaction's: it
    names the transaction object it was read in and is dropped at ``begin``, ``commit``
    and ``rollback``, so a new transaction reads the row again.
    """
    if connection.dialect.name not in TRACKED_DIALECTS:
        return None
    seen = connection.info.get(_READ_IN)
    if seen is not None and seen[0] is connection.get_transaction():
        return seen[1]
    n = connection.exec_driver_sql(_READ).scalar()  # begins the transaction if none has
    transaction = connection.get_transaction()
    if transaction is not None:
        connection.info[_READ_IN] = (transaction, n)
    return n


def has_generation_table(connection: Connection) -> bool:
    """Whether the database has been migrated to hold the generation."""
    from sqlalchemy import inspect

    return inspect(connection).has_table(TABLE)
