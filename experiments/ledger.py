"""The revenue ledger (DESIGN §3b): versions, the current ledger and its stored figures.

An upload covers a set of periods. Storing it takes three steps, each usable on its own
so that :mod:`experiments.ledger_import` can run them in short transactions:

1. :func:`reserve_version` — a ``ledger_version`` row, still *importing* (invisible, no
   number);
2. :func:`insert_rows` — its rows, with the driver's bulk path (PostgreSQL ``COPY``,
   SQLite ``executemany``), as :func:`experiments.datasets.bulk_insert_rows` does;
3. :func:`activate_version` — under the ledger lock, in one transaction: the next version
   number, the current pointer of each of its periods moved to it, the figures of the
   whole current ledger computed (``stats.ledger.ledger_figures``) and stored, the audit
   event. Readers see the old ledger or the new one, never half of each.

:func:`import_ledger` runs the three in the caller's transaction (the CLI, tests). The
current ledger is, for each period, the rows of the version its pointer names — the
latest version that covered it. Older versions stay stored and listed.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete, func, text
from sqlmodel import Session, select

from experiments.accounts_csv.contract import object_array
from experiments.audit import record_event
from experiments.errors import Conflict
from experiments.input_rules import CONTROL_ONE_LINE
from experiments.ledger_csv import (
    BLANK_LABEL,
    ImportValidationError,
    LedgerTable,
    RowError,
    month_label,
    read_ledger,
)
from experiments.ledger_models import (
    DIMENSION_SLOTS,
    LedgerFigures,
    LedgerPeriod,
    LedgerRow,
    LedgerVersion,
)
from experiments.models import User, utcnow

__all__ = [
    "CurrentLedger",
    "DuplicateLedger",
    "ImportValidationError",
    "LedgerVersionInfo",
    "activate_version",
    "current_figures",
    "current_ledger",
    "discard_version",
    "figures_in_background",
    "import_ledger",
    "insert_rows",
    "latest_start_mrr",
    "ledger_plain_sigma",
    "read_source",
    "readable_figures",
    "reserve_version",
    "stored_figures",
    "versions",
]

if TYPE_CHECKING:
    from stats.ledger import LedgerFigures as FiguresModel

log = logging.getLogger("nrrlab.ledger")

MAX_REPORTED_ERRORS = 50
#: The longest ledger, first to last period (30 years).
MAX_SPAN_MONTHS = 360
_CHUNK = 100_000
_ROW_COLUMNS = (
    "version_id",
    "period",
    "account_id",
    "start_cents",
    "expansion_cents",
    "contraction_cents",
    "churned_cents",
    "customer_since",
    "days_to_value",
    *DIMENSION_SLOTS,
)
_NAT = np.iinfo(np.int64).min  # datetime64's NaT as an integer
# pg_advisory_xact_lock key of the ledger (any fixed 64-bit number; "NRRLEDGR" in ASCII).
_PG_LOCK_KEY = 0x4E52524C45444752


class DuplicateLedger(Conflict):
    """The file is byte for byte the latest ledger version; nothing was stored."""

    def __init__(self, version: LedgerVersion):
        self.version = version
        super().__init__(
            f"This file is identical to ledger version {version.version}, the latest upload; "
            "nothing was stored."
        )


# ------------------------------------------------------------------------ importing


def read_source(source: str | os.PathLike[str] | bytes) -> bytes:
    """The bytes of a path or of raw bytes."""
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | os.PathLike):
        return Path(source).read_bytes()
    raise TypeError(f"source must be a path or bytes, not {type(source).__name__}")


def import_ledger(
    session: Session,
    source: str | os.PathLike[str] | bytes,
    *,
    dimensions: str | tuple[str, ...] | list[str] | None = (),
    actor: User | None,
    filename: str,
) -> LedgerVersion:
    """Validate ``source`` and make it the current ledger of the periods it covers.

    Everything happens in the caller's transaction (flushed, not committed): the
    version, its rows, the moved pointers, the stored figures and the audit event are
    committed together, or nothing is.

    Raises
    ------
    ImportValidationError
        The file or the declared dimensions break the contract (line-numbered errors);
        nothing was stored.
    DuplicateLedger
        The file is identical to the latest version; nothing was stored.
    """
    table = read_ledger(
        read_source(source), dimensions=dimensions or (), max_errors=MAX_REPORTED_ERRORS
    )
    check_upload(session, table)
    version = reserve_version(session, table, filename=filename, actor=actor)
    with ThreadPoolExecutor(max_workers=1) as pool:
        own_figures = figures_in_background(pool, session, table)
        insert_rows(session, version, table)
        activate_version(session, version, table, actor=actor, own_figures=own_figures)
    return version


def figures_in_background(
    pool: ThreadPoolExecutor, session: Session, table: LedgerTable
) -> Future | None:
    """Start computing the figures of a ledger made of ``table`` alone, if it covers
    every period stored now (else None: they would not be used).

    They are the stored figures whenever the upload ends up owning every current period
    (a first upload, a full replacement); :func:`activate_version` checks that again
    under the ledger lock. Computed while the rows are written — the database driver releases
    the GIL while it works — so on two cores most of their time is hidden. Pure
    numpy over read-only arrays: nothing is shared with the writer.
    """
    stored = set(session.exec(select(LedgerPeriod.period)).all())
    if not stored <= set(table.months()):
        return None
    return pool.submit(
        lambda: _figures_document(_part_of_table(table, table.months(),
                                                 list(table.dimension_names)))
    )


def check_upload(session: Session, table: LedgerTable) -> None:
    """Refuse an upload that repeats the latest version or would stretch the ledger.

    Raises
    ------
    DuplicateLedger
        ``table``'s bytes are the latest version's.
    ImportValidationError
        With the current ledger the periods would span more than :data:`MAX_SPAN_MONTHS`
        (a mistyped year, such as 2205-01, would otherwise make every figure that long).
    """
    latest = _latest_version(session)
    if latest is not None and latest.sha256 == table.sha256:
        raise DuplicateLedger(latest)
    low, high = int(table.period.min()), int(table.period.max())
    stored = session.exec(
        select(func.min(LedgerPeriod.period), func.max(LedgerPeriod.period))
    ).one()
    if stored[0] is not None:
        low, high = min(low, int(stored[0])), max(high, int(stored[1]))
    if high - low + 1 > MAX_SPAN_MONTHS:
        raise ImportValidationError([RowError(
            1, "period",
            f"the ledger would run from {month_label(low)} to {month_label(high)}"
            f" ({high - low + 1:,} months, with the periods already stored); at most"
            f" {MAX_SPAN_MONTHS} months — is a year mistyped?",
        )])


def reserve_version(
    session: Session, table: LedgerTable, *, filename: str, actor: User | None
) -> LedgerVersion:
    """An importing (invisible, unnumbered) version for ``table``; flushed."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = CONTROL_ONE_LINE.sub("", name).strip()[:255] or "ledger.csv"
    version = LedgerVersion(
        status="importing",
        filename=name,
        sha256=table.sha256,
        row_count=len(table),
        account_count=table.account_count,
        periods=table.periods(),
        dimensions=list(table.dimension_names),
        notes=list(table.notes),
        uploaded_by_id=actor.id if actor is not None else None,
        uploaded_at=utcnow(),
    )
    session.add(version)
    session.flush()
    return version


