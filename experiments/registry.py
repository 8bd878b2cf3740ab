"""The experiment registry: registering, listing, editing and the lifecycle.

An experiment moves ``draft → running → stopped → decided``. Starting it locks the
analysis plan (:data:`LOCKED_FIELDS`); afterwards a change to a locked field is
accepted only with a reason and is kept as an :class:`Amendment`. Every change
names the ``version`` it was made on (optimistic locking), so an edit made on a
stale page is refused with :class:`Conflict` instead of silently overwriting.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, or_, select

from experiments.access import check_team_choice, effective_role, require, visible_team_ids
from experiments.audit import diff_fields, record_event
from experiments.errors import Conflict, NotFound, ValidationFailed
from experiments.input_rules import (
    LONG_TEXT_MAX,
    NAME_MAX,
    SLUG_PATTERN,
    FieldErrors,
    parse_id,
    read_choice,
    read_date,
    read_id,
    read_number,
    read_text,
)
from experiments.journeys import stage_label
from experiments.models import (
    DECISIONS,
    EXPERIMENT_STATUSES,
    Amendment,
    DriverNode,
    Experiment,
    JourneyStage,
    Team,
    User,
    Variant,
    utcnow,
)
from experiments.tree import ancestry, branch_ids, get_node
from experiments.users import role_rank

#: The analysis plan, frozen at the start; later changes become amendments.
LOCKED_FIELDS: tuple[str, ...] = ("hypothesis", "variants", "control", "mde", "alpha", "power", "primary_metric")
#: Fields that stay freely editable while the experiment runs.
OPEN_FIELDS: tuple[str, ...] = ("name", "node_id", "stage_id", "team_id", "owner_id", "planned_start", "planned_end")
PRIMARY_METRICS: tuple[str, ...] = ("nrr",)
KEY_MAX = 64
MIN_VARIANTS = 2
MAX_VARIANTS = 10
MAX_WEIGHT = 1_000_000
#: Keys that would collide with the registry's own pages (/experiments/new, ...).
RESERVED_KEYS = frozenset({"new", "sample-size-hint", "variant-rows"})
#: Which lifecycle move leads from which status.
TRANSITIONS: dict[str, tuple[str, str]] = {
    "start": ("draft", "running"),
    "stop": ("running", "stopped"),
    "decide": ("stopped", "decided"),
}
VARIANT_KEY_HELP = "use lowercase letters, digits, - and _ (e.g. treatment-a)"


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


def list_experiments(session: Session, user: User, *, status: str | None = None, team_id: int | None = None,
                     owner_id: int | None = None, node_id: int | None = None, stage_id: int | None = None,
                     q: str | None = None) -> list[Experiment]:
    """Experiments visible to ``user``, newest first, narrowed by the given filters.

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
        query = query.where(or_(Experiment.key.icontains(q, autoescape=True),
                                Experiment.name.icontains(q, autoescape=True)))
    return list(session.exec(query).all())


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
    return list(session.exec(select(Variant).where(Variant.experiment_id == experiment.id)
                             .order_by(Variant.position, Variant.id)).all())


def amendments_of(session: Session, experiment: Experiment) -> list[Amendment]:
    return list(session.exec(select(Amendment).where(Amendment.experiment_id == experiment.id)
                             .order_by(Amendment.created_at, Amendment.id)).all())


def allowed_moves(experiment: Experiment) -> list[str]:
    """The lifecycle moves valid from the experiment's status (``start``, ``stop``, ``decide``)."""
    return [move for move, (source, _) in TRANSITIONS.items() if source == experiment.status]


@dataclass
class ExperimentPage:
    """Everything the experiment page shows besides the results section."""

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
        amendments=[(a, session.get(User, a.actor_id) if a.actor_id else None) for a in amendments_of(session, experiment)],
        path=ancestry(session, experiment.node_id),
        stage=stage_label(session, experiment.stage_id),
        team=session.get(Team, experiment.team_id) if experiment.team_id else None,
        owner=session.get(User, experiment.owner_id) if experiment.owner_id else None,
        decided_by=session.get(User, experiment.decided_by_id) if experiment.decided_by_id else None,
        moves=allowed_moves(experiment) if can_edit else [],
        can_edit=can_edit and experiment.status != "decided",
    )


