"""The experiment registry: registering, listing, editing and the lifecycle.

An experiment moves ``draft → running → stopped → decided``. Starting it locks the
analysis plan (:data:`LOCKED_FIELDS`); afterwards a change to a locked field is
accepted only with a reason and is kept as an :class:`Amendment`. Every change
names the ``version`` it was made on and is written as one compare-and-set
(:mod:`experiments.versioning`), so an edit made on a stale page, or the slower of
two simultaneous ones, is refused with a conflict instead of silently overwriting.

The form is read by :mod:`experiments.plan_input`; the choices it offers come from
:mod:`experiments.form_choices`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlmodel import Session, or_, select
from sqlmodel.sql.expression import SelectOfScalar

from experiments.access import can, effective_role, require, visible_team_ids
from experiments.audit import diff_fields, record_event
from experiments.errors import Conflict, NotFound, ValidationFailed
from experiments.input_rules import (
    LONG_TEXT_MAX,
    NAME_MAX,
    SLUG_PATTERN,
    FieldErrors,
    parse_id,
    read_text,
)
from experiments.journeys import stage_choices, stage_label
from experiments.models import (
    EXPERIMENT_STATUSES,
    Amendment,
    DriverNode,
    Experiment,
    Team,
    User,
    Variant,
    utcnow,
)
from experiments.plan_input import (
    AMENDABLE_DATES,
    KEY_MAX,
    LOCKED_FIELDS,
    OPEN_FIELDS,
    PLAN_VALUES,
    PlanInput,
    default_variant_name,
    describe_variants,
    guardrails_text,
    read_key,
    read_plan,
    read_reason,
)
from experiments.planning import PlanningSigma, planning_sigma
from experiments.reference_rows import by_id as rows_by_id
from experiments.tree import ancestry, branch_ids, team_change_problem
from experiments.users import role_rank
from experiments.verdict_status import GuardrailStatus, VerdictStatus, latest_verdict_statuses
from experiments.versioning import check_version, compare_and_set, expected_version
from stats import plan_sample_sizes

#: Which lifecycle move leads from which status.
TRANSITIONS: dict[str, tuple[str, str]] = {
    "start": ("draft", "running"),
    "stop": ("running", "stopped"),
    "decide": ("stopped", "decided"),
}


# ---------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ExperimentFilters:
    """The registry's list filters; unreadable values are dropped, never an error."""

    status: str | None = None
    team_id: int | None = None
    owner_id: int | None = None
    node_id: int | None = None
    stage_id: int | None = None
    q: str = ""

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> ExperimentFilters:
        status = str(args.get("status") or "").strip()
        q = " ".join(str(args.get("q") or "").split())[:NAME_MAX]
        q = "".join(ch for ch in q if ch.isprintable())
        return cls(
            status=status if status in EXPERIMENT_STATUSES else None,
            team_id=parse_id(args.get("team_id")),
            owner_id=parse_id(args.get("owner_id")),
            node_id=parse_id(args.get("node_id")),
            stage_id=parse_id(args.get("stage_id")),
            q=q,
        )

    def as_args(self) -> dict[str, Any]:
        """The non-empty filters, as query-string arguments."""
        return {k: v for k, v in self.__dict__.items() if v not in (None, "")}


def list_experiments(session: Session, user: User, **filters: Any) -> list[Experiment]:
    """Experiments visible to ``user``, newest first, narrowed by ``filters`` (the
    keywords of :func:`experiments_query`)."""
    return list(session.exec(experiments_query(session, user, **filters)).all())


def experiments_query(
    session: Session,
    user: User,
    *,
    status: str | None = None,
    team_id: int | None = None,
    owner_id: int | None = None,
    node_id: int | None = None,
    stage_id: int | None = None,
    q: str | None = None,
) -> SelectOfScalar[Experiment]:
    """The statement of the experiments visible to ``user``, newest first, narrowed by the
    given filters (:func:`list_experiments` runs it; the list page pages it).

    ``node_id`` selects a branch: the node and everything under it. ``q`` matches
    the key or the name, case-insensitively.
    """
    query = select(Experiment).order_by(Experiment.created_at.desc(), Experiment.id.desc())
    teams = visible_team_ids(session, user)
    if teams is not None:
        query = query.where(or_(Experiment.team_id.is_(None), Experiment.team_id.in_(teams)))
    if status:
        query = query.where(Experiment.status == status)
    if team_id is not None:
        query = query.where(Experiment.team_id == team_id)
    if owner_id is not None:
        query = query.where(Experiment.owner_id == owner_id)
    if stage_id is not None:
        query = query.where(Experiment.stage_id == stage_id)
    if node_id is not None:
        query = query.where(Experiment.node_id.in_(branch_ids(session, node_id)))
    if q:
        query = query.where(
            or_(
                Experiment.key.icontains(q, autoescape=True),
                Experiment.name.icontains(q, autoescape=True),
            )
        )
    return query


