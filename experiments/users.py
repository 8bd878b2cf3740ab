"""Users: accounts, global roles, enabling, disabling and passwords.

Every change writes one audit event in the caller's transaction:
``user.create``, ``user.update``, ``user.disable``, ``user.enable``,
``user.password_change``, ``user.password_reset``, ``role.update`` (a global role).

The rules and hashing live in :mod:`experiments.passwords`, teams and the role ladder in
:mod:`experiments.teams`, signing in and the limiter in :mod:`experiments.signin`; their
public names are re-exported here so ``from experiments.users import …`` keeps working.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func
from sqlmodel import Session, select

from experiments.audit import diff_fields, record_event
from experiments.errors import Conflict, NotFound, ValidationFailed
from experiments.models import Team, TeamMembership, User, utcnow
from experiments.passwords import (
    ARGON2_MEMORY_KIB,
    ARGON2_PARALLELISM,
    ARGON2_TIME_COST,
    COMMON_PASSWORDS,
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    SERVICE_WORDS,
    TEMPORARY_PASSWORD_BYTES,
    burn_verification_time,
    email_problem,
    hash_password,
    must_change_password,
    normalise_email,
    password_problem,
    temporary_password,
    verify_password,
)
from experiments.signin import (
    SignInGate,
    SignInLimits,
    admit_sign_in,
    authenticate,
    end_all_sessions,
    failure_key,
    give_back_attempt,
    record_login,
    record_login_failure,
    sign_out,
)
from experiments.teams import (
    NAME_MAX_LENGTH,
    TeamDetail,
    TeamSummary,
    create_team,
    ensure_team,
    get_team,
    list_teams,
    name_problem,
    role_problem,
    role_rank,
    set_member_role,
    set_team_role,
    team_detail,
    update_team,
)

__all__ = [
    "ARGON2_MEMORY_KIB", "ARGON2_PARALLELISM", "ARGON2_TIME_COST", "COMMON_PASSWORDS",
    "NAME_MAX_LENGTH", "PASSWORD_MAX_LENGTH", "PASSWORD_MIN_LENGTH", "SERVICE_WORDS",
    "TEMPORARY_PASSWORD_BYTES", "SignInGate", "SignInLimits", "TeamDetail", "TeamSummary",
    "UserDetail", "UserSummary", "admit_sign_in", "authenticate", "burn_verification_time",
    "change_password", "create_team", "create_user", "disable_user", "email_problem",
    "enable_user", "end_all_sessions", "ensure_team", "failure_key", "get_team", "get_user",
    "give_back_attempt", "hash_password", "invite_user", "list_teams", "list_users",
    "must_change_password", "normalise_email", "password_problem", "record_login",
    "record_login_failure", "reset_password", "role_rank", "set_member_role",
    "set_team_role", "sign_out", "team_detail", "temporary_password", "update_team",
    "update_user", "user_detail", "verify_password",
]


# --------------------------------------------------------------------- users


def create_user(
    session: Session,
    email: str,
    password: str,
    *,
    role: str = "viewer",
    name: str = "",
    actor: User | None = None,
) -> User:
    """Create an active user with a password of their own choosing.

    Raises
    ------
    ValidationFailed
        Bad email, name, role or password.
    Conflict
        The email is taken.
    """
    email = normalise_email(email)
    name = name.strip()
    problems = {
        "email": email_problem(email),
        "name": name_problem(name),
        "role": role_problem(role),
        "password": password_problem(password, email=email),
    }
    errors = {field: problem for field, problem in problems.items() if problem}
    if errors:
        raise ValidationFailed(errors)
    if session.exec(select(User).where(User.email == email)).first() is not None:
        raise Conflict(f"a user with email {email} already exists")
    user = User(email=email, name=name, role=role, password_hash=hash_password(password),
                password_changed_at=utcnow())
    session.add(user)
    session.flush()
    record_event(session, "user.create", actor=actor, entity_type="user", entity_id=user.id,
                 diff={"email": [None, email], "name": [None, name], "role": [None, role]})
    return user


def invite_user(
    session: Session, *, email: str, name: str, role: str, actor: User
) -> tuple[User, str]:
    """Create a user with a temporary password, returned once for the admin to hand over.

    The user must choose their own password at first sign-in.

    Raises
    ------
    ValidationFailed
        Bad email, name or role; an email already in use is reported on ``email``.
    """
    password = temporary_password()
    try:
        user = create_user(session, email, password, role=role, name=name, actor=actor)
    except Conflict as exc:
        raise ValidationFailed({"email": "is already used by another account"}) from exc
    user.password_changed_at = None
    session.flush()
    return user, password


def get_user(session: Session, user_id: int) -> User:
    """Raises ``NotFound`` when there is no such user."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    return user


@dataclass(frozen=True)
class UserSummary:
    user: User
    memberships: list[tuple[Team, str]]


def _memberships_of(session: Session, user_ids: list[int]) -> dict[int, list[tuple[Team, str]]]:
    by_user: dict[int, list[tuple[Team, str]]] = {uid: [] for uid in user_ids}
    if not user_ids:
        return by_user
    rows = session.exec(
        select(TeamMembership, Team).join(Team, Team.id == TeamMembership.team_id)
        .where(TeamMembership.user_id.in_(user_ids)).order_by(Team.name, Team.id)
    ).all()
    for membership, team in rows:
        by_user[membership.user_id].append((team, membership.role))
    return by_user