# ---------------------------------------------------------------------------
# Validating a plan


@dataclass(frozen=True)
class VariantInput:
    key: str
    name: str
    weight: float


@dataclass
class PlanInput:
    """A validated experiment form: the plan and the open fields."""

    values: dict[str, Any]
    variants: list[VariantInput]
    control: int

    def plan(self) -> dict[str, Any]:
        """The comparable plan: every field as the audit log and amendments show it."""
        return {**self.values, "variants": describe_variants(self.variants),
                "control": self.variants[self.control].key}


def describe_variants(variants: Sequence[VariantInput | Variant]) -> str:
    """``control: weight 1; treatment: weight 2`` (names in brackets when they differ from the key)."""
    parts = []
    for v in variants:
        name = f" ({v.name})" if v.name and v.name != v.key else ""
        parts.append(f"{v.key}{name}: weight {v.weight:g}")
    return "; ".join(parts)


def _current_plan(session: Session, experiment: Experiment) -> dict[str, Any]:
    variants = variants_of(session, experiment)
    control = next((v.key for v in variants if v.is_control), None)
    plan = {name: getattr(experiment, name) for name in (*OPEN_FIELDS, "hypothesis", "mde", "alpha", "power", "primary_metric")}
    plan.update(variants=describe_variants(variants), control=control)
    return plan


def read_variants(data: Mapping[str, Any], errors: FieldErrors) -> tuple[list[VariantInput], int]:
    """The variant rows and the index of the control row (``-1`` when none is valid)."""
    rows = data.get("variants") or []
    if not isinstance(rows, Sequence) or isinstance(rows, str):
        errors.add("variants", "must be a list of variants")
        rows = []
    if len(rows) < MIN_VARIANTS:
        errors.add("variants", f"add at least {MIN_VARIANTS} variants: a control and a treatment")
    if len(rows) > MAX_VARIANTS:
        errors.add("variants", f"at most {MAX_VARIANTS} variants")
    variants: list[VariantInput] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows[:MAX_VARIANTS]):
        row = row if isinstance(row, Mapping) else {}
        prefix = f"variants.{index}."
        fields = {"key": row.get("key"), "name": row.get("name"), "weight": row.get("weight")}
        local = FieldErrors()
        key = read_text(fields, "key", local, max_length=KEY_MAX, required=True)
        if "key" not in local and not _variant_key_ok(key):
            local.add("key", VARIANT_KEY_HELP)
        if "key" not in local:
            if key in seen:
                local.add("key", f"'{key}' is already the key of variant {seen[key] + 1}; keys must differ")
            seen.setdefault(key, index)
        name = read_text(fields, "name", local, max_length=NAME_MAX) or default_variant_name(key)
        weight = read_number(fields, "weight", local, required=True, example="1")
        if weight is not None and weight <= 0:
            local.add("weight", "must be greater than 0")
        elif weight is not None and weight > MAX_WEIGHT:
            local.add("weight", f"must be at most {MAX_WEIGHT:,}")
        for name_, message in local.items():
            errors.add(prefix + name_, message)
        variants.append(VariantInput(key=key, name=name, weight=weight if weight is not None else 0.0))
    control = _read_control(data, len(variants), errors)
    return variants, control


def default_variant_name(key: str) -> str:
    """``treatment-a`` → ``Treatment A``."""
    return key.replace("-", " ").replace("_", " ").title()


def _variant_key_ok(key: str) -> bool:
    return bool(key) and key[0].isascii() and key[0].isalnum() and all(
        ch.isascii() and (ch.islower() or ch.isdigit() or ch in "-_") for ch in key)


