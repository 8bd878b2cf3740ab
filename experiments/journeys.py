"""Customer journeys and their ordered stages (an experiment targets one stage).

Journeys are shared by every team, so editing them takes the experimenter role
globally (see :mod:`experiments.access`: an object without a team is acted on
with the global role). A stage's experiment count only counts the experiments the
reader may see. Every change to an existing journey or stage names the
``version`` it was made on and is one compare-and-set
(:mod:`experiments.versioning`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, func, or_, select

from experiments.access import can, require, visible_team_ids
from experiments.audit import diff_fields, record_event
from experiments.errors import NotFound, ValidationFailed
from experiments.input_rules import LONG_TEXT_MAX, NAME_MAX, FieldErrors, read_choice, read_text
from experiments.models import Experiment, Journey, JourneyStage, User
from experiments.versioning import check_version, compare_and_set, expected_version

DIRECTIONS: tuple[str, ...] = ("up", "down")


@dataclass
class JourneyView:
    """A journey with its stages in order and how many experiments target each."""

    journey: Journey
    stages: list[JourneyStage] = field(default_factory=list)
    experiment_counts: dict[int, int] = field(default_factory=dict)


def list_journeys(session: Session, user: User | None = None) -> list[JourneyView]:
    """Every journey (the default first), stages in order.

    With ``user``, each stage counts the experiments that user may see (another
    team's experiments are not even counted); without, the counts stay empty.
    """
    journeys = session.exec(
        select(Journey).order_by(Journey.is_default.desc(), Journey.name, Journey.id)
    ).all()
    stages = session.exec(
        select(JourneyStage).order_by(JourneyStage.position, JourneyStage.id)
    ).all()
    counts: dict[int, int] = {}
    if user is not None:
        query = (
            select(Experiment.stage_id, func.count())
            .where(Experiment.stage_id.is_not(None))
            .group_by(Experiment.stage_id)
        )
        teams = visible_team_ids(session, user)
        if teams is not None:
            query = query.where(or_(Experiment.team_id.is_(None), Experiment.team_id.in_(teams)))
        counts = dict(session.exec(query).all())
    views = {j.id: JourneyView(j) for j in journeys}
    for stage in stages:
        if stage.journey_id in views:
            views[stage.journey_id].stages.append(stage)
            views[stage.journey_id].experiment_counts[stage.id] = counts.get(stage.id, 0)
    return list(views.values())


@dataclass(frozen=True)
class JourneysPage:
    """The journeys page: every journey with its visible counts, and whether the reader edits."""

    journeys: list[JourneyView]
    can_edit: bool


def journeys_page(session: Session, user: User) -> JourneysPage:
    """What the journeys page shows ``user`` (journeys are shared; counts are the user's)."""
    return JourneysPage(
        journeys=list_journeys(session, user), can_edit=can(session, user, None, "experimenter")
    )


def stage_choices(session: Session) -> list[tuple[int, str]]:
    """``(stage id, "Journey · stage")`` in journey and stage order, for select lists."""
    return [
        (stage.id, f"{view.journey.name} · {stage.name}")
        for view in list_journeys(session)
        for stage in view.stages
    ]


def stage_label(session: Session, stage_id: int | None) -> str | None:
    stage = session.get(JourneyStage, stage_id) if stage_id else None
    if stage is None:
        return None
    journey = session.get(Journey, stage.journey_id)
    return f"{journey.name} · {stage.name}" if journey else stage.name


def _seen(session: Session, row: Journey | JourneyStage, raw: Any) -> int:
    """The version the actor saw (``None``: the loaded row's), refused early when stale."""
    seen = expected_version(row, raw)
    check_version(session, row, seen, **_names(row))
    return seen


def _names(row: Journey | JourneyStage) -> dict[str, Any]:
    if isinstance(row, Journey):
        return {"what": f"The journey '{row.name}'", "entity_type": "journey", "entity_id": row.id}
    return {"what": f"The stage '{row.name}'", "entity_type": "journey_stage", "entity_id": row.id}


def _write(
    session: Session, row: Journey | JourneyStage, seen: int, values: Mapping[str, Any]
) -> None:
    """``UPDATE … SET …, version = version + 1 WHERE id = ? AND version = seen``."""
    compare_and_set(session, row, seen, values, **_names(row))


def _version(data: Mapping[str, Any]) -> Any:
    return data.get("version") if "version" in data else None


def _can_edit(session: Session, actor: User) -> None:
    require(session, actor, None, "experimenter")


def _journey(session: Session, journey_id: int) -> Journey:
    journey = session.get(Journey, journey_id) if 0 < journey_id < 2**31 else None
    if journey is None:
        raise NotFound(f"no journey {journey_id}")
    return journey


def _stage(session: Session, stage_id: int) -> JourneyStage:
    stage = session.get(JourneyStage, stage_id) if 0 < stage_id < 2**31 else None
    if stage is None:
        raise NotFound(f"no journey stage {stage_id}")
    return stage


def _journey_fields(
    session: Session, data: Mapping[str, Any], *, current: Journey | None
) -> dict[str, str]:
    errors = FieldErrors()
    name = read_text(data, "name", errors, max_length=NAME_MAX, required=True)
    description = read_text(data, "description", errors, max_length=LONG_TEXT_MAX, multiline=True)
    if "name" not in errors:
        clash = session.exec(
            select(Journey).where(func.lower(Journey.name) == name.lower())
        ).first()
        if clash is not None and (current is None or clash.id != current.id):
            errors.add("name", f"a journey called '{clash.name}' already exists")
    errors.raise_if_any()
    return {"name": name, "description": description}


def create_journey(session: Session, data: Mapping[str, Any], *, actor: User) -> Journey:
    """Add a journey (no stages yet).

    Raises
    ------
    PermissionDenied
        The actor's global role is below experimenter.
    ValidationFailed
        ``name`` missing, too long or taken; ``description`` too long.
    """
    _can_edit(session, actor)
    values = _journey_fields(session, data, current=None)
    journey = Journey(**values)
    session.add(journey)
    session.flush()
    record_event(
        session,
        "journey.create",
        actor=actor,
        entity_type="journey",
        entity_id=journey.id,
        diff=diff_fields({}, values),
    )
    return journey


def update_journey(
    session: Session, journey_id: int, data: Mapping[str, Any], *, actor: User
) -> Journey:
    """Rename a journey or change its description.

    Raises
    ------
    NotFound
        No such journey.
    PermissionDenied, ValidationFailed
        As :func:`create_journey`.
    """
    _can_edit(session, actor)
    journey = _journey(session, journey_id)
    seen = _seen(session, journey, _version(data))
    values = _journey_fields(session, data, current=journey)
    before = {"name": journey.name, "description": journey.description}
    changes = diff_fields(before, values)
    if changes:
        _write(session, journey, seen, values)
        record_event(
            session,
            "journey.update",
            actor=actor,
            entity_type="journey",
            entity_id=journey.id,
            diff=changes,
        )
    return journey


def _stage_name(
    session: Session, data: Mapping[str, Any], journey_id: int, *, current: JourneyStage | None
) -> str:
    errors = FieldErrors()
    name = read_text(data, "name", errors, max_length=NAME_MAX, required=True)
    if "name" not in errors:
        clash = session.exec(
            select(JourneyStage).where(
                JourneyStage.journey_id == journey_id, func.lower(JourneyStage.name) == name.lower()
            )
        ).first()
        if clash is not None and (current is None or clash.id != current.id):
            errors.add("name", f"this journey already has a stage called '{clash.name}'")
    errors.raise_if_any()
    return name


def add_stage(
    session: Session, journey_id: int, data: Mapping[str, Any], *, actor: User
) -> JourneyStage:
    """Append a stage to the end of a journey.

    Raises
    ------
    NotFound
        No such journey.
    PermissionDenied
        The actor's global role is below experimenter.
    ValidationFailed
        ``name`` missing, too long or already a stage of this journey.
    """
    _can_edit(session, actor)
    journey = _journey(session, journey_id)
    name = _stage_name(session, data, journey.id, current=None)
    last = session.exec(
        select(func.max(JourneyStage.position)).where(JourneyStage.journey_id == journey.id)
    ).one()
    stage = JourneyStage(journey_id=journey.id, name=name, position=0 if last is None else last + 1)
    session.add(stage)
    session.flush()
    record_event(
        session,
        "stage.create",
        actor=actor,
        entity_type="journey_stage",
        entity_id=stage.id,
        diff={
            "journey_id": [None, journey.id],
            "name": [None, name],
            "position": [None, stage.position],
        },
    )
    return stage


def rename_stage(
    session: Session, stage_id: int, data: Mapping[str, Any], *, actor: User
) -> JourneyStage:
    """Rename a stage (experiments keep pointing at it).

    Raises
    ------
    NotFound, PermissionDenied, ValidationFailed
        As :func:`add_stage`.
    """
    _can_edit(session, actor)
    stage = _stage(session, stage_id)
    seen = _seen(session, stage, _version(data))
    name = _stage_name(session, data, stage.journey_id, current=stage)
    if name != stage.name:
        old = stage.name
        _write(session, stage, seen, {"name": name})
        record_event(
            session,
            "stage.update",
            actor=actor,
            entity_type="journey_stage",
            entity_id=stage.id,
            diff={"name": [old, name]},
        )
    return stage


def move_stage(
    session: Session, stage_id: int, direction: Any, *, actor: User, expected_version: Any = None
) -> JourneyStage:
    """Swap a stage with its neighbour above (``up``) or below (``down``); at an end, nothing moves.

    Raises
    ------
    NotFound, PermissionDenied
        As :func:`add_stage`.
    ValidationFailed
        ``direction`` is not ``up`` or ``down``.
    """
    _can_edit(session, actor)
    stage = _stage(session, stage_id)
    seen = _seen(session, stage, expected_version)
    errors = FieldErrors()
    way = read_choice({"direction": direction}, "direction", errors, DIRECTIONS)
    errors.raise_if_any()
    siblings = list(
        session.exec(
            select(JourneyStage)
            .where(JourneyStage.journey_id == stage.journey_id)
            .order_by(JourneyStage.position, JourneyStage.id)
            .with_for_update()
        ).all()
    )
    index = next(i for i, s in enumerate(siblings) if s.id == stage.id)
    other = index - 1 if way == "up" else index + 1
    if not 0 <= other < len(siblings):
        return stage
    before = [s.id for s in siblings]
    _write(session, stage, seen, {"position": siblings[other].position})
    siblings[index], siblings[other] = siblings[other], siblings[index]
    for position, sibling in enumerate(siblings):
        sibling.position = position
        session.add(sibling)
    session.flush()
    record_event(
        session,
        "stage.move",
        actor=actor,
        entity_type="journey_stage",
        entity_id=stage.id,
        diff={"order": [before, [s.id for s in siblings]]},
    )
    return stage


def delete_stage(
    session: Session, stage_id: int, *, actor: User, expected_version: Any = None
) -> None:
    """Delete a stage no experiment targets.

    Raises
    ------
    NotFound, PermissionDenied
        As :func:`add_stage`.
    ValidationFailed
        Experiments still target the stage, or it is the journey's last stage.
    """
    _can_edit(session, actor)
    stage = _stage(session, stage_id)
    seen = _seen(session, stage, expected_version)
    used = session.exec(
        select(func.count()).select_from(Experiment).where(Experiment.stage_id == stage.id)
    ).one()
    if used:
        raise ValidationFailed(
            {
                "": (
                    f"stage '{stage.name}' is the target of {used} "
                    f"experiment{'s' if used != 1 else ''}; "
                    "move them to another stage before deleting it"
                )
            }
        )
    remaining = session.exec(
        select(func.count())
        .select_from(JourneyStage)
        .where(JourneyStage.journey_id == stage.journey_id)
    ).one()
    if remaining <= 1:
        raise ValidationFailed(
            {"": f"'{stage.name}' is the journey's only stage; a journey needs at least one"}
        )
    _write(session, stage, seen, {})
    record_event(
        session,
        "stage.delete",
        actor=actor,
        entity_type="journey_stage",
        entity_id=stage.id,
        diff={"journey_id": [stage.journey_id, None], "name": [stage.name, None]},
    )
    session.delete(stage)
    session.flush()
