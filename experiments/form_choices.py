"""Choices offered by the forms (teams, owners), filtered by what the user may do, and the
one owner rule that nodes and experiments share."""

from __future__ import annotations

from sqlmodel import Session, select

from experiments.access import can, effective_role
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


def owner_problem(session: Session, owner_id: int, team_id: int | None, *,
                  what: str) -> str | None:
    """Why user ``owner_id`` cannot own an object of team ``team_id`` (``None`` when they can).

    One rule for driver nodes and experiments: the owner is an active user who can see
    the object, that is a member of its team (any role) or a global admin; an object
    without a team may be owned by any active user.
    """
    owner = session.get(User, owner_id)
    if owner is None or not owner.is_active:
        return "unknown owner"
    if team_id is not None and effective_role(session, owner, team_id) is None:
        return f"the owner must be a member of the {what}'s team (or an admin)"
    return None
