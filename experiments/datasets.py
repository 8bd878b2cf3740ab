"""Storing account datasets and reading per-arm sums back with one GROUP BY.

Rows are written with the driver's fastest bulk path (PostgreSQL binary ``COPY`` of
whole blocks built from the arrays, SQLite ``executemany``) inside the caller's transaction, so a
failed import leaves nothing behind. Reads push the aggregation down: the
delta-method inputs come from one ``GROUP BY variant`` (or ``segment, variant``),
and rows are read only for the Mann-Whitney check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import Float, case, delete, func, literal_column, or_, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from experiments.errors import Conflict
from experiments.models import AccountRow, Dataset, Experiment, User, utcnow
from stats import Moments
from stats.sums import pool_common

if TYPE_CHECKING:
    from stats.velocity import TimeTable

ROW_COLUMNS = (
    "dataset_id",
    "account_id",
    "variant",
    "start_cents",
    "expansion_cents",
    "contraction_cents",
    "churned_cents",
    "segment",
    "days_to_value",
    "days_observed",
    "pre_start_cents",
    "pre_end_cents",
    "enrolled_on",
)
_RESERVE_ATTEMPTS = 5


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
    #: End and start MRR per account (currency units), for the permutation test of
    #: skewed arms (DESIGN §4c); None when not read.
    end: np.ndarray | None = None
    start: np.ndarray | None = None
    #: Days to value per account (NaN = not reached), for the velocity cohorts; None
    #: when the dataset has no days_to_value column.
    days_to_value: np.ndarray | None = None
    #: The ``AccountTable`` these came from (an import that has just written it): the
    #: NRR-native inputs are then computed from its arrays, not read back with SQL while
    #: the import holds SQLite's write lock.
    table: Any = None

    def rows_by_variant(self, mask: np.ndarray | None = None, *, keys=None) -> dict[str, tuple]:
        """``{variant: (end, start)}`` for ``stats.ArmData(rows=...)``; empty when not read."""
        if self.end is None or self.start is None:
            return {}
        variant = self.variant if mask is None else self.variant[mask]
        end = self.end if mask is None else self.end[mask]
        start = self.start if mask is None else self.start[mask]
        if keys is None:
            keys = dict.fromkeys(variant.tolist())
        out = {}
        for key in keys:
            rows = variant == key
            if rows.any():
                out[str(key)] = (end[rows], start[rows])
        return out

    def days_by_variant(self, mask: np.ndarray | None = None, *, keys=None) -> dict:
        """``{variant: days_to_value}`` aligned with :meth:`rows_by_variant` (empty: not read)."""
        if self.days_to_value is None:
            return {}
        variant = self.variant if mask is None else self.variant[mask]
        days = self.days_to_value if mask is None else self.days_to_value[mask]
        if keys is None:
            keys = dict.fromkeys(variant.tolist())
        return {str(key): days[variant == key] for key in keys if (variant == key).any()}

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
        end = (
            table.start_cents
            + table.expansion_cents
            - table.contraction_cents
            - table.churned_cents
        )
        segment = table.segment
        if segment is None:
            segment = np.full(len(table), None, dtype=object)
        start = table.start_cents.astype(np.float64)
        return cls(
            table.variant,
            segment,
            end.astype(np.float64) / start,
            end.astype(np.float64) / 100,
            start / 100,
            table.days_to_value,
            table,
        )


def next_version(session: Session, experiment: Experiment) -> int:
    """One above the highest version ever given, importing or ready."""
    current = session.exec(
        select(func.max(Dataset.version)).where(Dataset.experiment_id == experiment.id)
    ).one()
    return (current or 0) + 1


def lock_experiment(session: Session, experiment_id: int) -> None:
    """Hold the experiment's write lock until the transaction ends.

    PostgreSQL: ``SELECT … FOR UPDATE`` on the experiment row, so two uploads to one
    experiment assign versions one after the other. SQLite locks the whole database
    for writing; a no-op ``UPDATE`` as the transaction's first write takes that lock
    before the version is read (the busy timeout makes the other writer wait).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.exec(select(Experiment.id).where(Experiment.id == experiment_id).with_for_update())
    else:
        session.execute(text("UPDATE experiment SET id = id WHERE id = :id"), {"id": experiment_id})


