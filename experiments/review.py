"""The weekly review meeting: what needs a decision, what changed, what is alarming,
the driver-tree summary and the portfolio — and the meeting's notes, actions and
decisions, one item per experiment.

Time model
----------
A review covers the ISO week ``YYYY-Www``, Monday 00:00 UTC to the next Monday.
Everything is evaluated *as of* the end of that week, or *now* while the week is
still running: an experiment's status comes from its started/stopped/decided
timestamps (capped by its current status), its results from the newest analysis
snapshot computed by then, and experiments created later do not exist yet.

"Changed since last review" looks at the window **from the start of the previous
ISO week to the end of this one**. The previous meeting was held some day last week;
starting the window at that week's Monday means nothing that happened after it is
ever missed, whatever day it was held — at the price that a change can be listed on
two consecutive weeks' pages. The verdict change compares the snapshot in force at
the window start with the one in force now (e.g. ``underpowered → win``).

Freezing
--------
The meeting keeps what it saw. Opening a week's page (or editing one of its items)
stores every experiment's figures in its :class:`ReviewItem`'s ``seen``; while the
week is running that copy is refreshed on every view, and once the week is over it
is final: a past week renders only from ``seen``, so later edits of experiments, new
uploads or recomputations never change it. A past week that was never opened is
reconstructed from the timestamps as of its end, then frozen.

A review for a date range (``date_from``/``date_to``) is a read-only report built
the same way as of the end of the range; it is neither frozen nor editable.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from experiments.access import effective_role, require, visible_team_ids
from experiments.audit import diff_fields, record_event
from experiments.errors import Conflict, NotFound, ValidationFailed
from experiments.models import (
    DECISIONS,
    Amendment,
    AnalysisSnapshot,
    Dataset,
    DriverNode,
    Experiment,
    JourneyStage,
    ReviewItem,
    ReviewMeeting,
    Team,
    TeamMembership,
    User,
    Variant,
    utcnow,
)
from experiments.users import role_rank
from stats import bh_adjust

STATUS_ORDER: tuple[str, ...] = ("draft", "running", "stopped", "decided")
#: The DESIGN §4 keys of a stored analysis result (anything else is snapshot metadata).
REPORT_KEYS: tuple[str, ...] = ("alpha", "power", "mde", "control", "srm", "arms", "comparisons", "warnings")
MAX_TEXT = 10_000
MAX_ID = 2**31 - 1  # ids are 32-bit integers in PostgreSQL
_WEEK = re.compile(r"(\d{4})-W(\d{2})", re.ASCII)


# --------------------------------------------------------------------- weeks


@dataclass(frozen=True)
class Week:
    """One ISO week: ``start`` is Monday 00:00 UTC, ``end`` the next Monday (exclusive)."""

    label: str
    start: datetime
    end: datetime

    @property
    def previous(self) -> Week:
        return week_of(self.start.date() - timedelta(days=7))

    @property
    def next(self) -> Week:
        return week_of(self.end.date())

    @property
    def last_day(self) -> date:
        return self.end.date() - timedelta(days=1)


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def week_of(day: date) -> Week:
    """The ISO week containing ``day``."""
    year, number, weekday = day.isocalendar()
    monday = day - timedelta(days=weekday - 1)
    return Week(f"{year}-W{number:02d}", _midnight(monday), _midnight(monday + timedelta(days=7)))


def parse_week(label: str) -> Week:
    """The ISO week named ``label`` (``2026-W48``).

    Raises
    ------
    ValueError
        Not of the form ``YYYY-Www``, or a week the year does not have (``2026-W53``).
    """
    match = _WEEK.fullmatch(label or "")
    if not match:
        raise ValueError(f"week must look like 2026-W48, not {label[:20]!r}")
    year, number = int(match.group(1)), int(match.group(2))
    if not 1900 <= year <= 9998:
        raise ValueError(f"week year must be between 1900 and 9998, not {year}")
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError:
        raise ValueError(f"{year} has no ISO week {number}") from None
    return week_of(monday)


def current_week(now: datetime | None = None) -> Week:
    return week_of((now or utcnow()).astimezone(UTC).date())


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


# -------------------------------------------------------------------- helpers


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _iso(value: datetime | date | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _aware(value).astimezone(UTC).isoformat()
    return value.isoformat()


def parse_moment(value: str | None) -> datetime | None:
    """Inverse of the ISO strings stored in reports (``None`` stays ``None``)."""
    if not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except (TypeError, ValueError):
        return None


def _user_label(user: User | None) -> str | None:
    if user is None:
        return None
    return user.name or user.email


def _as_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _as_int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Window:
    """What a review looks at: changes in ``[changes_from, changes_to)``, state as of ``as_of``."""

    changes_from: datetime
    changes_to: datetime
    as_of: datetime

    @property
    def closed(self) -> bool:
        """The window is over: ``as_of`` is its (exclusive) end, not a moment inside it."""
        return self.as_of >= self.changes_to

    def happened(self, moment: datetime | None) -> bool:
        """``moment`` is at or before the review's point in time."""
        if moment is None:
            return False
        moment = _aware(moment)
        return moment < self.as_of if self.closed else moment <= self.as_of

    def in_window(self, moment: datetime | None) -> bool:
        return self.happened(moment) and _aware(moment) >= self.changes_from


# ------------------------------------------------------------ facts as of a moment