def discard_version(session: Session, version_id: int) -> None:
    """Delete an importing version and its rows (an import that failed half-way; flushed)."""
    version = session.get(LedgerVersion, version_id)
    rows = delete(LedgerRow).where(LedgerRow.version_id == version_id)
    if version is not None and version.first_row_id is not None:
        rows = rows.where(LedgerRow.id.between(version.first_row_id, version.last_row_id))
    session.execute(rows)
    session.execute(
        delete(LedgerVersion).where(
            LedgerVersion.id == version_id, LedgerVersion.status == "importing"
        )
    )
    session.flush()


def insert_rows(
    session: Session,
    version: LedgerVersion,
    table: LedgerTable,
    *,
    start: int = 0,
    stop: int | None = None,
) -> None:
    """Insert rows ``start:stop`` (default all) of ``table`` as ``version``'s rows."""
    # Read before COPY starts: loading an expired attribute inside it would deadlock.
    version_id = version.id
    connection = session.connection()
    raw = connection.connection.driver_connection
    total = len(table) if stop is None else min(stop, len(table))
    columns = ", ".join(_ROW_COLUMNS)
    # New ids lie above every id allocated so far (a sequence / SQLite's rowid only grow).
    below = session.exec(select(func.max(LedgerRow.id))).one() or 0
    _write_rows(connection, raw, version_id, table, start, total, columns)
    above = session.exec(select(func.max(LedgerRow.id))).one() or 0
    if above > below:
        version.first_row_id = min(version.first_row_id or below + 1, below + 1)
        version.last_row_id = max(version.last_row_id or above, above)
        session.add(version)
        session.flush()


