"""Users, teams and roles: accounts, passwords, memberships and the role ladder.

Passwords are hashed with Argon2id at OWASP's minimum cost or above
(m = 19 MiB, t = 2, p = 1; OWASP Password Storage Cheat Sheet). The policy follows
NIST SP 800-63B §3.1.1.2: a length range and a blocklist (common passwords and
context words such as the email), no composition rules.

Every change writes one audit event in the caller's transaction:
``user.create``, ``user.update``, ``user.disable``, ``user.enable``,
``user.password_change``, ``user.password_reset``, ``role.update`` (a global role or
a team role), ``team.create``, ``team.update``.

An invited user (or one whose password an admin reset) holds a temporary password
and has ``password_changed_at`` unset; the web layer sends them to the
password-change page until they choose their own.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import func
from sqlmodel import Session, select

from experiments.audit import diff_fields, record_event
from experiments.errors import Conflict, NotFound, ValidationFailed
from experiments.models import ROLES, AuditEvent, Team, TeamMembership, User, utcnow

ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128
NAME_MAX_LENGTH = 200
TEMPORARY_PASSWORD_BYTES = 15  # 20 URL-safe characters, 120 bits

_hasher = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_KIB,
    parallelism=ARGON2_PARALLELISM,
)

# The most common passwords of public breach corpora (facts, not code): a user
# picking one of these is refused whatever its length.
COMMON_PASSWORDS = frozenset(
    """
    123456 123456789 12345678 password qwerty123 qwerty1 111111 1234567890 1234567 qwerty
    abc123 000000 iloveyou 1q2w3e4r5t password1 123123 123321 qwertyuiop 654321 666666
    987654321 1qaz2wsx 123qwe zaq12wsx 1q2w3e4r 11111111 88888888 12341234 00000000
    password123 passw0rd p@ssw0rd p@ssword admin123 administrator letmein welcome welcome1
    monkey dragon sunshine princess football baseball superman trustno1 starwars whatever
    iloveyou1 asdfghjkl asdfasdf zxcvbnm1 qwer1234 1234qwer changeme secret123 default1
    master123 login123 passpass 12qwaszx q1w2e3r4 q1w2e3r4t5 abcd1234 aa123456 a1b2c3d4
    """.split()  # noqa: SIM905 — a word list reads better than a literal
)
# Context words (NIST 800-63B): the service's own name is an obvious guess.
SERVICE_WORDS = frozenset({"nrrlab", "nrr lab", "nrr-lab", "nrrlab123", "nrrlab2026"})

# An unquoted RFC 5322 local part (atext and dots) at a dotted host name. Stricter
# than the RFC on purpose: no quoting, no comments, no IP literals, nothing a page
# or a CSV cell could mistake for markup.
_EMAIL = re.compile(
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
_TEAM_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def role_rank(role: str | None) -> int:
    """Position on the ladder viewer < analyst < experimenter < admin; -1 for none."""
    return ROLES.index(role) if role in ROLES else -1


def failure_key(email: str) -> str:
    """The audit entity id that counts failed sign-ins for ``email`` (fits 64 characters).

    A long address is hashed rather than cut, so two addresses sharing their first 64
    characters cannot lock each other out.
    """
    normalised = normalise_email(email)
    if len(normalised) <= 64:
        return normalised
    return "sha256:" + hashlib.sha256(normalised.encode()).hexdigest()[:57]


def normalise_email(email: str) -> str:
    return email.strip().lower()


def email_problem(email: str) -> str | None:
    """Why ``email`` (already normalised) is refused, or ``None``."""
    if len(email) > 254 or len(email.partition("@")[0]) > 64 or not _EMAIL.match(email):
        return "must be an email address such as ana@example.com"
    return None


def password_problem(password: str, *, email: str = "") -> str | None:
    """Why ``password`` is refused (NIST SP 800-63B: length and a blocklist, no composition rules)."""
    normalised = unicodedata.normalize("NFKC", password)
    if len(normalised) < PASSWORD_MIN_LENGTH:
        return f"must be at least {PASSWORD_MIN_LENGTH} characters"
    if len(normalised) > PASSWORD_MAX_LENGTH:
        return f"must be at most {PASSWORD_MAX_LENGTH} characters"
    folded = normalised.casefold()
    if folded in COMMON_PASSWORDS:
        return "is one of the most common passwords; choose another"
    email = normalise_email(email)
    if folded in SERVICE_WORDS or (email and folded in {email, email.partition("@")[0]}):
        return "is too easy to guess from your email or this service's name; choose another"
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(unicodedata.normalize("NFKC", password))


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, unicodedata.normalize("NFKC", password))
    except (VerificationError, InvalidHashError):
        return False


# Verifying against this on an unknown email keeps the answer time the same as
# for a known one, so timing does not reveal which emails have accounts.
_DUMMY_HASH = _hasher.hash("nrrlab-timing-equaliser")


def burn_verification_time(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


def temporary_password() -> str:
    """A random one-time password for an invited user (never stored in clear)."""
    return secrets.token_urlsafe(TEMPORARY_PASSWORD_BYTES)


def must_change_password(user: User) -> bool:
    """True while the user still holds a temporary password an admin handed out."""
    return user.password_changed_at is None


def _name_problem(name: str) -> str | None:
    if len(name) > NAME_MAX_LENGTH:
        return f"must be at most {NAME_MAX_LENGTH} characters"
    if _CONTROL.search(name):
        return "must not contain control characters"
    return None


def _role_problem(role: str) -> str | None:
    return None if role in ROLES else f"must be one of {', '.join(ROLES)}"


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
        "name": _name_problem(name),
        "role": _role_problem(role),
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


def invite_user(session: Session, *, email: str, name: str, role: str, actor: User) -> tuple[User, str]:
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
        raise Conflict(f"{user.email} is the last active admin and cannot be {what}; make another user admin first")


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
    errors = {f: p for f, p in {"name": _name_problem(name), "role": _role_problem(role)}.items() if p}
    if errors:
        raise ValidationFailed(errors)
    if role != user.role and role != "admin":
        _guard_last_admin(session, user, "demoted")
    if name != user.name:
        diff = diff_fields({"name": user.name}, {"name": name})
        user.name = name
        record_event(session, "user.update", actor=actor, entity_type="user", entity_id=user.id, diff=diff)
    if role != user.role:
        diff = diff_fields({"role": user.role}, {"role": role})
        user.role = role
        record_event(session, "role.update", actor=actor, entity_type="user", entity_id=user.id, diff=diff)
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


# --------------------------------------------------------------------- teams


def ensure_team(session: Session, slug: str, name: str) -> Team:
    """The team with ``slug``, created without an audit event (install and demo setup)."""
    team = session.exec(select(Team).where(Team.slug == slug)).first()
    if team is None:
        team = Team(slug=slug, name=name)
        session.add(team)
        session.flush()
    return team


def _team_name_problem(name: str) -> str | None:
    if not name:
        return "is required"
    return _name_problem(name)


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
    problem = _team_name_problem(name)
    if problem:
        errors["name"] = problem
    if not errors and session.exec(select(Team).where(Team.slug == slug)).first() is not None:
        errors["slug"] = "is already used by another team"
    if errors:
        raise ValidationFailed(errors)
    team = Team(slug=slug, name=name)
    session.add(team)
    session.flush()
    record_event(session, "team.create", actor=actor, entity_type="team", entity_id=team.id, team_id=team.id,
                 diff={"slug": [None, slug], "name": [None, name]})
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
    problem = _team_name_problem(name)
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
    return TeamDetail(team, [(u, r) for u, r in members], [u for u in active if u.id not in member_ids])


def set_team_role(session: Session, user: User, team: Team, role: str | None, *, actor: User | None) -> None:
    """Give ``user`` ``role`` in ``team`` (``None`` removes the membership); ``role.update``.

    Raises
    ------
    ValidationFailed
        ``role`` is not on the ladder.
    """
    if role is not None and role not in ROLES:
        raise ValidationFailed({"role": f"must be one of {', '.join(ROLES)}, or none to remove"})
    membership = session.exec(
        select(TeamMembership).where(TeamMembership.user_id == user.id, TeamMembership.team_id == team.id)
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
    user = session.get(User, int(user_id)) if user_id.isdigit() else None
    if user is None:
        raise ValidationFailed({"user_id": "choose a user from the list"})
    set_team_role(session, user, team, role or None, actor=actor)
    return user


# ------------------------------------------------------------------- sign-in


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with this email and password, else ``None`` (same work either way)."""
    user = session.exec(select(User).where(User.email == normalise_email(email))).first()
    if user is None or not user.is_active:
        burn_verification_time(password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    session.flush()
    return user


def recent_login_failures(session: Session, *, email: str, ip: str, since: datetime) -> tuple[int, int]:
    """Failed logins since ``since``: (for this email, from this IP)."""
    base = select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "auth.login_failed", AuditEvent.occurred_at >= since
    )
    by_email = session.exec(base.where(AuditEvent.entity_id == failure_key(email))).one()
    by_ip = session.exec(base.where(AuditEvent.ip == ip[:64])).one() if ip else 0
    return by_email, by_ip


def record_login_failure(session: Session, *, email: str, ip: str) -> None:
    """``auth.login_failed``: the attempted email (as typed, normalised) is the entity."""
    record_event(session, "auth.login_failed", actor=None, entity_type="user",
                 entity_id=failure_key(email), ip=ip)


def record_login(session: Session, user: User, *, ip: str) -> None:
    record_event(session, "auth.login", actor=user, entity_type="user", entity_id=user.id, ip=ip)


def end_all_sessions(session: Session, user: User) -> None:
    """Invalidate every session of ``user`` (logout everywhere, password change, disabling)."""
    user.session_version += 1
    session.flush()


def sign_out(session: Session, user: User, *, ip: str) -> None:
    """End every session of ``user`` (``auth.logout``)."""
    end_all_sessions(session, user)
    record_event(session, "auth.logout", actor=user, entity_type="user", entity_id=user.id, ip=ip)

