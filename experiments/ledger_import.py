"""The ledger upload of the web page: :func:`experiments.ledger.import_ledger` in short
transactions.

Synchronous, not a background job (:mod:`experiments.jobs`), on purpose: a ledger is
uploaded about once a month by one person, a million rows take a few seconds
(BENCHMARKS.md), and the page can then answer with the new version or every
line-numbered error at once, without a job table, a spool file and polling. What the
background account upload buys — other writers never waiting on an import — is kept
by doing the same steps it does:

1. read and validate the file, holding no lock;
2. reserve an *importing* version (invisible, unnumbered) — one short transaction;
3. write its rows in transactions of :data:`STORE_CHUNK` rows (on SQLite, between them,
   a writer waiting for the lock is let in first: :mod:`experiments.sqlite_waiters`, as
   the background upload does; nobody waiting, no pause);
4. make it current in one transaction (:func:`experiments.ledger.activate_version`:
   number, pointers, figures, audit).

Steps 2 and 3 leave the data generation as it was (:func:`experiments.generation.unseen_write`):
an *importing* version and its rows are read by no page until step 4 (every reader of
``ledger_version`` asks for ``status = 'ready'``, and ``ledger_row`` is read only through
the periods' pointers, which step 4 moves), so kept pages stay kept during an import.
Step 4 moves it, and the pages that show the ledger show the new version at once.

A failure at any step deletes what it wrote; two uploads at once each finish whole, and
the one that activates later is the later version. A process that dies mid-import (a
killed web worker, a restart) cannot: its importing version and the chunks it committed
stay, invisible, until :func:`sweep_stale_ledger_imports` deletes them
(at the next ledger upload, and with the upload sweep: after each background upload
and when a job worker starts, ``nrrlab serve`` or ``nrrlab worker``).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from experiments import rows_sqlite, sqlite_waiters
from experiments.db import write_engine
from experiments.generation import unseen_write
from experiments.ledger import (
    MAX_REPORTED_ERRORS,
    activate_version,
    check_upload,
    discard_version,
    figures_in_background,
    insert_rows,
    reserve_version,
)
from experiments.ledger_csv import read_ledger
from experiments.ledger_models import LedgerRow, LedgerVersion
from experiments.models import User

#: Rows written per transaction: each holds SQLite's write lock well under a second.
STORE_CHUNK = 100_000
#: SQLite's lock is not fair (experiments.sqlite_waiters): writers of the app announce
#: their wait and are let in between chunks. Writers outside the app cannot announce it:
#: after this long without letting anyone in, the import pauses
#: :data:`SQLITE_YIELD_SECONDS` anyway. Both are the background upload's
#: (experiments.rows_sqlite), named here so that tests can change them for the import.
SQLITE_BLIND_SECONDS = rows_sqlite.SQLITE_BLIND_SECONDS
SQLITE_YIELD_SECONDS = rows_sqlite.SQLITE_YIELD_SECONDS
#: An importing version reserved this long ago belongs to an upload whose process died:
#: a web request is cut off after 60 s (webapp.gunicorn_conf) and the largest file takes
#: minutes, so a live import is never this old.
STALE_AFTER = timedelta(hours=1)


def sweep_stale_ledger_imports(engine: Engine, *, now: datetime | None = None) -> int:
    """Delete the importing versions reserved before :data:`STALE_AFTER` and their rows:
    what an upload cut off mid-import left (its own clean-up never ran). Returns how many
    versions were removed; one short transaction each, none when there is nothing stale."""
    cutoff = (now or datetime.now(UTC)) - STALE_AFTER
    with Session(engine) as session:
        found = session.exec(select(LedgerVersion.id, LedgerVersion.uploaded_at)
                             .where(LedgerVersion.status == "importing")).all()
    removed = 0
    for version_id, uploaded_at in found:
        if uploaded_at.tzinfo is None:  # SQLite hands back naive UTC
            uploaded_at = uploaded_at.replace(tzinfo=UTC)
        if uploaded_at < cutoff and _discard_if_importing(engine, version_id):
            removed += 1
    return removed


def _discard_if_importing(engine: Engine, version_id: int) -> bool:
    """Delete version ``version_id`` and its rows if it is still importing, checked under
    its lock (SQLite: the write lock): activation takes the same lock first, so a version
    made current since it was listed keeps its rows."""
    with Session(write_engine(engine)) as session:
        still = session.exec(select(LedgerVersion.id).where(
            LedgerVersion.id == version_id, LedgerVersion.status == "importing",
        ).with_for_update()).first()
        if still is None:
            return False
        discard_version(session, version_id)
        session.commit()
        return True


def store_ledger_upload(
    engine: Engine,
    data: bytes,
    *,
    dimensions: str | tuple[str, ...] | list[str] | None,
    actor_id: int | None,
    filename: str,
) -> LedgerVersion:
    """Validate ``data`` and store it as the next ledger version (committed).

    Raises
    ------
    ImportValidationError
        The file or the declared dimensions break the contract; nothing was stored.
    DuplicateLedger
        The file is the latest version again; nothing was stored.
    """
    table = read_ledger(data, dimensions=dimensions or (), max_errors=MAX_REPORTED_ERRORS)
    sweep_stale_ledger_imports(engine)
    # A writer's engine: on SQLite each transaction takes the write lock at its start.
    with Session(write_engine(engine), expire_on_commit=False) as session:
        actor = session.get(User, actor_id) if actor_id is not None else None
        check_upload(session, table)
        # Invisible until activated: no page reads an importing version (module docstring).
        with unseen_write(session, LedgerVersion.__tablename__):
            version = reserve_version(session, table, filename=filename, actor=actor)
        sqlite_file = sqlite_waiters.database_file(
            session.connection().connection.driver_connection
        ) if engine.dialect.name == "sqlite" else None
        session.commit()
        watch = sqlite_waiters.Watch(sqlite_file) if engine.dialect.name == "sqlite" else None
        try:
            total = len(table)
            with ThreadPoolExecutor(max_workers=1) as pool:
                # Computed while the rows are written; used if this upload then owns
                # every current period.
                own_figures = figures_in_background(pool, session, table)
                last_turn = time.perf_counter()
                for start in range(0, total, STORE_CHUNK):
                    stop = min(total, start + STORE_CHUNK)
                    # Rows of the importing version and its row-id range.
                    with unseen_write(session, LedgerRow.__tablename__,
                                      LedgerVersion.__tablename__, rewrites=True):
                        insert_rows(session, version, table, start=start, stop=stop)
                    session.commit()
                    if watch is not None:
                        last_turn = _let_writers_in(watch, last_turn)
                activate_version(session, version, table, actor=actor,
                                 own_figures=own_figures)
            session.commit()
        except BaseException:
            session.rollback()
            discard_version(session, version.id)
            session.commit()
            raise
        finally:
            if watch is not None:
                watch.close()
        return version


def _let_writers_in(watch: sqlite_waiters.Watch, last_turn: float) -> float:
    """After a chunk's COMMIT on SQLite: let waiting writers take the lock before the next
    transaction (no pause when nobody waits); returns when a writer last had its turn.

    Where waits cannot be seen, ``someone_waiting`` is always True and ``let_waiters_in``
    pauses 0.15 s: the old fixed pause."""
    if watch.someone_waiting():
        watch.let_waiters_in()
        return time.perf_counter()
    if time.perf_counter() - last_turn >= SQLITE_BLIND_SECONDS:
        time.sleep(SQLITE_YIELD_SECONDS)  # for writers outside the app
        return time.perf_counter()
    return last_turn