def get_experiment(session: Session, user: User, key: str) -> Experiment:
    """The experiment with ``key``.

    Raises
    ------
    NotFound
        No such key, or it belongs to a team the user is not in.
    """
    if not isinstance(key, str) or len(key) > KEY_MAX or not SLUG_PATTERN.match(key):
        raise NotFound(f"no experiment {key!r}")
    experiment = session.exec(select(Experiment).where(Experiment.key == key)).first()
    if experiment is None:
        raise NotFound(f"no experiment {key!r}")
    teams = visible_team_ids(session, user)
    if teams is not None and experiment.team_id is not None and experiment.team_id not in teams:
        raise NotFound(f"no experiment {key!r}")
    return experiment


def variants_of(session: Session, experiment: Experiment) -> list[Variant]:
    return list(
        session.exec(
            select(Variant)
            .where(Variant.experiment_id == experiment.id)
            .order_by(Variant.position, Variant.id)
        ).all()
    )


def amendments_of(session: Session, experiment: Experiment) -> list[Amendment]:
    return list(
        session.exec(
            select(Amendment)
            .where(Amendment.experiment_id == experiment.id)
            .order_by(Amendment.created_at, Amendment.id)
        ).all()
    )


def allowed_moves(experiment: Experiment) -> list[str]:
    """The lifecycle moves valid from the experiment's status (``start``, ``stop``, ``decide``)."""
    return [move for move, (source, _) in TRANSITIONS.items() if source == experiment.status]


@dataclass(frozen=True)
class ResultsControls:
    """What the results section offers its reader besides the figures.

    ``may_upload``: the reader is an analyst (or above) on the experiment's team, so
    the upload and recompute controls show; ``variant_keys``: the values a CSV's
    ``variant`` column may hold, in plan order (the upload form lists them).
    """

    may_upload: bool
    variant_keys: list[str]


def results_controls(session: Session, user: User, experiment: Experiment) -> ResultsControls:
    """The results section's controls of ``experiment`` for ``user``."""
    return ResultsControls(
        may_upload=can(session, user, experiment.team_id, "analyst"),
        variant_keys=[v.key for v in variants_of(session, experiment)],
    )


@dataclass
class ExperimentPage:
    """Everything the experiment page shows besides the results section's figures."""

    experiment: Experiment
    variants: list[Variant]
    amendments: list[tuple[Amendment, User | None]]
    path: list[DriverNode]
    stage: str | None
    team: Team | None
    owner: User | None
    decided_by: User | None
    moves: list[str] = field(default_factory=list)
    can_edit: bool = False
    #: A decided experiment's decision may be reopened (with a reason) by this reader.
    can_reopen: bool = False
    controls: ResultsControls = field(default_factory=lambda: ResultsControls(False, []))

    @property
    def locked(self) -> bool:
        return self.experiment.status != "draft"


def experiment_page(session: Session, user: User, key: str) -> ExperimentPage:
    """The experiment ``key`` with what its page shows.

    Raises
    ------
    NotFound
        As :func:`get_experiment`.
    """
    experiment = get_experiment(session, user, key)
    role = effective_role(session, user, experiment.team_id)
    can_edit = role_rank(role) >= role_rank("experimenter")
    return ExperimentPage(
        experiment=experiment,
        variants=variants_of(session, experiment),
        amendments=[
            (a, session.get(User, a.actor_id) if a.actor_id else None)
            for a in amendments_of(session, experiment)
        ],
        path=ancestry(session, experiment.node_id),
        stage=stage_label(session, experiment.stage_id),
        team=session.get(Team, experiment.team_id) if experiment.team_id else None,
        owner=session.get(User, experiment.owner_id) if experiment.owner_id else None,
        decided_by=(
            session.get(User, experiment.decided_by_id) if experiment.decided_by_id else None
        ),
        moves=allowed_moves(experiment) if can_edit else [],
        can_edit=can_edit and experiment.status != "decided",
        can_reopen=can_edit and experiment.status == "decided",
        controls=results_controls(session, user, experiment),
    )


