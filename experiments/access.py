"""Who may see and do what: the role ladder applied to team-scoped objects.

The rule, modelled on GrowthBook's project roles and default-deny:

* a global ``admin`` acts as admin in every team;
* an object that belongs to a team is visible only to that team's members, who act
  with their membership role there; everybody else is told it does not exist (404);
* an object with no team (the NRR root, shared levers) is visible to every signed-in
  user, who acts with their global role.

So a team role replaces the global role inside its team, upwards or downwards: a
global experimenter who is a viewer of *growth* only reads growth's experiments, and
a global viewer who is growth's analyst uploads data there. Routes first check the
*highest* role a user holds anywhere (``webapp.security.allow``: can this user ever do
this?) and then the role on the object itself (:func:`require`, or
``webapp.security.visible_or_404`` in views). Administration of users, teams and the
audit log needs the *global* admin role: a team admin manages work, not people.
"""

from __future__ import annotations

from sqlmodel import Session, select

from experiments.errors import NotFound, PermissionDenied
from experiments.models import Team, TeamMembership, User
from experiments.users import role_rank


def team_roles(session: Session, user: User) -> dict[int, str]:
    """``{team_id: role}`` of the user's memberships."""
    rows = session.exec(select(TeamMembership).where(TeamMembership.user_id == user.id)).all()
    return {m.team_id: m.role for m in rows}


def highest_role(session: Session, user: User) -> str:
    """The highest role ``user`` holds anywhere: globally or in any team."""
    if user.role == "admin":  # nothing ranks above it: no need to read the memberships
        return user.role
    return max([user.role, *team_roles(session, user).values()], key=role_rank)


def effective_role(session: Session, user: User, team_id: int | None) -> str | None:
    """The role ``user`` acts with on an object of ``team_id`` (``None`` = may not see it)."""
    if user.role == "admin":
        return "admin"
    if team_id is None:
        return user.role
    return team_roles(session, user).get(team_id)


def visible_team_ids(session: Session, user: User) -> set[int] | None:
    """Teams whose objects ``user`` may see; ``None`` means all of them (admin)."""
    if user.role == "admin":
        return None
    return set(team_roles(session, user))


def require(session: Session, user: User, team_id: int | None, needed: str) -> str:
    """Check ``user`` may act as ``needed`` on an object of ``team_id``.

    Raises
    ------
    NotFound
        The user may not even see the object (another team's): it must look absent.
    PermissionDenied
        The user sees it but their role there is below ``needed``.
    """
    role = effective_role(session, user, team_id)
    if role is None:
        raise NotFound("not found")
    if role_rank(role) < role_rank(needed):
        raise PermissionDenied(f"this needs the {needed} role; you are {role} here")
    return role


def can(session: Session, user: User, team_id: int | None, needed: str) -> bool:
    role = effective_role(session, user, team_id)
    return role is not None and role_rank(role) >= role_rank(needed)


def check_team_choice(
    session: Session, actor: User, team_id: int, *, needed: str, purpose: str
) -> str | None:
    """Why ``actor`` may not put something in team ``team_id`` (``None`` when they may).

    Another team's id reads as "unknown team", as an unknown id does, so a form cannot
    be used to probe which teams exist.
    """
    if session.get(Team, team_id) is None:
        return "unknown team"
    try:
        require(session, actor, team_id, needed)
    except NotFound:
        return "unknown team"
    except PermissionDenied:
        return f"you need the {needed} role in this team to {purpose}"
    return None
