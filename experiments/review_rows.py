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

Rows kept by their inputs
-------------------------
Any committed write moves the generation, so the first view after it would compute every
row again (issue 18: most of the review's time at 300 experiments). Each experiment's row is
therefore also kept with its *inputs* (:func:`_inputs`): the experiment's own columns
(:data:`EXPERIMENT_COLUMNS`), variants, amendments, ready datasets, analysis snapshot heads
and the stored analysis in force (fixed by its snapshot: never rewritten), and the names
its document shows (its node's path, team, stage, owner, decider, amendments' authors).
They are the rows the view reads in bulk anyway (:class:`~experiments.documents.Facts`);
a row is reused, with its digest, when they are equal — so a write rebuilds only the rows
of the experiments it changed, and a write that changed none rebuilds none. The rest
of the key is the database, the window (``changes_from``, ``changes_to``, whether it is
closed and then its point in time) and the day (a running experiment's planned end is
compared with it). The moment of observation (``as_of``) is set on each reused row;
it matters otherwise only through the timestamps of the inputs, so a live window reuses a
row only when none of them lies between the point in time the row was computed at and
this one (a moment still to come, once it has passed, computes the row again); the whole
list kept per generation is bounded the same way, and by the births of the experiments it
holds and of those it left out (:func:`_with_births`). Kept rows
are bounded per database (:data:`KEPT_ROWS_PER_DATABASE`) and in windows
(:data:`KEPT_INPUT_WINDOWS`); a window's rows are replaced whole, which drops experiments
that vanished.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import bindparam, or_, update
from sqlmodel import Session, select

from experiments.documents import (
    STATUS_ORDER,
    ExperimentDocument,
    ExperimentInfo,
    Facts,
    document_as_of,
    exists_at,
)
from experiments.generation import has_generation_table, read_generation, unseen_write
from experiments.models import Experiment, ReviewItem, ReviewMeeting, utcnow
from experiments.reference_rows import kept_across
from experiments.review_models import ReviewTreeSeen
from experiments.review_weeks import Week, Window, aware, iso, parse_moment
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


def review_rows(session: Session, window: Window, experiments: Sequence[Experiment], *,
                kept: tuple | None = None) -> list[ReviewRow]:
    """Every experiment that existed at the window's point in time, as a review row.

    ``kept`` (:func:`every_review_row`'s, with ``experiments`` read as
    :data:`EXPERIMENT_COLUMNS` rows) names the window's rows kept per process by each
    experiment's own inputs (:func:`_inputs`): an experiment whose inputs are those of its
    kept row gets that row back (digest included) instead of a new document, flags and
    digest; the others are computed (with their digest) and kept."""
    existing = [e for e in experiments if exists_at(e, window)]
    facts = Facts(session, existing)
    heads = [facts.snapshot_head(e.id, window.happened) for e in existing]
    facts.load_results(h[1] for h in heads if h is not None)
    if kept is not None:
        rows = _rows_by_inputs(facts, window, existing, heads, kept)
        if not window.closed:  # which experiments exist moves with the point in time too
            rows.span = _with_births(rows.span, experiments, window.as_of)
        return rows
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
        self._entries: OrderedDict[tuple, tuple[float, list[ReviewRow], dict, tuple]] = \
            OrderedDict()
        self._ready: dict[str, bool] = {}

    def ready(self, session: Session) -> bool:
        """Whether the database holds the data generation (checked once per database)."""
        url = str(session.get_bind().url)
        if url not in self._ready:
            with session.get_bind().connect() as connection:
                self._ready[url] = has_generation_table(connection)
        return self._ready[url]

    def get(self, key: tuple, as_of: datetime | None = None
            ) -> tuple[list[ReviewRow], dict] | None:
        """The rows kept under ``key``, if they were computed at most :data:`KEPT_SECONDS`
        ago and (``as_of`` given) no moment of their inputs lies between the point in
        time they were computed at and ``as_of``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or time.monotonic() - entry[0] > KEPT_SECONDS:
                return None
            since, until = entry[3]
            if as_of is not None and ((since is not None and as_of < since)
                                      or (until is not None and as_of >= until)):
                return None
            self._entries.move_to_end(key)
            return entry[1], entry[2]

    def put(self, key: tuple, rows: list[ReviewRow], memo: dict,
            span: tuple[Any, Any] = (None, None)) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic(), rows, memo, span)
            self._entries.move_to_end(key)
            while len(self._entries) > KEPT_WINDOWS:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._ready.clear()
        _by_inputs.clear()  # the rows kept by their inputs too


_kept = _KeptRows()


def every_review_row(session: Session, window: Window, *, keep: bool = False
                     ) -> list[ReviewRow]:
    """:func:`review_rows` of every experiment (kept ones with their :func:`row_digest`).

    With ``keep`` the rows are kept per process at two levels. The whole list is reused
    while the database's data generation (:mod:`experiments.generation`: it moves with
    every committed write) is the one it was computed at, for the same window and the same
    day, for at most :data:`KEPT_SECONDS`; a reused row's ``as_of`` is the window's. After a
    write, each experiment's row is reused while that experiment's own inputs are those it
    was computed from (:func:`_inputs`; see "Rows kept by their inputs" in the module
    docstring), so a write rebuilds only the rows it changed. Kept rows come as
    :class:`KeptRows`, whose ``memo`` the caller may fill. Only a caller whose
    transaction has written nothing yet may ask for ``keep`` (its own uncommitted writes
    would not move the generation): the review page, which reads first.
    """
    day = window.as_of.date()
    key = _kept_key(session, window.changes_from, window.changes_to, window.closed,
                    day) if keep else None
    kept = _kept.get(key, None if window.closed else window.as_of) if key is not None \
        else None
    if kept is not None:
        as_of = iso(window.as_of)
        return _with_memo([ReviewRow(_observed(r.document, as_of), r.review, r.digest)
                           for r in kept[0]], kept[1])
    if not keep:
        return review_rows(session, window, session.exec(select(Experiment)).all())
    closed = window.closed
    by_inputs = (str(session.get_bind().url), window.changes_from, window.changes_to, closed,
                 window.as_of if closed else None, day)
    rows = review_rows(session, window, session.exec(_EXPERIMENT_ROWS).all(), kept=by_inputs)
    if key is None:
        return rows
    memo: dict[Any, Any] = {}
    _kept.put(key, rows, memo, getattr(rows, "span", (None, None)))
    return _with_memo(list(rows), memo)


def _observed(document: ExperimentDocument, as_of: str | None) -> ExperimentDocument:
    """``replace(document, as_of=as_of)`` without re-running the dataclass's ``__init__``
    (a shallow copy, as ``replace`` makes): a third of the time, for every kept row of
    every view."""
    observed = object.__new__(type(document))  # copy.copy, without its reduce protocol
    observed.__dict__.update(document.__dict__)
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


# ------------------------------------------------ rows kept by each experiment's inputs

#: The experiment's columns the rows read (:func:`~experiments.documents.exists_at`,
#: :func:`~experiments.documents.status_at`, :func:`~experiments.documents.document_as_of`,
#: :func:`review_flags`). :func:`every_review_row` reads these, not whole models: a row of
#: them reads as the model does (a column added to what a row shows must be added here,
#: or reading it fails), and it is the experiment's own part of its row's inputs.
EXPERIMENT_COLUMNS = tuple(getattr(Experiment, name) for name in (
    "id", "key", "name", "node_id", "stage_id", "team_id", "owner_id", "hypothesis",
    "primary_metric", "mde", "alpha", "power", "planned_start", "planned_end", "status",
    "started_at", "stopped_at", "decided_at", "decision", "decision_rationale",
    "decided_by_id", "shipped_variant", "rollout_share", "eligible_base_cents",
    "decision_source", "reopened_at", "reopen_reason", "created_at"))

#: Every experiment as :data:`EXPERIMENT_COLUMNS`, built once (28 columns: building the
#: statement and its cache key cost ~0.2 ms a view, as much as running it on the demo).
_EXPERIMENT_ROWS = select(*EXPERIMENT_COLUMNS)

#: The most rows kept by their inputs per database (over all its windows), and the most
#: windows kept in all; least recently used windows are dropped first.
KEPT_ROWS_PER_DATABASE = 4000
KEPT_INPUT_WINDOWS = 8


class _Names:
    """The names documents show, resolved once per view (each node's path, each user's
    name and email, each team and stage) from the tables :class:`Facts` has loaded."""

    def __init__(self, facts: Facts) -> None:
        self.facts = facts
        self._paths: dict[Any, tuple] = {}
        self._users: dict[Any, tuple | None] = {}
        self._teams: dict[Any, tuple | None] = {}
        self._stages: dict[Any, str | None] = {}

    def path(self, node_id: Any) -> tuple:
        found = self._paths.get(node_id)
        if found is None:
            found = self._paths[node_id] = tuple(
                (n.id, n.name) for n in self.facts.path(node_id))
        return found

    def user(self, user_id: Any) -> tuple | None:
        if user_id not in self._users:
            user = self.facts.users.get(user_id)
            self._users[user_id] = None if user is None else (user.name, user.email)
        return self._users[user_id]

    def team(self, team_id: Any) -> tuple | None:
        if team_id not in self._teams:
            team = self.facts.teams.get(team_id)
            self._teams[team_id] = None if team is None else (team.id, team.name)
        return self._teams[team_id]

    def stage(self, stage_id: Any) -> str | None:
        if stage_id not in self._stages:
            stage = self.facts.stages.get(stage_id)
            self._stages[stage_id] = None if stage is None else stage.name
        return self._stages[stage_id]


def _inputs(facts: Facts, names: _Names, experiment: Any, head: Any) -> tuple:
    """Everything ``experiment``'s review row is computed from, for equality: its columns,
    variants, amendments, ready datasets and snapshot heads, the stored analysis in force,
    the names its document shows (its node's path, team, stage, owner, decider, the
    amendments' authors), which are read from the rows the view has loaded anyway. The
    window, the day and the moment of observation are the caller's (see the module
    docstring). Rows are compared as plain tuples (a ``Row`` compares seven times slower),
    and a parsed analysis by identity first, so equal inputs cost little to compare."""
    eid = experiment.id
    amendments = facts.amendments.get(eid, ())
    dataset = facts.datasets.get(head[2]) if head is not None else None
    return (
        tuple(experiment), tuple(map(tuple, facts.variants.get(eid, ()))),
        tuple(map(tuple, amendments)), tuple(names.user(a.actor_id) for a in amendments),
        tuple(map(tuple, facts.datasets_of.get(eid, ()))), tuple(facts.snapshots.get(eid, ())),
        (tuple(dataset) if dataset is not None else None, facts.result(head[1]))
        if head is not None else None,
        names.path(experiment.node_id), names.team(experiment.team_id),
        names.stage(experiment.stage_id), names.user(experiment.owner_id),
        names.user(experiment.decided_by_id),
    )


def _span(facts: Facts, experiment: Any, as_of: datetime) -> tuple[Any, Any]:
    """Of the moments of ``experiment``'s inputs that a row compares with the window's
    point in time: the latest at or before ``as_of`` and the earliest after it (``None``:
    none). A point in time from the first (included) to the second (excluded) sees the
    same of them happened, so the same row."""
    eid = experiment.id
    moments = [experiment.started_at, experiment.stopped_at, experiment.decided_at,
               experiment.reopened_at]
    moments += [a.created_at for a in facts.amendments.get(eid, ())]
    moments += [d.uploaded_at for d in facts.datasets_of.get(eid, ())]
    found = [aware(m) for m in moments if m is not None]
    found += [head[0] for head in facts.snapshots.get(eid, ())]  # already aware
    return (max((m for m in found if m <= as_of), default=None),
            min((m for m in found if m > as_of), default=None))


def _rows_by_inputs(facts: Facts, window: Window, existing: Sequence[Any],
                    heads: Sequence[Any], key: tuple) -> list[ReviewRow]:
    """:func:`review_rows` with the rows kept under ``key`` (the database and the window):
    an experiment's kept row is reused when its :func:`_inputs` are equal and, in a live
    window, no moment of those inputs lies between the point in time it was computed at
    and this one (:func:`_span`); a closed window's point in time is part of ``key``."""
    before = _by_inputs.get(key) or {}
    as_of = window.as_of
    observed = iso(as_of)
    names = _Names(facts)
    kept: dict[int, tuple[tuple, ReviewRow, Any, Any]] = {}
    rows = _Spanned()
    for experiment, head in zip(existing, heads, strict=True):
        inputs = _inputs(facts, names, experiment, head)
        old = before.get(experiment.id)
        if old is not None and (old[2] is None or old[2] <= as_of) \
                and (old[3] is None or as_of < old[3]) and old[0] == inputs:
            row = old[1]
            rows.append(ReviewRow(_observed(row.document, observed), row.review, row.digest))
            kept[experiment.id] = old
            continue
        document = document_as_of(facts, experiment, window)
        row = ReviewRow(document, review_flags(facts, experiment, document, window))
        row = ReviewRow(document, row.review, row_digest(row))
        rows.append(row)
        since, until = (None, None) if window.closed else _span(facts, experiment, as_of)
        kept[experiment.id] = (inputs, row, since, until)
    _by_inputs.put(key, kept)
    # Where all of them stay the same: the span of the whole list (kept per generation).
    rows.span = (max((k[2] for k in kept.values() if k[2] is not None), default=None),
                 min((k[3] for k in kept.values() if k[3] is not None), default=None))
    return rows