def _write_rows(connection, raw, version_id: int, table: LedgerTable, start: int, total: int,
                columns: str) -> None:
    if connection.dialect.name == "postgresql":
        cursor = raw.cursor()
        with cursor.copy(f"COPY ledger_row ({columns}) FROM STDIN WITH (FORMAT csv)") as copy:
            for first in range(start, total, _CHUNK):
                copy.write(_csv_block(version_id, table, first, min(total, first + _CHUNK)))
        cursor.close()
        return
    # Only the columns the file has: each bound NULL still costs time per row.
    used = _ROW_COLUMNS[: len(_ROW_COLUMNS) - len(DIMENSION_SLOTS) + len(table.dimensions)]
    # The version id is the same on every row: written once into the statement.
    placeholders = ", ".join([str(int(version_id))] + ["?" for _ in used[1:]])
    sql = f"INSERT INTO ledger_row ({', '.join(used)}) VALUES ({placeholders})"  # noqa: S608
    if not raw.in_transaction:
        # The raw cursor bypasses the engine's begin-on-first-write hook (experiments/db.py).
        raw.execute("BEGIN IMMEDIATE")
    cursor = raw.cursor()
    for first in range(start, total, _CHUNK):
        cursor.executemany(sql, _row_tuples(None, table, first, min(total, first + _CHUNK)))
    cursor.close()


def _dimension_slices(table: LedgerTable, start: int, stop: int) -> list[list | None]:
    values: list[list | None] = [values[start:stop].tolist() for _, values in table.dimensions]
    return values + [None] * (len(DIMENSION_SLOTS) - len(values))


def _iso_dates(values: np.ndarray | None, start: int, stop: int, count: int) -> list:
    """``YYYY-MM-DD`` or None per row; an account attribute has few distinct values, so
    each distinct date is formatted once."""
    if values is None:
        return [None] * count
    days = values[start:stop].view(np.int64)
    blank = days == _NAT
    if blank.all():
        return [None] * count
    low = int(days[~blank].min())
    high = int(days[~blank].max())
    if high - low > 4 * count:  # sparse: sort instead of a table over the range
        distinct, inverse = np.unique(values[start:stop], return_inverse=True)
        text_values = [None if np.isnat(day) else str(day) for day in distinct]
        return object_array(text_values)[inverse.ravel()].tolist()
    # One slot per day of the range (+1 for blank): each present day formatted once.
    slot = np.where(blank, high - low + 1, days - low)
    present = np.flatnonzero(np.bincount(slot, minlength=high - low + 2)[:-1])
    table = np.empty(high - low + 2, dtype=object)
    table[present] = [str(day) for day in (present + low).astype("datetime64[D]")]
    return table[slot].tolist()


def _row_tuples(version_id: int | None, table: LedgerTable, start: int, stop: int):
    """Rows ``start:stop`` as parameter tuples (without the version id if it is None)."""
    count = stop - start
    dtv = table.days_to_value
    days = (
        [None if v != v else v for v in dtv[start:stop].tolist()]  # NaN → NULL
        if dtv is not None
        else [None] * count
    )
    dims = [values[start:stop].tolist() for _, values in table.dimensions]
    head = [] if version_id is None else [[version_id] * count]
    return zip(
        *head,
        table.period[start:stop].tolist(),
        table.account_id[start:stop].tolist(),
        table.start_cents[start:stop].tolist(),
        table.expansion_cents[start:stop].tolist(),
        table.contraction_cents[start:stop].tolist(),
        table.churned_cents[start:stop].tolist(),
        _iso_dates(table.customer_since, start, stop, count),
        days,
        *dims,
        strict=True,
    )