def dataset_with_content(session: Session, experiment_id: int, sha256: str) -> Dataset | None:
    """The experiment's dataset holding exactly these bytes (any status), if any."""
    return session.exec(
        select(Dataset).where(
            Dataset.experiment_id == experiment_id, Dataset.content_sha256 == sha256
        )
    ).first()


class DuplicateContent(Conflict):
    """The experiment already holds these exact bytes as ``dataset``."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        super().__init__(f"This file is identical to dataset version {dataset.version}.")


@dataclass(frozen=True)
class Reservation:
    """A new, still importing dataset, or the one that already holds the same bytes."""

    dataset: Dataset
    created: bool


def reserve_dataset(
    session: Session,
    experiment: Experiment,
    table,
    *,
    filename: str,
    actor: User | None,
    source: str = "upload",
    status: str = "importing",
) -> Reservation:
    """Add the next dataset version for ``table`` (no rows yet), or find its twin.

    Takes the experiment's lock first (:func:`lock_experiment`), so the version read
    and the insert are one step; the unique keys (experiment, version) and
    (experiment, content) stay the last word: a violation is retried a few times and
    a content twin is returned as ``created=False``. Flushed, not committed.
    """
    for _attempt in range(_RESERVE_ATTEMPTS):
        lock_experiment(session, experiment.id)
        existing = dataset_with_content(session, experiment.id, table.sha256)
        if existing is not None:
            return Reservation(existing, created=False)
        dataset = Dataset(
            experiment_id=experiment.id,
            version=next_version(session, experiment),
            source=source,
            filename=filename[:255],
            sha256=table.sha256,
            content_sha256=table.sha256,
            status=status,
            row_count=len(table),
            has_segment=table.segment is not None,
            has_days_to_value=table.days_to_value is not None,
            has_days_observed=getattr(table, "days_observed", None) is not None,
            has_pre_period=getattr(table, "pre_start_cents", None) is not None,
            has_enrolled_on=getattr(table, "enrolled_on", None) is not None,
            uploaded_by_id=actor.id if actor else None,
            uploaded_at=utcnow(),
        )
        savepoint = session.begin_nested()
        session.add(dataset)
        try:
            session.flush()
        except IntegrityError:
            savepoint.rollback()
            continue
        savepoint.commit()
        return Reservation(dataset, created=True)
    raise Conflict(
        "Another upload to this experiment was being stored at the same moment; "
        "please upload the file again."
    )


def activate_dataset(session: Session, dataset: Dataset) -> None:
    """Make an importing dataset visible: one ``UPDATE`` (flushed, not committed)."""
    dataset.status = "ready"
    session.add(dataset)
    session.flush()


def discard_dataset(session: Session, dataset_id: int) -> None:
    """Delete a dataset and its rows (an import that failed half-way; flushed)."""
    session.execute(delete(AccountRow).where(AccountRow.dataset_id == dataset_id))
    session.execute(delete(Dataset).where(Dataset.id == dataset_id))
    session.flush()


def bulk_insert_rows(
    session: Session, dataset_id: int, table, *, start: int = 0, stop: int | None = None,
    ids_by_line: bool = False,
) -> None:
    """Insert rows ``start:stop`` (default all) of ``table`` (an ``AccountTable``).

    In the caller's transaction, by the backend's own writer
    (:mod:`experiments.rows_postgres`, :mod:`experiments.rows_sqlite`). ``ids_by_line``
    (PostgreSQL; only for a dataset whose rows are all of ``table``): ids from the rows'
    places in the table, so that chunks written by several connections keep file order.
    """
    connection = session.connection()
    raw = connection.connection.driver_connection
    total = len(table) if stop is None else min(stop, len(table))
    if connection.dialect.name == "postgresql":
        from experiments.rows_postgres import copy_rows

        copy_rows(raw, dataset_id, table, start, total, ids_by_line=ids_by_line)
    else:
        from experiments.rows_sqlite import insert_rows

        insert_rows(raw, dataset_id, table, start, total)


def store_dataset(
    session: Session,
    experiment: Experiment,
    table,
    *,
    filename: str,
    actor: User | None,
    source: str = "upload",
) -> Dataset:
    """Store ``table`` as the experiment's next, ready dataset in the caller's transaction.

    Flushed, not committed.

    Raises
    ------
    DuplicateContent
        The experiment already holds a dataset with the same bytes; nothing was written.
    """
    reservation = reserve_dataset(
        session, experiment, table, filename=filename, actor=actor, source=source, status="ready"
    )
    if not reservation.created:
        raise DuplicateContent(reservation.dataset)
    bulk_insert_rows(session, reservation.dataset.id, table)
    return reservation.dataset


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
    return ArmSumsRow(
        str(variant),
        int(n),
        float(start),
        float(expansion),
        float(contraction),
        float(churned),
        float(sx),
        float(start),
        float(sxx),
        float(syy),
        float(sxy),
    )


def arm_sums(session: Session, dataset_id: int, *, segment: str | None = None) -> list[ArmSumsRow]:
    """Per-variant sufficient statistics, computed in the database with one GROUP BY."""
    r = AccountRow
    query = select(r.variant, *_sums_columns()).where(r.dataset_id == dataset_id)
    if segment is not None:
        query = query.where(r.segment == segment)
    query = query.group_by(r.variant).order_by(r.variant)
    return [_sums_row(*row) for row in session.exec(query).all()]


def arm_sums_by_segment(session: Session, dataset_id: int) -> dict[str | None, list[ArmSumsRow]]:
    """``{segment: per-variant sums}`` in one ``GROUP BY segment, variant``; ``None`` holds
    blank segments.

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
            for i, value in enumerate(
                (
                    row.n,
                    row.start,
                    row.expansion,
                    row.contraction,
                    row.churned,
                    row.sum_x,
                    row.sum_y,
                    row.sum_xx,
                    row.sum_yy,
                    row.sum_xy,
                )
            ):
                total[i] += value
    return [
        ArmSumsRow(variant, int(t[0]), *map(float, t[1:])) for variant, t in sorted(pooled.items())
    ]


