"""The review's frozen as-of rows: each experiment's document at the review's point
in time plus why it is on the agenda (needs a decision, what changed, alerts), and
the meeting's copy of them.

Freezing
--------
The meeting keeps what it saw. Opening a week's page (or editing one of its items)
stores every experiment's row in its :class:`ReviewItem`'s ``seen``; while the week
is running that copy is refreshed on every view, and once the week is over it is
final: a past week renders only from ``seen``, so later edits of experiments, new
uploads or recomputations never change it. A past week that was never opened is
reconstructed from the timestamps as of its end, then frozen. Copies stored by
earlier versions are read through :meth:`ExperimentDocument.from_json`. The week's
driver-tree summary is kept beside the rows on the same terms
(:mod:`experiments.review_tree`; :func:`meeting_state` reads it with the meeting).

A running week does not reload the copies to compare them: each item keeps a digest of
its copy (:func:`seen_digest`), and a view compares the digest of each fresh row
(:func:`row_digest`) with it, rewriting only the copies that differ. The digest leaves out
the moment of observation and the analysis itself, which the snapshot id fixes: a stored
analysis snapshot is never rewritten (a recomputation is a new snapshot).

Computing every experiment's row is most of a review's work (documents from stored
snapshots, flags, digests). The review page therefore keeps them per process
(:func:`every_review_row`) and reuses them while no write has been committed anywhere
(the data generation of :mod:`experiments.generation` is unchanged) for the same window
and day, for at most a minute; who may see which row is decided per request.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import or_, update
from sqlmodel import Session, select

from experiments.documents import (
    STATUS_ORDER,
    ExperimentDocument,
    ExperimentInfo,
    Facts,
    document_as_of,
    exists_at,
)
from experiments.generation import has_generation_table, read_generation
from experiments.models import Experiment, ReviewItem, ReviewMeeting, utcnow
from experiments.review_models import ReviewTreeSeen
from experiments.review_weeks import Week, Window, iso, parse_moment
from experiments.rules import project_enrolment
from experiments.verdict_status import GuardrailStatus, VerdictStatus, verdict_status


@dataclass(frozen=True)
class Change:
    """Something that happened in the review's window (started, amended, new data …)."""

    kind: str
    at: str | None
    text: str
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"kind": self.kind, "at": self.at, "text": self.text}
        return {**data, "reason": self.reason} if self.reason is not None else data


@dataclass(frozen=True)
class Alert:
    kind: str
    text: str

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "text": self.text}


@dataclass(frozen=True)
class EnrolmentOutlook:
    """:func:`experiments.rules.project_enrolment` as the review stores it."""

    rate_per_day: float
    projected: int | None
    reaches: bool | None
    expected_date: str | None

    def to_json(self) -> dict[str, Any]:
        return {"rate_per_day": self.rate_per_day, "projected": self.projected,
                "reaches": self.reaches, "expected_date": self.expected_date}


@dataclass(frozen=True)
class ReviewFlags:
    """Why an experiment is on the review: reasons it needs a decision, what changed in
    the window (and the verdict before and now), alerts, and its enrolment outlook."""

    needs_decision: tuple[str, ...] = ()
    changes: tuple[Change, ...] = ()
    verdict_before: str | None = None
    verdict_now: str | None = None
    verdict_changed: bool = False
    alerts: tuple[Alert, ...] = ()
    smallest_arm: int | None = None
    required_n: int | None = None
    projection: EnrolmentOutlook | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "needs_decision": list(self.needs_decision),
            "changes": [c.to_json() for c in self.changes],
            "verdict_before": self.verdict_before, "verdict_now": self.verdict_now,
            "verdict_changed": self.verdict_changed,
            "alerts": [a.to_json() for a in self.alerts],
            "smallest_arm": self.smallest_arm, "required_n": self.required_n,
            "projection": self.projection.to_json() if self.projection else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> ReviewFlags:
        data = data or {}
        outlook = data.get("projection")
        return cls(
            needs_decision=tuple(str(r) for r in data.get("needs_decision") or []),
            changes=tuple(Change(str(c.get("kind")), c.get("at"), str(c.get("text") or ""),
                                 c.get("reason")) for c in data.get("changes") or []
                          if isinstance(c, Mapping)),
            verdict_before=data.get("verdict_before"), verdict_now=data.get("verdict_now"),
            verdict_changed=bool(data.get("verdict_changed")),
            alerts=tuple(Alert(str(a.get("kind")), str(a.get("text") or ""))
                         for a in data.get("alerts") or [] if isinstance(a, Mapping)),
            smallest_arm=data.get("smallest_arm"), required_n=data.get("required_n"),
            projection=EnrolmentOutlook(
                float(outlook.get("rate_per_day") or 0.0), outlook.get("projected"),
                outlook.get("reaches"), outlook.get("expected_date"))
            if isinstance(outlook, Mapping) else None,
        )