def _read_control(data: Mapping[str, Any], count: int, errors: FieldErrors) -> int:
    raw = data.get("control")
    choices = raw if isinstance(raw, list | tuple) else ([] if raw is None or str(raw).strip() == "" else [raw])
    if not choices:
        errors.add("control", "mark exactly one variant as the control")
        return -1
    if len(choices) > 1:
        errors.add("control", "mark exactly one variant as the control, not several")
        return -1
    text = str(choices[0]).strip()
    if not text.isascii() or not text.isdigit() or int(text) >= count:
        errors.add("control", "mark exactly one of the listed variants as the control")
        return -1
    return int(text)


def read_plan(session: Session, data: Mapping[str, Any], *, actor: User, errors: FieldErrors) -> PlanInput:
    """Check an experiment form. Every problem is added to ``errors`` under its field."""
    values: dict[str, Any] = {}
    values["name"] = read_text(data, "name", errors, max_length=NAME_MAX, required=True)
    values["hypothesis"] = read_text(data, "hypothesis", errors, max_length=LONG_TEXT_MAX, required=True,
                                     multiline=True)
    values["primary_metric"] = read_choice(data, "primary_metric", errors, PRIMARY_METRICS, default="nrr")

    node_id = read_id(data, "node_id", errors, required=True, what="driver node")
    if node_id is not None:
        try:
            get_node(session, actor, node_id, "viewer")
        except NotFound:
            errors.add("node_id", "unknown driver node")
    values["node_id"] = node_id

    stage_id = read_id(data, "stage_id", errors, required=True, what="journey stage")
    if stage_id is not None and session.get(JourneyStage, stage_id) is None:
        errors.add("stage_id", "unknown journey stage")
    values["stage_id"] = stage_id

    team_id = read_id(data, "team_id", errors, what="team")
    if team_id is not None:
        problem = check_team_choice(session, actor, team_id, needed="experimenter", purpose="run its experiments")
        if problem:
            errors.add("team_id", problem)
    elif role_rank(effective_role(session, actor, None)) < role_rank("experimenter"):
        errors.add("team_id", "choose one of your teams (an experiment without a team needs the global experimenter role)")
    values["team_id"] = team_id

    owner_id = read_id(data, "owner_id", errors, required=True, what="owner")
    if owner_id is not None:
        owner = session.get(User, owner_id)
        if owner is None or not owner.is_active:
            errors.add("owner_id", "unknown owner")
        elif team_id is not None and "team_id" not in errors and effective_role(session, owner, team_id) is None:
            errors.add("owner_id", "the owner must be a member of the experiment's team")
    values["owner_id"] = owner_id

    mde = read_number(data, "mde", errors, required=True, example="0.02")
    if mde is not None and mde <= 0:
        errors.add("mde", "must be greater than 0 (an absolute NRR difference, e.g. 0.02 = 2 points)")
    elif mde is not None and mde >= 1:
        errors.add("mde", "must be below 1: enter a fraction, e.g. 0.02 for 2 NRR points")
    values["mde"] = mde

    alpha = read_number(data, "alpha", errors, required=True, example="0.05")
    if alpha is not None and not 0 < alpha <= 0.5:
        errors.add("alpha", "must be greater than 0 and at most 0.5 (e.g. 0.05)")
    values["alpha"] = alpha

    power = read_number(data, "power", errors, required=True, example="0.8")
    if power is not None and not 0.5 <= power <= 0.99:
        errors.add("power", "must be between 0.5 and 0.99 (e.g. 0.8)")
    values["power"] = power

    values["planned_start"] = read_date(data, "planned_start", errors)
    values["planned_end"] = read_date(data, "planned_end", errors)
    if values["planned_start"] and values["planned_end"] and values["planned_end"] < values["planned_start"]:
        errors.add("planned_end", "must be on or after the planned start")

    variants, control = read_variants(data, errors)
    return PlanInput(values=values, variants=variants, control=control)