# ---------------------------------------------------------------------------
# Writing: every change is a compare-and-set on the experiment's version


def _current_plan(session: Session, experiment: Experiment) -> dict[str, Any]:
    variants = variants_of(session, experiment)
    control = next((v.key for v in variants if v.is_control), None)
    plan = {name: getattr(experiment, name) for name in (*OPEN_FIELDS, *PLAN_VALUES)}
    plan.update(
        variants=describe_variants(variants),
        control=control,
        sequential=bool(experiment.sequential),
        guardrails=guardrails_text(experiment.guardrails),
    )
    return plan


def _editable(session: Session, actor: User, key: str) -> Experiment:
    experiment = get_experiment(session, actor, key)
    require(session, actor, experiment.team_id, "experimenter")
    return experiment


def _seen_version(session: Session, experiment: Experiment, raw: Any) -> int:
    """The version the actor saw (``None``: the loaded row's), refused early when stale."""
    seen = expected_version(experiment, raw)
    check_version(
        session,
        experiment,
        seen,
        what=f"'{experiment.key}'",
        entity_type="experiment",
        entity_id=experiment.key,
    )
    return seen


def _write(session: Session, experiment: Experiment, seen: int, values: Mapping[str, Any]) -> None:
    """``UPDATE experiment SET …, version = version + 1 WHERE id = ? AND version = seen``."""
    compare_and_set(
        session,
        experiment,
        seen,
        {**values, "updated_at": utcnow()},
        what=f"'{experiment.key}'",
        entity_type="experiment",
        entity_id=experiment.key,
    )


def _write_variants(session: Session, experiment: Experiment, plan: PlanInput) -> None:
    existing = {v.key: v for v in variants_of(session, experiment)}
    wanted = {v.key for v in plan.variants}
    for key, row in existing.items():
        if key not in wanted:
            session.delete(row)
    session.flush()
    for position, variant in enumerate(plan.variants):
        row = existing.get(variant.key) or Variant(experiment_id=experiment.id, key=variant.key)
        row.name = variant.name or default_variant_name(variant.key)
        row.weight = variant.weight
        row.is_control = position == plan.control
        row.position = position
        session.add(row)
    session.flush()


def register_experiment(session: Session, data: Mapping[str, Any], *, actor: User) -> Experiment:
    """Register a draft experiment with its variants.

    ``data`` holds ``key, name, node_id, stage_id, team_id, owner_id, hypothesis,
    mde, alpha, power, planned_start, planned_end`` (strings from a form, or typed
    values), ``variants`` (a list of ``{key, name, weight}``) and ``control`` (the
    index of the control in ``variants``).

    Raises
    ------
    ValidationFailed
        Per field (variant rows as ``variants.<i>.<field>``); nothing is stored.
    """
    errors = FieldErrors()
    key = read_key(session, data, errors)
    plan = read_plan(session, data, actor=actor, errors=errors)
    errors.raise_if_any()
    # The plan states the sigma it was sized with and its source (re-measured at start).
    found = planning_sigma(session, actor, plan.values["node_id"], plan.values["stage_id"])
    experiment = Experiment(
        key=key, created_by_id=actor.id, sigma=found.sigma, sigma_source=found.source, **plan.values
    )
    session.add(experiment)
    session.flush()
    _write_variants(session, experiment, plan)
    record_event(
        session,
        "experiment.create",
        actor=actor,
        entity_type="experiment",
        entity_id=experiment.key,
        team_id=experiment.team_id,
        diff=diff_fields({}, {"key": key, **plan.plan()}),
    )
    return experiment


