"""The driver tree measures itself: each node's actuals beside its baseline and target.

A node is tied to a ledger figure by ``DriverNode.metric`` (the NRR root without one
reads trailing-twelve-month NRR): its actuals are that figure per period of the
current revenue ledger's stored figures (:mod:`experiments.ledger`), nothing typed by
hand. Every other node's owner enters dated actuals of its leading metric
(:class:`~experiments.tree_models.DriverActual`, one per node and date); changing an
existing date's value is a compare-and-set on that row's ``version``.

Units: ledger figures are fractions (1.04 = 104 % NRR; 0.012 = 1.2 % a month), the
same unit a node's baseline and target are entered in. Hand-entered actuals are in
whatever unit the leading metric uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from experiments.audit import record_event
from experiments.charts import Sparkline, ValueFormat, percent, percent2, plain, sparkline
from experiments.errors import ValidationFailed
from experiments.input_rules import FieldErrors, read_date, read_number
from experiments.models import LEDGER_METRICS, DriverNode, User, utcnow
from experiments.tree_models import DriverActual
from experiments.versioning import compare_and_set, expected_version
from stats.ledger import LedgerFigures

#: What each ledger metric means, as the tree editor and the node card say it.
METRIC_LABELS: Mapping[str, str] = {
    "nrr": "NRR, trailing twelve months",
    "grr": "GRR, trailing twelve months",
    "nrr_monthly": "NRR, monthly",
    "grr_monthly": "GRR, monthly",
    "expansion_rate": "Expansion rate, monthly (share of start MRR)",
    "contraction_rate": "Contraction rate, monthly (share of start MRR)",
    "churn_rate": "Churn rate, monthly (churned MRR ÷ start MRR)",
    "logo_churn": "Logo churn, monthly (share of accounts)",
}

#: How many recent hand-entered actuals a node card lists for changing.
LISTED_ENTRIES = 6
#: How many points a sparkline draws at most (the latest ones).
SPARK_POINTS = 24


def node_metric(node: DriverNode) -> str | None:
    """The ledger figure a node reads: its ``metric``, ``"nrr"`` for the root by default."""
    if node.metric:
        return node.metric
    return "nrr" if node.parent_id is None else None


def metric_format(metric: str | None) -> ValueFormat:
    if metric in ("nrr", "grr", "nrr_monthly", "grr_monthly"):
        return percent
    if metric in LEDGER_METRICS:
        return percent2
    return plain


def ledger_series(figures: LedgerFigures | None, metric: str) -> list[tuple[str, float | None]]:
    """``(period, value)`` of one ledger metric over the ledger's periods (``None`` = undefined).

    ``nrr``/``grr`` read the trailing-twelve-month figures (defined from the 12th period
    on); the others read the monthly figures.
    """
    if figures is None:
        return []
    if metric in ("nrr", "grr"):
        return [(row.period, getattr(row, metric)) for row in figures.ttm]
    field = {"nrr_monthly": "nrr", "grr_monthly": "grr"}.get(metric, metric)
    if metric not in LEDGER_METRICS:
        raise ValueError(f"unknown ledger metric {metric!r}; expected one of {LEDGER_METRICS}")
    return [(row.period, getattr(row, field)) for row in figures.monthly]


@dataclass(frozen=True)
class Entry:
    """One hand-entered actual, as the node card lists it (with its version for a change)."""

    id: int
    measured_on: date
    value: float
    version: int
    entered_by: str


@dataclass(frozen=True)
class NodeActuals:
    """A node's actuals: where they come from, the series, and its sparkline."""

    node_id: int
    metric: str | None  # the ledger metric, or None for hand-entered actuals
    source: str  # "ledger" or "entered"
    label: str  # what the actuals measure
    points: tuple[tuple[str, float], ...]  # defined values only, oldest first
    spark: Sparkline | None  # None: nothing drawn (no points, or the review's summary)
    entries: tuple[Entry, ...] = ()
    note: str = ""  # why there is nothing to draw, when there is nothing

    @property
    def latest(self) -> tuple[str, float] | None:
        return self.points[-1] if self.points else None

    def value_text(self, value: float | None) -> str:
        return "—" if value is None else metric_format(self.metric)(value)