@dataclass(frozen=True)
class ArmExtras:
    """Per-group inputs of the NRR-native figures (DESIGN §4c), straight from SQL.

    ``moments`` holds the account columns in currency units (the pre-period ones only
    when no account of the group lacks them); the counts are logo-churned accounts
    (churned = start) and accounts with any expansion.
    """

    moments: Moments
    logo_churned: int
    expanded: int

    def __add__(self, other: ArmExtras) -> ArmExtras:
        return ArmExtras(
            pool_common(self.moments, other.moments),
            self.logo_churned + other.logo_churned,
            self.expanded + other.expanded,
        )


_MOMENT_SOURCES = {
    "start": "start_cents",
    "expansion": "expansion_cents",
    "contraction": "contraction_cents",
    "churned": "churned_cents",
    "pre_start": "pre_start_cents",
    "pre_end": "pre_end_cents",
}


def arm_extras(
    session: Session, dataset: Dataset, *, by_segment: bool = False
) -> dict[tuple[str | None, str], ArmExtras]:
    """Moments and incidence counts per ``(segment, variant)`` (segment None unless asked).

    One ``GROUP BY [segment,] variant`` of *shifted* sums: every column is centred on
    the dataset's first row's value before it is summed and multiplied, so that
    ``Σab − ΣaΣb/n`` does not cancel the digits of a large mean (the shifted-data
    algorithm; Chan, Golub & LeVeque 1983, §3). The products are taken in floating
    point (cents squared overflow a 64-bit SUM).
    """
    r = AccountRow
    names = ["start", "expansion", "contraction", "churned"]
    if dataset.has_pre_period:
        names += ["pre_start", "pre_end"]
    columns = [getattr(r, _MOMENT_SOURCES[name]) for name in names]
    first = session.exec(
        select(*columns).where(r.dataset_id == dataset.id).limit(1)
    ).first()
    if first is None:
        return {}
    shifts = [float(value or 0) for value in first]
    deviations = [func.cast(column, Float()) - shift for column, shift in zip(columns, shifts,
                                                                              strict=True)]
    pairs = [(i, j) for i in range(len(names)) for j in range(i, len(names))]
    aggregates = [
        func.count(),
        func.sum(case((r.churned_cents == r.start_cents, 1), else_=0)),
        func.sum(case((r.expansion_cents > 0, 1), else_=0)),
        func.sum(
            case((or_(r.pre_start_cents.is_(None), r.pre_end_cents.is_(None)), 1), else_=0)
        ),
        *(func.sum(d) for d in deviations),
        *(func.sum(deviations[i] * deviations[j]) for i, j in pairs),
    ]
    keys = [r.segment if by_segment else literal_column("NULL"), r.variant]
    query = select(*keys, *aggregates).where(r.dataset_id == dataset.id).group_by(
        *([r.segment, r.variant] if by_segment else [r.variant])
    )
    out: dict[tuple[str | None, str], ArmExtras] = {}
    k = len(names)
    for segment, variant, n, churned, expanded, pre_missing, *rest in session.exec(query).all():
        n = int(n)
        sums = {name: float(rest[i] or 0.0) for i, name in enumerate(names)}
        products = {
            (names[i], names[j]): float(rest[k + index] or 0.0)
            for index, (i, j) in enumerate(pairs)
        }
        keep = names if not pre_missing else names[:4]
        shifted = Moments.from_sums(
            n, {name: sums[name] for name in keep},
            {(a, b): products[a, b] if (a, b) in products else products[b, a]
             for a in keep for b in keep},
        )
        index = {name: names.index(name) for name in keep}
        moments = Moments(
            n,
            tuple(keep),
            # back from shifted cents to currency units
            tuple((m + shifts[index[name]]) / 100 for name, m in zip(keep, shifted.mean,
                                                                       strict=True)),
            tuple(tuple(v / 10_000 for v in row) for row in shifted.comoment),
            shifted.tolerance,
        )
        key = (None if segment is None else str(segment), str(variant))
        out[key] = ArmExtras(moments, int(churned or 0), int(expanded or 0))
    return out


