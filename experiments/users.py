"""Users, teams and roles: creation, password hashing and the role ladder.

Passwords are hashed with Argon2id at OWASP's minimum cost or above
(m = 19 MiB, t = 2, p = 1; OWASP Password Storage Cheat Sheet).
"""

from __future__ import annotations

import re
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import Session, select

from experiments.audit import record_event
from experiments.errors import Conflict, ValidationFailed
from experiments.models import ROLES, Team, TeamMembership, User, utcnow

ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1
PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 128

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
    """.split()
)

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


def role_rank(role: str | None) -> int:
    """Position on the ladder viewer < analyst < experimenter < admin; -1 for none."""
    return ROLES.index(role) if role in ROLES else -1


def normalise_email(email: str) -> str:
    return email.strip().lower()


def password_problem(password: str) -> str | None:
    """Why ``password`` is refused (NIST SP 800-63B: length and a blocklist, no composition rules)."""
    normalised = unicodedata.normalize("NFKC", password)
    if len(normalised) < PASSWORD_MIN_LENGTH:
        return f"must be at least {PASSWORD_MIN_LENGTH} characters"
    if len(normalised) > PASSWORD_MAX_LENGTH:
        return f"must be at most {PASSWORD_MAX_LENGTH} characters"
    if normalised.lower() in COMMON_PASSWORDS:
        return "is one of the most common passwords; choose another"
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


def create_user(
    session: Session,
    email: str,
    password: str,
    *,
    role: str = "viewer",
    name: str = "",
    actor: User | None = None,
) -> User:
    """Create an active user.

    Raises
    ------
    ValidationFailed
        Bad email, role or password.
    Conflict
        The email is taken.
    """
    email = normalise_email(email)
    errors: dict[str, str] = {}
    if not _EMAIL.match(email) or len(email) > 254:
        errors["email"] = "must be an email address such as ana@example.com"
    if role not in ROLES:
        errors["role"] = f"must be one of {', '.join(ROLES)}"
    problem = password_problem(password)
    if problem:
        errors["password"] = problem
    if len(name) > 200:
        errors["name"] = "must be at most 200 characters"
    if errors:
        raise ValidationFailed(errors)
    if session.exec(select(User).where(User.email == email)).first() is not None:
        raise Conflict(f"a user with email {email} already exists")
    user = User(email=email, name=name.strip(), role=role, password_hash=hash_password(password), password_changed_at=utcnow())
    session.add(user)
    session.flush()
    record_event(session, "user.create", actor=actor, entity_type="user", entity_id=user.id,
                 diff={"email": [None, email], "role": [None, role]})
    return user


def ensure_team(session: Session, slug: str, name: str) -> Team:
    team = session.exec(select(Team).where(Team.slug == slug)).first()
    if team is None:
        team = Team(slug=slug, name=name)
        session.add(team)
        session.flush()
    return team


def set_team_role(session: Session, user: User, team: Team, role: str | None, *, actor: User | None) -> None:
    """Give ``user`` ``role`` in ``team`` (``None`` removes the membership)."""
    if role is not None and role not in ROLES:
        raise ValidationFailed({"role": f"must be one of {', '.join(ROLES)}"})
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


def recent_login_failures(session: Session, *, email: str, ip: str, since) -> tuple[int, int]:
    """Failed logins since ``since``: (for this email, from this IP)."""
    from sqlalchemy import func

    from experiments.models import AuditEvent

    base = select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "auth.login_failed", AuditEvent.occurred_at >= since
    )
    by_email = session.exec(base.where(AuditEvent.entity_id == normalise_email(email)[:64])).one()
    by_ip = session.exec(base.where(AuditEvent.ip == ip[:64])).one() if ip else 0
    return by_email, by_ip


def record_login_failure(session: Session, *, email: str, ip: str) -> None:
    record_event(session, "auth.login_failed", actor=None, entity_type="user",
                 entity_id=normalise_email(email)[:64], ip=ip)


def end_all_sessions(session: Session, user: User) -> None:
    """Invalidate every session of ``user`` (logout everywhere, password change, disabling)."""
    user.session_version += 1
    session.flush()