def _ledger_actuals(node: DriverNode, metric: str,
                    figures: LedgerFigures | None, draw: bool = True) -> NodeActuals:
    series = ledger_series(figures, metric)
    points = tuple((p, v) for p, v in series if v is not None)[-SPARK_POINTS:]
    label = METRIC_LABELS[metric]
    if figures is None:
        note = "No revenue ledger yet: upload one on the NRR page."
    elif not points and metric in ("nrr", "grr"):
        note = (f"Needs 12 periods of ledger for a trailing-twelve-month figure "
                f"(the ledger has {len(figures.periods)}).")
    elif not points:
        note = "The ledger has no active accounts to measure this on."
    else:
        note = ""
    spark = sparkline(points, title=f"{node.name}: {label}", baseline=node.baseline,
                      target=node.target, value_format=metric_format(metric)) \
        if draw and points else None  # nothing to draw: no chart (~30 µs a node)
    return NodeActuals(node.id, metric, "ledger", label, points, spark, note=note)


def _entered_actuals(node: DriverNode, rows: list[DriverActual],
                     names: Mapping[int, str], draw: bool = True) -> NodeActuals:
    rows = sorted(rows, key=lambda r: r.measured_on)
    points = tuple((r.measured_on.isoformat(), r.value) for r in rows)[-SPARK_POINTS:]
    label = node.leading_metric or "Leading metric"
    spark = sparkline(points, title=f"{node.name}: {label}", baseline=node.baseline,
                      target=node.target) if draw and points else None
    entries = tuple(
        Entry(r.id, r.measured_on, r.value, r.version, names.get(r.entered_by_id or 0, "—"))
        for r in reversed(rows[-LISTED_ENTRIES:])
    )
    note = ""  # "→ no actual" says it; the form below offers the first one
    return NodeActuals(node.id, None, "entered", label, points, spark, entries, note)


#: Every entered actual of some nodes, built once (building the ``IN`` list per page cost
#: as much as running it).
_ACTUALS_OF_NODES = select(DriverActual).where(
    DriverActual.node_id.in_(bindparam("node_ids", expanding=True)))


def tree_actuals(session: Session, nodes: Iterable[DriverNode],
                 figures: LedgerFigures | None, *, draw: bool = True) -> dict[int, NodeActuals]:
    """Actuals of each of ``nodes`` (already filtered to what the user may see); without
    ``draw`` no sparklines and no entries' authors (a summary that shows neither)."""
    nodes = list(nodes)
    entered_ids = [n.id for n in nodes if node_metric(n) is None]
    rows: dict[int, list[DriverActual]] = {}
    names: dict[int, str] = {}
    if entered_ids:
        for row in session.exec(_ACTUALS_OF_NODES, params={"node_ids": entered_ids}).all():
            rows.setdefault(row.node_id, []).append(row)
        user_ids = {r.entered_by_id for group in rows.values() for r in group if r.entered_by_id}
        if user_ids and draw:
            names = {u.id: (u.name or u.email)
                     for u in session.exec(select(User).where(User.id.in_(user_ids))).all()}
    out: dict[int, NodeActuals] = {}
    for node in nodes:
        metric = node_metric(node)
        out[node.id] = (_ledger_actuals(node, metric, figures, draw) if metric
                        else _entered_actuals(node, rows.get(node.id, []), names, draw))
    return out


def actual_as_of(actuals: NodeActuals, last_period: str) -> tuple[str, float] | None:
    """The newest actual dated in or before ``last_period`` (``YYYY-MM`` or ISO date)."""
    found = None
    for label, value in actuals.points:
        if label[: len(last_period)] <= last_period:
            found = (label, value)
    return found


def _what(node: DriverNode, on: date) -> str:
    return f"The actual of '{node.name}' on {on.isoformat()}"


def _already(existing: DriverActual) -> str:
    return (f"{existing.measured_on.isoformat()} already has the value {existing.value:g}; "
            "change it with its own form in the list of actuals")