def _csv_block(version_id: int, table: LedgerTable, start: int, stop: int) -> bytes:
    """Rows ``start:stop`` as CSV for ``COPY … (FORMAT csv)``: text quoted, NULL unquoted."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    count = stop - start
    since = table.customer_since
    days = table.days_to_value
    columns = {
        "version_id": pa.array(np.full(count, version_id, dtype=np.int64)),
        "period": pa.array(table.period[start:stop]),
        "account_id": pa.array(table.account_id[start:stop], pa.string()),
        "start_cents": pa.array(table.start_cents[start:stop]),
        "expansion_cents": pa.array(table.expansion_cents[start:stop]),
        "contraction_cents": pa.array(table.contraction_cents[start:stop]),
        "churned_cents": pa.array(table.churned_cents[start:stop]),
        "customer_since": (
            pa.array(since[start:stop], pa.date32())  # NaT → NULL
            if since is not None
            else pa.nulls(count, pa.date32())
        ),
        "days_to_value": (
            pa.array(days[start:stop], pa.float64(), from_pandas=True)  # NaN → NULL
            if days is not None
            else pa.nulls(count, pa.float64())
        ),
    }
    for slot, values in zip(DIMENSION_SLOTS, _dimension_slices(table, start, stop), strict=True):
        columns[slot] = pa.array(values, pa.string()) if values is not None else pa.nulls(
            count, pa.string()
        )
    out = io.BytesIO()
    pa_csv.write_csv(
        pa.table(columns), out, write_options=pa_csv.WriteOptions(include_header=False)
    )
    return out.getvalue()


def lock_ledger(session: Session) -> None:
    """Hold the ledger's write lock until the transaction ends.

    PostgreSQL: a transaction-level advisory lock. SQLite locks the whole database for
    writing; the caller's first write (``activate_version`` updates its own row first)
    takes that lock before anything is read.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def activate_version(
    session: Session, version: LedgerVersion, table: LedgerTable | None = None, *,
    actor: User | None, own_figures: Future | None = None,
) -> LedgerFigures:
    """Make an importing version current for its periods, in the caller's transaction.

    Under the ledger lock: the next version number; each of its periods' pointers moved
    to it; the figures of the whole current ledger computed and stored; a
    ``ledger.upload`` audit event (who, which periods, rows, which versions it replaced).
    ``table`` (the rows just written) saves reading this version's rows back;
    ``own_figures`` (:func:`figures_in_background` of that table) is used when this
    version now owns every current period. Flushed, not committed.
    """
    # A write first: on SQLite this takes the database lock before the reads below.
    session.execute(
        text("UPDATE ledger_version SET status = status WHERE id = :id"), {"id": version.id}
    )
    lock_ledger(session)
    number = (session.exec(select(func.max(LedgerVersion.version))).one() or 0) + 1
    months = sorted({_month_of(label) for label in version.periods})
    replaced = {
        month_label(row.period): row.version_id
        for row in session.exec(select(LedgerPeriod).where(LedgerPeriod.period.in_(months)))
    }
    replaced_numbers = {}
    if replaced:
        numbers = dict(session.exec(
            select(LedgerVersion.id, LedgerVersion.version)
            .where(LedgerVersion.id.in_(set(replaced.values())))
        ).all())
        replaced_numbers = {label: numbers.get(vid) for label, vid in replaced.items()}
    session.execute(delete(LedgerPeriod).where(LedgerPeriod.period.in_(months)))
    session.add_all([LedgerPeriod(period=month, version_id=version.id) for month in months])
    version.version = number
    version.status = "ready"
    version.activated_at = utcnow()
    session.add(version)
    session.flush()

    others = session.exec(
        select(func.count()).select_from(LedgerPeriod).where(LedgerPeriod.version_id != version.id)
    ).one()
    if own_figures is not None and table is not None and not others:
        # The current ledger is exactly this upload: its figures are already computed.
        figures = LedgerFigures(
            version_id=version.id, row_count=len(table), figures=own_figures.result()
        )
    else:
        ledger = current_ledger(
            session, fresh=(version.id, table) if table is not None else None
        )
        figures = LedgerFigures(
            version_id=version.id, row_count=len(ledger), figures=_figures_document(ledger)
        )
    session.add(figures)
    record_event(
        session, "ledger.upload", actor=actor, entity_type="ledger_version",
        entity_id=version.id,
        diff={
            "version": [None, number],
            "filename": [None, version.filename],
            "sha256": [None, version.sha256],
            "periods": [None, list(version.periods)],
            "rows": [None, version.row_count],
            "dimensions": [None, list(version.dimensions)],
            "replaced": [None, replaced_numbers],
        },
    )
    session.flush()
    return figures


def _month_of(label: str) -> int:
    return int(label[:4]) * 12 + int(label[5:7]) - 1


# ------------------------------------------------------------------- current ledger


@dataclass(frozen=True, eq=False)
class CurrentLedger:
    """The current ledger's rows as columns, read without ORM objects.

    ``month`` holds month numbers, money is in cents, ``customer_since_month`` the
    month number of customer_since (NaN blank), ``dimensions`` maps each dimension name
    any current version declared to its per-row labels (``(blank)`` where blank or not
    declared by the row's version).
    """

    account_id: np.ndarray
    month: np.ndarray
    start_cents: np.ndarray
    expansion_cents: np.ndarray
    contraction_cents: np.ndarray
    churned_cents: np.ndarray
    customer_since_month: np.ndarray
    days_to_value: np.ndarray
    dimensions: dict[str, np.ndarray]
    #: Account codes when already known (the whole ledger is the upload just read).
    account_code: np.ndarray | None = None
    #: Per dimension, (codes, sorted labels) when already known (likewise).
    dimension_codes: dict[str, tuple[np.ndarray, tuple[str, ...]]] | None = None

    def __len__(self) -> int:
        return len(self.month)

    def arrays(self):
        """``stats.ledger.LedgerArrays`` of these rows (codes, months from the first)."""
        from stats.ledger import LedgerArrays

        first, last = int(self.month.min()), int(self.month.max())
        account = self.account_code
        if account is None:
            account, _ = _factorize(self.account_id, sort=False)
        dims = {}
        for name, labels in self.dimensions.items():
            known = (self.dimension_codes or {}).get(name)
            dims[name] = known if known is not None else _factorize(labels)
        has_since = bool(np.isfinite(self.customer_since_month).any())
        has_days = bool(np.isfinite(self.days_to_value).any())
        return LedgerArrays(
            account=account,
            period=self.month - first,
            start=self.start_cents / 100,
            expansion=self.expansion_cents / 100,
            contraction=self.contraction_cents / 100,
            churned=self.churned_cents / 100,
            customer_since=self.customer_since_month - first if has_since else None,
            days_to_value=self.days_to_value if has_days else None,
            dimensions=dims,
            periods=tuple(month_label(m) for m in range(first, last + 1)),
        )


