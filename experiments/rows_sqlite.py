"""Writing a dataset's account rows to SQLite, and the upload job's row phase there.

:func:`insert_rows` runs ``executemany`` of one prepared INSERT inside the caller's
transaction, shaped to cost SQLite and the sqlite3 module little per row (measured on
1M rows, file order, 2-core VM: 3.7 → 1.3 s of CPU):

* only the columns the file has, and the dataset id as a literal: every bound value
  is a Python ``str``, ``int`` or ``float``. A bound ``None`` is not one of the types
  the sqlite3 module binds directly: it goes through its adapter look-up (~0.3 µs).
* blanks without ``None``: float columns are bound as they are, NaN included, and
  SQLite stores a bound NaN as NULL (``sqlite3_bind_double``); whole cents held in
  float64 land in INTEGER columns as integers (column affinity); a blank segment ``''``
  and a missing date ``'NaT'`` become NULL in the statement (``NULLIF``).
* rows in file order whose account ids ascend are inserted :data:`ROWS_PER_STATEMENT`
  to a statement (one step, one bind call for many rows; fewer where the SQLite library
  allows fewer parameters a statement); other rows one to a statement, which measured
  faster for ids in random order (3.9 vs 6.3 s per 1M rows).
* a larger page cache (:data:`CACHE_KIB`) while inserting: rows in random account-id
  order touch index pages all over (1M rows: 9 → 4 s of CPU).
* the columns become Python values through one object array per chunk (:func:`_grid`),
  not by zipping and slicing lists, and a date column through its distinct days
  (:func:`_dates`): 1M rows of every column, 0.6 → 0.2 s of CPU before SQLite's own
  ~1.1 s. SQLite's part (two B-trees, constraints, the foreign key) and the commits
  (~0.25 s: pages written to the WAL and checkpointed) are what is left.

The background upload (:func:`store_rows`) ends its transaction every
:data:`SQLITE_HOLD_SECONDS` (its progress becomes visible) and lets a concurrent save
in as soon as one waits for the write lock (:mod:`experiments.sqlite_waiters`), rather
than pausing blindly.
"""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
from sqlmodel import Session

from experiments import sqlite_waiters
from experiments.generation import unseen_write

#: Rows per ``executemany`` call.
INSERT_CHUNK = 100_000
#: Rows per INSERT statement when the chunk's account ids ascend (a statement binds
#: 12 values a row at most: far below SQLite's 32,766 parameters).
ROWS_PER_STATEMENT = 500
#: Page cache of the inserting connection while it inserts, in KiB (default ~2 MB);
#: only pages actually read or written take memory.
CACHE_KIB = 65_536
#: A transaction of the background job ends (its progress is committed) once it has
#: held the write lock this long. No pause follows unless someone waits.
SQLITE_HOLD_SECONDS = 0.5
#: Writers outside the app (another program's connection) cannot announce their wait:
#: after this long without letting anyone in, the job pauses :data:`SQLITE_YIELD_SECONDS`
#: anyway, so such a writer waits at most ~2 s, well inside a 5 s busy timeout.
SQLITE_BLIND_SECONDS = 2.0
#: That pause. A writer waiting in SQLite's busy handler retries every 100 ms at most,
#: so a pause longer than that cannot be missed.
SQLITE_YIELD_SECONDS = 0.15
#: The job analyses the arrays while its rows are written (:func:`store_while_analysing`);
#: off: one after the other (``benchmarks/bench_upload_sqlite.py --overlap on,off``).
OVERLAP_ANALYSIS = True

# Optional columns: (column, AccountTable attribute, placeholder). Floats are bound as
# they are (NaN → NULL, see above).
_OPTIONAL = (
    ("segment", "segment", "NULLIF(?, '')"),
    ("days_to_value", "days_to_value", "?"),
    ("days_observed", "days_observed", "?"),
    ("pre_start_cents", "pre_start_cents", "?"),
    ("pre_end_cents", "pre_end_cents", "?"),
    ("enrolled_on", "enrolled_on", "NULLIF(?, 'NaT')"),
)
_REQUIRED = ("account_id", "variant", "start_cents", "expansion_cents", "contraction_cents",
             "churned_cents")


