"""Writing a dataset's account rows to PostgreSQL, and the upload job's row phase there.

``COPY … FROM STDIN (FORMAT binary)`` fed whole blocks built from the table's arrays with
numpy and pyarrow, no Python object per value (:func:`_binary_block`): the server then
parses no text. Against the CSV blocks this replaced (issue 18; 1M rows in 25,000-row
transactions on one connection, alternating, load ~4 on 2 cores): building the blocks
1.16 → 0.65 s of CPU, the server's CPU 6.71 → 5.84 s. The background upload writes the
rows on :data:`WRITERS` more connections at once while its own analyses the arrays
(:func:`store_while_analysing`). The foreign key to ``dataset`` is kept by
statement-level triggers here (:mod:`experiments.account_row_link`), not checked per row.

The binary format (PostgreSQL's "COPY" page, "Binary Format"): a signature, then per row
the number of fields (int16) and per field its length in bytes (int32; -1 is NULL, with
no bytes) and its bytes, all integers big-endian; then -1 (int16). Fixed-width fields
(``bigint``, ``integer``, ``double precision``, ``date``: days since 2000-01-01) are laid
out by a numpy structured array, one record per row; text values and fields that are
NULL in some rows only are variable-length, and pyarrow joins each row's parts
(``binary_join_element_wise``). Only the columns the table has are sent; the others are
NULL by default.
"""

from __future__ import annotations

import threading

import numpy as np
from sqlalchemy import text, update
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlmodel import Session

from experiments.accounts_csv.contract import ArrowText
from experiments.generation import unseen_write

#: Rows per block handed to COPY.
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

_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # then flags and extension length: 0
_TRAILER = b"\xff\xff"
_NULL = -1
#: Days from numpy's epoch (1970-01-01) to PostgreSQL's (2000-01-01).
_PG_EPOCH_DAYS = 10_957

# The columns after the fixed ones: (column, AccountTable attribute, kind), sent when the
# table has them. "cents": whole cents in float64 (NaN blank) sent as bigint.
_NUMBERS = (
    ("days_to_value", "days_to_value", "float"),
    ("days_observed", "days_observed", "float"),
    ("pre_start_cents", "pre_start_cents", "cents"),
    ("pre_end_cents", "pre_end_cents", "cents"),
    ("enrolled_on", "enrolled_on", "date"),
)
#: Above this many (variant, segment) pairs in a block, the segment is sent as text.
_FEW_PAIRS = 1024
_MONEY = ("start_cents", "expansion_cents", "contraction_cents", "churned_cents")


def copy_columns(table, *, ids_by_line: bool) -> tuple[str, ...]:
    """The columns :func:`_binary_block` sends for ``table``, in its order."""
    return (
        *(("id",) if ids_by_line else ()), "dataset_id", *_MONEY, "account_id",
        *(column for column, attribute, _ in _NUMBERS if getattr(table, attribute) is not None),
        "variant", *(("segment",) if table.segment is not None else ()),
    )


class _Row:
    """One block's rows being laid out: runs of fixed-width fields (numpy records)
    between variable-length parts (pyarrow binary arrays), joined at the end.

    Only arrays built from buffers and compute functions on them: ``pa.array()`` and
    ``pa.scalar()`` import pandas (~0.3 s of a worker's first upload).
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self.parts: list = []
        self._fields: list[tuple[str, str, object]] = []

    def fixed(self, dtype: str, value) -> None:
        """A field of ``dtype`` (big-endian) with ``value`` (one, or one per row)."""
        self._fields.append((f"f{len(self._fields)}", dtype, value))

    def value(self, dtype: str, values) -> None:
        """A field that is not NULL in any row: its length word, then its value."""
        self.fixed(">i4", np.dtype(dtype).itemsize)
        self.fixed(dtype, values)

    def variable(self, part) -> None:
        self._close_run()
        self.parts.append(part)

    def _close_run(self) -> None:
        if not self._fields:
            return
        records = np.empty(self.count, dtype=[(name, dtype) for name, dtype, _ in self._fields])
        for name, _, values in self._fields:
            records[name] = values
        self._fields = []
        width = records.dtype.itemsize
        self.parts.append(_binary(records, np.arange(0, (self.count + 1) * width, width)))

    def data(self) -> memoryview:
        """The rows' bytes."""
        import pyarrow.compute as pc

        self._close_run()
        if len(self.parts) == 1:
            rows = self.parts[0]
        else:
            nothing = _binary(b"", np.zeros(self.count + 1))  # the separator
            rows = pc.binary_join_element_wise(*self.parts, nothing)
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32, count=self.count + 1,
                                offset=rows.offset * 4)
        return memoryview(rows.buffers()[2])[int(offsets[0]):int(offsets[-1])]


