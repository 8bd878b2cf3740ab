"""The experiment registry: listing and fetching experiments the actor may see."""

from __future__ import annotations

from sqlmodel import Session, or_, select

from experiments.access import visible_team_ids
from experiments.errors import NotFound
from experiments.models import Experiment, User


def list_experiments(session: Session, user: User, *, status: str | None = None) -> list[Experiment]:
    """Experiments visible to ``user``, newest first."""
    query = select(Experiment).order_by(Experiment.created_at.desc(), Experiment.id.desc())
    teams = visible_team_ids(session, user)
    if teams is not None:
        query = query.where(or_(Experiment.team_id.is_(None), Experiment.team_id.in_(teams)))
    if status:
        query = query.where(Experiment.status == status)
    return list(session.exec(query).all())


def get_experiment(session: Session, user: User, key: str) -> Experiment:
    """The experiment with ``key``.

    Raises
    ------
    NotFound
        No such key, or it belongs to a team the user is not in.
    """
    experiment = session.exec(select(Experiment).where(Experiment.key == key)).first()
    if experiment is None:
        raise NotFound(f"no experiment {key!r}")
    teams = visible_team_ids(session, user)
    if teams is not None and experiment.team_id is not None and experiment.team_id not in teams:
        raise NotFound(f"no experiment {key!r}")
    return experiment