@dataclass(frozen=True)
class _Grouping:
    """An ``AccountTable``'s rows grouped by ``(segment, variant)`` (segment None unless asked).

    ``code`` is each row's group number (an index into ``keys``); ``order`` lists the rows
    group after group, each group's rows in file order, so that ``order[bounds[g]:bounds[g
    + 1]]`` are group ``g``'s rows, as a boolean mask would select them.
    """

    keys: list[tuple[str | None, str]]
    code: np.ndarray
    order: np.ndarray
    bounds: np.ndarray

    def rows(self, group: int) -> np.ndarray:
        return self.order[self.bounds[group]:self.bounds[group + 1]]

    def sorted(self, values: np.ndarray) -> np.ndarray:
        """``values`` in :attr:`order`: a group's values are then one slice."""
        return values[self.order]

    def part(self, values_sorted: np.ndarray, group: int) -> np.ndarray:
        return values_sorted[self.bounds[group]:self.bounds[group + 1]]


#: Up to this many distinct values, one comparison pass each is faster than a look-up per row.
_COMPARISON_PASSES = 8


def _codes(values: np.ndarray, keys: list) -> np.ndarray:
    """Each value's position in ``keys`` (every value is one of them)."""
    if len(keys) > _COMPARISON_PASSES:
        # One pass per key would be rows x keys (a segment per account: hours); one dict
        # look-up per row instead.
        position = {key: index for index, key in enumerate(keys)}
        return np.fromiter(map(position.__getitem__, values.tolist()), dtype=np.intp,
                           count=len(values))
    code = np.zeros(len(values), dtype=np.intp)
    for position, key in enumerate(keys[1:], start=1):
        # np.equal compares element-wise, also with None (a blank segment)
        code[np.equal(values, key)] = position
    return code


def _grouping(table, by_segment: bool) -> _Grouping:
    """Group codes from one comparison pass per distinct value, not one mask per group."""
    variants = table.variants()
    code = _codes(table.variant, variants)
    if by_segment and table.segment is not None:
        segments = list(dict.fromkeys(table.segment.tolist()))
        code += _codes(table.segment, segments) * len(variants)
        pairs = [(segment, v) for segment in segments for v in variants]
    else:
        pairs = [(None, v) for v in variants]
    counts = np.bincount(code, minlength=len(pairs))
    present = np.flatnonzero(counts)
    if len(present) < len(pairs):  # renumber so that every group has rows
        renumber = np.zeros(len(pairs), dtype=np.intp)
        renumber[present] = np.arange(len(present))
        code = renumber[code]
        pairs = [pairs[i] for i in present.tolist()]
        counts = counts[present]
    order = np.argsort(code, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(counts)))
    return _Grouping(pairs, code, order, bounds)