def _read_key(session: Session, data: Mapping[str, Any], errors: FieldErrors) -> str:
    key = read_text(data, "key", errors, max_length=KEY_MAX, required=True)
    if "key" in errors:
        return key
    if not SLUG_PATTERN.match(key):
        errors.add("key", "use lowercase letters, digits and single hyphens, e.g. onboarding-checklist")
    elif key in RESERVED_KEYS:
        errors.add("key", f"'{key}' is reserved by the registry's own pages; choose another key")
    elif session.exec(select(Experiment.id).where(Experiment.key == key)).first() is not None:
        errors.add("key", f"'{key}' is already the key of another experiment")
    return key


# ---------------------------------------------------------------------------
# Writing


def _check_version(experiment: Experiment, expected: Any) -> None:
    if expected is None:
        return
    version = parse_id(expected)
    if version is None:
        raise Conflict("The form did not say which version of the experiment it was made on. "
                       "Reload the page and make the change again.")
    if version != experiment.version:
        raise Conflict(f"'{experiment.key}' was changed by someone else after you opened this page "
                       f"(you saw version {version}, it is now version {experiment.version}). "
                       "Nothing was saved: reload the page to see the current plan and make your change again.")


def _editable(session: Session, actor: User, key: str) -> Experiment:
    experiment = get_experiment(session, actor, key)
    require(session, actor, experiment.team_id, "experimenter")
    return experiment


def _bump(experiment: Experiment) -> None:
    experiment.version += 1
    experiment.updated_at = utcnow()


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
    key = _read_key(session, data, errors)
    plan = read_plan(session, data, actor=actor, errors=errors)
    errors.raise_if_any()
    experiment = Experiment(key=key, created_by_id=actor.id, **plan.values)
    session.add(experiment)
    session.flush()
    _write_variants(session, experiment, plan)
    record_event(session, "experiment.create", actor=actor, entity_type="experiment", entity_id=experiment.key,
                 team_id=experiment.team_id, diff=diff_fields({}, {"key": key, **plan.plan()}))
    return experiment


def _record_amendments(session: Session, experiment: Experiment, before: Mapping[str, Any],
                       after: Mapping[str, Any], reason: str, actor: User) -> list[Amendment]:
    amendments = []
    for name in LOCKED_FIELDS:
        if before.get(name) != after.get(name):
            amendment = Amendment(experiment_id=experiment.id, field=name, old_value=_shown(before.get(name)),
                                  new_value=_shown(after.get(name)), reason=reason, actor_id=actor.id)
            session.add(amendment)
            amendments.append(amendment)
    session.flush()
    return amendments


def _shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _apply_plan(session: Session, experiment: Experiment, plan: PlanInput, *, actor: User,
                reason: str | None) -> tuple[dict[str, list[Any]], list[Amendment]]:
    """Write a checked plan; after the start, locked changes need ``reason`` and become amendments."""
    before = _current_plan(session, experiment)
    after = plan.plan()
    changes = diff_fields(before, after)
    locked = [name for name in LOCKED_FIELDS if name in changes]
    amendments: list[Amendment] = []
    if locked and experiment.status != "draft":
        old_keys = sorted(v.key for v in variants_of(session, experiment))
        if sorted(v.key for v in plan.variants) != old_keys:
            raise ValidationFailed({"variants": (
                "variant keys cannot be added, removed or renamed after the start (uploaded data refers "
                f"to them: {', '.join(old_keys)}); amend their weights, names or the control instead")})
        if not reason:
            raise ValidationFailed({"reason": (
                f"the plan is locked since the start; changing {', '.join(locked)} needs a reason, "
                "kept as an amendment")})
        amendments = _record_amendments(session, experiment, before, after, reason, actor)
    if not changes:
        return {}, []
    for name, value in plan.values.items():
        setattr(experiment, name, value)
    _write_variants(session, experiment, plan)
    _bump(experiment)
    session.add(experiment)
    session.flush()
    open_changes = {k: v for k, v in changes.items() if k not in LOCKED_FIELDS or experiment.status == "draft"}
    if open_changes:
        record_event(session, "experiment.update", actor=actor, entity_type="experiment",
                     entity_id=experiment.key, team_id=experiment.team_id, diff=open_changes)
    if amendments:
        diff = {k: v for k, v in changes.items() if k in locked}
        diff["reason"] = [None, reason]
        record_event(session, "experiment.amend", actor=actor, entity_type="experiment",
                     entity_id=experiment.key, team_id=experiment.team_id, diff=diff)
    return changes, amendments