def _factorize(values: np.ndarray, *, sort: bool = True) -> tuple[np.ndarray, tuple[str, ...]]:
    """Codes into the sorted distinct values of a str object array (pyarrow's hash table:
    ~20 times faster than a dict pass over a million strings, no sort of them)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if sort and len(values):
        # Columns read from an upload share one str object per distinct value: group by
        # object identity first (integers), then by value over the few distinct objects.
        identity = np.fromiter(map(id, values.tolist()), dtype=np.int64, count=len(values))
        distinct, first, inverse = np.unique(identity, return_index=True, return_inverse=True)
        if len(distinct) <= 10_000:
            objects = values[first].tolist()
            labels = sorted(set(objects))
            position = {label: i for i, label in enumerate(labels)}
            remap = np.array([position[o] for o in objects], dtype=np.int64)
            return remap[inverse.ravel()], tuple(labels)

    encoded = pc.dictionary_encode(pa.array(values.tolist(), pa.string()))
    codes = np.frombuffer(encoded.indices.buffers()[1], dtype=np.int32, count=len(values))
    if not sort:
        return codes.astype(np.int64), ()
    labels = encoded.dictionary.to_pylist()
    order = sorted(range(len(labels)), key=labels.__getitem__)
    remap = np.empty(len(labels), dtype=np.int64)
    remap[order] = np.arange(len(labels))
    return remap[codes], tuple(labels[i] for i in order)


def current_ledger(
    session: Session, *, fresh: tuple[int, LedgerTable] | None = None
) -> CurrentLedger:
    """The current ledger's rows. ``fresh = (version_id, table)``: that version's rows
    come from ``table`` (just written) instead of being read back."""
    pointers = session.exec(select(LedgerPeriod.period, LedgerPeriod.version_id)).all()
    version_ids = sorted({vid for _, vid in pointers})
    stored = session.exec(
        select(LedgerVersion.id, LedgerVersion.dimensions, LedgerVersion.first_row_id,
               LedgerVersion.last_row_id).where(LedgerVersion.id.in_(version_ids))
    ).all() if version_ids else []
    declared = {vid: dims for vid, dims, _, _ in stored}
    row_ids = {vid: (low, high) for vid, _, low, high in stored}
    names = list(dict.fromkeys(name for vid in version_ids for name in declared.get(vid) or []))
    parts = []
    fresh_id = fresh[0] if fresh is not None else None
    for vid in version_ids:
        months = [month for month, owner in pointers if owner == vid]
        if vid == fresh_id:
            parts.append(_part_of_table(fresh[1], months, names))
        else:
            parts.append(_read_part(session, vid, row_ids.get(vid, (None, None)), months,
                                    declared.get(vid) or [], names))
    if not parts:
        empty_f = np.empty(0, dtype=np.float64)
        empty_i = np.empty(0, dtype=np.int64)
        return CurrentLedger(
            np.empty(0, dtype=object), empty_i, empty_i, empty_i, empty_i, empty_i, empty_f,
            empty_f, {name: np.empty(0, dtype=object) for name in names},
        )
    if len(parts) == 1:
        return parts[0]
    return CurrentLedger(
        account_id=np.concatenate([p.account_id for p in parts]),
        month=np.concatenate([p.month for p in parts]),
        start_cents=np.concatenate([p.start_cents for p in parts]),
        expansion_cents=np.concatenate([p.expansion_cents for p in parts]),
        contraction_cents=np.concatenate([p.contraction_cents for p in parts]),
        churned_cents=np.concatenate([p.churned_cents for p in parts]),
        customer_since_month=np.concatenate([p.customer_since_month for p in parts]),
        days_to_value=np.concatenate([p.days_to_value for p in parts]),
        dimensions={name: np.concatenate([p.dimensions[name] for p in parts]) for name in names},
    )


def _part_of_table(table: LedgerTable, months: list[int], names: list[str]) -> CurrentLedger:
    keep = np.isin(table.period, months)
    whole = bool(keep.all())

    def pick(values: np.ndarray) -> np.ndarray:
        return values if whole else values[keep]

    count = int(keep.sum())
    since = np.full(count, np.nan)
    if table.customer_since is not None:
        chosen = pick(table.customer_since)
        filled = ~np.isnat(chosen)
        ymd = chosen[filled].astype("datetime64[M]").astype(np.int64)  # months since 1970-01
        since[filled] = ymd + 1970 * 12
    days = pick(table.days_to_value) if table.days_to_value is not None else np.full(count, np.nan)
    own = dict(table.dimensions)
    dims = {}
    for name in names:
        if name in own:
            values = pick(own[name])
            dims[name] = np.where(values == None, BLANK_LABEL, values)  # noqa: E711
        else:
            dims[name] = np.full(count, BLANK_LABEL, dtype=object)
    known = None
    if whole and table.dimension_codes is not None and list(own) == names:
        known = {
            name: _sorted_codes(codes, distinct)
            for name, (codes, distinct) in zip(names, table.dimension_codes, strict=True)
        }
    return CurrentLedger(
        account_id=pick(table.account_id),
        month=pick(table.period).astype(np.int64),
        start_cents=pick(table.start_cents),
        expansion_cents=pick(table.expansion_cents),
        contraction_cents=pick(table.contraction_cents),
        churned_cents=pick(table.churned_cents),
        customer_since_month=since,
        days_to_value=np.asarray(days, dtype=np.float64),
        dimensions=dims,
        account_code=table.account_code if whole else None,
        dimension_codes=known,
    )


def _sorted_codes(
    codes: np.ndarray, distinct: tuple[str | None, ...]
) -> tuple[np.ndarray, tuple[str, ...]]:
    """``codes`` into ``distinct`` (None = blank) renumbered into the sorted distinct
    labels, blank as :data:`BLANK_LABEL` — what :func:`_factorize` gives for the labels,
    without hashing a string per row."""
    shown = [BLANK_LABEL if value is None else value for value in distinct]
    labels = sorted(set(shown))
    position = {label: i for i, label in enumerate(labels)}
    remap = np.array([position[label] for label in shown], dtype=np.int64)
    return remap[codes], tuple(labels)


def _read_part(
    session: Session, version_id: int, row_ids: tuple[int | None, int | None],
    months: list[int], own: list[str], names: list[str],
) -> CurrentLedger:
    """One version's rows of ``months``, through the driver's cursor (no row objects);
    found by the version's row-id range (the primary key)."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        since_month = (
            "CAST(EXTRACT(YEAR FROM customer_since) * 12"
            " + EXTRACT(MONTH FROM customer_since) - 1 AS INTEGER)"
        )
        month_list = ", ".join(str(int(m)) for m in months)
    else:
        # The ISO text as stored: two strftime calls per row cost more (~1.3 s of CPU per
        # million rows) than turning the few distinct dates into months here.
        since_month = "customer_since"
        month_list = ", ".join(str(int(m)) for m in months)
    slots = ", ".join(DIMENSION_SLOTS[: len(own)])
    sql = (
        "SELECT account_id, period, start_cents, expansion_cents, contraction_cents,"  # noqa: S608
        f" churned_cents, {since_month}, days_to_value{', ' + slots if slots else ''}"
        f" FROM ledger_row WHERE version_id = {int(version_id)} AND period IN ({month_list})"
    )
    low, high = row_ids
    if low is not None and high is not None:
        sql += f" AND id BETWEEN {int(low)} AND {int(high)}"
    cursor = connection.connection.driver_connection.cursor()
    try:
        if connection.dialect.name == "postgresql":
            return _copied_part(cursor, sql, own, names)
        cursor.execute(sql)
        rows = cursor.fetchall()
    finally:
        cursor.close()
    count = len(rows)
    columns = np.array(rows, dtype=object).reshape(count, 8 + len(own))
    del rows

    def floats(index: int) -> np.ndarray:
        column = columns[:, index]
        return np.where(column == None, np.nan, column).astype(np.float64)  # noqa: E711

    dims = {}
    for name in names:
        if name in own:
            values = columns[:, 8 + own.index(name)]
            dims[name] = np.where(values == None, BLANK_LABEL, values)  # noqa: E711
        else:
            dims[name] = np.full(count, BLANK_LABEL, dtype=object)
    return CurrentLedger(
        account_id=columns[:, 0].copy(),
        month=columns[:, 1].astype(np.int64),
        start_cents=columns[:, 2].astype(np.int64),
        expansion_cents=columns[:, 3].astype(np.int64),
        contraction_cents=columns[:, 4].astype(np.int64),
        churned_cents=columns[:, 5].astype(np.int64),
        customer_since_month=_iso_months(columns[:, 6]),
        days_to_value=floats(7),
        dimensions=dims,
    )