def _record_amendments(
    session: Session,
    experiment: Experiment,
    names: Sequence[str],
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    reason: str,
    actor: User,
) -> list[Amendment]:
    amendments = []
    for name in names:
        amendment = Amendment(
            experiment_id=experiment.id,
            field=name,
            old_value=_shown(before.get(name)),
            new_value=_shown(after.get(name)),
            reason=reason,
            actor_id=actor.id,
        )
        session.add(amendment)
        amendments.append(amendment)
    session.flush()
    return amendments


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _apply_plan(
    session: Session,
    experiment: Experiment,
    plan: PlanInput,
    *,
    actor: User,
    reason: str | None,
    seen: int,
) -> tuple[dict[str, list[Any]], list[Amendment]]:
    """Write a checked plan made on version ``seen``.

    After the start a locked change needs ``reason`` and becomes an amendment per
    field; a planned date moved with a reason is kept as an amendment too. Every
    reason given after the start is in the audit diff.
    """
    before = _current_plan(session, experiment)
    after = plan.plan()
    changes = diff_fields(before, after)
    started = experiment.status != "draft"
    locked = [name for name in LOCKED_FIELDS if name in changes]
    if locked and started:
        old_keys = sorted(v.key for v in variants_of(session, experiment))
        if sorted(v.key for v in plan.variants) != old_keys:
            raise ValidationFailed(
                {
                    "variants": (
                        "variant keys cannot be added, removed or renamed after the start "
                        f"(uploaded data refers to them: {', '.join(old_keys)}); amend their "
                        "weights, names or the control instead"
                    )
                }
            )
        if not reason:
            raise ValidationFailed(
                {
                    "reason": (
                        f"the plan is locked since the start; changing {', '.join(locked)} needs a "
                        "reason, kept as an amendment"
                    )
                }
            )
    if not changes:
        return {}, []
    _write(session, experiment, seen, plan.values)
    _write_variants(session, experiment, plan)
    amended = [*locked, *(n for n in AMENDABLE_DATES if n in changes and reason)] if started else []
    amendments = (
        _record_amendments(session, experiment, amended, before, after, reason or "", actor)
        if amended
        else []
    )
    open_changes = {k: v for k, v in changes.items() if k not in amended}
    if open_changes:
        if reason and started:
            open_changes["reason"] = [None, reason]
        record_event(
            session,
            "experiment.update",
            actor=actor,
            entity_type="experiment",
            entity_id=experiment.key,
            team_id=experiment.team_id,
            diff=open_changes,
        )
    if amendments:
        diff = {k: v for k, v in changes.items() if k in amended}
        diff["reason"] = [None, reason]
        record_event(
            session,
            "experiment.amend",
            actor=actor,
            entity_type="experiment",
            entity_id=experiment.key,
            team_id=experiment.team_id,
            diff=diff,
        )
    return changes, amendments


def update_experiment(
    session: Session, key: str, data: Mapping[str, Any], *, actor: User
) -> Experiment:
    """Edit an experiment from its full form (``data`` as for :func:`register_experiment`).

    A draft changes freely. Once started, the open fields still change freely, but
    a change to a locked field needs ``data['reason']`` and is stored as an
    amendment per field (a planned date moved with a reason, too).
    ``data['version']`` is the version the form was made on: a form must send it
    (``""`` is refused); only a caller without a form leaves it out.

    Raises
    ------
    NotFound, PermissionDenied
        The actor may not see, or not edit, the experiment.
    StaleVersion
        Somebody saved a newer version first (checked again in the SQL write).
    ValidationFailed
        Per field; ``version`` missing or not a number; ``reason`` when a locked
        field changed without one; ``""`` for a decided experiment (closed).
    """
    experiment = _editable(session, actor, key)
    seen = _seen_version(session, experiment, data.get("version") if "version" in data else None)
    if experiment.status == "decided":
        raise ValidationFailed(
            {"": "this experiment is decided and closed; its plan can no longer change"}
        )
    errors = FieldErrors()
    plan = read_plan(
        session, data, actor=actor, errors=errors, default_analysis=_analysis_of(experiment)
    )
    if (
        experiment.status != "draft"
        and "analysis" not in errors
        and plan.values["sequential"] != bool(experiment.sequential)
    ):
        errors.add(
            "analysis",
            "is locked since the start (sequential or fixed horizon is "
            "chosen before any data is read)",
        )
    if "team_id" not in errors and (
        problem := team_change_problem(session, actor, experiment.team_id, plan.values["team_id"])
    ):
        errors.add("team_id", problem)
    reason = read_reason(data, errors)
    errors.raise_if_any()
    _apply_plan(session, experiment, plan, actor=actor, reason=reason or None, seen=seen)
    return experiment


def form_values(session: Session, experiment: Experiment) -> dict[str, Any]:
    """The experiment as its edit form's values (the inverse of :func:`read_plan`)."""
    variants = variants_of(session, experiment)
    return {
        "key": experiment.key,
        **{name: getattr(experiment, name) for name in (*OPEN_FIELDS, *PLAN_VALUES)},
        "variants": [{"key": v.key, "name": v.name, "weight": v.weight} for v in variants],
        "control": str(next((i for i, v in enumerate(variants) if v.is_control), "")),
        "analysis": _analysis_of(experiment),
        "guardrails": guardrails_text(experiment.guardrails),
        "version": experiment.version,
    }


