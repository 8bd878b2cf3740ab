"""Writing a dataset's account rows to SQLite, and the upload job's row phase there.

``executemany`` of one prepared INSERT over tuples built from the table's arrays, inside
the caller's transaction. The background upload holds SQLite's single write lock at most
about :data:`SQLITE_HOLD_SECONDS` at a time and pauses between its transactions, so a
concurrent save (a decision, a note) is not starved (:func:`store_rows`).
"""

from __future__ import annotations

import time

import numpy as np
from sqlmodel import Session

from experiments.datasets import ROW_COLUMNS

#: Rows per ``executemany`` call.
INSERT_CHUNK = 100_000
#: A transaction of the background job ends (and the job pauses, see
#: :data:`SQLITE_YIELD_SECONDS`) once it has held the write lock this long: far below the
#: busy timeout of a concurrent save, and each pause costs the upload its length.
SQLITE_HOLD_SECONDS = 0.5
#: Pause between transactions. SQLite's lock is not fair: a writer waiting in the busy
#: handler polls every ~100 ms and would keep missing the instant between one chunk's
#: COMMIT and the next BEGIN; the pause lets it in.
SQLITE_YIELD_SECONDS = 0.15


def _blank_as_none(values: np.ndarray | None, count: int) -> list:
    if values is None:
        return [None] * count
    return [value or None for value in values.tolist()]


def _nan_as_none(values: np.ndarray | None, start: int, stop: int, *, whole: bool = False):
    """A float column's slice as Python values, NaN (blank) → None; whole cents as int."""
    if values is None:
        return [None] * (stop - start)
    if whole:
        return [None if v != v else int(v) for v in values[start:stop].tolist()]
    return [None if v != v else v for v in values[start:stop].tolist()]


def _iso_dates(values: np.ndarray | None, start: int, stop: int) -> list[str | None]:
    """A ``datetime64[D]`` slice as ISO text (SQLAlchemy's SQLite date format), NaT → None."""
    if values is None:
        return [None] * (stop - start)
    part = values[start:stop]
    text = np.datetime_as_string(part, unit="D").tolist()
    return [None if blank else day for blank, day in zip(np.isnat(part).tolist(), text,
                                                         strict=True)]


def _row_tuples(dataset_id: int, table, start: int, stop: int):
    count = stop - start
    days = _nan_as_none(table.days_to_value, start, stop)
    return zip(
        [dataset_id] * count,
        table.account_id[start:stop].tolist(),
        table.variant[start:stop].tolist(),
        table.start_cents[start:stop].tolist(),
        table.expansion_cents[start:stop].tolist(),
        table.contraction_cents[start:stop].tolist(),
        table.churned_cents[start:stop].tolist(),
        _blank_as_none(None if table.segment is None else table.segment[start:stop], count),
        days,
        _nan_as_none(table.days_observed, start, stop),
        _nan_as_none(table.pre_start_cents, start, stop, whole=True),
        _nan_as_none(table.pre_end_cents, start, stop, whole=True),
        _iso_dates(table.enrolled_on, start, stop),
        strict=True,
    )


def insert_rows(raw, dataset_id: int, table, start: int, total: int) -> None:
    """INSERT rows ``start:total`` of ``table`` on the sqlite3 connection ``raw``."""
    columns = ", ".join(ROW_COLUMNS)
    placeholders = ", ".join("?" for _ in ROW_COLUMNS)
    sql = f"INSERT INTO account_row ({columns}) VALUES ({placeholders})"  # noqa: S608
    if not raw.in_transaction:
        # The raw cursor bypasses the engine's begin-on-first-write hook (experiments/db.py):
        # without this every row would be its own autocommitted transaction (~40 µs a row).
        raw.execute("BEGIN IMMEDIATE")
    cursor = raw.cursor()
    for first in range(start, total, INSERT_CHUNK):
        cursor.executemany(
            sql, _row_tuples(dataset_id, table, first, min(total, first + INSERT_CHUNK)))
    cursor.close()


def store_rows(session: Session, job, dataset_id: int, table, *, chunk: int, insert,
               save) -> None:
    """Write the table's rows in short transactions, saving the job's progress with each.

    ``insert`` is :func:`experiments.datasets.bulk_insert_rows`, ``save`` the job's saver
    (``experiments.imports._save``): passed in so that tests can replace them there.
    """
    total = len(table)
    began = time.perf_counter()
    for start in range(0, total, chunk):
        stop = min(total, start + chunk)
        insert(session, dataset_id, table, start=start, stop=stop)
        if stop < total and time.perf_counter() - began < SQLITE_HOLD_SECONDS:
            continue  # the same transaction: no writer has waited long yet
        save(session, job, rows_stored=stop)
        if stop < total:
            time.sleep(SQLITE_YIELD_SECONDS)
            began = time.perf_counter()