def _read_reason(data: Mapping[str, Any], errors: FieldErrors) -> str:
    return read_text(data, "reason", errors, max_length=LONG_TEXT_MAX, multiline=True)


def update_experiment(session: Session, key: str, data: Mapping[str, Any], *, actor: User) -> Experiment:
    """Edit an experiment from its full form (``data`` as for :func:`register_experiment`).

    A draft changes freely. Once started, the open fields still change freely, but
    a change to a locked field needs ``data['reason']`` and is stored as an
    amendment per field. ``data['version']`` (when present) must be the version
    the form was made on.

    Raises
    ------
    NotFound, PermissionDenied
        The actor may not see, or not edit, the experiment.
    Conflict
        The version is stale.
    ValidationFailed
        Per field; also ``reason`` when a locked field changed without one, and
        ``""`` for a decided experiment (closed).
    """
    experiment = _editable(session, actor, key)
    _check_version(experiment, data.get("version") if "version" in data else None)
    if experiment.status == "decided":
        raise ValidationFailed({"": "this experiment is decided and closed; its plan can no longer change"})
    errors = FieldErrors()
    plan = read_plan(session, data, actor=actor, errors=errors)
    reason = _read_reason(data, errors)
    errors.raise_if_any()
    _apply_plan(session, experiment, plan, actor=actor, reason=reason or None)
    return experiment


def form_values(session: Session, experiment: Experiment) -> dict[str, Any]:
    """The experiment as its edit form's values (the inverse of :func:`read_plan`)."""
    variants = variants_of(session, experiment)
    return {
        "key": experiment.key,
        **{name: getattr(experiment, name) for name in (*OPEN_FIELDS, "hypothesis", "mde", "alpha", "power",
                                                        "primary_metric")},
        "variants": [{"key": v.key, "name": v.name, "weight": v.weight} for v in variants],
        "control": str(next((i for i, v in enumerate(variants) if v.is_control), "")),
        "version": experiment.version,
    }


def amend_experiment(session: Session, key: str, changes: Mapping[str, Any], *, reason: str, actor: User,
                     expected_version: Any = None) -> list[Amendment]:
    """Change locked plan fields of a started experiment, recording one amendment per field.

    ``changes`` maps locked fields (``hypothesis``, ``mde``, ``alpha``, ``power``,
    ``primary_metric``, ``variants``, ``control``) to new values.

    Raises
    ------
    NotFound, PermissionDenied, Conflict
        As :func:`update_experiment`.
    ValidationFailed
        A draft (edit it instead), a decided experiment, an unknown or open field,
        a bad value, a missing reason, or no actual change.
    """
    experiment = _editable(session, actor, key)
    _check_version(experiment, expected_version)
    if experiment.status == "draft":
        raise ValidationFailed({"": "a draft has no locked plan yet: edit it directly"})
    if experiment.status == "decided":
        raise ValidationFailed({"": "this experiment is decided and closed; its plan can no longer change"})
    unknown = [name for name in changes if name not in LOCKED_FIELDS]
    if unknown:
        raise ValidationFailed(dict.fromkeys(unknown, "is not a locked plan field; edit it on the experiment form"))
    data = {**form_values(session, experiment), **changes}
    errors = FieldErrors()
    plan = read_plan(session, data, actor=actor, errors=errors)
    text = read_text({"reason": reason}, "reason", errors, max_length=LONG_TEXT_MAX, required=True, multiline=True)
    errors.raise_if_any()
    _changed, amendments = _apply_plan(session, experiment, plan, actor=actor, reason=text)
    if not amendments:
        raise ValidationFailed({"": "nothing in the locked plan changed, so there is nothing to amend"})
    return amendments


_DONE = {"start": "started", "stop": "stopped", "decide": "decided"}