def _binary(data, offsets: np.ndarray):
    """A pyarrow binary array: value ``i`` is ``data[offsets[i]:offsets[i + 1]]``
    (``data``: bytes-like or a pyarrow buffer)."""
    import pyarrow as pa

    offsets = np.asarray(offsets, dtype=np.int32)
    if not isinstance(data, pa.Buffer):
        data = pa.py_buffer(data)
    return pa.Array.from_buffers(pa.binary(), len(offsets) - 1,
                                 [None, pa.py_buffer(offsets), data])


def _nullable(row: _Row, dtype: str, values: np.ndarray, known: np.ndarray) -> None:
    """A field NULL where ``known`` is false: fixed-width when the block's rows agree."""
    if known.all():
        row.value(dtype, values)
        return
    if not known.any():
        row.fixed(">i4", _NULL)
        return
    size = np.dtype(dtype).itemsize
    records = np.empty(row.count, dtype=[("length", ">i4"), ("value", dtype)])
    records["length"] = np.where(known, size, _NULL)
    records["value"] = np.where(known, values, 0)
    # a NULL keeps its length word only
    keep = np.empty((row.count, 4 + size), dtype=bool)
    keep[:, :4] = True
    keep[:, 4:] = known[:, None]
    widths = np.where(known, 4 + size, 4)
    row.variable(_binary(records.view(np.uint8).reshape(row.count, 4 + size)[keep],
                         np.concatenate(([0], np.cumsum(widths)))))


def _utf8(values: list[str]) -> tuple[bytes, np.ndarray]:
    """The values' UTF-8 bytes one after the other, and each one's length in bytes."""
    # One join and one encode for the whole block: NUL cannot be stored in a text
    # column, so it can stand between the values (a value holding one is encoded alone,
    # and the server refuses it as it always did).
    joined = "\x00".join(values).encode("utf-8")
    ends = np.flatnonzero(np.frombuffer(joined, dtype=np.uint8) == 0)
    if len(ends) == len(values) - 1:
        bounds = np.concatenate(([-1], ends, [len(joined)]))
        return joined.replace(b"\x00", b""), np.diff(bounds) - 1
    encoded = [value.encode("utf-8") for value in values]
    return b"".join(encoded), np.fromiter(map(len, encoded), dtype=np.int64,
                                          count=len(encoded))


def _text(row: _Row, values: list, nulls: np.ndarray | None = None) -> None:
    """A text column of many distinct values (``nulls``: where it is NULL)."""
    if nulls is not None:
        values = ["" if null else value for value, null in zip(values, nulls.tolist(),
                                                                  strict=True)]
    data, lengths = _utf8(values)
    row.fixed(">i4", lengths if nulls is None else np.where(nulls, _NULL, lengths))
    row.variable(_binary(data, np.concatenate(([0], np.cumsum(lengths)))))


def _arrow_text(row: _Row, values) -> None:
    """A text column held in a pyarrow string or large_string array (no NULL): each
    field's length word from its offsets, its bytes straight from the data buffer.

    The values of a (sliced) array lie one after the other in that buffer, so the
    block's text is one slice of it, as :func:`_utf8` would encode it, without a Python
    str per value (1M account ids: ~0.1-0.2 s of CPU and ~80 MB less).
    """
    import pyarrow as pa

    width = 8 if pa.types.is_large_string(values.type) else 4
    _, offsets_buffer, data = values.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if width == 8 else np.int32,
                            count=len(values) + 1, offset=values.offset * width)
    first, last = int(offsets[0]), int(offsets[-1])
    row.fixed(">i4", np.diff(offsets))
    row.variable(_binary(b"" if data is None else data.slice(first, last - first),
                         offsets - first))


class _Positions(dict):
    """Each value's position among the distinct values seen so far (``map`` its
    ``__getitem__`` over a column: one dictionary look-up per value)."""

    def __missing__(self, key):
        self[key] = position = len(self)
        return position