@dataclass(frozen=True)
class ReviewRow:
    """One experiment on a review: its document then, and the review's reasons (and, when
    already known, the digest of its frozen copy: :func:`row_digest`)."""

    document: ExperimentDocument
    review: ReviewFlags
    digest: str | None = field(default=None, compare=False, repr=False)

    @property
    def experiment(self) -> ExperimentInfo:
        return self.document.experiment

    @property
    def key(self) -> str:
        return self.document.experiment.key

    @property
    def verdict(self) -> str | None:
        return self.document.verdict

    @cached_property
    def verdict_status(self) -> VerdictStatus:
        """The verdict with its guardrail status (:mod:`experiments.verdict_status`)."""
        return verdict_status(self.document.verdict, self.document.result)

    @property
    def guardrail(self) -> GuardrailStatus | None:
        """The guardrail status shown beside the verdict (``None`` without guardrails)."""
        return self.verdict_status.guardrail

    def to_json(self) -> dict[str, Any]:
        return {**self.document.to_json(), "review": self.review.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReviewRow:
        review = data.get("review") if isinstance(data.get("review"), Mapping) else {}
        return cls(ExperimentDocument.from_json(data), ReviewFlags.from_json(review))


def review_flags(facts: Facts, experiment: Experiment, document: ExperimentDocument,
                 window: Window) -> ReviewFlags:
    """Which sections the experiment belongs in, and why."""
    info = document.experiment
    status = info.status
    today = window.as_of.date() if not window.closed \
        else (window.as_of - timedelta(microseconds=1)).date()
    planned_end = experiment.planned_end
    smallest, required = document.sample_progress()

    needs_decision: list[str] = []
    if status == "stopped" and not info.decision:
        needs_decision.append("stopped without a decision")
    if status == "running":
        if required is not None and smallest is not None and smallest >= required:
            needs_decision.append(
                f"reached the required sample size ({required:,} accounts per arm)")
        if planned_end is not None and today > planned_end:
            needs_decision.append(f"passed its planned end ({planned_end.isoformat()})")

    changes: list[Change] = []
    for kind, reached, moment in (("started", "running", experiment.started_at),
                                  ("stopped", "stopped", experiment.stopped_at),
                                  ("decided", "decided", experiment.decided_at)):
        if window.in_window(moment) and STATUS_ORDER.index(status) >= STATUS_ORDER.index(reached):
            text = kind if kind != "decided" else f"decided: {info.decision}"
            changes.append(Change(kind, iso(moment), text))
    if window.in_window(experiment.reopened_at):  # the decision record (experiments.decisions)
        changes.append(Change("reopened", iso(experiment.reopened_at), "decision reopened",
                              experiment.reopen_reason or None))
    for amendment in facts.amendments.get(experiment.id, []):
        if window.in_window(amendment.created_at):
            changes.append(Change("amended", iso(amendment.created_at),
                                  (f"amended {amendment.field}: {amendment.old_value} → "
                                   f"{amendment.new_value}"), amendment.reason))
    for dataset in facts.datasets_of.get(experiment.id, []):
        if window.in_window(dataset.uploaded_at):
            changes.append(Change("new_data", iso(dataset.uploaded_at),
                                  (f"new data: version {dataset.version}, "
                                   f"{dataset.row_count:,} rows")))
    before = facts.snapshot_head(experiment.id, lambda moment: moment < window.changes_from)
    verdict_before = before[3] if before else None
    verdict_now = document.verdict
    now_head = document.snapshot_id
    recomputed = now_head is not None and (before is None or before[1] != now_head)
    if recomputed and verdict_before != verdict_now \
            and not any(c.kind == "new_data" for c in changes):
        changes.append(Change("verdict", document.computed_at,
                              (f"verdict changed: {verdict_before or 'no results'} → "
                               f"{verdict_now or 'no results'}")))
    changes.sort(key=lambda c: c.at or "")

    alerts: list[Alert] = []
    result = document.result
    srm = (result.get("srm") or {}) if result else {}
    if status in ("running", "stopped") and srm.get("flag"):
        p = srm.get("p_value")
        p = float(p) if isinstance(p, int | float) else None
        shown = "p < 0.001" if p is not None and p < 0.001 \
            else (f"p = {p:.3g}" if p is not None else "unplanned variant")
        alerts.append(Alert("srm", f"sample ratio mismatch ({shown}): results cannot be trusted"))
    if status == "running" and planned_end is not None and today > planned_end:
        alerts.append(Alert("past_end",
                            f"still running past its planned end ({planned_end.isoformat()})"))
    projection = None
    if status == "running" and planned_end is not None and today <= planned_end:
        dates = (result or {}).get("enrolment") or {}
        found = project_enrolment(earlier_at=parse_moment(dates.get("earlier_at")),
                                  earlier_smallest=dates.get("earlier_smallest"),
                                  observed_at=parse_moment(dates.get("observed_at")),
                                  smallest=smallest, required=required,
                                  planned_end=planned_end)
        if found is not None:
            expected = iso(found.expected_date)
            projection = EnrolmentOutlook(found.rate_per_day, found.projected, found.reaches,
                                          expected)
            if not found.reaches:
                alerts.append(Alert("sample_size", (
                    f"will not reach {required:,} accounts per arm by "
                    f"{planned_end.isoformat()} at the current enrolment rate (about "
                    f"{found.projected:,} expected"
                    + (f"; reached around {expected}" if expected else "") + ")")))
    return ReviewFlags(
        needs_decision=tuple(needs_decision), changes=tuple(changes),
        verdict_before=verdict_before, verdict_now=verdict_now,
        verdict_changed=verdict_before != verdict_now, alerts=tuple(alerts),
        smallest_arm=smallest, required_n=required, projection=projection)


def review_rows(session: Session, window: Window,
                experiments: Sequence[Experiment]) -> list[ReviewRow]:
    """Every experiment that existed at the window's point in time, as a review row."""
    existing = [e for e in experiments if exists_at(e, window)]
    facts = Facts(session, existing)
    heads = [facts.snapshot_head(e.id, window.happened) for e in existing]
    facts.load_results(h[1] for h in heads if h is not None)
    rows = []
    for experiment in existing:
        document = document_as_of(facts, experiment, window)
        rows.append(ReviewRow(document, review_flags(facts, experiment, document, window)))
    return rows


# ------------------------------------------------------------ rows kept per process

#: How long kept rows are reused at most, and how many windows are kept per process.
KEPT_SECONDS = 60.0
KEPT_WINDOWS = 8


class KeptRows(list):
    """Rows from the per-process store, with ``memo``: figures derived from them alone
    (e.g. the portfolio's revenue impact), kept as long as the rows are."""

    memo: dict[Any, Any]


class _KeptRows:
    """Every experiment's rows per (database, data generation, window), least recently
    used dropped first. Thread-safe; the rows are immutable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[float, list[ReviewRow], dict]] = OrderedDict()
        self._ready: dict[str, bool] = {}

    def ready(self, session: Session) -> bool:
        """Whether the database holds the data generation (checked once per database)."""
        url = str(session.get_bind().url)
        if url not in self._ready:
            with session.get_bind().connect() as connection:
                self._ready[url] = has_generation_table(connection)
        return self._ready[url]

    def get(self, key: tuple) -> tuple[list[ReviewRow], dict] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or time.monotonic() - entry[0] > KEPT_SECONDS:
                return None
            self._entries.move_to_end(key)
            return entry[1], entry[2]

    def put(self, key: tuple, rows: list[ReviewRow], memo: dict) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), rows, memo)
            self._entries.move_to_end(key)
            while len(self._entries) > KEPT_WINDOWS:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._ready.clear()


_kept = _KeptRows()


def every_review_row(session: Session, window: Window, *, keep: bool = False
                     ) -> list[ReviewRow]:
    """:func:`review_rows` of every experiment (kept ones with their :func:`row_digest`).

    With ``keep`` the rows are kept per process and reused while the database's data
    generation (:mod:`experiments.generation`: it moves with every committed write) is the
    one they were computed at, for the same window and the same day, for at most
    :data:`KEPT_SECONDS`; a reused row's ``as_of`` is the window's. Kept rows come as
    :class:`KeptRows`, whose ``memo`` the caller may fill. Only a caller whose
    transaction has written nothing yet may ask for ``keep`` (its own uncommitted writes
    would not move the generation): the review page, which reads first.
    """
    key = _kept_key(session, window.changes_from, window.changes_to, window.closed,
                    window.as_of.date()) if keep else None
    kept = _kept.get(key) if key is not None else None
    if kept is not None:
        as_of = iso(window.as_of)
        return _with_memo([ReviewRow(_observed(r.document, as_of), r.review, r.digest)
                           for r in kept[0]], kept[1])
    rows = review_rows(session, window, session.exec(select(Experiment)).all())
    if key is not None:
        rows = [ReviewRow(r.document, r.review, row_digest(r)) for r in rows]
        memo: dict[Any, Any] = {}
        _kept.put(key, rows, memo)
        return _with_memo(list(rows), memo)
    return rows


def _observed(document: ExperimentDocument, as_of: str | None) -> ExperimentDocument:
    """``replace(document, as_of=as_of)`` without re-running the dataclass's ``__init__``
    (a shallow copy, as ``replace`` makes): a third of the time, for every kept row of
    every view."""
    observed = copy.copy(document)
    object.__setattr__(observed, "as_of", as_of)  # the copy's own field: frozen to others
    return observed


def _kept_key(session: Session, *parts: Any) -> tuple | None:
    """The store's key for ``parts`` at this database's current data generation (read
    now, in this transaction: what it reads after is at least this new), or ``None``
    when the database keeps no generation."""
    if not _kept.ready(session):
        return None
    generation = read_generation(session.connection())
    if generation is None:
        return None
    return (str(session.get_bind().url), generation, *parts)


def _with_memo(rows: list[ReviewRow], memo: dict[Any, Any]) -> KeptRows:
    kept = KeptRows(rows)
    kept.memo = memo
    return kept


# -------------------------------------------------------------------- freezing

#: What a stored row's digest covers: all of it but ``as_of`` (the moment of observation)
#: and the analysis's own keys, which ``snapshot_id`` fixes. The migration that added
#: ``review_item.seen_digest`` backfilled it with this rule.
DIGEST_KEYS: tuple[str, ...] = ("verdict", "experiment", "plan", "analysis_plan", "amendments",
                                "dataset", "snapshot_id", "computed_at", "review")


def seen_digest(seen: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of a stored row's :data:`DIGEST_KEYS`, in canonical JSON."""
    part = {key: seen.get(key) for key in DIGEST_KEYS}
    text = json.dumps(part, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def row_digest(row: ReviewRow) -> str:
    """:func:`seen_digest` of ``row.to_json()``, without serialising its analysis."""
    if row.digest is not None:
        return row.digest
    shape = replace(row.document, result=None).to_json()
    shape["review"] = row.review.to_json()
    return seen_digest(shape)


def insert_ignoring_duplicates(session: Session, model, values: list[dict[str, Any]]) -> None:
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
    meeting = session.exec(
        select(ReviewMeeting).where(ReviewMeeting.iso_week == week.label)).first()
    if meeting is None:
        insert_ignoring_duplicates(session, ReviewMeeting, [
            {"iso_week": week.label, "notes": "", "created_at": utcnow()}])
        meeting = session.exec(
            select(ReviewMeeting).where(ReviewMeeting.iso_week == week.label)).one()
    return meeting


def meeting_items(session: Session, meeting: ReviewMeeting) -> dict[int, ReviewItem]:
    return {i.experiment_id: i for i in session.exec(
        select(ReviewItem).where(ReviewItem.meeting_id == meeting.id)).all()}


def meeting_rows(session: Session, week: Week, now: datetime
                 ) -> tuple[ReviewMeeting | None, list[ReviewRow], bool]:
    """The meeting, every experiment's row and whether they came from the frozen copy.

    Running week: rows are computed now and the copy refreshed. Past week: the
    frozen copy if there is one, else a reconstruction as of its end, which becomes
    the frozen copy. A week in which no experiment existed stores nothing (``None``).
    """
    state = meeting_state(session, week, now)
    return state.meeting, state.rows, state.frozen


@dataclass
class MeetingState:
    """What :func:`meeting_state` found: the meeting (``None``: nothing existed that week),
    every experiment's row, whether they are the frozen copy, and what the agenda needs
    of the items when it is known already (else ``None``: the agenda reads it)."""

    meeting: ReviewMeeting | None
    rows: list[ReviewRow]
    frozen: bool
    # A frozen week: every item, loaded with its frozen row.
    items: dict[int, ReviewItem] | None = None
    # A running week: experiment id → (item id, whether it holds a note or a decision).
    heads: dict[int, tuple[int, bool]] | None = None
    # The meeting's kept tree summary (experiments.review_tree), read with the meeting: a
    # past week's copy and when it was written, a running week's digest (None: none yet).
    tree_seen: dict | None = None
    tree_at: datetime | None = None
    tree_digest: str | None = None


def meeting_state(session: Session, week: Week, now: datetime, *, keep: bool = False
                  ) -> MeetingState:
    """:func:`meeting_rows` and, for a frozen week, the meeting's items (so the agenda need
    not load every item's frozen row a second time: 300 experiments' rows are ~1 MB of
    JSON). A running week compares each item's digest, not its frozen row, and rewrites
    only the rows that changed (issue 18); the same read tells each item's id and whether
    it holds a note or decision (``heads``, unless it added items). ``keep``: see
    :func:`every_review_row`."""
    past = now >= week.end
    window = Window(week.previous.start, week.end, min(now, week.end))
    # The meeting with its tree copy in one statement: the whole copy for a past week (it
    # renders from it), only its digest for a running one (compared, not parsed).
    tree = (ReviewTreeSeen.seen, ReviewTreeSeen.seen_at) if past \
        else (ReviewTreeSeen.seen_digest,)
    found = session.exec(
        select(ReviewMeeting, *tree)
        .outerjoin(ReviewTreeSeen, ReviewTreeSeen.meeting_id == ReviewMeeting.id)
        .where(ReviewMeeting.iso_week == week.label)).first()
    existing = found[0] if found is not None else None
    kept_tree = dict(zip(("tree_seen", "tree_at") if past else ("tree_digest",),
                         found[1:], strict=True)) if found is not None else {}
    rows: list[ReviewRow] = []
    if existing is None:
        rows = every_review_row(session, window, keep=keep)
        if not rows:
            return MeetingState(None, [], False)  # nothing existed that week: nothing to keep
        meeting = _meeting(session, week)
    else:
        meeting = existing
    if past:
        # A frozen week reads every item's copy (hundreds of kilobytes of JSON): kept too.
        key = _kept_key(session, "frozen", meeting.id) if keep else None
        kept = _kept.get(key) if key is not None else None
        if kept is not None:
            return MeetingState(meeting, _with_memo(list(kept[0]), kept[1]), True,
                                **kept_tree)
        items = meeting_items(session, meeting)
        if any(item.seen for item in items.values()):
            rows = [ReviewRow.from_json(i.seen) for i in items.values() if i.seen]
            if key is not None:
                memo: dict[Any, Any] = {}
                _kept.put(key, rows, memo)
                rows = _with_memo(list(rows), memo)
            return MeetingState(meeting, rows, True, items=items, **kept_tree)
    if existing is not None:
        rows = every_review_row(session, window, keep=keep)
    has_content = or_(ReviewItem.note != "", ReviewItem.decision.is_not(None))
    stored = {experiment_id: (item_id, digest, bool(content))
              for experiment_id, item_id, digest, content in session.exec(
                  select(ReviewItem.experiment_id, ReviewItem.id, ReviewItem.seen_digest,
                         has_content).where(ReviewItem.meeting_id == meeting.id)).all()}
    new, changed = [], []
    for row in rows:
        digest = row_digest(row)
        item = stored.get(row.experiment.id)
        if item is None:
            new.append({"meeting_id": meeting.id, "experiment_id": row.experiment.id,
                        "seen": row.to_json(), "seen_digest": digest, "note": "",
                        "decision_rationale": "", "version": 1, "updated_at": now})
        elif item[1] != digest:
            changed.append({"id": item[0], "seen": row.to_json(), "seen_digest": digest})
    insert_ignoring_duplicates(session, ReviewItem, new)
    if changed:  # one executemany by primary key
        session.exec(update(ReviewItem), params=changed)
    session.flush()
    heads = None if new else {experiment_id: (item_id, content)
                              for experiment_id, (item_id, _digest, content) in stored.items()}
    return MeetingState(meeting, rows, past, heads=heads, **kept_tree)
