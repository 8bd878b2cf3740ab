"""Writing a dataset's account rows to PostgreSQL, and the upload job's row phase there.

``COPY … FROM STDIN (FORMAT csv)`` fed whole CSV blocks that pyarrow writes from the
table's arrays (no Python object per value). The background upload writes the rows on
:data:`WRITERS` more connections at once while its own analyses the arrays
(:func:`store_while_analysing`). The foreign key to ``dataset`` is kept by
statement-level triggers here (:mod:`experiments.account_row_link`), not checked per row.
"""

from __future__ import annotations

import io
import threading

import numpy as np
from sqlalchemy import text, update
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session

from experiments.datasets import ROW_COLUMNS
from experiments.generation import unseen_write
from experiments.rows_sqlite import _blank_as_none

#: Rows per CSV block handed to COPY.
COPY_CHUNK = 100_000
#: Connections writing one upload's rows at once (:func:`store_while_analysing`). The
#: server's work per row (constraints, two indexes) is most of an upload; two writers
#: spread it over the two cores of the machine measured (BENCHMARKS.md, issue 18).
WRITERS = 2
#: The upload job's rows get ids ``dataset_id << ROW_ID_BITS`` plus their index in the
#: file (``ids_by_line``): they stay in file order by id (the export bundle reads them
#: so) however the writers interleave their chunks, and the server draws no sequence
#: value per row. Dataset ids are below 2**31 (INTEGER), so these ids stay below 2**63
#: and above every sequence value short of 2**32 rows; a file would need 2**32 rows to
#: reach the next dataset's ids.
ROW_ID_BITS = 32


