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
3. write its rows in transactions of :data:`STORE_CHUNK` rows (on SQLite with a pause
   between them, so a waiting writer gets the lock);
4. make it current in one transaction (:func:`experiments.ledger.activate_version`:
   number, pointers, figures, audit).

A failure at any step deletes what it wrote; two uploads at once each finish whole, and
the one that activates later is the later version.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.engine import Engine
from sqlmodel import Session

from experiments.db import write_engine
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
from experiments.ledger_models import LedgerVersion
from experiments.models import User

#: Rows written per transaction: each holds SQLite's write lock well under a second.
STORE_CHUNK = 100_000
#: Pause between chunks on SQLite, whose lock is not fair (see experiments.imports).
SQLITE_YIELD_SECONDS = 0.15


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
    # A writer's engine: on SQLite each transaction takes the write lock at its start.
    with Session(write_engine(engine), expire_on_commit=False) as session:
        actor = session.get(User, actor_id) if actor_id is not None else None
        check_upload(session, table)
        version = reserve_version(session, table, filename=filename, actor=actor)
        session.commit()
        try:
            pause = SQLITE_YIELD_SECONDS if engine.dialect.name == "sqlite" else 0
            total = len(table)
            with ThreadPoolExecutor(max_workers=1) as pool:
                # Computed while the rows are written; used if this upload then owns
                # every current period.
                own_figures = figures_in_background(pool, session, table)
                for start in range(0, total, STORE_CHUNK):
                    stop = min(total, start + STORE_CHUNK)
                    insert_rows(session, version, table, start=start, stop=stop)
                    session.commit()
                    if pause and stop < total:
                        time.sleep(pause)
                activate_version(session, version, table, actor=actor,
                                 own_figures=own_figures)
            session.commit()
        except BaseException:
            session.rollback()
            discard_version(session, version.id)
            session.commit()
            raise
        return version