def record_actual(session: Session, node: DriverNode, data: Mapping[str, Any], *,
                  actor: User) -> DriverActual:
    """Enter (or change) the actual of ``node``'s leading metric on ``data['measured_on']``.

    The caller has checked that ``actor`` may edit the node. A new date needs no
    version; changing a date that has a value needs the ``version`` the form showed.

    Raises
    ------
    ValidationFailed
        The node reads its actuals from the ledger; the date or value is missing or
        malformed, the date is in the future, or the date already has a value and
        the form did not come from it (no ``version``).
    StaleVersion
        Somebody changed that date's value after the form was opened.
    """
    metric = node_metric(node)
    if metric is not None:
        raise ValidationFailed({"": (
            f"'{node.name}' takes its actuals from the revenue ledger "
            f"({METRIC_LABELS[metric]}); clear its ledger metric to enter values by hand")})
    errors = FieldErrors()
    measured_on = read_date(data, "measured_on", errors)
    if measured_on is None and "measured_on" not in errors:
        errors.add("measured_on", "is required (the date the value was measured, e.g. 2026-11-30)")
    value = read_number(data, "value", errors, required=True, example="0.62")
    if measured_on is not None and measured_on > utcnow().date():
        errors.add("measured_on", "must not be in the future")
    elif measured_on is not None and measured_on.year < 1900:
        # The bound weeks, quarters and action due dates share: a typo (0026-11-02) is
        # refused instead of becoming the node's oldest actual.
        errors.add("measured_on", "must be in 1900 or later (e.g. 2026-11-30)")
    errors.raise_if_any()
    on_date = select(DriverActual).where(DriverActual.node_id == node.id,
                                         DriverActual.measured_on == measured_on)
    existing = session.exec(on_date).first()
    raw_version = str(data.get("version") or "").strip()
    if existing is None:
        if raw_version:  # the form was made on a row that is gone
            raise ValidationFailed({"": (
                f"{_what(node, measured_on)} was removed after you opened this page; "
                "enter it again")})
        row = DriverActual(node_id=node.id, measured_on=measured_on, value=value,
                           entered_by_id=actor.id)
        try:
            with session.begin_nested():  # a savepoint: losing the race below keeps the rest
                session.add(row)
        except IntegrityError:
            # Somebody entered the same date between the read above and this insert
            # (PostgreSQL makes this insert wait for theirs, then refuses it).
            existing = session.exec(on_date.execution_options(populate_existing=True)).one()
            raise ValidationFailed({"measured_on": _already(existing)}) from None
        record_event(session, "node.actual", actor=actor, entity_type="driver_node",
                     entity_id=node.id, team_id=node.team_id,
                     diff={measured_on.isoformat(): [None, value]})
        return row
    if not raw_version:
        raise ValidationFailed({"measured_on": _already(existing)})
    seen = expected_version(existing, raw_version)
    if existing.value == value:
        return existing
    before = existing.value
    compare_and_set(session, existing, seen,
                    {"value": value, "entered_by_id": actor.id, "entered_at": utcnow()},
                    what=_what(node, measured_on), entity_type="driver_node",
                    entity_id=node.id)
    record_event(session, "node.actual", actor=actor, entity_type="driver_node",
                 entity_id=node.id, team_id=node.team_id,
                 diff={measured_on.isoformat(): [before, value]})
    return existing


@dataclass(frozen=True)
class ActualLine:
    """One node's latest actual as of a moment, against its target (the review's summary)."""

    node_id: int
    node: str
    label: str
    source: str
    metric: str | None
    period: str  # the actual's period (YYYY-MM) or date
    actual: float
    baseline: float | None
    target: float | None

    @property
    def gap(self) -> float | None:
        """actual − target (``None`` without a target)."""
        return None if self.target is None else self.actual - self.target

    def text(self, value: float | None) -> str:
        return "—" if value is None else metric_format(self.metric)(value)

    @property
    def gap_text(self) -> str:
        gap = self.gap
        if gap is None:
            return "—"
        if self.metric in LEDGER_METRICS:
            return f"{gap * 100:+.1f} pts" if self.metric in ("nrr", "grr", "nrr_monthly",
                                                                 "grr_monthly") \
                else f"{gap * 100:+.2f} pts"
        return f"{gap:+.4g}"

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "node": self.node, "measure": self.label,
                "source": self.source, "metric": self.metric, "period": self.period,
                "actual": self.actual, "baseline": self.baseline, "target": self.target,
                "gap": self.gap}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ActualLine:
        """Inverse of :meth:`to_json` (a review's kept copy; ``gap`` is derived again)."""
        return cls(int(data["node_id"]), str(data["node"]), str(data["measure"]),
                   str(data["source"]), data.get("metric"), str(data["period"]),
                   float(data["actual"]), data.get("baseline"), data.get("target"))


def actuals_summary(session: Session, nodes: Iterable[DriverNode],
                    figures: LedgerFigures | None, as_of: date) -> list[ActualLine]:
    """Each of ``nodes`` that has an actual dated on or before ``as_of`` (a ledger period
    counts from its month), with its baseline and target, in the given order."""
    nodes = list(nodes)
    found = tree_actuals(session, nodes, figures, draw=False)  # the summary draws nothing
    lines = []
    for node in nodes:
        actuals = found[node.id]
        latest = actual_as_of(actuals, as_of.isoformat())
        if latest is None:
            continue
        lines.append(ActualLine(node.id, node.name, actuals.label, actuals.source,
                                actuals.metric, latest[0], latest[1], node.baseline,
                                node.target))
    return lines