def _columns(table) -> list[tuple[str, str, str]]:
    """(column, attribute, placeholder) of the columns ``table`` has, in ROW_COLUMNS order."""
    present = [(name, name, "?") for name in _REQUIRED]
    present += [spec for spec in _OPTIONAL if getattr(table, spec[1], None) is not None]
    return present


def _dates(values: np.ndarray) -> np.ndarray:
    """``datetime64[D]`` values as the ISO text ``np.datetime_as_string`` writes ('NaT' for
    a blank), formatting each distinct day once (1M rows: 0.4 → 0.09 s of CPU)."""
    days, at = np.unique(values, return_inverse=True)  # NaT sorts last, formats as 'NaT'
    return np.array(np.datetime_as_string(days, unit="D").tolist(), dtype=object)[at]


def _grid(table, columns, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` as an object array (row, column) of Python values.

    Assigning a numpy column into an object array makes the same ``int``, ``float`` and
    ``str`` objects as ``tolist`` would; the grid's ``tolist`` then hands out the rows
    (or many rows a statement, by a reshape) without Python zipping and slicing them:
    1M rows of 8 columns, 0.19 → 0.10 s of CPU.
    """
    grid = np.empty((stop - start, len(columns)), dtype=object)
    for at, (_, attribute, _) in enumerate(columns):
        values = getattr(table, attribute)[start:stop]
        grid[:, at] = _dates(values) if attribute == "enrolled_on" else values
    return grid


def _ascending(ids: np.ndarray) -> bool:
    # Python orders str by code point, as SQLite's BINARY collation orders UTF-8 bytes.
    return len(ids) < 2 or bool((ids[:-1] < ids[1:]).all())


def insert_rows(raw, dataset_id: int, table, start: int, total: int) -> None:
    """INSERT rows ``start:total`` of ``table`` on the sqlite3 connection ``raw``."""
    columns = _columns(table)
    names = "dataset_id, " + ", ".join(name for name, _, _ in columns)
    row = f"({int(dataset_id)}, " + ", ".join(mark for _, _, mark in columns) + ")"
    head = f"INSERT INTO account_row ({names}) VALUES "  # noqa: S608  (names are ours)
    single = head + row
    # SQLite before 3.32 (still the system library of some hosts) allows 999 parameters.
    per_statement = min(ROWS_PER_STATEMENT,
                        raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // len(columns))
    many = head + ", ".join([row] * per_statement)
    width = len(columns) * per_statement
    if not raw.in_transaction:
        # The raw cursor bypasses the engine's begin-on-first-write hook (experiments/db.py):
        # without this every row would be its own autocommitted transaction (~40 µs a row).
        sqlite_waiters.begin_immediate(raw, sqlite_waiters.database_file(raw))
    cache = raw.execute("PRAGMA cache_size").fetchone()[0]
    raw.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    cursor = raw.cursor()
    try:
        for first in range(start, total, INSERT_CHUNK):
            stop = min(total, first + INSERT_CHUNK)
            grid = _grid(table, columns, first, stop)
            # The grid's ids (column 0, _REQUIRED's first): the table's may be an
            # ArrowText, which has no '<'.
            if per_statement < 2 or not _ascending(grid[:, 0]):
                cursor.executemany(single, grid.tolist())
                continue
            whole = len(grid) - len(grid) % per_statement
            cursor.executemany(many, grid[:whole].reshape(-1, width).tolist())
            if whole < len(grid):
                cursor.execute(head + ", ".join([row] * (len(grid) - whole)),
                               grid[whole:].ravel().tolist())
    finally:
        cursor.close()
        raw.execute(f"PRAGMA cache_size={int(cache)}")


def store_rows(session: Session, job, dataset_id: int, table, *, chunk: int, insert,
               save, stop_early: threading.Event | None = None) -> None:
    """Write the table's rows in short transactions, saving the job's progress with each.

    A transaction ends after :data:`SQLITE_HOLD_SECONDS`, or at once when another
    writer waits for the lock; then the job waits until that writer has had its turn.
    ``insert`` is :func:`experiments.datasets.bulk_insert_rows`, ``save`` the job's saver
    (``experiments.imports._save``): passed in so that tests can replace them there.
    """
    total = len(table)
    database = sqlite_waiters.database_file(session.connection().connection.driver_connection)
    with sqlite_waiters.Watch(database) as watch:
        # Without a way to see waiters, pause after every transaction, as before.
        blind_after = SQLITE_BLIND_SECONDS if watch.fd is not None else SQLITE_HOLD_SECONDS
        began = last_turn = time.perf_counter()
        for start in range(0, total, chunk):
            if stop_early is not None and stop_early.is_set():
                session.rollback()
                return
            stop = min(total, start + chunk)
            # Rows of an invisible dataset: no cached page shows them (imports._save).
            with unseen_write(session, "account_row"):
                insert(session, dataset_id, table, start=start, stop=stop)
            if stop == total:
                save(session, job, rows_stored=stop)
                break
            now = time.perf_counter()
            waiting = watch.fd is not None and watch.someone_waiting()
            blind = now - last_turn >= blind_after
            if not (waiting or blind or now - began >= SQLITE_HOLD_SECONDS):
                continue  # the same transaction
            save(session, job, rows_stored=stop)  # commits: the lock is free
            if waiting:
                watch.let_waiters_in()
            elif blind:
                time.sleep(SQLITE_YIELD_SECONDS)
            began = time.perf_counter()
            if waiting or blind:
                last_turn = began


def _second_connection_sees_it(session: Session) -> bool:
    """Whether another pooled connection opens the same database as ``session``'s.

    Not so in memory (``sqlite://``: each connection is a database of its own) nor for a
    temporary database; and a StaticPool would hand this very connection to the writer's
    thread.
    """
    from sqlalchemy.pool import StaticPool

    raw = session.connection().connection.driver_connection
    return (sqlite_waiters.database_file(raw) is not None
            and not isinstance(getattr(session.get_bind(), "pool", None), StaticPool))


def store_while_analysing(session: Session, job, experiment, dataset, table, *, chunk: int,
                          insert, save):
    """:func:`store_rows` on a second connection while this one analyses the table.

    sqlite3 lets go of the GIL inside each statement's step and numpy in its bulk
    operations, so on two cores the analysis of the arrays runs mostly beside the
    inserts (WAL: this connection's reads do not wait for the writer). Returns the
    snapshot, not yet added (None when :data:`OVERLAP_ANALYSIS` is off or the database is
    in memory: the caller analyses); raises what the writer raised, once it has stopped.
    """
    if not OVERLAP_ANALYSIS or not _second_connection_sees_it(session):
        store_rows(session, job, dataset.id, table, chunk=chunk, insert=insert, save=save)
        return None  # the caller analyses
    from experiments.analysis import analyse_dataset
    from experiments.datasets import AccountRatios
    from experiments.models import UploadJob

    failure: list[BaseException] = []
    stop_early = threading.Event()
    job_id, dataset_id = job.id, dataset.id

    def write() -> None:
        try:
            with Session(session.get_bind(), expire_on_commit=False) as writer:
                store_rows(writer, writer.get(UploadJob, job_id), dataset_id, table,
                           chunk=chunk, insert=insert, save=save, stop_early=stop_early)
        except BaseException as exc:  # noqa: BLE001  (handed to the caller below)
            failure.append(exc)

    writer = threading.Thread(target=write, name=f"upload-{job_id}-rows")
    writer.start()
    try:
        analysed = analyse_dataset(session, experiment, dataset,
                                   ratios=AccountRatios.of_table(table))
        session.commit()  # done reading: the writer's progress is seen from here on
    except BaseException:
        stop_early.set()
        raise
    finally:
        writer.join()
    if failure:
        raise failure[0]
    session.refresh(job)
    return analysed