def _codes(values: list) -> tuple[np.ndarray, list]:
    positions = _Positions()
    codes = np.fromiter(map(positions.__getitem__, values), dtype=np.int32, count=len(values))
    return codes, list(positions)


def _field(value: str | None) -> bytes:
    """One text field: its length and UTF-8 bytes; NULL for ``None`` and ``''``."""
    if not value:
        return _NULL.to_bytes(4, "big", signed=True)
    encoded = value.encode("utf-8")
    return len(encoded).to_bytes(4, "big") + encoded


def _variant_and_segment(row: _Row, variant: np.ndarray, segment: np.ndarray | None) -> None:
    """The last fields: variant, then segment (blank is NULL) if the table has one.

    A few distinct values each (an experiment's arms, a handful of segments): every
    pair's fields are encoded once and each row takes its pair's bytes. A segment per
    account is sent as text."""
    import pyarrow.compute as pc

    variant_codes, variants = _codes(variant.tolist())
    pairs, segments = variant_codes, [None]
    if segment is not None:
        segment_values = segment.tolist()
        segment_codes, segments = _codes(segment_values)
        if len(segments) * len(variants) > _FEW_PAIRS:
            fields = [_field(v) for v in variants]
            row.variable(pc.take(_binary(b"".join(fields), np.cumsum([0, *map(len, fields)])),
                                 _binary_indices(variant_codes)))
            blank = np.array([not value for value in segments])[segment_codes]
            _text(row, segment_values, blank)
            return
        pairs = variant_codes * len(segments) + segment_codes
    fields = [_field(v) + (_field(s) if segment is not None else b"")
              for v in variants for s in segments]
    row.variable(pc.take(_binary(b"".join(fields), np.cumsum([0, *map(len, fields)])),
                         _binary_indices(pairs)))


def _binary_indices(codes: np.ndarray):
    import pyarrow as pa

    codes = np.ascontiguousarray(codes, dtype=np.int32)
    return pa.Array.from_buffers(pa.int32(), len(codes), [None, pa.py_buffer(codes)])


def _binary_block(dataset_id: int, table, start: int, stop: int, *, ids_by_line: bool):
    """Rows ``start:stop`` in COPY's binary format (no signature or trailer), the fields
    of :func:`copy_columns`; with ``ids_by_line`` the first is each row's id
    (:data:`ROW_ID_BITS`)."""
    count = stop - start
    columns = copy_columns(table, ids_by_line=ids_by_line)
    row = _Row(count)
    row.fixed(">i2", len(columns))
    if ids_by_line:
        first_id = (dataset_id << ROW_ID_BITS) + start
        row.value(">i8", np.arange(first_id, first_id + count, dtype=np.int64))
    row.value(">i4", dataset_id)
    for attribute in _MONEY:
        row.value(">i8", getattr(table, attribute)[start:stop])
    ids = table.account_id[start:stop]
    if isinstance(ids, ArrowText):
        _arrow_text(row, ids.arrow)
    else:
        _text(row, ids.tolist())
    for _column, attribute, kind in _NUMBERS:
        values = getattr(table, attribute)
        if values is None:
            continue
        values = values[start:stop]
        if kind == "date":
            _nullable(row, ">i4", values.astype(np.int64) - _PG_EPOCH_DAYS, ~np.isnat(values))
        else:
            _nullable(row, ">f8" if kind == "float" else ">i8", values, ~np.isnan(values))
    segment = table.segment
    _variant_and_segment(row, table.variant[start:stop],
                         None if segment is None else segment[start:stop])
    return row.data()


def copy_rows(raw, dataset_id: int, table, start: int, total: int, *,
              ids_by_line: bool = False) -> None:
    """COPY rows ``start:total`` of ``table`` on the psycopg connection ``raw``
    (``ids_by_line``: see :data:`ROW_ID_BITS`)."""
    columns = ", ".join(copy_columns(table, ids_by_line=ids_by_line))
    cursor = raw.cursor()
    with cursor.copy(f"COPY account_row ({columns}) FROM STDIN WITH (FORMAT binary)") as copy:
        copy.write(_SIGNATURE)
        for first in range(start, total, COPY_CHUNK):
            copy.write(_binary_block(dataset_id, table, first, min(total, first + COPY_CHUNK),
                                     ids_by_line=ids_by_line))
        copy.write(_TRAILER)
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