def sums_from_table(
    table, *, grouping: _Grouping | None = None
) -> tuple[dict[str | None, list[ArmSumsRow]] | None, list[ArmSumsRow]]:
    """:func:`arm_sums_by_segment` (None without a segment column) and :func:`arm_sums`
    from the arrays of an ``AccountTable``: what the import has just stored, not read back.

    Money sums are exact (whole cents add up exactly in float64 below 2**53 cents) and
    then in currency units; the products are float sums, as in SQL.
    """
    by_segment = table.segment is not None
    grouping = grouping or _grouping(table, by_segment)
    size = len(grouping.keys)

    def total(values: np.ndarray) -> list[float]:
        return np.bincount(grouping.code, weights=values, minlength=size).tolist()

    start_cents = table.start_cents.astype(np.float64)
    end_cents = (table.start_cents + table.expansion_cents - table.contraction_cents
                 - table.churned_cents).astype(np.float64)
    x, y = end_cents / 100.0, start_cents / 100.0
    columns = zip(
        np.bincount(grouping.code, minlength=size).tolist(),
        [v / 100 for v in total(start_cents)],
        [v / 100 for v in total(table.expansion_cents.astype(np.float64))],
        [v / 100 for v in total(table.contraction_cents.astype(np.float64))],
        [v / 100 for v in total(table.churned_cents.astype(np.float64))],
        total(x),
        total(x * x),
        total(y * y),
        total(x * y),
        strict=True,
    )
    groups: dict[str | None, list[ArmSumsRow]] = {}
    for (segment, variant), (n, start, expansion, contraction, churned, sx, sxx, syy,
                             sxy) in zip(grouping.keys, columns, strict=True):
        groups.setdefault(segment, []).append(ArmSumsRow(
            str(variant), int(n), start, expansion, contraction, churned, sx, start, sxx,
            syy, sxy))
    for rows in groups.values():
        rows.sort(key=lambda row: row.variant)
    if by_segment:
        return groups, pool_sums(groups.values())
    return None, groups.get(None, [])


def extras_from_table(
    table, *, by_segment: bool = False, grouping: _Grouping | None = None
) -> dict[tuple[str | None, str], ArmExtras]:
    """:func:`arm_extras` from the arrays of an ``AccountTable`` (two-pass moments)."""
    grouping = grouping or _grouping(table, by_segment)
    money = {name: grouping.sorted(values) for name, values in table.money().items()}
    churned_all = grouping.sorted(table.churned_cents == table.start_cents)
    expanded_all = grouping.sorted(table.expansion_cents > 0)
    pre = table.has_pre_period
    if pre:
        pre_start_all = grouping.sorted(table.pre_start_cents)
        pre_end_all = grouping.sorted(table.pre_end_cents)
    out = {}
    for group, key in enumerate(grouping.keys):
        columns = {name: grouping.part(money[name], group)
                   for name in ("start", "expansion", "contraction", "churned")}
        if pre:
            pre_start = grouping.part(pre_start_all, group)
            pre_end = grouping.part(pre_end_all, group)
            if not (np.isnan(pre_start).any() or np.isnan(pre_end).any()):
                columns.update(pre_start=pre_start / 100, pre_end=pre_end / 100)
        out[key] = ArmExtras(
            Moments.from_arrays(columns),
            int(np.count_nonzero(grouping.part(churned_all, group))),
            int(np.count_nonzero(grouping.part(expanded_all, group))),
        )
    return out


def time_tables_from_table(
    table, *, by_segment: bool = False, grouping: _Grouping | None = None
) -> dict[tuple[str | None, str], TimeTable]:
    """:func:`time_tables` from the arrays of an ``AccountTable``."""
    if table.days_observed is None:
        return {}
    from stats.velocity import TimeTable

    grouping = grouping or _grouping(table, by_segment)
    days = None if table.days_to_value is None else grouping.sorted(table.days_to_value)
    observed = grouping.sorted(table.days_observed)
    out = {}
    for group, key in enumerate(grouping.keys):
        part = grouping.part(observed, group)
        reached = np.full(part.size, np.nan) if days is None else grouping.part(days, group)
        out[key] = TimeTable.from_arrays(reached, part)
    return out


