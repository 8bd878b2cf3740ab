"""Storing account datasets and reading per-arm sums back with one GROUP BY.

Rows are written with the driver's fastest bulk path (PostgreSQL ``COPY`` fed
whole CSV blocks, SQLite ``executemany``) inside the caller's transaction, so a
failed import leaves nothing behind. Reads push the aggregation down: the
delta-method inputs come from one ``GROUP BY variant`` (or ``segment, variant``),
and rows are read only for the Mann-Whitney check.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from sqlalchemy import Float, func
from sqlmodel import Session, select

from experiments.models import AccountRow, Dataset, Experiment, User, utcnow

_COLUMNS = ("dataset_id", "account_id", "variant", "start_cents", "expansion_cents",
            "contraction_cents", "churned_cents", "segment", "days_to_value")
_CHUNK = 100_000


@dataclass(frozen=True)
class ArmSumsRow:
    """Per-arm aggregates in currency units, straight from SQL."""

    variant: str
    n: int
    start: float
    expansion: float
    contraction: float
    churned: float
    sum_x: float
    sum_y: float
    sum_xx: float
    sum_yy: float
    sum_xy: float


@dataclass(frozen=True)
class AccountRatios:
    """Per-account ``end / start`` with each account's variant and segment (aligned arrays)."""

    variant: np.ndarray
    segment: np.ndarray
    ratio: np.ndarray

    def by_variant(self, mask: np.ndarray | None = None, *, keys=None) -> dict[str, np.ndarray]:
        """``{variant: ratios}``, optionally of the rows selected by a boolean ``mask``.

        ``keys`` (the variants to look for) saves a pass over the rows when they are known.
        """
        variant = self.variant if mask is None else self.variant[mask]
        ratio = self.ratio if mask is None else self.ratio[mask]
        if keys is None:
            keys = dict.fromkeys(variant.tolist())
        out = {}
        for key in keys:
            rows = variant == key
            if rows.any():
                out[str(key)] = ratio[rows]
        return out

    @classmethod
    def of_table(cls, table) -> AccountRatios:
        """The same columns from an in-memory ``AccountTable``, without reading the rows back."""
        end = table.start_cents + table.expansion_cents - table.contraction_cents - table.churned_cents
        segment = table.segment
        if segment is None:
            segment = np.full(len(table), None, dtype=object)
        return cls(table.variant, segment, end.astype(np.float64) / table.start_cents.astype(np.float64))


def next_version(session: Session, experiment: Experiment) -> int:
    current = session.exec(select(func.max(Dataset.version)).where(Dataset.experiment_id == experiment.id)).one()
    return (current or 0) + 1


def _blank_as_none(values: np.ndarray | None, count: int) -> list:
    if values is None:
        return [None] * count
    return [value or None for value in values.tolist()]


def _row_tuples(dataset_id: int, table, start: int, stop: int):
    count = stop - start
    dtv = table.days_to_value
    if dtv is not None:
        days = [None if v != v else v for v in dtv[start:stop].tolist()]  # NaN → NULL
    else:
        days = [None] * count
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
        strict=True,
    )


def _csv_block(dataset_id: int, table, start: int, stop: int) -> bytes:
    """Rows ``start:stop`` as CSV for ``COPY … (FORMAT csv)``: text quoted, NULL unquoted empty."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    count = stop - start
    segment = table.segment
    segments = pa.array(_blank_as_none(None if segment is None else segment[start:stop], count), pa.string())
    days = table.days_to_value
    block = pa.table({
        "dataset_id": pa.array(np.full(count, dataset_id, dtype=np.int64)),
        "account_id": pa.array(table.account_id[start:stop], pa.string()),
        "variant": pa.array(table.variant[start:stop], pa.string()),
        "start_cents": pa.array(table.start_cents[start:stop]),
        "expansion_cents": pa.array(table.expansion_cents[start:stop]),
        "contraction_cents": pa.array(table.contraction_cents[start:stop]),
        "churned_cents": pa.array(table.churned_cents[start:stop]),
        "segment": segments,
        # from_pandas=True turns NaN (value not reached) into NULL
        "days_to_value": (pa.array(days[start:stop], pa.float64(), from_pandas=True) if days is not None
                          else pa.nulls(count, pa.float64())),
    })
    out = io.BytesIO()
    pa_csv.write_csv(block, out, write_options=pa_csv.WriteOptions(include_header=False))
    return out.getvalue()


def bulk_insert_rows(session: Session, dataset_id: int, table) -> None:
    """Insert every row of ``table`` (an ``AccountTable``) under ``dataset_id``."""
    connection = session.connection()
    dialect = connection.dialect.name
    raw = connection.connection.driver_connection
    total = len(table)
    if dialect == "postgresql":
        cursor = raw.cursor()
        with cursor.copy(f"COPY account_row ({', '.join(_COLUMNS)}) FROM STDIN WITH (FORMAT csv)") as copy:
            for start in range(0, total, _CHUNK):
                copy.write(_csv_block(dataset_id, table, start, min(total, start + _CHUNK)))
        cursor.close()
        return
    placeholders = ", ".join("?" for _ in _COLUMNS)
    sql = f"INSERT INTO account_row ({', '.join(_COLUMNS)}) VALUES ({placeholders})"  # noqa: S608 (constant column names)
    cursor = raw.cursor()
    for start in range(0, total, _CHUNK):
        cursor.executemany(sql, _row_tuples(dataset_id, table, start, min(total, start + _CHUNK)))
    cursor.close()


def store_dataset(session: Session, experiment: Experiment, table, *, filename: str,
                  actor: User | None, source: str = "upload") -> Dataset:
    """Store ``table`` as the experiment's next dataset version (flushed, not committed)."""
    dataset = Dataset(
        experiment_id=experiment.id,
        version=next_version(session, experiment),
        source=source,
        filename=filename[:255],
        sha256=table.sha256,
        row_count=len(table),
        has_segment=table.segment is not None,
        has_days_to_value=table.days_to_value is not None,
        uploaded_by_id=actor.id if actor else None,
        uploaded_at=utcnow(),
    )
    session.add(dataset)
    session.flush()
    bulk_insert_rows(session, dataset.id, table)
    return dataset


