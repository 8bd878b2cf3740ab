"""View models of the registry's pages: one call per page, so a view calls one service.

Each function gathers everything its page shows (rows, select-list choices, the
sample-size hint, what the reader may do) into a frozen dataclass; templates only
read it and never query the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, func, select

from experiments.access import can, highest_role
from experiments.errors import NotFound
from experiments.form_choices import owner_choices, owner_problem, team_choices
from experiments.input_rules import FieldErrors, read_page
from experiments.journeys import stage_choices
from experiments.models import EXPERIMENT_STATUSES, Team, User
from experiments.planning import SampleSizeHint, sample_size_hint
from experiments.registry import (
    ExperimentFilters,
    ExperimentRow,
    experiments_query,
    registry_rows,
)
from experiments.tree import get_node, node_choices
from experiments.users import role_rank

#: Experiments per page of the list.
PAGE_SIZE = 50


@dataclass(frozen=True)
class ExperimentListPage:
    """The experiment list: one page of its rows, the filters and their choices."""

    rows: list[ExperimentRow]
    filters: ExperimentFilters
    statuses: tuple[str, ...]
    teams: list[Team]
    owners: list[User]
    nodes: list[tuple[int, str]]
    stages: list[tuple[int, str]]
    can_create: bool
    total: int = 0  # experiments matching the filters, on every page
    current_page: int = 1
    page_count: int = 1
    page_size: int = PAGE_SIZE


def page_number(value: Any) -> int:
    """``?page=`` as a page number: :func:`read_page`'s, but 1 instead of an error."""
    return read_page({"page": value}, FieldErrors())


def experiment_list_page(session: Session, user: User, filters: ExperimentFilters,
                         page: int = 1) -> ExperimentListPage:
    """One page (:data:`PAGE_SIZE` rows, newest first) of the experiments ``user`` may
    see, narrowed by ``filters``, with the filter choices; a page past the last is the
    last."""
    query = experiments_query(session, user, **filters.__dict__)
    total = session.exec(select(func.count()).select_from(query.order_by(None).subquery())).one()
    page_count = max(1, -(-total // PAGE_SIZE))
    page = min(max(page, 1), page_count)
    experiments = session.exec(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
    stages = stage_choices(session)
    return ExperimentListPage(
        rows=registry_rows(session, experiments, stages=stages),
        total=total,
        current_page=page,
        page_count=page_count,
        filters=filters,
        statuses=EXPERIMENT_STATUSES,
        teams=team_choices(session, user),
        owners=owner_choices(session),
        nodes=node_choices(session, user),
        stages=stages,
        can_create=role_rank(highest_role(session, user)) >= role_rank("experimenter"),
    )


@dataclass(frozen=True)
class ExperimentFormPage:
    """The choices and the live sample-size hint of the new/edit experiment form."""

    nodes: list[tuple[int, str]]
    stages: list[tuple[int, str]]
    teams: list[Team]
    owners: list[User]
    hint: SampleSizeHint


def experiment_form_page(session: Session, user: User,
                         values: Mapping[str, Any]) -> ExperimentFormPage:
    """What the experiment form offers ``user``, and the hint for the plan in ``values``."""
    return ExperimentFormPage(
        nodes=node_choices(session, user),
        stages=stage_choices(session),
        teams=team_choices(session, user, needed="experimenter"),
        owners=owner_choices(session),
        hint=sample_size_hint(session, user, values),
    )


def new_experiment_values(session: Session, user: User, *, node_id: int | None = None,
                          stage_id: int | None = None) -> dict[str, Any]:
    """The registration form's first values; a chosen branch lends its team and owner.

    The branch's team is taken when ``user`` may run experiments there, its owner
    when the owner rule (:func:`experiments.form_choices.owner_problem`) accepts
    them for that team; otherwise the user owns the experiment.
    """
    values: dict[str, Any] = {
        "owner_id": user.id, "mde": "0.02", "alpha": "0.05", "power": "0.8",
        "primary_metric": "nrr", "control": "0",
        "variants": [{"key": "control", "name": "Control", "weight": "1"},
                     {"key": "treatment", "name": "Treatment", "weight": "1"}],
    }
    if stage_id is not None:
        values["stage_id"] = stage_id
    if node_id is None:
        return values
    values["node_id"] = node_id
    try:
        node = get_node(session, user, node_id, "viewer")
    except NotFound:
        return values
    if node.team_id is not None and can(session, user, node.team_id, "experimenter"):
        values["team_id"] = node.team_id
    team_id = values.get("team_id")
    if node.owner_id is not None and owner_problem(session, node.owner_id, team_id,
                                                   what="experiment") is None:
        values["owner_id"] = node.owner_id
    elif owner_problem(session, user.id, team_id, what="experiment") is not None:
        values["owner_id"] = ""
    return values