def _csv_block(dataset_id: int, table, start: int, stop: int, *, ids_by_line: bool) -> bytes:
    """Rows ``start:stop`` as CSV for ``COPY … (FORMAT csv)``: text quoted, NULL unquoted
    empty; with ``ids_by_line`` the first column is each row's id (:data:`ROW_ID_BITS`)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    count = stop - start
    segment = table.segment
    segments = pa.array(
        _blank_as_none(None if segment is None else segment[start:stop], count), pa.string()
    )
    days = table.days_to_value

    def floats(values):
        # from_pandas=True turns NaN (blank) into NULL
        if values is None:
            return pa.nulls(count, pa.float64())
        return pa.array(values[start:stop], pa.float64(), from_pandas=True)

    def cents(values):
        return floats(values).cast(pa.int64())  # whole cents held in float64: exact

    enrolled = table.enrolled_on
    ids = {}
    if ids_by_line:
        first_id = (dataset_id << ROW_ID_BITS) + start
        ids["id"] = pa.array(np.arange(first_id, first_id + count, dtype=np.int64))
    block = pa.table(
        {
            **ids,
            "dataset_id": pa.array(np.full(count, dataset_id, dtype=np.int64)),
            "account_id": pa.array(table.account_id[start:stop], pa.string()),
            "variant": pa.array(table.variant[start:stop], pa.string()),
            "start_cents": pa.array(table.start_cents[start:stop]),
            "expansion_cents": pa.array(table.expansion_cents[start:stop]),
            "contraction_cents": pa.array(table.contraction_cents[start:stop]),
            "churned_cents": pa.array(table.churned_cents[start:stop]),
            "segment": segments,
            # from_pandas=True turns NaN (value not reached) into NULL
            "days_to_value": (
                pa.array(days[start:stop], pa.float64(), from_pandas=True)
                if days is not None
                else pa.nulls(count, pa.float64())
            ),
            "days_observed": floats(table.days_observed),
            "pre_start_cents": cents(table.pre_start_cents),
            "pre_end_cents": cents(table.pre_end_cents),
            "enrolled_on": (
                pa.array(enrolled[start:stop], pa.date32(), from_pandas=True)
                if enrolled is not None
                else pa.nulls(count, pa.date32())
            ),
        }
    )
    out = io.BytesIO()
    pa_csv.write_csv(block, out, write_options=pa_csv.WriteOptions(include_header=False))
    return out.getvalue()


def copy_rows(raw, dataset_id: int, table, start: int, total: int, *,
              ids_by_line: bool = False) -> None:
    """COPY rows ``start:total`` of ``table`` on the psycopg connection ``raw``
    (``ids_by_line``: see :data:`ROW_ID_BITS`)."""
    columns = ", ".join(("id", *ROW_COLUMNS) if ids_by_line else ROW_COLUMNS)
    cursor = raw.cursor()
    with cursor.copy(f"COPY account_row ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
        for first in range(start, total, COPY_CHUNK):
            copy.write(_csv_block(dataset_id, table, first, min(total, first + COPY_CHUNK),
                                  ids_by_line=ids_by_line))
    cursor.close()


def store_while_analysing(session: Session, job, experiment, dataset, table, *, chunk: int,
                          insert, writers: int | None = None):
    """Store the rows on ``writers`` more connections while this one analyses the table.

    PostgreSQL spends most of an upload checking and indexing the rows in its own
    processes; several connections COPYing disjoint chunks at once spread that over the
    cores, and the analysis needs only the arrays in memory, so it runs meanwhile. Each
    chunk is its own transaction, which also adds its rows to the job's ``rows_stored``
    (so the progress is monotone and counts committed rows only). The first failure of
    any writer stops the others after their current chunk and is raised here once all
    have stopped (the caller discards the dataset); the dataset stays invisible
    throughout. A writer takes a connection from the engine's pool for each chunk; one
    that waits for it in vain (the pool's timeout) stops without failing, and chunks no
    writer took are written on this connection at the end. Returns the snapshot, not
    yet added.

    ``insert`` is :func:`experiments.datasets.bulk_insert_rows`, passed in so that tests
    can replace it.
    """
    from experiments.analysis import analyse_dataset
    from experiments.datasets import AccountRatios

    total = len(table)
    starts = iter(range(0, total, chunk))
    taking = threading.Lock()
    failure: list[BaseException] = []
    stop_early = threading.Event()
    job_id, dataset_id, bind = job.id, dataset.id, session.get_bind()

    def next_start() -> int | None:
        with taking:
            return next(starts, None)

    def store(on: Session, start: int) -> None:
        stop = min(total, start + chunk)
        # Rows of a dataset nobody sees yet: their commit need not wait for the disk. A
        # crash loses at most these (the sweep removes the dataset), and the commit that
        # makes the version visible is synchronous, flushing everything before it.
        on.execute(text("SET LOCAL synchronous_commit TO OFF"))
        # Rows of an invisible dataset and the job's progress: no cached page shows them.
        with unseen_write(on, "account_row", "upload_job", rewrites=True):
            insert(on, dataset_id, table, start=start, stop=stop, ids_by_line=True)
            _count_stored(on, job_id, stop - start)
        on.commit()

    def write() -> None:
        try:
            with Session(bind) as writer:
                while not stop_early.is_set():
                    # The connection before the chunk: a writer the app's pool has no
                    # connection for (several uploads and requests at once) leaves its
                    # chunks to the others rather than failing the upload.
                    try:
                        writer.connection()
                    except PoolTimeout:
                        return
                    if (start := next_start()) is None:
                        return
                    store(writer, start)
        except BaseException as exc:  # noqa: BLE001  (handed to the caller below)
            failure.append(exc)
            stop_early.set()

    # The analysis's connection before the writers start, so that they cannot leave it
    # waiting for one (they can wait, and leave their chunks to it).
    session.connection()
    threads = [threading.Thread(target=write, name=f"upload-{job_id}-rows-{n}")
               for n in range(max(1, WRITERS if writers is None else writers))]
    for thread in threads:
        thread.start()
    try:
        analysed = analyse_dataset(session, experiment, dataset,
                                   ratios=AccountRatios.of_table(table))
        # Done reading: end this transaction so that the writers' progress is seen.
        session.commit()
    except BaseException:
        stop_early.set()
        raise
    finally:
        for thread in threads:
            thread.join()
    if failure:
        raise failure[0]
    # Chunks left by writers that got no connection: written on the job's own.
    while (start := next_start()) is not None:
        store(session, start)
    session.refresh(job)
    if job.rows_stored != total:  # every chunk counts its rows as it commits them
        raise RuntimeError(f"upload job {job_id}: {job.rows_stored} of {total} rows stored")
    return analysed


def _count_stored(session: Session, job_id: int, rows: int) -> None:
    """Add ``rows`` to the job's progress in the transaction that stores them."""
    from experiments.models import UploadJob, utcnow

    session.execute(update(UploadJob).where(UploadJob.id == job_id)
                    .values(rows_stored=UploadJob.rows_stored + rows, updated_at=utcnow()))