def _analysis_of(experiment: Experiment) -> str:
    return "sequential" if experiment.sequential else "fixed"


def amend_experiment(
    session: Session,
    key: str,
    changes: Mapping[str, Any],
    *,
    reason: str,
    actor: User,
    expected_version: Any = None,
) -> list[Amendment]:
    """Change locked plan fields of a started experiment, recording one amendment per field.

    ``changes`` maps locked fields (``hypothesis``, ``mde``, ``alpha``, ``power``,
    ``primary_metric``, ``variants``, ``control``) to new values.

    Raises
    ------
    NotFound, PermissionDenied, StaleVersion
        As :func:`update_experiment`.
    ValidationFailed
        A draft (edit it instead), a decided experiment, an unknown or open field,
        a bad value, a missing reason, or no actual change.
    """
    experiment = _editable(session, actor, key)
    seen = _seen_version(session, experiment, expected_version)
    if experiment.status == "draft":
        raise ValidationFailed({"": "a draft has no locked plan yet: edit it directly"})
    if experiment.status == "decided":
        raise ValidationFailed(
            {"": "this experiment is decided and closed; its plan can no longer change"}
        )
    unknown = [name for name in changes if name not in LOCKED_FIELDS]
    if unknown:
        raise ValidationFailed(
            dict.fromkeys(unknown, "is not a locked plan field; edit it on the experiment form")
        )
    data = {**form_values(session, experiment), **changes}
    errors = FieldErrors()
    plan = read_plan(
        session, data, actor=actor, errors=errors, default_analysis=_analysis_of(experiment)
    )
    text = read_text(
        {"reason": reason},
        "reason",
        errors,
        max_length=LONG_TEXT_MAX,
        required=True,
        multiline=True,
    )
    errors.raise_if_any()
    _changed, amendments = _apply_plan(
        session, experiment, plan, actor=actor, reason=text, seen=seen
    )
    if not amendments:
        raise ValidationFailed(
            {"": "nothing in the locked plan changed, so there is nothing to amend"}
        )
    return amendments


_DONE = {"start": "started", "stop": "stopped", "decide": "decided"}


def _check_move(experiment: Experiment, move: str) -> str:
    source, target = TRANSITIONS[move]
    if experiment.status != source:
        raise Conflict(
            f"'{experiment.key}' is {experiment.status}; only a {source} experiment "
            f"can be {_DONE[move]}. Reload the page to see its current state."
        )
    return target


def _transition(
    session: Session,
    key: str,
    move: str,
    *,
    actor: User,
    expected_version: Any,
    values: Mapping[str, Any],
) -> Experiment:
    """One lifecycle move as one compare-and-set: status and stamps, version + 1."""
    experiment = _editable(session, actor, key)
    seen = _seen_version(session, experiment, expected_version)
    target = _check_move(experiment, move)
    _write(session, experiment, seen, {"status": target, **values})
    return experiment


@dataclass(frozen=True)
class LockedSizes:
    """The sigma and the accounts per arm a plan is locked with at its start."""

    sigma: float
    source: str
    required_n: dict[str, int | None]


def _locked_sizes(session: Session, actor: User, experiment: Experiment) -> LockedSizes:
    """Size every arm (its weight, alpha/k) on the newest measured sigma of the branch or
    stage; else the sigma the plan was registered with; else the flagged assumption."""
    found = planning_sigma(session, actor, experiment.node_id, experiment.stage_id)
    if not found.measured and experiment.sigma is not None:
        found = PlanningSigma(float(experiment.sigma), experiment.sigma_source or "given", True)
    variants = variants_of(session, experiment)
    control = next((v.key for v in variants if v.is_control), variants[0].key if variants else "")
    sizes = plan_sample_sizes(
        float(experiment.mde),
        found.sigma,
        control=control,
        weights={v.key: float(v.weight) for v in variants},
        alpha=float(experiment.alpha),
        power=float(experiment.power),
    )
    return LockedSizes(found.sigma, found.source, dict(sizes.required_n))