class _Facts:
    """The rows the review reads, loaded in a handful of bulk queries."""

    def __init__(self, session: Session, experiments: Sequence[Experiment]):
        ids = [e.id for e in experiments]
        self.session = session
        self.nodes = {n.id: n for n in session.exec(select(DriverNode)).all()}
        self.stages = {s.id: s for s in session.exec(select(JourneyStage)).all()}
        self.teams = {t.id: t for t in session.exec(select(Team)).all()}
        self.users = {u.id: u for u in session.exec(select(User)).all()}
        self.variants: dict[int, list[Variant]] = defaultdict(list)
        self.amendments: dict[int, list[Amendment]] = defaultdict(list)
        self.datasets: dict[int, Dataset] = {}
        self.datasets_of: dict[int, list[Dataset]] = defaultdict(list)
        self.snapshots: dict[int, list[tuple[datetime, int, int, str | None]]] = defaultdict(list)
        self._results: dict[int, dict] = {}
        if not ids:
            return
        for variant in session.exec(select(Variant).where(Variant.experiment_id.in_(ids))
                                    .order_by(Variant.position, Variant.id)).all():
            self.variants[variant.experiment_id].append(variant)
        for amendment in session.exec(select(Amendment).where(Amendment.experiment_id.in_(ids))
                                      .order_by(Amendment.created_at, Amendment.id)).all():
            self.amendments[amendment.experiment_id].append(amendment)
        for dataset in session.exec(select(Dataset)
                                    .where(Dataset.experiment_id.in_(ids), Dataset.status == "ready")
                                    .order_by(Dataset.version)).all():
            self.datasets[dataset.id] = dataset
            self.datasets_of[dataset.experiment_id].append(dataset)
        heads = session.exec(
            select(AnalysisSnapshot.experiment_id, AnalysisSnapshot.computed_at, AnalysisSnapshot.id,
                   AnalysisSnapshot.dataset_id, AnalysisSnapshot.verdict)
            .where(AnalysisSnapshot.experiment_id.in_(ids))
        ).all()
        for experiment_id, computed_at, snapshot_id, dataset_id, verdict in heads:
            self.snapshots[experiment_id].append((_aware(computed_at), snapshot_id, dataset_id, verdict))
        for items in self.snapshots.values():
            items.sort(key=lambda head: (head[0], head[1]))

    def snapshot_head(self, experiment_id: int, happened) -> tuple[datetime, int, int, str | None] | None:
        """The newest snapshot for which ``happened(computed_at)`` holds."""
        found = None
        for head in self.snapshots.get(experiment_id, ()):
            if happened(head[0]):
                found = head
        return found

    def load_results(self, snapshot_ids: Iterable[int]) -> None:
        wanted = [i for i in set(snapshot_ids) if i not in self._results]
        if wanted:
            for snapshot_id, result in self.session.exec(
                select(AnalysisSnapshot.id, AnalysisSnapshot.result).where(AnalysisSnapshot.id.in_(wanted))
            ).all():
                self._results[snapshot_id] = result if isinstance(result, dict) else {}

    def result(self, snapshot_id: int) -> dict:
        self.load_results([snapshot_id])
        return self._results.get(snapshot_id, {})

    def path(self, node_id: int | None) -> list[DriverNode]:
        """Root first, down to ``node_id`` (cycle-safe)."""
        chain: list[DriverNode] = []
        seen: set[int] = set()
        node = self.nodes.get(node_id)
        while node is not None and node.id not in seen:
            seen.add(node.id)
            chain.append(node)
            node = self.nodes.get(node.parent_id)
        return list(reversed(chain))


def status_at(experiment: Experiment, window: Window) -> str:
    """The experiment's lifecycle status at the window's point in time.

    While the window is live (its point in time is now) that is the current status.
    For a moment in the past the current status is the ceiling and each step below it
    counts from its timestamp (a step without a timestamp is taken to have always been so).
    """
    if not window.closed:
        return experiment.status if experiment.status in STATUS_ORDER else "draft"
    stamps = {"running": experiment.started_at, "stopped": experiment.stopped_at,
              "decided": experiment.decided_at}
    ceiling = STATUS_ORDER.index(experiment.status) if experiment.status in STATUS_ORDER else 0
    status = "draft"
    for step in STATUS_ORDER[1:ceiling + 1]:
        stamp = stamps[step]
        if stamp is None or window.happened(stamp):
            status = step
        else:
            break
    return status


def _exists_at(experiment: Experiment, window: Window) -> bool:
    born = [m for m in (experiment.created_at, experiment.started_at) if m is not None]
    return not born or window.happened(min(_aware(m) for m in born))


def _dataset_dict(dataset: Dataset | None) -> dict[str, Any] | None:
    if dataset is None:
        return None
    return {"id": dataset.id, "version": dataset.version, "sha256": dataset.sha256,
            "rows": dataset.row_count, "filename": dataset.filename, "source": dataset.source,
            "uploaded_at": _iso(dataset.uploaded_at)}


def _report_part(result: Mapping[str, Any]) -> dict[str, Any] | None:
    if not result or not isinstance(result.get("comparisons"), list) or not isinstance(result.get("arms"), list):
        return None
    return {key: result.get(key) for key in REPORT_KEYS}