def _with_births(span: tuple[Any, Any], experiments: Sequence[Any], as_of: datetime
                 ) -> tuple[Any, Any]:
    """``span`` narrowed by the experiments' births (:func:`~experiments.documents.exists_at`:
    the earlier of ``created_at`` and ``started_at``): a kept list holds the experiments
    that existed at its point in time, so it is reused neither before the birth of one it
    holds nor at or after the birth of one it left out (a creation stamped later than
    the view's "now": another host's clock, or a commit after the request began)."""
    plain = as_of.astimezone(UTC).replace(tzinfo=None)  # compared as the rows spell them
    latest = earliest = None
    for experiment in experiments:
        moment, started = experiment.created_at, experiment.started_at
        if moment is None or (started is not None and started < moment):
            moment = started
        if moment is None:
            continue
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        if moment <= plain:
            if latest is None or moment > latest:
                latest = moment
        elif earliest is None or moment < earliest:
            earliest = moment
    since, until = span
    if latest is not None:
        latest = latest.replace(tzinfo=UTC)
        since = latest if since is None or latest > since else since
    if earliest is not None:
        earliest = earliest.replace(tzinfo=UTC)
        until = earliest if until is None or earliest < until else until
    return since, until


class _Spanned(list):
    """Rows with ``span``: from when to when (excluded) the point in time sees each of their
    inputs' moments as it did (``None``: unbounded)."""

    span: tuple[Any, Any] = (None, None)