@dataclass(frozen=True)
class TableInputs:
    """What :func:`arm_sums_by_segment`, :func:`arm_sums`, :func:`arm_extras` and
    :func:`time_tables` read from SQL, from the arrays of an ``AccountTable`` instead."""

    sums_by_segment: dict[str | None, list[ArmSumsRow]] | None
    sums: list[ArmSumsRow]
    extras: dict[tuple[str | None, str], ArmExtras]
    times: dict[tuple[str | None, str], TimeTable]


def inputs_from_table(table) -> TableInputs:
    """The analysis inputs of a table an import has just stored, grouped once (per segment
    and variant when the file has segments)."""
    by_segment = table.segment is not None and len(table) > 0
    grouping = _grouping(table, by_segment)
    sums_by_segment, sums = sums_from_table(table, grouping=grouping)
    return TableInputs(
        sums_by_segment,
        sums,
        extras_from_table(table, grouping=grouping),
        time_tables_from_table(table, grouping=grouping),
    )


def pool_extras(extras: dict[tuple[str | None, str], ArmExtras]) -> dict[str, ArmExtras]:
    """Per-variant extras pooled over the segments (moments merge exactly)."""
    pooled: dict[str, ArmExtras] = {}
    for (_segment, variant), value in extras.items():
        pooled[variant] = pooled[variant] + value if variant in pooled else value
    return pooled


def time_tables(
    session: Session, dataset: Dataset, *, by_segment: bool = False
) -> dict[tuple[str | None, str], TimeTable]:
    """Time to value per ``(segment, variant)`` as counts per distinct day (DESIGN §4c).

    One ``GROUP BY [segment,] variant, time`` with time = days_to_value (an event) or,
    when that is blank, days_observed (censored); rows with neither are left out. Empty
    when the dataset has no days_observed column (velocity is then null).
    """
    if not dataset.has_days_observed:
        return {}
    from stats.velocity import TimeTable

    r = AccountRow
    time = func.coalesce(r.days_to_value, r.days_observed)
    event = case((r.days_to_value.is_not(None), 1), else_=0)
    censored = case((r.days_to_value.is_(None), 1), else_=0)
    segment = r.segment if by_segment else literal_column("NULL")
    groups = [r.segment, r.variant, time] if by_segment else [r.variant, time]
    query = (
        select(segment, r.variant, time, func.sum(event), func.sum(censored))
        .where(r.dataset_id == dataset.id, time.is_not(None))
        .group_by(*groups)
    )
    rows: dict[tuple[str | None, str], list[tuple[float, int, int]]] = {}
    for seg, variant, t, events, cens in session.exec(query).all():
        key = (None if seg is None else str(seg), str(variant))
        rows.setdefault(key, []).append((float(t), int(events), int(cens)))
    return {key: TimeTable.from_counts(counts) for key, counts in rows.items()}


def pool_time_tables(tables: dict[tuple[str | None, str], TimeTable]) -> dict[str, TimeTable]:
    """Per-variant time tables pooled over the segments."""
    pooled: dict[str, TimeTable] = {}
    for (_segment, variant), table in tables.items():
        pooled[variant] = pooled[variant] + table if variant in pooled else table
    return pooled


@dataclass(frozen=True)
class DatedEnrolment:
    """Two points of the smallest arm's enrolment, from the accounts' enrolled_on dates."""

    earlier_on: date
    earlier_smallest: int
    observed_on: date
    smallest: int


#: Enrolment is measured over at most this many days before the last enrolment date.
ENROLMENT_WINDOW_DAYS = 28


