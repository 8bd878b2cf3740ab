"""Choices offered by the forms (teams, owners), filtered by what the user may do."""

from __future__ import annotations

from sqlmodel import Session, select

from experiments.access import can
from experiments.models import Team, User


def team_choices(session: Session, user: User, *, needed: str = "viewer") -> list[Team]:
    """Teams where ``user`` acts as ``needed`` or above (all teams for an admin)."""
    teams = session.exec(select(Team).order_by(Team.name)).all()
    return [t for t in teams if can(session, user, t.id, needed)]


def owner_choices(session: Session) -> list[User]:
    """Active users, by name."""
    return list(
        session.exec(select(User).where(User.is_active).order_by(User.name, User.email)).all()
    )