def _check_move(experiment: Experiment, move: str) -> str:
    source, target = TRANSITIONS[move]
    if experiment.status != source:
        raise Conflict(f"'{experiment.key}' is {experiment.status}; only a {source} experiment can be "
                       f"{_DONE[move]}. Reload the page to see its current state.")
    return target


def _transition(session: Session, key: str, move: str, *, actor: User, expected_version: Any) -> Experiment:
    experiment = _editable(session, actor, key)
    _check_version(experiment, expected_version)
    experiment.status = _check_move(experiment, move)
    return experiment


def start_experiment(session: Session, key: str, *, actor: User, expected_version: Any = None) -> Experiment:
    """Start a draft: it runs and its analysis plan is locked from now on.

    Raises
    ------
    NotFound, PermissionDenied
        The actor may not see, or not edit, the experiment.
    Conflict
        Stale version, or the experiment is not a draft.
    """
    experiment = _transition(session, key, "start", actor=actor, expected_version=expected_version)
    experiment.started_at = utcnow()
    _bump(experiment)
    session.add(experiment)
    session.flush()
    record_event(session, "experiment.start", actor=actor, entity_type="experiment", entity_id=experiment.key,
                 team_id=experiment.team_id,
                 diff={"status": ["draft", "running"], "locked_plan": [None, _current_plan(session, experiment)]})
    return experiment


def stop_experiment(session: Session, key: str, *, actor: User, expected_version: Any = None) -> Experiment:
    """Stop a running experiment (enrolment ends; the decision comes next).

    Raises
    ------
    NotFound, PermissionDenied, Conflict
        As :func:`start_experiment` (it must be running).
    """
    experiment = _transition(session, key, "stop", actor=actor, expected_version=expected_version)
    experiment.stopped_at = utcnow()
    _bump(experiment)
    session.add(experiment)
    session.flush()
    record_event(session, "experiment.stop", actor=actor, entity_type="experiment", entity_id=experiment.key,
                 team_id=experiment.team_id, diff={"status": ["running", "stopped"]})
    return experiment


def decide_experiment(session: Session, key: str, data: Mapping[str, Any], *, actor: User) -> Experiment:
    """Record the decision (``ship``, ``iterate`` or ``kill``) and its rationale on a stopped experiment.

    Raises
    ------
    NotFound, PermissionDenied, Conflict
        As :func:`start_experiment` (it must be stopped).
    ValidationFailed
        ``decision`` unknown or missing; ``rationale`` missing or too long.
    """
    experiment = _editable(session, actor, key)
    _check_version(experiment, data.get("version") if "version" in data else None)
    target = _check_move(experiment, "decide")
    errors = FieldErrors()
    decision = read_choice(data, "decision", errors, DECISIONS)
    rationale = read_text(data, "rationale", errors, max_length=LONG_TEXT_MAX, required=True, multiline=True)
    errors.raise_if_any()
    experiment.status = target
    experiment.decision = decision
    experiment.decision_rationale = rationale
    experiment.decided_at = utcnow()
    experiment.decided_by_id = actor.id
    _bump(experiment)
    session.add(experiment)
    session.flush()
    record_event(session, "experiment.decide", actor=actor, entity_type="experiment", entity_id=experiment.key,
                 team_id=experiment.team_id,
                 diff={"status": ["stopped", "decided"], "decision": [None, decision], "rationale": [None, rationale]})
    return experiment


# ---------------------------------------------------------------------------
# Export


def _user_dict(user: User | None) -> dict[str, Any] | None:
    return None if user is None else {"id": user.id, "name": user.name or user.email, "email": user.email}