def start_experiment(
    session: Session, key: str, *, actor: User, expected_version: Any = None
) -> Experiment:
    """Start a draft: it runs and its analysis plan is locked from now on.

    Raises
    ------
    NotFound, PermissionDenied
        The actor may not see, or not edit, the experiment.
    ValidationFailed
        ``version``: given but blank or not a number.
    Conflict
        Stale version (:class:`StaleVersion`), or the experiment is not a draft.
    """
    experiment = _editable(session, actor, key)
    locked = _locked_sizes(session, actor, experiment)
    experiment = _transition(
        session,
        key,
        "start",
        actor=actor,
        expected_version=expected_version,
        values={"started_at": utcnow(), "sigma": locked.sigma, "sigma_source": locked.source},
    )
    for variant in variants_of(session, experiment):
        variant.required_n = locked.required_n.get(variant.key)
        session.add(variant)
    session.flush()
    record_event(
        session,
        "experiment.start",
        actor=actor,
        entity_type="experiment",
        entity_id=experiment.key,
        team_id=experiment.team_id,
        diff={
            "status": ["draft", "running"],
            "locked_plan": [
                None,
                {
                    **_current_plan(session, experiment),
                    "sigma": locked.sigma,
                    "sigma_source": locked.source,
                    "required_n": locked.required_n,
                },
            ],
        },
    )
    return experiment


def stop_experiment(
    session: Session, key: str, *, actor: User, expected_version: Any = None
) -> Experiment:
    """Stop a running experiment (enrolment ends; the decision comes next).

    Raises
    ------
    NotFound, PermissionDenied, ValidationFailed, Conflict
        As :func:`start_experiment` (it must be running).
    """
    experiment = _transition(
        session,
        key,
        "stop",
        actor=actor,
        expected_version=expected_version,
        values={"stopped_at": utcnow()},
    )
    record_event(
        session,
        "experiment.stop",
        actor=actor,
        entity_type="experiment",
        entity_id=experiment.key,
        team_id=experiment.team_id,
        diff={"status": ["running", "stopped"]},
    )
    return experiment


def decide_experiment(
    session: Session, key: str, data: Mapping[str, Any], *, actor: User, ip: str = ""
) -> Experiment:
    """Record the decision (``ship``, ``iterate`` or ``kill``) and its rationale on a stopped
    experiment, through the one decision service (:func:`experiments.decisions.decide`; a
    ship also names the shipped variant, the rollout share and the eligible base).
    ``data['version']`` as for :func:`update_experiment`.

    Raises
    ------
    NotFound, PermissionDenied, Conflict
        As :func:`start_experiment` (it must be stopped).
    ValidationFailed
        As :func:`experiments.decisions.read_decision`; ``version``.
    """
    from experiments.decisions import SOURCE_PAGE, decide

    experiment = _editable(session, actor, key)
    _seen_version(session, experiment, data.get("version") if "version" in data else None)
    _check_move(experiment, "decide")
    return decide(session, experiment, data, actor=actor, source=SOURCE_PAGE,
                  expected=data.get("version") if "version" in data else None, ip=ip)


# ---------------------------------------------------------------------------
# The list's rows


@dataclass(frozen=True)
class ExperimentRow:
    """One line of the registry list."""

    experiment: Experiment
    branch: str | None
    stage: str | None
    owner: User | None
    team: Team | None
    verdict: str | None
    #: The verdict with its guardrail status (issue 15: "win — guardrail failed: GRR").
    verdict_status: VerdictStatus | None = None

    @property
    def guardrail(self) -> GuardrailStatus | None:
        """The guardrail status shown beside the verdict (``None`` without guardrails)."""
        return self.verdict_status.guardrail if self.verdict_status else None


def registry_rows(session: Session, experiments: Sequence[Experiment], *,
                  stages: Sequence[tuple[int, str]] | None = None) -> list[ExperimentRow]:
    """The registry's lines for ``experiments`` (names looked up once, not per row);
    ``stages`` are :func:`stage_choices` when the caller has already read them."""
    nodes = {node_id: node.name for node_id, node in rows_by_id(session, DriverNode).items()}
    stages = dict(stage_choices(session) if stages is None else stages)
    users = rows_by_id(session, User)  # shared with the page's other reads of these tables
    teams = rows_by_id(session, Team)
    verdicts = latest_verdict_statuses(session, [e.id for e in experiments])
    return [
        ExperimentRow(
            e,
            nodes.get(e.node_id),
            stages.get(e.stage_id),
            users.get(e.owner_id),
            teams.get(e.team_id),
            verdicts[e.id].verdict if e.id in verdicts else None,
            verdicts.get(e.id),
        )
        for e in experiments
    ]
