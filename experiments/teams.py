"""Teams, team roles and the role ladder viewer < analyst < experimenter < admin.

Every change writes one audit event in the caller's transaction: ``team.create``,
``team.update``, ``role.update`` (a team role). ``ensure_team`` (install and demo setup)
writes none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, select

from experiments.audit import diff_fields, record_event
from experiments.errors import NotFound, ValidationFailed
from experiments.input_rules import CONTROL_MESSAGE, bidi_problem, control_character, parse_id
from experiments.models import ROLES, Team, TeamMembership, User

NAME_MAX_LENGTH = 200

_TEAM_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def role_rank(role: str | None) -> int:
    """Position on the ladder viewer < analyst < experimenter < admin; -1 for none."""
    return ROLES.index(role) if role in ROLES else -1



def name_problem(name: str) -> str | None:
    """Why a display name (of a user or a team) is refused, or ``None``."""
    if len(name) > NAME_MAX_LENGTH:
        return f"must be at most {NAME_MAX_LENGTH} characters"
    if control_character(name):
        return CONTROL_MESSAGE
    return bidi_problem(name)


def role_problem(role: str) -> str | None:
    return None if role in ROLES else f"must be one of {', '.join(ROLES)}"



def ensure_team(session: Session, slug: str, name: str) -> Team:
    """The team with ``slug``, created without an audit event (install and demo setup)."""
    team = session.exec(select(Team).where(Team.slug == slug)).first()
    if team is None:
        team = Team(slug=slug, name=name)
        session.add(team)
        session.flush()
    return team


def _teamname_problem(name: str) -> str | None:
    if not name:
        return "is required"
    return name_problem(name)


def create_team(session: Session, *, slug: str, name: str, actor: User) -> Team:
    """Create a team (``team.create``).

    Raises
    ------
    ValidationFailed
        Bad slug or name, or the slug is taken.
    """
    slug = slug.strip().lower()
    name = name.strip()
    errors: dict[str, str] = {}
    if not _TEAM_SLUG.match(slug):
        errors["slug"] = "must be 1-64 lowercase letters, digits or hyphens, e.g. customer-success"
    problem = _teamname_problem(name)
    if problem:
        errors["name"] = problem
    if not errors and session.exec(select(Team).where(Team.slug == slug)).first() is not None:
        errors["slug"] = "is already used by another team"
    if errors:
        raise ValidationFailed(errors)
    team = Team(slug=slug, name=name)
    session.add(team)
    session.flush()
    record_event(session, "team.create", actor=actor, entity_type="team", entity_id=team.id,
                 team_id=team.id, diff={"slug": [None, slug], "name": [None, name]})
    return team


def get_team(session: Session, team_id: int) -> Team:
    """Raises ``NotFound`` when there is no such team."""
    team = session.get(Team, team_id)
    if team is None:
        raise NotFound(f"no team {team_id}")
    return team


def update_team(session: Session, team: Team, *, name: str, actor: User) -> Team:
    """Rename a team (``team.update``; the slug is permanent).

    Raises
    ------
    ValidationFailed
        Bad name.
    """
    name = name.strip()
    problem = _teamname_problem(name)
    if problem:
        raise ValidationFailed({"name": problem})
    if name != team.name:
        diff = diff_fields({"name": team.name}, {"name": name})
        team.name = name
        session.flush()
        record_event(session, "team.update", actor=actor, entity_type="team", entity_id=team.id,
                     team_id=team.id, diff=diff)
    return team


@dataclass(frozen=True)
class TeamSummary:
    team: Team
    members: int


def list_teams(session: Session) -> list[TeamSummary]:
    """Every team with its member count, by name."""
    counts = dict(session.exec(
        select(TeamMembership.team_id, func.count()).group_by(TeamMembership.team_id)
    ).all())
    teams = session.exec(select(Team).order_by(Team.name, Team.id)).all()
    return [TeamSummary(t, counts.get(t.id, 0)) for t in teams]


@dataclass(frozen=True)
class TeamDetail:
    team: Team
    members: list[tuple[User, str]]
    candidates: list[User]


def team_detail(session: Session, team_id: int) -> TeamDetail:
    """A team, its members with their roles, and the active users who could join.

    Raises
    ------
    NotFound
        No such team.
    """
    team = get_team(session, team_id)
    members = list(session.exec(
        select(User, TeamMembership.role).join(TeamMembership, TeamMembership.user_id == User.id)
        .where(TeamMembership.team_id == team.id).order_by(User.email)
    ).all())
    member_ids = {u.id for u, _ in members}
    active = session.exec(select(User).where(User.is_active).order_by(User.email)).all()
    candidates = [u for u in active if u.id not in member_ids]
    return TeamDetail(team, [(u, r) for u, r in members], candidates)


def set_team_role(
    session: Session, user: User, team: Team, role: str | None, *, actor: User | None
) -> None:
    """Give ``user`` ``role`` in ``team`` (``None`` removes the membership); ``role.update``.

    Raises
    ------
    ValidationFailed
        ``role`` is not on the ladder.
    """
    if role is not None and role not in ROLES:
        raise ValidationFailed({"role": f"must be one of {', '.join(ROLES)}, or none to remove"})
    membership = session.exec(
        select(TeamMembership)
        .where(TeamMembership.user_id == user.id, TeamMembership.team_id == team.id)
    ).first()
    old = membership.role if membership else None
    if role is None:
        if membership is not None:
            session.delete(membership)
    elif membership is None:
        session.add(TeamMembership(user_id=user.id, team_id=team.id, role=role))
    else:
        membership.role = role
    session.flush()
    if old != role:
        record_event(session, "role.update", actor=actor, entity_type="user", entity_id=user.id,
                     team_id=team.id, diff={"team_role": [old, role]})


def set_member_role(session: Session, team: Team, *, user_id: str, role: str, actor: User) -> User:
    """Form-level :func:`set_team_role`: ``user_id`` and ``role`` as submitted (``""`` removes).

    Raises
    ------
    ValidationFailed
        ``user_id`` names no user, or ``role`` is not on the ladder.
    """
    member_id = parse_id(user_id)  # beyond a 32-bit id PostgreSQL would raise
    user = session.get(User, member_id) if member_id is not None else None
    if user is None:
        raise ValidationFailed({"user_id": "choose a user from the list"})
    set_team_role(session, user, team, role or None, actor=actor)
    return user