def _user_label(user: User | None) -> str | None:
    return None if user is None else (user.name or user.email)


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def experiment_as_dict(experiment: Experiment, session: Session) -> dict[str, Any]:
    """The experiment as plain JSON-safe data, for exports and the review's frozen copy.

    Keys: ``key, name, status, branch {id, name, path}, journey_stage {id, name,
    journey}, team, owner, hypothesis, primary_metric, mde, alpha, power, variants,
    control, planned_start, planned_end, started_at, stopped_at, decision
    (``None`` or ``{decision, rationale, decided_at, decided_by}``), amendments
    (``[{field, old_value, new_value, reason, by, by_id, at}]``, oldest first), version``.
    """
    from experiments.models import Journey

    path = ancestry(session, experiment.node_id)
    stage = session.get(JourneyStage, experiment.stage_id) if experiment.stage_id else None
    journey = session.get(Journey, stage.journey_id) if stage else None
    team = session.get(Team, experiment.team_id) if experiment.team_id else None
    variants = variants_of(session, experiment)
    decision = None
    if experiment.decision:
        decision = {
            "decision": experiment.decision,
            "rationale": experiment.decision_rationale,
            "decided_at": _iso(experiment.decided_at),
            "decided_by": _user_dict(session.get(User, experiment.decided_by_id) if experiment.decided_by_id else None),
        }
    return {
        "key": experiment.key,
        "name": experiment.name,
        "status": experiment.status,
        "branch": {"id": experiment.node_id, "name": path[-1].name if path else None,
                   "path": [node.name for node in path]},
        "journey_stage": None if stage is None else {"id": stage.id, "name": stage.name,
                                                     "journey": journey.name if journey else None},
        "team": None if team is None else {"id": team.id, "slug": team.slug, "name": team.name},
        "owner": _user_dict(session.get(User, experiment.owner_id) if experiment.owner_id else None),
        "hypothesis": experiment.hypothesis,
        "primary_metric": experiment.primary_metric,
        "mde": experiment.mde,
        "alpha": experiment.alpha,
        "power": experiment.power,
        "variants": [{"key": v.key, "name": v.name, "weight": v.weight, "is_control": v.is_control}
                     for v in variants],
        "control": next((v.key for v in variants if v.is_control), None),
        "planned_start": _iso(experiment.planned_start),
        "planned_end": _iso(experiment.planned_end),
        "started_at": _iso(experiment.started_at),
        "stopped_at": _iso(experiment.stopped_at),
        "decision": decision,
        "amendments": [
            {"field": a.field, "old_value": a.old_value, "new_value": a.new_value, "reason": a.reason,
             "by": _user_label(session.get(User, a.actor_id) if a.actor_id else None), "by_id": a.actor_id,
             "at": _iso(a.created_at)}
            for a in amendments_of(session, experiment)
        ],
        "version": experiment.version,
    }


# ---------------------------------------------------------------------------
# Choices for forms


def team_choices(session: Session, user: User, *, needed: str = "viewer") -> list[Team]:
    """Teams where ``user`` acts as ``needed`` or above (all teams for an admin)."""
    from experiments.access import can

    teams = session.exec(select(Team).order_by(Team.name)).all()
    return [t for t in teams if can(session, user, t.id, needed)]


def owner_choices(session: Session) -> list[User]:
    """Active users, by name."""
    return list(session.exec(select(User).where(User.is_active).order_by(User.name, User.email)).all())


@dataclass(frozen=True)
class ExperimentRow:
    """One line of the registry list."""

    experiment: Experiment
    branch: str | None
    stage: str | None
    owner: User | None
    team: Team | None
    verdict: str | None


def registry_rows(session: Session, experiments: Sequence[Experiment]) -> list[ExperimentRow]:
    """The registry's lines for ``experiments`` (names looked up once, not per row)."""
    from experiments.journeys import stage_choices
    from experiments.tree import latest_verdicts

    nodes = dict(session.exec(select(DriverNode.id, DriverNode.name)).all())
    stages = dict(stage_choices(session))
    users = {u.id: u for u in session.exec(select(User)).all()}
    teams = {t.id: t for t in session.exec(select(Team)).all()}
    verdicts = latest_verdicts(session)
    return [ExperimentRow(e, nodes.get(e.node_id), stages.get(e.stage_id), users.get(e.owner_id),
                          teams.get(e.team_id), verdicts.get(e.id)) for e in experiments]