def _sums_columns():
    """The aggregate columns of :func:`arm_sums`, x = end and y = start in currency units.

    Products are taken in floating point: integer cents squared overflow SQLite's
    64-bit SUM on large datasets.
    """
    r = AccountRow
    end = r.start_cents + r.expansion_cents - r.contraction_cents - r.churned_cents
    x = func.cast(end, Float()) / 100.0
    y = func.cast(r.start_cents, Float()) / 100.0
    return (
        func.count(),
        func.sum(y),
        func.sum(func.cast(r.expansion_cents, Float()) / 100.0),
        func.sum(func.cast(r.contraction_cents, Float()) / 100.0),
        func.sum(func.cast(r.churned_cents, Float()) / 100.0),
        func.sum(x),
        func.sum(x * x),
        func.sum(y * y),
        func.sum(x * y),
    )


def _sums_row(variant, n, start, expansion, contraction, churned, sx, sxx, syy, sxy) -> ArmSumsRow:
    return ArmSumsRow(str(variant), int(n), float(start), float(expansion), float(contraction),
                      float(churned), float(sx), float(start), float(sxx), float(syy), float(sxy))


def arm_sums(session: Session, dataset_id: int, *, segment: str | None = None) -> list[ArmSumsRow]:
    """Per-variant sufficient statistics, computed in the database with one GROUP BY."""
    r = AccountRow
    query = select(r.variant, *_sums_columns()).where(r.dataset_id == dataset_id)
    if segment is not None:
        query = query.where(r.segment == segment)
    query = query.group_by(r.variant).order_by(r.variant)
    return [_sums_row(*row) for row in session.exec(query).all()]


def arm_sums_by_segment(session: Session, dataset_id: int) -> dict[str | None, list[ArmSumsRow]]:
    """``{segment: per-variant sums}`` in one ``GROUP BY segment, variant``; ``None`` holds blank segments.

    Pooling every segment's rows (:func:`pool_sums`) gives the whole dataset's sums, so a
    dataset with segments needs this one scan only.
    """
    r = AccountRow
    query = (
        select(r.segment, r.variant, *_sums_columns())
        .where(r.dataset_id == dataset_id)
        .group_by(r.segment, r.variant)
    )
    out: dict[str | None, list[ArmSumsRow]] = {}
    for segment, *row in session.exec(query).all():
        out.setdefault(None if segment is None else str(segment), []).append(_sums_row(*row))
    for rows in out.values():
        rows.sort(key=lambda row: row.variant)
    return out


def pool_sums(groups) -> list[ArmSumsRow]:
    """Per-variant sums over several groups of :class:`ArmSumsRow` (sums add up)."""
    pooled: dict[str, list[float]] = {}
    for rows in groups:
        for row in rows:
            total = pooled.setdefault(row.variant, [0] * 10)
            for i, value in enumerate((row.n, row.start, row.expansion, row.contraction, row.churned,
                                       row.sum_x, row.sum_y, row.sum_xx, row.sum_yy, row.sum_xy)):
                total[i] += value
    return [ArmSumsRow(variant, int(t[0]), *map(float, t[1:])) for variant, t in sorted(pooled.items())]


def account_ratio_rows(session: Session, dataset_id: int) -> AccountRatios:
    """Every account's variant, segment and ``end / start``, read in one pass.

    The rows go through the driver's own cursor: building a SQLAlchemy row object per
    account costs more than the query itself on a million-row dataset.
    """
    r = AccountRow
    end = r.start_cents + r.expansion_cents - r.contraction_cents - r.churned_cents
    query = select(r.variant, r.segment, end, r.start_cents).where(r.dataset_id == dataset_id)
    connection = session.connection()
    compiled = query.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    cursor = connection.connection.driver_connection.cursor()
    try:
        cursor.execute(str(compiled))
        rows = cursor.fetchall()
    finally:
        cursor.close()
    if not rows:
        empty = np.empty(0, dtype=object)
        return AccountRatios(empty, empty.copy(), np.empty(0, dtype=np.float64))
    # One (n, 4) object array is far cheaper than transposing a million tuples with zip.
    columns = np.array(rows, dtype=object)
    del rows
    ratio = columns[:, 2].astype(np.float64) / columns[:, 3].astype(np.float64)
    return AccountRatios(columns[:, 0].copy(), columns[:, 1].copy(), ratio)


def account_ratios(session: Session, dataset_id: int, *, segment: str | None = None) -> dict[str, np.ndarray]:
    """Per-account end/start by variant (rows are read only for the Mann-Whitney check)."""
    rows = account_ratio_rows(session, dataset_id)
    return rows.by_variant(None if segment is None else rows.segment == segment)


def segment_counts(session: Session, dataset_id: int) -> dict[str, int]:
    """``{segment: accounts}`` of the non-blank segments, largest first (ties by name)."""
    r = AccountRow
    rows = session.exec(
        select(r.segment, func.count()).where(r.dataset_id == dataset_id, r.segment.is_not(None))
        .group_by(r.segment)
    ).all()
    return {str(name): int(n) for name, n in sorted(rows, key=lambda item: (-item[1], item[0]))}


def segments(session: Session, dataset_id: int) -> list[str]:
    """The dataset's distinct non-blank segments, sorted."""
    return sorted(segment_counts(session, dataset_id))