def _iso_months(values: np.ndarray) -> np.ndarray:
    """Month numbers of ``YYYY-MM-DD`` texts (NaN for NULL); each distinct text parsed once."""
    months: dict = {None: np.nan}

    def month(value):
        number = months.get(value)
        if number is None and value not in months:
            number = months[value] = int(value[:4]) * 12 + int(value[5:7]) - 1
        return number

    return np.fromiter(map(month, values.tolist()), dtype=np.float64, count=len(values))


def _copied_part(cursor, sql: str, own: list[str], names: list[str]) -> CurrentLedger:
    """PostgreSQL: the rows as CSV through ``COPY … TO STDOUT``, parsed by pyarrow (a
    psycopg row tuple per ledger row costs several times more)."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    out = io.BytesIO()
    with cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)") as copy:
        for block in copy:
            out.write(block)
    columns = ["account_id", "month", "start", "expansion", "contraction", "churned", "since",
               "days", *own]
    types = {name: pa.int64() for name in columns[1:6]}
    types.update({"account_id": pa.string(), "since": pa.float64(), "days": pa.float64()})
    types.update({name: pa.string() for name in own})
    table = pa_csv.read_csv(
        pa.py_buffer(out.getvalue()),
        read_options=pa_csv.ReadOptions(column_names=columns),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        convert_options=pa_csv.ConvertOptions(
            column_types=types, strings_can_be_null=True, quoted_strings_can_be_null=False
        ),
    )
    count = table.num_rows

    def numbers(name: str, dtype, blank=0) -> np.ndarray:
        column = table.column(name).combine_chunks()
        if column.null_count:
            column = column.fill_null(blank)
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)

    dims = {}
    for name in names:
        if name in own:
            values = object_array(table.column(name).to_pylist())
            dims[name] = np.where(values == None, BLANK_LABEL, values)  # noqa: E711
        else:
            dims[name] = np.full(count, BLANK_LABEL, dtype=object)
    return CurrentLedger(
        account_id=object_array(table.column("account_id").to_pylist()),
        month=numbers("month", np.int64),
        start_cents=numbers("start", np.int64),
        expansion_cents=numbers("expansion", np.int64),
        contraction_cents=numbers("contraction", np.int64),
        churned_cents=numbers("churned", np.int64),
        customer_since_month=numbers("since", np.float64, blank=float("nan")),
        days_to_value=numbers("days", np.float64, blank=float("nan")),
        dimensions=dims,
    )


def _figures_document(ledger: CurrentLedger) -> dict:
    """``stats.ledger.ledger_figures`` of the current ledger as its stored JSON."""
    from stats.ledger import ledger_figures

    if not len(ledger):
        return {"error": "the current ledger has no rows"}
    try:
        return ledger_figures(ledger.arrays()).to_dict()
    except ValueError as exc:
        # Stored instead of the figures (the NRR page shows it): the rows stay current.
        log.warning("ledger figures could not be computed: %s", exc)
        return {"error": f"the figures could not be computed: {exc}"}


# ---------------------------------------------------------------------------- reading


def _latest_version(session: Session) -> LedgerVersion | None:
    return session.exec(
        select(LedgerVersion)
        .where(LedgerVersion.status == "ready")
        .order_by(LedgerVersion.version.desc())
        .limit(1)
    ).first()


def _of_current_figures(*columns):
    """``columns`` of the current ledger's figures row: the newest ready version's."""
    return (
        select(*columns)
        .join(LedgerVersion, LedgerVersion.id == LedgerFigures.version_id)
        .where(LedgerVersion.status == "ready")
        .order_by(LedgerVersion.version.desc())
        .limit(1)
    )


#: The current figures row's key columns: built once (every read page with the headline or
#: the tree asks; building it cost about as much as running it).
_CURRENT_FIGURES_KEY = _of_current_figures(
    LedgerFigures.version_id, LedgerFigures.id, LedgerFigures.computed_at)


def current_figures(session: Session) -> dict | None:
    """The stored figures of the current ledger (``LedgerFigures.to_dict()``), or None."""
    return session.exec(_of_current_figures(LedgerFigures.figures)).first() or None


#: Parsed figures of recent ledger versions, keyed by ``(version id, figures row id,
#: computed_at)``. A version's figures row is written once, when it becomes current, and
#: never changed, so its parse (~20 ms for 40k accounts) is reused for the life of the
#: process; the row id and time guard against an id reused after a restore. A new
#: version is a new key, read at once. Bounded: the oldest entries go first.
_PARSED: OrderedDict[tuple[int, int, str], FiguresModel | str] = OrderedDict()
_PARSED_MAX = 4
_PARSED_LOCK = threading.Lock()


def _parse_figures(version_id: int, document: object) -> FiguresModel | str:
    from stats.ledger import LedgerFigures as Figures

    if not document:
        return "the stored figures are empty"
    if isinstance(document, Mapping) and "periods" not in document:
        return str(document.get("error") or "the stored figures are empty")  # import's error
    try:
        if not isinstance(document, Mapping):
            raise TypeError(f"a JSON {type(document).__name__}, not an object")
        return Figures.from_dict(document)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # A document this code cannot read (hand-edited, or written by another version
        # of it): the pages go on without ledger figures instead of failing.
        log.warning("the stored figures of ledger version %s cannot be read: %r",
                    version_id, exc)
        return "the stored figures cannot be read (upload the ledger again to recompute them)"


def stored_figures(session: Session) -> FiguresModel | str | None:
    """The current ledger's figures (``stats.ledger.LedgerFigures``), parsed once per
    version and process; the reason as text when there are none to use (the import
    stored an error, or the stored document cannot be read — logged as a warning);
    ``None`` before the first upload."""
    row = session.exec(_CURRENT_FIGURES_KEY).first()
    if row is None:
        return None
    key = (row[0], row[1], str(row[2]))
    with _PARSED_LOCK:
        found = _PARSED.get(key)
        if found is not None:
            _PARSED.move_to_end(key)
            return found
    document = session.exec(select(LedgerFigures.figures).where(LedgerFigures.id == row[1])).first()
    parsed = _parse_figures(row[0], document)
    with _PARSED_LOCK:
        _PARSED[key] = parsed
        while len(_PARSED) > _PARSED_MAX:
            _PARSED.popitem(last=False)
    return parsed


def readable_figures(session: Session) -> FiguresModel | None:
    """The current ledger's figures, or ``None`` (no ledger, or none usable): see
    :func:`stored_figures`."""
    figures = stored_figures(session)
    return None if figures is None or isinstance(figures, str) else figures


_UNREAD = object()


def latest_start_mrr(
    session: Session, *, dimension: str | None = None, value: str | None = None,
    figures: Any = _UNREAD,
) -> float | None:
    """Σ start MRR of the last period (company-wide or one dimension value), or None
    (``figures``: :func:`readable_figures` when the caller has read them already)."""
    if figures is _UNREAD:
        figures = readable_figures(session)
    if figures is None:
        return None
    last = figures.last_period(dimension, value)
    return None if last is None else last.start_mrr


def ledger_plain_sigma(
    session: Session, *, dimension: str | None = None, value: str | None = None
) -> float | None:
    """Plain sd of account-level NRR end/start in the last period, or None (descriptive;
    the planning σ is ``sigma_lin``: :func:`experiments.planning.ledger_segment`)."""
    figures = readable_figures(session)
    return None if figures is None else figures.plain_sigma(dimension, value)


@dataclass(frozen=True)
class LedgerVersionInfo:
    """One line of the version history."""

    id: int
    version: int
    filename: str
    uploaded_by: str
    uploaded_at: datetime
    activated_at: datetime | None
    periods: tuple[str, ...]
    current_periods: tuple[str, ...]
    rows: int
    accounts: int
    dimensions: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def period_range(self) -> str:
        if not self.periods:
            return ""
        if len(self.periods) == 1:
            return self.periods[0]
        return f"{self.periods[0]} \u2013 {self.periods[-1]}"

    @property
    def status(self) -> str:
        """current (all its periods), partly current, or replaced."""
        if not self.current_periods:
            return "replaced"
        if len(self.current_periods) == len(self.periods):
            return "current"
        return "partly current"


def versions(session: Session) -> list[LedgerVersionInfo]:
    """Every ready version, newest first, with who uploaded it and where it is current."""
    rows = session.exec(
        select(LedgerVersion, User)
        .join(User, User.id == LedgerVersion.uploaded_by_id, isouter=True)
        .where(LedgerVersion.status == "ready")
        .order_by(LedgerVersion.version.desc())
    ).all()
    current: dict[int, list[str]] = {}
    for month, vid in session.exec(
        select(LedgerPeriod.period, LedgerPeriod.version_id).order_by(LedgerPeriod.period)
    ).all():
        current.setdefault(vid, []).append(month_label(month))
    return [
        LedgerVersionInfo(
            id=version.id,
            version=version.version,
            filename=version.filename,
            uploaded_by=(user.name or user.email) if user is not None else "",
            uploaded_at=version.uploaded_at,
            activated_at=version.activated_at,
            periods=tuple(version.periods),
            current_periods=tuple(current.get(version.id, ())),
            rows=version.row_count,
            accounts=version.account_count,
            dimensions=tuple(version.dimensions),
            notes=tuple(version.notes),
        )
        for version, user in rows
    ]