class _ByInputs:
    """Per (database URL, window, day): each experiment's row with its inputs. A window's
    rows are replaced whole (so experiments that vanished are dropped); entries are bounded
    by :data:`KEPT_ROWS_PER_DATABASE` and :data:`KEPT_INPUT_WINDOWS`. Thread-safe; rows and
    inputs are immutable once kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, dict[int, tuple]] = OrderedDict()

    def get(self, key: tuple) -> dict[int, tuple] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple, rows: dict[int, tuple]) -> None:
        with self._lock:
            self._entries.pop(key, None)
            if len(rows) > KEPT_ROWS_PER_DATABASE:
                return
            self._entries[key] = rows
            url = key[0]
            total = sum(len(v) for k, v in self._entries.items() if k[0] == url)
            for other in [k for k in self._entries if k[0] == url and k != key]:
                if total <= KEPT_ROWS_PER_DATABASE:
                    break
                total -= len(self._entries.pop(other))
            while len(self._entries) > KEPT_INPUT_WINDOWS:
                self._entries.popitem(last=False)

    def rows(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_by_inputs = _ByInputs()


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


#: Every item of a meeting (``meeting_id``), in full: a past week renders from their copies.
_MEETING_ITEMS = select(ReviewItem).where(ReviewItem.meeting_id == bindparam("meeting_id"))


def meeting_items(session: Session, meeting: ReviewMeeting) -> dict[int, ReviewItem]:
    return {i.experiment_id: i for i in session.exec(
        _MEETING_ITEMS, params={"meeting_id": meeting.id}).all()}


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


# The statements every view of a week sends, built once (issue 18: building them cost
# about as much as running them on the demo). The meeting with its tree copy: the whole
# copy for a past week (it renders from it), only its digest for a running one (compared,
# not parsed).
_MEETING_PAST, _MEETING_RUNNING = (
    select(ReviewMeeting, *tree)
    .outerjoin(ReviewTreeSeen, ReviewTreeSeen.meeting_id == ReviewMeeting.id)
    .where(ReviewMeeting.iso_week == bindparam("iso_week"))
    for tree in ((ReviewTreeSeen.seen, ReviewTreeSeen.seen_at), (ReviewTreeSeen.seen_digest,)))
#: Each item of a meeting: experiment, id, digest of its copy, whether it holds content.
_ITEM_DIGESTS = select(
    ReviewItem.experiment_id, ReviewItem.id, ReviewItem.seen_digest,
    or_(ReviewItem.note != "", ReviewItem.decision.is_not(None)),
).where(ReviewItem.meeting_id == bindparam("meeting_id"))


#: A running week's copies are written as shown by no cached page
#: (:func:`experiments.generation.unseen_write`) only by a view that began at least this
#: long before the week's end. A view that began later may commit after the end, when the
#: week is past and its page renders from the copies: a past week's page (and its rows
#: kept per process) rendered before that commit would be kept under the same generation
#: and show the older copies for up to two minutes (a page's minute on top of the rows'),
#: then the newer ones. Such a view moves the generation, as any write. Not covered: a
#: view slower than this, or a server clock off by more.
UNSEEN_COPIES_BEFORE_END = timedelta(minutes=5)


def copies_unseen(now: datetime, end: datetime) -> bool:
    """Whether a view of a running week begun at ``now`` writes the week's copies (items,
    tree summary) unseen: the week ends at ``end``, :data:`UNSEEN_COPIES_BEFORE_END` or
    more after ``now``."""
    return now < end - UNSEEN_COPIES_BEFORE_END


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
    found = session.exec(_MEETING_PAST if past else _MEETING_RUNNING,
                         params={"iso_week": week.label}).first()
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
    stored = {experiment_id: (item_id, digest, bool(content))
              for experiment_id, item_id, digest, content in session.exec(
                  _ITEM_DIGESTS, params={"meeting_id": meeting.id}).all()}
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
    # Only review_item is written: the transaction's copies of the small tables stay (the
    # agenda's owner choices read the users after this). A running week's copies are shown
    # by no cached page (its view renders the fresh rows; only a past week renders from
    # them), so writing them leaves the data generation as it was: otherwise the first
    # view after any edit emptied everyone's kept pages a second time, and the next view of
    # this very page rendered again (experiments.generation). Not in the week's last
    # minutes: the commit may land when the week is past (UNSEEN_COPIES_BEFORE_END).
    unseen = (unseen_write(session, ReviewItem.__tablename__, rewrites=True)
              if not past and (new or changed) and copies_unseen(now, week.end)
              else nullcontext())
    with unseen, kept_across(session, ReviewItem):
        insert_ignoring_duplicates(session, ReviewItem, new)
        if changed:  # one executemany by primary key
            session.exec(update(ReviewItem), params=changed)
        session.flush()
    heads = None if new else {experiment_id: (item_id, content)
                              for experiment_id, (item_id, _digest, content) in stored.items()}
    return MeetingState(meeting, rows, past, heads=heads, **kept_tree)