def headline_comparison(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The comparison the headline verdict comes from (the first with that verdict, else the first)."""
    result = report.get("result") or {}
    comparisons = [c for c in result.get("comparisons") or [] if isinstance(c, Mapping)]
    if not comparisons:
        return None
    verdict = report.get("verdict")
    return next((c for c in comparisons if c.get("verdict") == verdict), comparisons[0])


def sample_progress(result: Mapping[str, Any] | None) -> tuple[int | None, int | None]:
    """(accounts in the smallest planned arm, required accounts per arm) of a §4 result."""
    if not result:
        return None, None
    arms = {a.get("variant"): _as_int(a.get("accounts")) or 0 for a in result.get("arms") or []
            if isinstance(a, Mapping)}
    srm = result.get("srm") if isinstance(result.get("srm"), Mapping) else {}
    planned = list((srm.get("expected_weights") or {}).keys()) or list(arms)
    smallest = min((arms.get(v, 0) for v in planned), default=None)
    required = max((n for n in (_as_int(c.get("required_n_per_arm")) for c in result.get("comparisons") or []
                                if isinstance(c, Mapping)) if n is not None), default=None)
    return smallest, required


def experiment_report(facts: _Facts, experiment: Experiment, window: Window) -> dict[str, Any]:
    """What is known about ``experiment`` at the window's point in time, as plain JSON.

    The result part is DESIGN §4 as stored in the snapshot in force then; the rest is
    the experiment object, its plan, its amendments up to then and the data version.
    """
    status = status_at(experiment, window)
    decided = status == "decided"
    path = facts.path(experiment.node_id)
    node = path[-1] if path else None
    branch = path[1] if len(path) > 1 else node
    owner = facts.users.get(experiment.owner_id)
    team = facts.teams.get(experiment.team_id)
    stage = facts.stages.get(experiment.stage_id)
    variants = facts.variants.get(experiment.id, [])
    control = next((v.key for v in variants if v.is_control), variants[0].key if variants else None)
    amendments = [
        {"field": a.field, "old_value": a.old_value, "new_value": a.new_value, "reason": a.reason,
         "by": _user_label(facts.users.get(a.actor_id)), "at": _iso(a.created_at)}
        for a in facts.amendments.get(experiment.id, []) if window.happened(a.created_at)
    ]
    head = facts.snapshot_head(experiment.id, window.happened)
    result = stored = None
    dataset = None
    verdict = None
    computed_at = None
    snapshot_plan = None
    if head is not None:
        stored = facts.result(head[1])
        result = _report_part(stored)
        dataset = facts.datasets.get(head[2])
        verdict = head[3]
        computed_at = head[0]
        snapshot_plan = stored.get("plan") if isinstance(stored.get("plan"), Mapping) else None
        if result is not None and verdict is None:
            srm = result.get("srm") or {}
            first = (result.get("comparisons") or [{}])[0]
            verdict = "srm" if srm.get("flag") else first.get("verdict")
    return {
        "experiment": {
            "id": experiment.id,
            "key": experiment.key,
            "name": experiment.name,
            "team": team.name if team else None,
            "team_id": experiment.team_id,
            "branch": {"id": branch.id, "name": branch.name} if branch else None,
            "driver": {"id": node.id, "name": node.name} if node else None,
            "path": [n.id for n in path],
            "journey_stage": stage.name if stage else None,
            "owner": _user_label(owner),
            "owner_email": owner.email if owner else None,
            "hypothesis": experiment.hypothesis,
            "status": status,
            "decision": experiment.decision if decided else None,
            "decision_rationale": experiment.decision_rationale if decided else "",
            "decided_by": _user_label(facts.users.get(experiment.decided_by_id)) if decided else None,
            "started_at": _iso(experiment.started_at) if status != "draft" else None,
            "stopped_at": _iso(experiment.stopped_at) if status in ("stopped", "decided") else None,
            "decided_at": _iso(experiment.decided_at) if decided else None,
            "amendments": amendments,
        },
        "plan": {
            "primary_metric": experiment.primary_metric,
            "mde": experiment.mde,
            "alpha": experiment.alpha,
            "power": experiment.power,
            "control": control,
            "variants": [{"key": v.key, "name": v.name, "weight": v.weight, "is_control": v.is_control}
                         for v in variants],
            "planned_start": _iso(experiment.planned_start),
            "planned_end": _iso(experiment.planned_end),
        },
        "analysis_plan": snapshot_plan,
        "amendments": amendments,
        "dataset": _dataset_dict(dataset),
        "snapshot_id": head[1] if head else None,
        "computed_at": _iso(computed_at),
        "verdict": verdict,
        "result": result,
        "as_of": _iso(window.as_of),
    }


def _review_part(facts: _Facts, experiment: Experiment, report: dict[str, Any], window: Window) -> dict[str, Any]:
    """Which sections the experiment belongs in, and why."""
    info = report["experiment"]
    status = info["status"]
    today = window.as_of.date() if not window.closed else (window.as_of - timedelta(microseconds=1)).date()
    planned_end = experiment.planned_end
    smallest, required = sample_progress(report["result"])

    needs_decision: list[str] = []
    if status == "stopped" and not info["decision"]:
        needs_decision.append("stopped without a decision")
    if status == "running":
        if required is not None and smallest is not None and smallest >= required:
            needs_decision.append(f"reached the required sample size ({required:,} accounts per arm)")
        if planned_end is not None and today > planned_end:
            needs_decision.append(f"passed its planned end ({planned_end.isoformat()})")

    changes: list[dict[str, Any]] = []
    for kind, reached, moment in (("started", "running", experiment.started_at),
                                  ("stopped", "stopped", experiment.stopped_at),
                                  ("decided", "decided", experiment.decided_at)):
        if window.in_window(moment) and STATUS_ORDER.index(status) >= STATUS_ORDER.index(reached):
            text = kind if kind != "decided" else f"decided: {info['decision']}"
            changes.append({"kind": kind, "at": _iso(moment), "text": text})
    for amendment in facts.amendments.get(experiment.id, []):
        if window.in_window(amendment.created_at):
            changes.append({"kind": "amended", "at": _iso(amendment.created_at),
                            "text": f"amended {amendment.field}: {amendment.old_value} → {amendment.new_value}",
                            "reason": amendment.reason})
    for dataset in facts.datasets_of.get(experiment.id, []):
        if window.in_window(dataset.uploaded_at):
            changes.append({"kind": "new_data", "at": _iso(dataset.uploaded_at),
                            "text": f"new data: version {dataset.version}, {dataset.row_count:,} rows"})
    before = facts.snapshot_head(experiment.id, lambda moment: moment < window.changes_from)
    verdict_before = before[3] if before else None
    verdict_now = report["verdict"]
    now_head = report["snapshot_id"]
    recomputed = now_head is not None and (before is None or before[1] != now_head)
    if recomputed and verdict_before != verdict_now and not any(c["kind"] == "new_data" for c in changes):
        changes.append({"kind": "verdict", "at": report["computed_at"],
                        "text": f"verdict changed: {verdict_before or 'no results'} → {verdict_now or 'no results'}"})
    changes.sort(key=lambda c: c["at"] or "")

    alerts: list[dict[str, Any]] = []
    result = report["result"]
    if status in ("running", "stopped") and result and (result.get("srm") or {}).get("flag"):
        p = _as_float((result.get("srm") or {}).get("p_value"))
        shown = "p < 0.001" if p is not None and p < 0.001 else (f"p = {p:.3g}" if p is not None else "unplanned variant")
        alerts.append({"kind": "srm", "text": f"sample ratio mismatch ({shown}): results cannot be trusted"})
    if status == "running" and planned_end is not None and today > planned_end:
        alerts.append({"kind": "past_end", "text": f"still running past its planned end ({planned_end.isoformat()})"})
    projection = None
    if status == "running" and planned_end is not None and today <= planned_end and required is not None \
            and smallest is not None and smallest < required:
        projection = _projection(experiment, report, smallest, required, planned_end)
        if projection is not None and not projection["reaches"]:
            expected = projection["expected_date"]
            alerts.append({
                "kind": "sample_size",
                "text": (f"will not reach {required:,} accounts per arm by {planned_end.isoformat()} at the "
                         f"current enrolment rate (about {projection['projected']:,} expected"
                         + (f"; reached around {expected}" if expected else "") + ")"),
            })
    return {
        "needs_decision": needs_decision,
        "changes": changes,
        "verdict_before": verdict_before,
        "verdict_now": verdict_now,
        "verdict_changed": verdict_before != verdict_now,
        "alerts": alerts,
        "smallest_arm": smallest,
        "required_n": required,
        "projection": projection,
    }


def _projection(experiment: Experiment, report: Mapping[str, Any], smallest: int, required: int,
                planned_end: date) -> dict[str, Any] | None:
    """Accounts per arm expected by the planned end at the enrolment rate since the start.

    The rate is the smallest arm's accounts over the days from the start to the upload
    of the data in force (enrolment is known as of the upload, not the recomputation).
    """
    started = _aware(experiment.started_at)
    dataset = report.get("dataset") or {}
    observed = parse_moment(dataset.get("uploaded_at"))
    if started is None or observed is None:
        return None
    days_so_far = max((observed - started).total_seconds() / 86400, 1.0)
    rate = smallest / days_so_far
    days_left = max((_midnight(planned_end + timedelta(days=1)) - observed).total_seconds() / 86400, 0.0)
    projected = int(smallest + rate * days_left)
    expected = None
    if rate > 0:
        days_needed = (required - smallest) / rate
        if days_needed < 3650:
            expected = (observed + timedelta(days=days_needed)).date().isoformat()
    return {"rate_per_day": rate, "projected": projected, "reaches": projected >= required,
            "expected_date": expected}


def _rows(session: Session, window: Window, experiments: Sequence[Experiment]) -> list[dict[str, Any]]:
    existing = [e for e in experiments if _exists_at(e, window)]
    facts = _Facts(session, existing)
    heads = [facts.snapshot_head(e.id, window.happened) for e in existing]
    facts.load_results(h[1] for h in heads if h is not None)
    rows = []
    for experiment in existing:
        report = experiment_report(facts, experiment, window)
        report["review"] = _review_part(facts, experiment, report, window)
        rows.append(report)
    return rows


def single_report(session: Session, user: User, key: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The experiment ``key`` as of now (what an export of it shows).

    Raises
    ------
    NotFound
        No such experiment, or it belongs to another team.
    """
    experiment = _visible_experiment(session, user, key)
    now = now or utcnow()
    window = Window(now, now + timedelta(microseconds=1), now)
    facts = _Facts(session, [experiment])
    return experiment_report(facts, experiment, window)


def _visible_experiment(session: Session, user: User, key: str) -> Experiment:
    experiment = session.exec(select(Experiment).where(Experiment.key == key)).first()
    if experiment is None or effective_role(session, user, experiment.team_id) is None:
        raise NotFound(f"no experiment {key!r}")
    return experiment


# -------------------------------------------------------------------- freezing


def _content(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row without its timestamp of observation: what makes two views differ."""
    return {k: v for k, v in row.items() if k != "as_of"}


def _insert_ignoring_duplicates(session: Session, model, values: list[dict[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING: two first views of a week race harmlessly."""
    if not values:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported databases
        for value in values:
            session.add(model(**value))
        session.flush()
        return
    for start in range(0, len(values), 500):
        session.exec(insert(model).values(values[start:start + 500]).on_conflict_do_nothing())


def _meeting(session: Session, week: Week) -> ReviewMeeting:
    meeting = session.exec(select(ReviewMeeting).where(ReviewMeeting.iso_week == week.label)).first()
    if meeting is None:
        _insert_ignoring_duplicates(session, ReviewMeeting, [{"iso_week": week.label, "notes": "",
                                                              "created_at": utcnow()}])
        meeting = session.exec(select(ReviewMeeting).where(ReviewMeeting.iso_week == week.label)).one()
    return meeting


def _items(session: Session, meeting: ReviewMeeting) -> dict[int, ReviewItem]:
    return {i.experiment_id: i for i in session.exec(select(ReviewItem).where(ReviewItem.meeting_id == meeting.id)).all()}


def _meeting_rows(session: Session, week: Week, now: datetime) -> tuple[ReviewMeeting | None, list[dict[str, Any]], bool]:
    """The meeting, every experiment's row and whether they came from the frozen copy.

    Running week: rows are computed now and the copy refreshed. Past week: the
    frozen copy if there is one, else a reconstruction as of its end, which becomes
    the frozen copy. A week in which no experiment existed stores nothing (``None``).
    """
    past = now >= week.end
    window = Window(week.previous.start, week.end, min(now, week.end))
    existing = session.exec(select(ReviewMeeting).where(ReviewMeeting.iso_week == week.label)).first()
    if existing is None:
        rows = _rows(session, window, session.exec(select(Experiment)).all())
        if not rows:
            return None, [], False  # nothing existed that week: nothing to keep
        meeting = _meeting(session, week)
    else:
        meeting = existing
    items = _items(session, meeting)
    if past and any(item.seen for item in items.values()):
        return meeting, [item.seen for item in items.values() if item.seen], True
    if existing is not None:
        rows = _rows(session, window, session.exec(select(Experiment)).all())
    new = []
    for row in rows:
        item = items.get(row["experiment"]["id"])
        if item is None:
            new.append({"meeting_id": meeting.id, "experiment_id": row["experiment"]["id"], "seen": row,
                        "note": "", "action": "", "decision_rationale": "", "version": 1,
                        "updated_at": now})
        elif _content(item.seen or {}) != _content(row):
            item.seen = row
            session.add(item)
    _insert_ignoring_duplicates(session, ReviewItem, new)
    session.flush()
    return meeting, rows, past


# ---------------------------------------------------------------- the review


@dataclass
class ItemView:
    """One agenda item as the page shows it."""

    item: ReviewItem
    row: dict[str, Any]
    can_edit: bool
    owners: list[tuple[int, str]]
    owner_label: str | None
    updated_by: str | None
    message: str | None = None
    message_kind: str = "success"
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] | None = None

    @property
    def key(self) -> str:
        return self.row["experiment"]["key"]

    def value(self, name: str) -> str:
        """The form value of ``name``: what was submitted (after an error), else what is stored."""
        if self.values is not None and name in self.values:
            return self.values[name]
        current = getattr(self.item, name)
        if current is None:
            return ""
        return current.isoformat() if isinstance(current, date) else str(current)


@dataclass
class Review:
    """A weekly (or date-range) review as one user may see it."""

    week: Week
    window: Window
    mode: str  # "week" | "range"
    frozen: bool
    editable: bool
    date_from: date | None
    date_to: date | None
    branch: dict[str, Any] | None
    branch_choices: list[tuple[int, str]]
    rows: list[dict[str, Any]]
    needs_decision: list[dict[str, Any]]
    changed: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    portfolio: list[dict[str, Any]]
    agenda: list[ItemView]
    meeting_id: int | None

    @property
    def quarter_start(self) -> date:
        return quarter_start(self.point_in_time.date())

    @property
    def point_in_time(self) -> datetime:
        if self.window.closed:
            return self.window.as_of - timedelta(microseconds=1)
        return self.window.as_of

    @property
    def title(self) -> str:
        if self.mode == "range":
            return f"Review {self.date_from.isoformat()} to {self.date_to.isoformat()}"
        return f"Weekly review {self.week.label}"

    def to_dict(self) -> dict[str, Any]:
        """The review as plain JSON (the export's source)."""
        items = {view.key: _item_dict(view) for view in self.agenda}
        return {
            "review": {
                "week": self.week.label,
                "mode": self.mode,
                "title": self.title,
                "from": self.date_from.isoformat() if self.date_from else None,
                "to": self.date_to.isoformat() if self.date_to else None,
                "changes_window": {"from": _iso(self.window.changes_from), "to": _iso(self.window.changes_to)},
                "as_of": _iso(self.window.as_of),
                "frozen": self.frozen,
                "branch": self.branch,
                "quarter_start": self.quarter_start.isoformat(),
            },
            "needs_decision": [{"key": r["experiment"]["key"], "reasons": r["review"]["needs_decision"]}
                               for r in self.needs_decision],
            "changed": [{"key": r["experiment"]["key"], "changes": r["review"]["changes"],
                         "verdict_before": r["review"]["verdict_before"], "verdict_now": r["review"]["verdict_now"]}
                        for r in self.changed],
            "alerts": [{"key": r["experiment"]["key"], "alerts": r["review"]["alerts"]} for r in self.alerts],
            "driver_tree_summary": self.summary,
            "portfolio": [{"key": line["row"]["experiment"]["key"], "branch": line["branch"],
                           "variant": line["comparison"].get("variant"),
                           "uplift_abs": line["comparison"].get("uplift_abs"),
                           "ci_abs": line["comparison"].get("ci_abs"),
                           "p_value": line["comparison"].get("p_value"),
                           "p_value_adjusted": line["comparison"].get("p_value_adjusted"),
                           "p_value_bh_portfolio": line["p_value_bh"],
                           "verdict": line["comparison"].get("verdict")}
                          for line in self.portfolio],
            "items": items,
            "experiments": self.rows,
        }


def _item_dict(view: ItemView) -> dict[str, Any]:
    item = view.item
    return {"note": item.note, "action": item.action, "action_owner": view.owner_label,
            "action_due": _iso(item.action_due), "decision": item.decision,
            "decision_rationale": item.decision_rationale, "updated_by": view.updated_by,
            "updated_at": _iso(item.updated_at), "version": item.version}


def _branch_sort_key(row: Mapping[str, Any]) -> tuple[str, str]:
    branch = row["experiment"].get("branch") or {}
    return ((branch.get("name") or "").casefold(), row["experiment"]["key"])


def _summary(rows: Sequence[dict[str, Any]], since: date, point_in_time: datetime) -> list[dict[str, Any]]:
    """Per branch: experiments by status and NRR points won by this quarter's ship decisions."""
    groups: dict[Any, dict[str, Any]] = {}
    start = _midnight(since)
    for row in sorted(rows, key=_branch_sort_key):
        info = row["experiment"]
        branch = info.get("branch") or {"id": None, "name": "(no branch)"}
        group = groups.setdefault(branch["id"], {
            "branch_id": branch["id"], "branch": branch["name"],
            "counts": dict.fromkeys(STATUS_ORDER, 0), "total": 0,
            "nrr_points_won": 0.0, "shipped": [],
        })
        group["counts"][info["status"]] = group["counts"].get(info["status"], 0) + 1
        group["total"] += 1
        decided_at = parse_moment(info.get("decided_at"))
        if info.get("decision") == "ship" and decided_at is not None and start <= decided_at <= point_in_time:
            headline = headline_comparison(row)
            uplift = _as_float(headline.get("uplift_abs")) if headline else None
            if uplift is not None:
                group["nrr_points_won"] += uplift * 100
                group["shipped"].append(info["key"])
    return list(groups.values())


def _portfolio(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every comparison with results, sorted by branch, with BH across the lot."""
    lines = []
    for row in sorted(rows, key=_branch_sort_key):
        result = row.get("result") or {}
        for comparison in result.get("comparisons") or []:
            if isinstance(comparison, Mapping):
                lines.append({"row": row, "comparison": comparison,
                              "branch": (row["experiment"].get("branch") or {}).get("name")})
    pvalues = []
    for line in lines:
        p = _as_float(line["comparison"].get("p_value"))
        pvalues.append(p if p is not None and 0.0 <= p <= 1.0 else None)
    for line, adjusted in zip(lines, bh_adjust(pvalues), strict=True):
        line["p_value_bh"] = adjusted
    return lines


def _in_branch(row: Mapping[str, Any], branch_id: int | None) -> bool:
    return branch_id is None or branch_id in (row["experiment"].get("path") or [])


def _parse_day(raw: Any, name: str, errors: dict[str, str]) -> date | None:
    if raw is None or isinstance(raw, date):
        return raw
    text = str(raw).strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        errors[name] = f"must be a date like 2026-11-23, not {text[:40]!r}"
        return None


def _branch_choices(session: Session, user: User) -> list[tuple[int, str]]:
    teams = visible_team_ids(session, user)
    nodes = session.exec(select(DriverNode).order_by(DriverNode.position, DriverNode.id)).all()
    visible = {n.id: n for n in nodes if teams is None or n.team_id is None or n.team_id in teams}
    children: dict[int | None, list[DriverNode]] = defaultdict(list)
    for node in visible.values():
        parent = node.parent_id if node.parent_id in visible else None
        children[parent].append(node)
    out: list[tuple[int, str]] = []
    seen: set[int] = set()

    def walk(parent: int | None, depth: int) -> None:
        for node in children.get(parent, []):
            if node.id in seen:
                continue
            seen.add(node.id)
            out.append((node.id, "— " * depth + node.name))
            walk(node.id, depth + 1)

    walk(None, 0)
    return out


def _owner_choices(session: Session, team_ids: Iterable[int | None]) -> dict[int | None, list[tuple[int, str]]]:
    """Who may own an action on an item of each team: its members and the admins (all users for no team)."""
    users = session.exec(select(User).where(User.is_active).order_by(User.name, User.email)).all()
    memberships = session.exec(select(TeamMembership)).all()
    members: dict[int, set[int]] = defaultdict(set)
    for membership in memberships:
        members[membership.team_id].add(membership.user_id)
    choices = {}
    for team_id in set(team_ids):
        choices[team_id] = [(u.id, _user_label(u)) for u in users
                            if team_id is None or u.role == "admin" or u.id in members.get(team_id, set())]
    return choices


def build_review(
    session: Session,
    user: User,
    week: str | Week,
    *,
    branch_id: int | str | None = None,
    date_from: date | str | None = None,
    date_to: date | str | None = None,
    now: datetime | None = None,
) -> Review:
    """The review of ``week`` (or of the date range) as ``user`` may see it.

    Opening a week freezes what it shows (see the module docstring); the caller
    commits. Only experiments ``user`` may see are shown, and with ``branch_id`` only
    those under that driver-tree node. The portfolio's Benjamini-Hochberg p-values
    are adjusted across the comparisons shown.

    Raises
    ------
    NotFound
        ``week`` is not an ISO week, or ``branch_id`` is no node the user may see.
    ValidationFailed
        ``date_from``/``date_to``/``branch_id`` are malformed, or the range is reversed.
    """
    try:
        the_week = week if isinstance(week, Week) else parse_week(week)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    now = _aware(now) or utcnow()
    errors: dict[str, str] = {}
    first = _parse_day(date_from, "from", errors)
    last = _parse_day(date_to, "to", errors)
    branch = None
    if branch_id not in (None, ""):
        text = str(branch_id).strip()
        if not text.isdigit() or len(text) > 12:
            errors["branch"] = f"must be a driver-tree node id, not {text[:20]!r}"
        else:
            branch = int(text)
    for name, day in (("from", first), ("to", last)):
        if day is not None and not 1900 <= day.year <= 9998:
            errors[name] = "must be a date between 1900 and 9998"
    if first and last and last < first and "to" not in errors:
        errors["to"] = "must not be before the start date"
    if errors:
        raise ValidationFailed(errors)

    choices = _branch_choices(session, user)
    branch_info = None
    if branch is not None:
        node = session.get(DriverNode, branch) if branch in {c[0] for c in choices} else None
        if node is None:
            raise NotFound(f"no driver-tree node {branch}")
        branch_info = {"id": node.id, "name": node.name}

    mode = "range" if (first or last) else "week"
    meeting = None
    if mode == "range":
        first = first or the_week.start.date()
        last = last or the_week.last_day
        end = _midnight(last + timedelta(days=1))
        window = Window(_midnight(first), end, min(now, end))
        rows = _rows(session, window, session.exec(select(Experiment)).all())
        frozen = False
    elif now < the_week.start:
        # A week that has not begun is a preview, stored nowhere: a GET must not create
        # meetings for every week anyone can type.
        window = Window(the_week.previous.start, the_week.end, now)
        rows = _rows(session, window, session.exec(select(Experiment)).all())
        frozen = False
    else:
        meeting, rows, frozen = _meeting_rows(session, the_week, now)
        window = Window(the_week.previous.start, the_week.end, min(now, the_week.end))
        if frozen:
            moments = [parse_moment(r.get("as_of")) for r in rows]
            moments = [m for m in moments if m is not None]
            if moments:
                window = Window(window.changes_from, window.changes_to, min(max(moments), the_week.end))

    rows = _visible_rows(session, user, rows)
    rows = sorted((r for r in rows if _in_branch(r, branch)), key=_branch_sort_key)
    review = Review(
        week=the_week, window=window, mode=mode, frozen=frozen, editable=mode == "week" and meeting is not None,
        date_from=first, date_to=last, branch=branch_info, branch_choices=choices, rows=rows,
        needs_decision=[r for r in rows if r["review"]["needs_decision"]],
        changed=[r for r in rows if r["review"]["changes"]],
        alerts=[r for r in rows if r["review"]["alerts"]],
        summary=[], portfolio=_portfolio(rows), agenda=[],
        meeting_id=meeting.id if meeting else None,
    )
    review.summary = _summary(rows, review.quarter_start, review.point_in_time)
    if meeting is not None:
        review.agenda = _agenda(session, user, meeting, review)
    return review


def _visible_rows(session: Session, user: User, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of experiments that still exist and that ``user`` may see (by their team *now*)."""
    ids = [r["experiment"]["id"] for r in rows]
    current = dict(session.exec(select(Experiment.id, Experiment.team_id).where(Experiment.id.in_(ids))).all()) if ids else {}
    teams = visible_team_ids(session, user)
    return [r for r in rows if r["experiment"]["id"] in current
            and (teams is None or current[r["experiment"]["id"]] is None or current[r["experiment"]["id"]] in teams)]


def _agenda(session: Session, user: User, meeting: ReviewMeeting, review: Review) -> list[ItemView]:
    """Items of experiments in the three action sections, or already noted/decided, in page order."""
    items = _items(session, meeting)
    flagged = {r["experiment"]["id"] for r in (*review.needs_decision, *review.changed, *review.alerts)}
    rows = [r for r in review.rows if r["experiment"]["id"] in items and (
        r["experiment"]["id"] in flagged or _has_content(items[r["experiment"]["id"]]))]
    return _item_views(session, user, [(items[r["experiment"]["id"]], r) for r in rows])


def _has_content(item: ReviewItem) -> bool:
    return bool(item.note or item.action or item.action_owner_id or item.action_due or item.decision)


def _item_views(session: Session, user: User, pairs: Sequence[tuple[ReviewItem, dict[str, Any]]]) -> list[ItemView]:
    team_of = {}
    ids = [item.experiment_id for item, _ in pairs]
    if ids:
        team_of = dict(session.exec(select(Experiment.id, Experiment.team_id).where(Experiment.id.in_(ids))).all())
    owners = _owner_choices(session, team_of.values())
    user_ids = {i.action_owner_id for i, _ in pairs} | {i.updated_by_id for i, _ in pairs}
    users = {u.id: u for u in session.exec(select(User).where(User.id.in_([i for i in user_ids if i]))).all()} \
        if any(user_ids) else {}
    views = []
    for item, row in pairs:
        team_id = team_of.get(item.experiment_id)
        role = effective_role(session, user, team_id)
        views.append(ItemView(
            item=item, row=row,
            can_edit=role is not None and role_rank(role) >= role_rank("experimenter"),
            owners=owners.get(team_id, []),
            owner_label=_user_label(users.get(item.action_owner_id)),
            updated_by=_user_label(users.get(item.updated_by_id)),
        ))
    return views


# ------------------------------------------------------------------ item edits


EDITABLE_FIELDS: tuple[str, ...] = ("note", "action", "action_owner_id", "action_due", "decision",
                                    "decision_rationale")


def _clean_item_form(session: Session, data: Mapping[str, Any], team_id: int | None) -> dict[str, Any]:
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name in ("note", "action", "decision_rationale"):
        text = str(data.get(name) or "").replace("\r\n", "\n").strip()
        if len(text) > MAX_TEXT:
            errors[name] = f"must be at most {MAX_TEXT:,} characters (it has {len(text):,})"
        clean[name] = text
    owner = str(data.get("action_owner_id") or "").strip()
    clean["action_owner_id"] = None
    if owner:
        allowed = {uid for uid, _ in _owner_choices(session, [team_id]).get(team_id, [])}
        if not owner.isdigit() or len(owner) > 12 or int(owner) not in allowed:
            errors["action_owner_id"] = "must be a member of the experiment's team"
        else:
            clean["action_owner_id"] = int(owner)
    due = str(data.get("action_due") or "").strip()
    clean["action_due"] = None
    if due:
        try:
            clean["action_due"] = date.fromisoformat(due)
        except ValueError:
            errors["action_due"] = f"must be a date like 2026-12-04, not {due[:40]!r}"
        else:
            if not 1900 <= clean["action_due"].year <= 9998:
                errors["action_due"] = "is out of range"
    decision = str(data.get("decision") or "").strip()
    clean["decision"] = None
    if decision:
        if decision not in DECISIONS:
            errors["decision"] = f"must be one of {', '.join(DECISIONS)}"
        else:
            clean["decision"] = decision
            if not clean["decision_rationale"]:
                errors["decision_rationale"] = "a decision needs a rationale"
    if clean["action"] and not clean["action_owner_id"] and "action_owner_id" not in errors:
        errors["action_owner_id"] = "an action needs an owner"
    if errors:
        raise ValidationFailed(errors)
    return clean


def _parse_version(raw: Any) -> int:
    text = str(raw if raw is not None else "").strip()
    if not text.isdigit() or len(text) > 9:
        raise ValidationFailed({"version": "the form is missing its version; reload the page and try again"})
    return int(text)


def get_item(session: Session, user: User, week: str, item_id: int, *, needed: str = "viewer") -> ItemView:
    """One item of ``week``'s meeting, checked against the user's role in its team.

    Raises
    ------
    NotFound
        Bad week, no such item in that week, or another team's.
    PermissionDenied
        The user's role in the team is below ``needed``.
    """
    try:
        the_week = parse_week(week)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    item = session.get(ReviewItem, item_id) if 0 < item_id <= MAX_ID else None
    meeting = session.get(ReviewMeeting, item.meeting_id) if item is not None else None
    if item is None or meeting is None or meeting.iso_week != the_week.label:
        raise NotFound(f"no item {item_id} in the review of {the_week.label}")
    experiment = session.get(Experiment, item.experiment_id)
    require(session, user, experiment.team_id if experiment else None, needed)
    return _item_views(session, user, [(item, item.seen or {})])[0]


def update_item(
    session: Session,
    user: User,
    week: str,
    item_id: int,
    data: Mapping[str, Any],
    *,
    now: datetime | None = None,
    ip: str = "",
) -> ItemView:
    """Save one item's note, action (owner, due date) and decision, attributed and audited.

    ``data`` holds the form's strings, including the ``version`` the edit was made
    on. A decision also decides the experiment through the registry's lifecycle
    (stopping it first if it is still running) unless it already carries that
    decision. Flushed, not committed.

    Raises
    ------
    NotFound
        Bad week or item, or the experiment belongs to another team.
    PermissionDenied
        The user is not an experimenter (or above) in the experiment's team.
    ValidationFailed
        Malformed fields, or a decision that conflicts with the experiment's.
    Conflict
        The item changed since ``version`` (someone else saved first).
    """
    now = _aware(now) or utcnow()
    view = get_item(session, user, week, item_id, needed="experimenter")
    item = view.item
    experiment = session.get(Experiment, item.experiment_id)
    expected = _parse_version(data.get("version"))
    if expected != item.version:
        raise Conflict(_stale_message(session, item, expected))
    clean = _clean_item_form(session, data, experiment.team_id)
    if clean["decision"] != item.decision:
        _check_decision(item, experiment, clean["decision"])

    before = {name: getattr(item, name) for name in EDITABLE_FIELDS}
    changed = diff_fields(before, clean)
    if not changed:
        return view
    claimed = session.exec(
        update(ReviewItem)
        .where(ReviewItem.id == item.id, ReviewItem.version == expected)
        .values(version=expected + 1, updated_by_id=user.id, updated_at=now, **clean)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        session.expire(item)
        raise Conflict(_stale_message(session, item, expected))
    session.expire(item)
    session.refresh(item)
    if clean["decision"] and experiment.decision != clean["decision"]:
        _decide_experiment(session, experiment, clean["decision"], clean["decision_rationale"], user)
    record_event(session, "review.update", actor=user, entity_type="review_item", entity_id=item.id,
                 team_id=experiment.team_id, diff={"experiment": [None, experiment.key], "week": [None, week],
                                                   **changed}, ip=ip)
    return _item_views(session, user, [(item, item.seen or {})])[0]


def _stale_message(session: Session, item: ReviewItem, expected: int) -> str:
    session.refresh(item)
    who = _user_label(session.get(User, item.updated_by_id)) if item.updated_by_id else "someone else"
    when = _aware(item.updated_at).strftime("%Y-%m-%d %H:%M UTC") if item.updated_at else "meanwhile"
    return (f"Not saved: {who} changed this item at {when} after you opened it (you edited version "
            f"{expected}, it is now version {item.version}). Reload to see their changes, then edit again.")


def _check_decision(item: ReviewItem, experiment: Experiment, decision: str | None) -> None:
    if item.decision is not None:
        raise ValidationFailed({"decision": (
            f"the meeting already recorded {item.decision!r}; a decision cannot be changed or withdrawn "
            "here — change it on the experiment page")})
    if decision is None:
        return
    if experiment.status == "draft":
        raise ValidationFailed({"decision": "a draft experiment cannot be decided; start it first"})
    if experiment.decision is not None and experiment.decision != decision:
        raise ValidationFailed({"decision": (
            f"the experiment was already decided as {experiment.decision!r}; record that, or change it "
            "on the experiment page")})


def _decide_experiment(session: Session, experiment: Experiment, decision: str, rationale: str,
                       actor: User) -> None:
    """Decide the experiment through the registry's lifecycle (stopping it first when running).

    The registry audits each step (``experiment.stop``, ``experiment.decide``).
    """
    from experiments.registry import decide_experiment, stop_experiment

    if experiment.status == "running":
        stop_experiment(session, experiment.key, actor=actor)
    try:
        decide_experiment(session, experiment.key, {"decision": decision, "rationale": rationale}, actor=actor)
    except ValidationFailed as exc:
        raise ValidationFailed({"decision_rationale" if k == "rationale" else k: v
                                for k, v in exc.errors.items()}) from None
