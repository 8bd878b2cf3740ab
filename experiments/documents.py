"""One experiment as of a moment: the single document every rendering reads.

:class:`ExperimentDocument` is what is known about an experiment at a point in
time: the experiment (team, branch, stage, owner, hypothesis, status, decision),
its plan, its amendments up to then, the data version in force and the stored
analysis of it (DESIGN §4 as the snapshot holds it) with its headline verdict.
The results page, the weekly review (and its frozen ``seen`` copies), every
export and the API read this one shape; :meth:`ExperimentDocument.to_json` is its
only serialisation, and :meth:`ExperimentDocument.from_json` reads it back,
including copies stored by earlier versions (team as a plain name, the analysis
under ``"result"``).

Moments are ISO 8601 strings in UTC, as stored. The team is always an object
``{"id", "name"}``; the branch is the top-level lever the experiment sits under,
the driver its own node, the path every node from the root.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

from sqlalchemy import Row, bindparam
from sqlmodel import Session, select

from experiments.access import effective_role
from experiments.errors import NotFound
from experiments.models import (
    Amendment,
    AnalysisSnapshot,
    Dataset,
    DriverNode,
    Experiment,
    JourneyStage,
    Team,
    User,
    Variant,
    utcnow,
)
from experiments.reference_rows import by_id
from experiments.review_weeks import Window, aware, iso
from experiments.rules import stored_headline_verdict
from experiments.stored_analyses import SnapshotKey, snapshot_key, stored_parts

STATUS_ORDER: tuple[str, ...] = ("draft", "running", "stopped", "decided")
#: The DESIGN §4 keys every stored analysis has (§4b adds more, e.g. ``required_n``).
REPORT_KEYS: tuple[str, ...] = ("alpha", "power", "mde", "control", "srm", "arms", "comparisons",
                                "warnings")
#: What a snapshot stores beside its analysis (not part of the §4 report).
SNAPSHOT_METADATA: tuple[str, ...] = ("plan", "dataset", "segments_omitted")
#: The document's own top-level keys; every other top-level key is the §4 report's.
DOCUMENT_KEYS: tuple[str, ...] = ("verdict", "experiment", "plan", "analysis_plan", "amendments",
                                  "dataset", "snapshot_id", "computed_at", "as_of", "review",
                                  "exported_at", "guardrail_status", "guardrail_text")


def finite(value: Any) -> Any:
    """``value`` with every NaN/inf replaced by ``None`` (JSON has no such numbers)."""
    # Exact-type fast paths first: this walks every stored document a review or an export
    # shows, and isinstance against the Mapping ABC was most of its cost (issue 18).
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {k if type(k) is str else str(k): finite(v) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [finite(v) for v in value]
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def _int(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def user_label(user: User | None) -> str | None:
    return None if user is None else (user.name or user.email)


# ------------------------------------------------------------------ the parts


@dataclass(frozen=True)
class Ref:
    """A named thing the experiment points at (team, branch, driver, a node of the path)."""

    id: int | None
    name: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name}

    @classmethod
    def read(cls, value: Any, *, id_hint: int | None = None) -> Ref | None:
        """A stored ref: ``{"id", "name"}``, or a bare name / bare id of older copies."""
        if value is None:
            return None
        if isinstance(value, Mapping):
            return cls(_int(value.get("id")), value.get("name"))
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value, None)
        return cls(id_hint, str(value))


@dataclass(frozen=True)
class AmendmentInfo:
    """One recorded change of a locked plan field."""

    field: str
    old_value: str | None
    new_value: str | None
    reason: str | None
    by: str | None
    at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "old_value": self.old_value, "new_value": self.new_value,
                "reason": self.reason, "by": self.by, "at": self.at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AmendmentInfo:
        return cls(str(data.get("field") or ""), data.get("old_value"), data.get("new_value"),
                   data.get("reason"), data.get("by"), data.get("at"))


@dataclass(frozen=True)
class VariantInfo:
    key: str
    name: str
    weight: float
    is_control: bool

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "weight": self.weight,
                "is_control": self.is_control}


@dataclass(frozen=True)
class PlanInfo:
    """The experiment's plan as registered and amended (not the snapshot's)."""

    primary_metric: str | None
    mde: float | None
    alpha: float | None
    power: float | None
    control: str | None
    variants: tuple[VariantInfo, ...]
    planned_start: str | None
    planned_end: str | None

    def to_json(self) -> dict[str, Any]:
        return {"primary_metric": self.primary_metric, "mde": self.mde, "alpha": self.alpha,
                "power": self.power, "control": self.control,
                "variants": [v.to_json() for v in self.variants],
                "planned_start": self.planned_start, "planned_end": self.planned_end}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> PlanInfo:
        data = data or {}
        variants = tuple(
            VariantInfo(str(v.get("key")), str(v.get("name") or ""), _float(v.get("weight")) or 0.0,
                        bool(v.get("is_control")))
            for v in data.get("variants") or [] if isinstance(v, Mapping))
        return cls(data.get("primary_metric"), _float(data.get("mde")), _float(data.get("alpha")),
                   _float(data.get("power")), data.get("control"), variants,
                   data.get("planned_start"), data.get("planned_end"))


@dataclass(frozen=True)
class DataVersion:
    """The dataset version whose analysis is in force."""

    id: int | None
    version: int
    sha256: str
    rows: int
    filename: str
    source: str | None
    uploaded_at: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "sha256": self.sha256, "rows": self.rows,
                "filename": self.filename, "source": self.source, "uploaded_at": self.uploaded_at}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> DataVersion | None:
        if not data:
            return None
        return cls(_int(data.get("id")), _int(data.get("version")) or 0,
                   str(data.get("sha256") or ""), _int(data.get("rows")) or 0,
                   str(data.get("filename") or ""), data.get("source"), data.get("uploaded_at"))


@dataclass(frozen=True)
class ExperimentInfo:
    """Who and what: the experiment's identity, place, people, status and decision."""

    id: int | None
    key: str
    name: str
    team: Ref | None
    branch: Ref | None
    driver: Ref | None
    path: tuple[Ref, ...]
    journey_stage: str | None
    owner: str | None
    owner_email: str | None
    hypothesis: str | None
    status: str
    decision: str | None
    decision_rationale: str
    decided_by: str | None
    started_at: str | None
    stopped_at: str | None
    decided_at: str | None
    amendments: tuple[AmendmentInfo, ...]
    # The ship part of the decision record (experiments.decisions); empty on other
    # decisions and on rows decided before the record had it.
    shipped_variant: str | None = None
    rollout_share: float | None = None
    eligible_base_mrr: str | None = None
    decision_source: str | None = None

    @property
    def team_id(self) -> int | None:
        return self.team.id if self.team else None

    @property
    def path_ids(self) -> tuple[int, ...]:
        return tuple(node.id for node in self.path if node.id is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "key": self.key, "name": self.name,
            "team": self.team.to_json() if self.team else None,
            "branch": self.branch.to_json() if self.branch else None,
            "driver": self.driver.to_json() if self.driver else None,
            "path": [node.to_json() for node in self.path],
            "journey_stage": self.journey_stage, "owner": self.owner,
            "owner_email": self.owner_email, "hypothesis": self.hypothesis, "status": self.status,
            "decision": self.decision, "decision_rationale": self.decision_rationale,
            "decided_by": self.decided_by, "started_at": self.started_at,
            "stopped_at": self.stopped_at, "decided_at": self.decided_at,
            "amendments": [a.to_json() for a in self.amendments],
            "shipped_variant": self.shipped_variant, "rollout_share": self.rollout_share,
            "eligible_base_mrr": self.eligible_base_mrr, "decision_source": self.decision_source,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExperimentInfo:
        return cls(
            id=_int(data.get("id")), key=str(data.get("key") or ""),
            name=str(data.get("name") or ""),
            team=Ref.read(data.get("team"), id_hint=_int(data.get("team_id"))),
            branch=Ref.read(data.get("branch")), driver=Ref.read(data.get("driver")),
            path=tuple(r for r in (Ref.read(node) for node in data.get("path") or []) if r),
            journey_stage=_name(data.get("journey_stage")), owner=_name(data.get("owner")),
            owner_email=data.get("owner_email"), hypothesis=data.get("hypothesis"),
            status=str(data.get("status") or "draft"), decision=data.get("decision"),
            decision_rationale=str(data.get("decision_rationale") or ""),
            decided_by=data.get("decided_by"), started_at=data.get("started_at"),
            stopped_at=data.get("stopped_at"), decided_at=data.get("decided_at"),
            amendments=tuple(AmendmentInfo.from_json(a) for a in data.get("amendments") or []
                             if isinstance(a, Mapping)),
            shipped_variant=data.get("shipped_variant"),
            rollout_share=_float(data.get("rollout_share")),
            eligible_base_mrr=data.get("eligible_base_mrr"),
            decision_source=data.get("decision_source"),
        )


def _name(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return value.get("name")
    return value


# ---------------------------------------------------------------- the document


@dataclass(frozen=True)
class ExperimentDocument:
    """An experiment as of ``as_of``; see the module docstring.

    ``result`` is the stored DESIGN §4 analysis in force then (``None`` before any),
    ``analysis_plan`` the plan that analysis was computed under, ``verdict`` the
    headline verdict (:func:`experiments.rules.headline_of`).
    """

    experiment: ExperimentInfo
    plan: PlanInfo
    analysis_plan: Mapping[str, Any] | None
    dataset: DataVersion | None
    snapshot_id: int | None
    computed_at: str | None
    verdict: str | None
    result: Mapping[str, Any] | None
    as_of: str | None

    @property
    def key(self) -> str:
        return self.experiment.key

    @property
    def amendments(self) -> tuple[AmendmentInfo, ...]:
        return self.experiment.amendments

    @property
    def comparisons(self) -> list[Mapping[str, Any]]:
        return [c for c in (self.result or {}).get("comparisons") or [] if isinstance(c, Mapping)]

    def headline_comparison(self) -> Mapping[str, Any] | None:
        """The comparison the headline verdict comes from (the first with it, else the first)."""
        comparisons = self.comparisons
        if not comparisons:
            return None
        return next((c for c in comparisons if c.get("verdict") == self.verdict), comparisons[0])

    def sample_progress(self) -> tuple[int | None, int | None]:
        """(accounts in the smallest planned arm, required accounts per arm)."""
        result = self.result
        if not result:
            return None, None
        arms = {a.get("variant"): _int(a.get("accounts")) or 0 for a in result.get("arms") or []
                if isinstance(a, Mapping)}
        srm = result.get("srm") if isinstance(result.get("srm"), Mapping) else {}
        planned = list((srm.get("expected_weights") or {}).keys()) or list(arms)
        smallest = min((arms.get(v, 0) for v in planned), default=None)
        stored_plan = result.get("plan") if isinstance(result.get("plan"), Mapping) else {}
        locked = stored_plan.get("required_n") if isinstance(stored_plan, Mapping) else None
        if locked and isinstance(locked, Mapping):  # the n locked at start (issue 13 item 3)
            return smallest, max((n for n in map(_int, locked.values()) if n), default=None)
        required = max((n for n in (_int(c.get("required_n_per_arm")) for c in self.comparisons)
                        if n is not None), default=None)
        return smallest, required

    def analysis(self) -> dict[str, Any]:
        """The DESIGN §4 part; an empty one (with a warning) before any analysis."""
        if self.result:
            return {**dict.fromkeys(REPORT_KEYS), **self.result}
        return {"alpha": self.plan.alpha, "power": self.plan.power, "mde": self.plan.mde,
                "control": self.plan.control, "srm": None, "arms": [], "comparisons": [],
                "warnings": ["no analysis yet: no data has been uploaded for this experiment"]}

    def to_json(self) -> dict[str, Any]:
        """DESIGN §4 at the top level plus the experiment, plan, amendments and data version."""
        return finite({
            **self.analysis(),
            "verdict": self.verdict,
            "experiment": self.experiment.to_json(),
            "plan": self.plan.to_json(),
            "analysis_plan": dict(self.analysis_plan) if self.analysis_plan else None,
            "amendments": [a.to_json() for a in self.amendments],
            "dataset": self.dataset.to_json() if self.dataset else None,
            "snapshot_id": self.snapshot_id,
            "computed_at": self.computed_at,
            "as_of": self.as_of,
        })

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExperimentDocument:
        """Read :meth:`to_json` back, or a copy stored by an earlier version.

        Earlier copies kept the analysis under ``"result"`` and the team as its name
        (with ``team_id`` beside it); both are converted here.
        """
        if "result" in data:  # the earlier nested shape
            result = data.get("result") if isinstance(data.get("result"), Mapping) else None
        elif data.get("snapshot_id") is not None and isinstance(data.get("comparisons"), list):
            result = {key: value for key, value in data.items() if key not in DOCUMENT_KEYS}
        else:
            result = None
        info = data.get("experiment") if isinstance(data.get("experiment"), Mapping) else {}
        plan = data.get("analysis_plan")
        return cls(
            experiment=ExperimentInfo.from_json(info),
            plan=PlanInfo.from_json(data.get("plan")),
            analysis_plan=plan if isinstance(plan, Mapping) else None,
            dataset=DataVersion.from_json(data.get("dataset")),
            snapshot_id=_int(data.get("snapshot_id")),
            computed_at=data.get("computed_at"),
            verdict=data.get("verdict"),
            result=result,
            as_of=data.get("as_of"),
        )


# ------------------------------------------------------------ facts as of a moment


SnapshotHead = tuple[datetime, int, int, str | None]  # computed_at, id, dataset_id, verdict


_VARIANT_COLUMNS = (Variant.id, Variant.experiment_id, Variant.key, Variant.name,
                    Variant.weight, Variant.is_control, Variant.position)
_AMENDMENT_COLUMNS = (Amendment.id, Amendment.experiment_id, Amendment.field,
                      Amendment.old_value, Amendment.new_value, Amendment.reason,
                      Amendment.actor_id, Amendment.created_at)
_DATASET_COLUMNS = (Dataset.id, Dataset.experiment_id, Dataset.version, Dataset.source,
                    Dataset.filename, Dataset.sha256, Dataset.row_count, Dataset.uploaded_at,
                    Dataset.uploaded_by_id)

# The statements :class:`Facts` sends on every view, built once (issue 18: building a
# statement per view cost about as much as running it on the demo); ``ids`` is an
# expanding IN list, rendered per call with one parameter per id, as ``in_(list)`` was.
_IDS = bindparam("ids", expanding=True)
_VARIANTS = (select(*_VARIANT_COLUMNS).where(Variant.experiment_id.in_(_IDS))
             .order_by(Variant.position, Variant.id))
_AMENDMENTS = (select(*_AMENDMENT_COLUMNS).where(Amendment.experiment_id.in_(_IDS))
               .order_by(Amendment.created_at, Amendment.id))
_READY_DATASETS = (select(*_DATASET_COLUMNS)
                   .where(Dataset.experiment_id.in_(_IDS), Dataset.status == "ready")
                   .order_by(Dataset.version))
_SNAPSHOT_HEADS = (select(AnalysisSnapshot.experiment_id, AnalysisSnapshot.computed_at,
                          AnalysisSnapshot.id, AnalysisSnapshot.dataset_id,
                          AnalysisSnapshot.verdict)
                   .where(AnalysisSnapshot.experiment_id.in_(_IDS)))


class Facts:
    """The rows documents are built from, loaded in a handful of bulk queries."""

    def __init__(self, session: Session, experiments: Sequence[Experiment]):
        ids = [e.id for e in experiments]
        self.session = session
        # Rows of the columns documents read (attribute access as on the models), not ORM
        # objects: a review of 1,000 experiments reads thousands of them per view.
        self.variants: dict[int, list[Row]] = defaultdict(list)
        self.amendments: dict[int, list[Row]] = defaultdict(list)
        self.datasets: dict[int, Row] = {}
        self.datasets_of: dict[int, list[Row]] = defaultdict(list)
        self.snapshots: dict[int, list[SnapshotHead]] = defaultdict(list)
        self._results: dict[int, dict] = {}
        self._keys: dict[int, SnapshotKey] = {}
        if not ids:
            return
        by_ids = {"ids": ids}
        for variant in session.exec(_VARIANTS, params=by_ids).all():
            self.variants[variant.experiment_id].append(variant)
        for amendment in session.exec(_AMENDMENTS, params=by_ids).all():
            self.amendments[amendment.experiment_id].append(amendment)
        for dataset in session.exec(_READY_DATASETS, params=by_ids).all():
            self.datasets[dataset.id] = dataset
            self.datasets_of[dataset.experiment_id].append(dataset)
        heads = session.exec(_SNAPSHOT_HEADS, params=by_ids).all()
        for experiment_id, computed_at, snapshot_id, dataset_id, verdict in heads:
            self.snapshots[experiment_id].append(
                (aware(computed_at), snapshot_id, dataset_id, verdict))
            self._keys[snapshot_id] = snapshot_key(snapshot_id, computed_at, dataset_id)
        for items in self.snapshots.values():
            items.sort(key=lambda head: (head[0], head[1]))

    # The names documents show, read when first needed (none without experiments).
    @cached_property
    def nodes(self) -> dict[int, DriverNode]:
        return by_id(self.session, DriverNode)

    @cached_property
    def stages(self) -> dict[int, JourneyStage]:
        return by_id(self.session, JourneyStage)

    @cached_property
    def teams(self) -> dict[int, Team]:
        return by_id(self.session, Team)

    @cached_property
    def users(self) -> dict[int, User]:
        return by_id(self.session, User)

    def snapshot_head(self, experiment_id: int,
                      happened: Callable[[datetime], bool]) -> SnapshotHead | None:
        """The newest snapshot for which ``happened(computed_at)`` holds."""
        found = None
        for head in self.snapshots.get(experiment_id, ()):
            if happened(head[0]):
                found = head
        return found

    def load_results(self, snapshot_ids: Iterable[int]) -> None:
        """Read the stored analyses of ``snapshot_ids`` (parsed once per process:
        :mod:`experiments.stored_analyses`)."""
        wanted = [self._keys[i] for i in set(snapshot_ids)
                  if i not in self._results and i in self._keys]
        if wanted:
            self._results.update(stored_parts(self.session, wanted))

    def result(self, snapshot_id: int) -> dict:
        found = self._results.get(snapshot_id)  # loaded already: once per experiment per view
        if found is None:
            self.load_results([snapshot_id])
            found = self._results.get(snapshot_id, {})
        return found

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
    counts from its timestamp (a step without one is taken to have always been so).
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


def exists_at(experiment: Experiment, window: Window) -> bool:
    born = [m for m in (experiment.created_at, experiment.started_at) if m is not None]
    return not born or window.happened(min(aware(m) for m in born))


def _report_part(result: Mapping[str, Any]) -> dict[str, Any] | None:
    if not result or not isinstance(result.get("comparisons"), list) \
            or not isinstance(result.get("arms"), list):
        return None
    return {key: value for key, value in result.items() if key not in SNAPSHOT_METADATA}


def document_as_of(facts: Facts, experiment: Experiment, window: Window) -> ExperimentDocument:
    """What is known about ``experiment`` at the window's point in time."""
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
    amendments = tuple(
        AmendmentInfo(a.field, a.old_value, a.new_value, a.reason,
                      user_label(facts.users.get(a.actor_id)), iso(a.created_at))
        for a in facts.amendments.get(experiment.id, []) if window.happened(a.created_at))
    head = facts.snapshot_head(experiment.id, window.happened)
    result = dataset = verdict = computed_at = snapshot_plan = None
    if head is not None:
        stored = facts.result(head[1])
        result = _report_part(stored)
        dataset = facts.datasets.get(head[2])
        verdict = head[3]
        computed_at = head[0]
        snapshot_plan = stored.get("plan") if isinstance(stored.get("plan"), Mapping) else None
        if result is not None and verdict is None:
            verdict = stored_headline_verdict(result)
    info = ExperimentInfo(
        id=experiment.id, key=experiment.key, name=experiment.name,
        team=Ref(team.id, team.name) if team else None,
        branch=Ref(branch.id, branch.name) if branch else None,
        driver=Ref(node.id, node.name) if node else None,
        path=tuple(Ref(n.id, n.name) for n in path),
        journey_stage=stage.name if stage else None,
        owner=user_label(owner), owner_email=owner.email if owner else None,
        hypothesis=experiment.hypothesis, status=status,
        decision=experiment.decision if decided else None,
        decision_rationale=(experiment.decision_rationale or "") if decided else "",
        decided_by=user_label(facts.users.get(experiment.decided_by_id)) if decided else None,
        started_at=iso(experiment.started_at) if status != "draft" else None,
        stopped_at=iso(experiment.stopped_at) if status in ("stopped", "decided") else None,
        decided_at=iso(experiment.decided_at) if decided else None,
        amendments=amendments,
        shipped_variant=experiment.shipped_variant if decided else None,
        rollout_share=experiment.rollout_share if decided else None,
        eligible_base_mrr=(str(Decimal(experiment.eligible_base_cents) / 100)
                           if decided and experiment.eligible_base_cents is not None else None),
        decision_source=(experiment.decision_source or None) if decided else None,
    )
    plan = PlanInfo(
        primary_metric=experiment.primary_metric, mde=experiment.mde, alpha=experiment.alpha,
        power=experiment.power, control=control,
        variants=tuple(VariantInfo(v.key, v.name, v.weight, v.is_control) for v in variants),
        planned_start=iso(experiment.planned_start), planned_end=iso(experiment.planned_end))
    data_version = None
    if dataset is not None:
        data_version = DataVersion(dataset.id, dataset.version, dataset.sha256, dataset.row_count,
                                   dataset.filename, dataset.source, iso(dataset.uploaded_at))
    return ExperimentDocument(
        experiment=info, plan=plan, analysis_plan=snapshot_plan, dataset=data_version,
        snapshot_id=head[1] if head else None, computed_at=iso(computed_at), verdict=verdict,
        result=result, as_of=iso(window.as_of))


def document_now(session: Session, experiment: Experiment, *,
                 now: datetime | None = None, facts: Facts | None = None) -> ExperimentDocument:
    """``experiment`` as of now, for a caller that has already checked access (and may
    pass the :class:`Facts` of it it has already read)."""
    now = aware(now) or utcnow()
    window = Window(now, now + timedelta(microseconds=1), now)
    return document_as_of(facts or Facts(session, [experiment]), experiment, window)


def experiment_document(session: Session, user: User, key: str, *,
                        now: datetime | None = None) -> ExperimentDocument:
    """The experiment ``key`` as of now (what its page, exports and API show).

    Raises
    ------
    NotFound
        No such experiment, or it belongs to another team.
    """
    experiment = session.exec(select(Experiment).where(Experiment.key == key)).first()
    if experiment is None or effective_role(session, user, experiment.team_id) is None:
        raise NotFound(f"no experiment {key!r}")
    return document_now(session, experiment, now=now)
