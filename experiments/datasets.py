"""Storing account datasets and reading per-arm sums back with one GROUP BY.

Rows are written with the driver's fastest bulk path (PostgreSQL ``COPY``,
SQLite ``executemany``) inside the caller's transaction, so a failed import
leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sqlalchemy import func
from sqlmodel import Session, select

from experiments.models import AccountRow, Dataset, Experiment, User, utcnow

_COLUMNS = ("dataset_id", "account_id", "variant", "start_cents", "expansion_cents",
            "contraction_cents", "churned_cents", "segment", "days_to_value")
_CHUNK = 50_000


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


def next_version(session: Session, experiment: Experiment) -> int:
    current = session.exec(select(func.max(Dataset.version)).where(Dataset.experiment_id == experiment.id)).one()
    return (current or 0) + 1


def _row_tuples(dataset_id: int, table, start: int, stop: int):
    seg = table.segment
    dtv = table.days_to_value
    ids = table.account_id[start:stop]
    variants = table.variant[start:stop]
    s = table.start_cents[start:stop].tolist()
    e = table.expansion_cents[start:stop].tolist()
    c = table.contraction_cents[start:stop].tolist()
    ch = table.churned_cents[start:stop].tolist()
    segs = seg[start:stop].tolist() if seg is not None else [None] * (stop - start)
    if dtv is not None:
        chunk = dtv[start:stop]
        days = [None if np.isnan(v) else v for v in chunk.tolist()]
    else:
        days = [None] * (stop - start)
    return zip([dataset_id] * (stop - start), ids.tolist(), variants.tolist(), s, e, c, ch,
               [x if x not in ("",) else None for x in segs], days, strict=True)


def bulk_insert_rows(session: Session, dataset_id: int, table) -> None:
    """Insert every row of ``table`` (an ``AccountTable``) under ``dataset_id``."""
    connection = session.connection()
    dialect = connection.dialect.name
    raw = connection.connection.driver_connection
    total = len(table)
    if dialect == "postgresql":
        cursor = raw.cursor()
        with cursor.copy(f"COPY account_row ({', '.join(_COLUMNS)}) FROM STDIN") as copy:
            for start in range(0, total, _CHUNK):
                for row in _row_tuples(dataset_id, table, start, min(total, start + _CHUNK)):
                    copy.write_row(row)
        return
    placeholders = ", ".join("?" for _ in _COLUMNS)
    sql = f"INSERT INTO account_row ({', '.join(_COLUMNS)}) VALUES ({placeholders})"
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


def arm_sums(session: Session, dataset_id: int, *, segment: str | None = None) -> list[ArmSumsRow]:
    """Per-variant sufficient statistics, computed in the database with one GROUP BY.

    x = end MRR, y = start MRR, in currency units. Products are taken in floating
    point: integer cents squared overflow SQLite's 64-bit SUM on large datasets.
    """
    r = AccountRow
    end = (r.start_cents + r.expansion_cents - r.contraction_cents - r.churned_cents)
    x = func.cast(end, _float()) / 100.0
    y = func.cast(r.start_cents, _float()) / 100.0
    query = (
        select(
            r.variant,
            func.count(),
            func.sum(y),
            func.sum(func.cast(r.expansion_cents, _float()) / 100.0),
            func.sum(func.cast(r.contraction_cents, _float()) / 100.0),
            func.sum(func.cast(r.churned_cents, _float()) / 100.0),
            func.sum(x),
            func.sum(x * x),
            func.sum(y * y),
            func.sum(x * y),
        )
        .where(r.dataset_id == dataset_id)
        .group_by(r.variant)
        .order_by(r.variant)
    )
    if segment is not None:
        query = query.where(r.segment == segment)
    rows = []
    for variant, n, start, expansion, contraction, churned, sx, sxx, syy, sxy in session.exec(query).all():
        rows.append(ArmSumsRow(variant, int(n), float(start), float(expansion), float(contraction),
                               float(churned), float(sx), float(start), float(sxx), float(syy), float(sxy)))
    return rows


def account_ratios(session: Session, dataset_id: int, *, segment: str | None = None) -> dict[str, np.ndarray]:
    """Per-account end/start by variant (rows are read only for the Mann–Whitney check)."""
    r = AccountRow
    end = r.start_cents + r.expansion_cents - r.contraction_cents - r.churned_cents
    query = select(r.variant, end, r.start_cents).where(r.dataset_id == dataset_id)
    if segment is not None:
        query = query.where(r.segment == segment)
    buckets: dict[str, list[tuple[int, int]]] = {}
    for variant, e, s in session.exec(query).all():
        buckets.setdefault(variant, []).append((e, s))
    out = {}
    for variant, pairs in buckets.items():
        arr = np.asarray(pairs, dtype=np.float64)
        out[variant] = arr[:, 0] / arr[:, 1]
    return out


def segments(session: Session, dataset_id: int) -> list[str]:
    rows = session.exec(select(AccountRow.segment).where(AccountRow.dataset_id == dataset_id,
                                                         AccountRow.segment.is_not(None)).distinct()).all()
    return sorted(rows)


def _float():
    from sqlalchemy import Float

    return Float()