def dated_enrolment(
    session: Session, dataset: Dataset, variants: list[str]
) -> DatedEnrolment | None:
    """The smallest planned arm's size at the last enrolment date and a window before it.

    Used by the enrolment projection instead of the upload dates when every account of
    the dataset has an enrolled_on date (DESIGN §3); ``None`` otherwise, or when all
    accounts enrolled on one day. Two small ``GROUP BY variant`` queries.
    """
    if not dataset.has_enrolled_on or not variants:
        return None
    r = AccountRow
    rows = session.exec(
        select(func.count(), func.count(r.enrolled_on), func.min(r.enrolled_on),
               func.max(r.enrolled_on)).where(r.dataset_id == dataset.id)
    ).one()
    total, dated, first, last = rows
    if not total or dated != total or first is None or last is None:
        return None
    first, last = _as_date(first), _as_date(last)
    if last <= first:
        return None
    cut = max(first, last - timedelta(days=ENROLMENT_WINDOW_DAYS))

    def sizes(*conditions) -> dict[str, int]:
        query = (
            select(r.variant, func.count())
            .where(r.dataset_id == dataset.id, *conditions)
            .group_by(r.variant)
        )
        return {str(v): int(n) for v, n in session.exec(query).all()}

    now, before = sizes(), sizes(r.enrolled_on < cut)
    smallest = min(variants, key=lambda v: now.get(v, 0))
    return DatedEnrolment(cut, before.get(smallest, 0), last + timedelta(days=1),
                          now.get(smallest, 0))


def dated_enrolment_from_table(table, variants: list[str]) -> DatedEnrolment | None:
    """:func:`dated_enrolment` from the arrays of an ``AccountTable``."""
    dates = table.enrolled_on
    if dates is None or not variants or np.isnat(dates).any() or not len(dates):
        return None
    first, last = dates.min(), dates.max()
    if last <= first:
        return None
    cut = max(first, last - np.timedelta64(ENROLMENT_WINDOW_DAYS, "D"))
    now = {v: int(np.count_nonzero(table.variant == v)) for v in variants}
    smallest = min(variants, key=lambda v: now[v])
    before = int(np.count_nonzero((table.variant == smallest) & (dates < cut)))
    return DatedEnrolment(
        _as_date(cut), before, _as_date(last + np.timedelta64(1, "D")), now[smallest]
    )


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def account_ratio_rows(
    session: Session, dataset_id: int, *, with_days: bool = False
) -> AccountRatios:
    """Every account's variant, segment and ``end / start``, read in one pass.

    The rows go through the driver's own cursor: building a SQLAlchemy row object per
    account costs more than the query itself on a million-row dataset. ``with_days``
    also reads days_to_value (for the velocity cohorts).
    """
    r = AccountRow
    end = r.start_cents + r.expansion_cents - r.contraction_cents - r.churned_cents
    query = select(r.variant, r.segment, end, r.start_cents, r.days_to_value).where(
        r.dataset_id == dataset_id
    )
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
    # One (n, 5) object array is far cheaper than transposing a million tuples with zip.
    columns = np.array(rows, dtype=object)
    del rows
    end_cents = columns[:, 2].astype(np.float64)
    start_cents = columns[:, 3].astype(np.float64)
    days = None
    if with_days:
        days = np.where(columns[:, 4] == None, np.nan, columns[:, 4]).astype(np.float64)  # noqa: E711
    return AccountRatios(
        columns[:, 0].copy(),
        columns[:, 1].copy(),
        end_cents / start_cents,
        end_cents / 100,
        start_cents / 100,
        days,
    )


def account_ratios(
    session: Session, dataset_id: int, *, segment: str | None = None
) -> dict[str, np.ndarray]:
    """Per-account end/start by variant (rows are read only for the Mann-Whitney check)."""
    rows = account_ratio_rows(session, dataset_id)
    return rows.by_variant(None if segment is None else rows.segment == segment)


def segment_counts(session: Session, dataset_id: int) -> dict[str, int]:
    """``{segment: accounts}`` of the non-blank segments, largest first (ties by name)."""
    r = AccountRow
    rows = session.exec(
        select(r.segment, func.count())
        .where(r.dataset_id == dataset_id, r.segment.is_not(None))
        .group_by(r.segment)
    ).all()
    return {str(name): int(n) for name, n in sorted(rows, key=lambda item: (-item[1], item[0]))}


def segments(session: Session, dataset_id: int) -> list[str]:
    """The dataset's distinct non-blank segments, sorted."""
    return sorted(segment_counts(session, dataset_id))