def list_users(session: Session) -> list[UserSummary]:
    """Every user (active first, then by email) with their team roles."""
    users = list(session.exec(select(User).order_by(User.is_active.desc(), User.email)).all())
    memberships = _memberships_of(session, [u.id for u in users])
    return [UserSummary(u, memberships[u.id]) for u in users]


@dataclass(frozen=True)
class UserDetail:
    user: User
    memberships: list[tuple[Team, str]]
    other_teams: list[Team]


def user_detail(session: Session, user_id: int) -> UserDetail:
    """A user, their team roles and the teams they could be added to.

    Raises
    ------
    NotFound
        No such user.
    """
    user = get_user(session, user_id)
    memberships = _memberships_of(session, [user.id])[user.id]
    member_of = {team.id for team, _ in memberships}
    teams = session.exec(select(Team).order_by(Team.name, Team.id)).all()
    return UserDetail(user, memberships, [t for t in teams if t.id not in member_of])


def _active_admins(session: Session) -> int:
    return session.exec(
        select(func.count()).select_from(User).where(User.role == "admin", User.is_active)
    ).one()


def _guard_last_admin(session: Session, user: User, what: str) -> None:
    if user.role == "admin" and user.is_active and _active_admins(session) <= 1:
        raise Conflict(f"{user.email} is the last active admin and cannot be {what}; "
                       "make another user admin first")


def update_user(session: Session, user: User, *, name: str, role: str, actor: User) -> User:
    """Change a user's display name (``user.update``) and global role (``role.update``).

    Raises
    ------
    ValidationFailed
        Bad name or role.
    Conflict
        The change would demote the last active admin.
    """
    name = name.strip()
    problems = {"name": name_problem(name), "role": role_problem(role)}
    errors = {field: problem for field, problem in problems.items() if problem}
    if errors:
        raise ValidationFailed(errors)
    if role != user.role and role != "admin":
        _guard_last_admin(session, user, "demoted")
    if name != user.name:
        diff = diff_fields({"name": user.name}, {"name": name})
        user.name = name
        record_event(session, "user.update", actor=actor, entity_type="user", entity_id=user.id,
                     diff=diff)
    if role != user.role:
        diff = diff_fields({"role": user.role}, {"role": role})
        user.role = role
        record_event(session, "role.update", actor=actor, entity_type="user", entity_id=user.id,
                     diff=diff)
    session.flush()
    return user


def disable_user(session: Session, user: User, *, actor: User) -> User:
    """Disable sign-in and end every session of ``user`` (``user.disable``).

    Raises
    ------
    Conflict
        ``user`` is the actor, or the last active admin.
    """
    if not user.is_active:
        return user
    if actor is not None and user.id == actor.id:
        raise Conflict("you cannot disable your own account; ask another admin")
    _guard_last_admin(session, user, "disabled")
    user.is_active = False
    end_all_sessions(session, user)
    record_event(session, "user.disable", actor=actor, entity_type="user", entity_id=user.id,
                 diff={"is_active": [True, False]})
    return user


def enable_user(session: Session, user: User, *, actor: User) -> User:
    """Allow a disabled user to sign in again (``user.enable``)."""
    if user.is_active:
        return user
    user.is_active = True
    session.flush()
    record_event(session, "user.enable", actor=actor, entity_type="user", entity_id=user.id,
                 diff={"is_active": [False, True]})
    return user


def change_password(
    session: Session, user: User, *, current_password: str, new_password: str, confirmation: str
) -> User:
    """Replace the user's password after checking the current one; ends every other session.

    Raises
    ------
    ValidationFailed
        ``current_password`` is wrong, ``new_password`` breaks the policy or equals the
        current one, or ``confirmation`` differs.
    """
    if not verify_password(user.password_hash, current_password):
        raise ValidationFailed({"current_password": "is not your current password"})
    errors: dict[str, str] = {}
    problem = password_problem(new_password, email=user.email)
    if problem:
        errors["new_password"] = problem
    elif new_password == current_password:
        errors["new_password"] = "must differ from your current password"  # noqa: S105
    if new_password != confirmation:
        errors["confirmation"] = "does not match the new password"
    if errors:
        raise ValidationFailed(errors)
    before = user.password_changed_at
    user.password_hash = hash_password(new_password)
    user.password_changed_at = utcnow()
    end_all_sessions(session, user)
    record_event(session, "user.password_change", actor=user, entity_type="user", entity_id=user.id,
                 diff={"password_changed_at": [before, user.password_changed_at]})
    return user


def reset_password(session: Session, user: User, *, actor: User) -> str:
    """Give ``user`` a new temporary password (returned once) and end their sessions."""
    password = temporary_password()
    user.password_hash = hash_password(password)
    before = user.password_changed_at
    user.password_changed_at = None
    end_all_sessions(session, user)
    record_event(session, "user.password_reset", actor=actor, entity_type="user", entity_id=user.id,
                 diff={"password_changed_at": [before, None]})
    return password
