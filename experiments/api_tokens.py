"""Personal API tokens: made and revoked by their owner, checked on every API request.

A token is ``nrrlab_`` followed by :func:`secrets.token_urlsafe` of 32 random bytes
(256 bits). Only its SHA-256 is stored. A fast, unsalted hash is enough here, unlike for
passwords: a salt and a slow hash (Argon2) defend a *guessable* secret against offline
guessing, and a 256-bit random secret cannot be guessed however fast the hash is; an
unsalted hash also lets the token be found by one indexed lookup instead of trying every
stored hash. (NIST SP 800-63B §5.1.1.2 asks for salted slow hashing of *memorized*
secrets only; GitHub and PyPI store their personal tokens the same way.)

A token acts as its user and never above them: every request is checked against the
user's roles and teams as they are *now* (a token outlives no demotion and no
disabling), and a ``read`` token may only read. Making, revoking and using a token are
audited (``api_token.create``/``.revoke``/``.use``); reads are recorded at most once per
:data:`READ_AUDIT_INTERVAL` per token, writes every time. A use's stamp and audit row
leave the data generation as it was (:func:`record_use`).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from experiments.api_models import TOKEN_SCOPES, ApiToken
from experiments.audit import record_event
from experiments.errors import DomainError, NotFound, ValidationFailed
from experiments.generation import unseen_write
from experiments.input_rules import FieldErrors, read_choice, read_int, read_text
from experiments.models import AuditEvent, User, utcnow

TOKEN_PREFIX = "nrrlab_"  # noqa: S105 (a public marker, not a secret)
SECRET_BYTES = 32
#: Characters of the secret kept in clear to tell tokens apart (``nrrlab_`` + 8).
SHOWN_PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
NAME_MAX = 100
DEFAULT_EXPIRY_DAYS = 90
MAX_EXPIRY_DAYS = 366
#: Live (unrevoked, unexpired) tokens a user may hold at once.
MAX_LIVE_TOKENS = 20
#: ``last_used_at`` is written at most this often per token (a busy pipeline is one row).
USE_STAMP_INTERVAL = timedelta(minutes=1)
#: Reads through a token are audited at most this often per token; writes always.
READ_AUDIT_INTERVAL = timedelta(hours=1)
#: Anything longer cannot be one of our tokens (token_urlsafe(32) is 43 characters).
_MAX_PRESENTED = 128


class TokenRefused(DomainError):
    """The presented token is unknown, malformed, revoked or expired, or its user is disabled.

    ``reason`` is what the client is told (RFC 6750 ``error_description``).
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class IssuedToken:
    """A token just made: the row and the secret, shown to its owner this once."""

    token: ApiToken
    secret: str


def hash_secret(secret: str) -> str:
    """The stored form of a token: the SHA-256 of its text, in hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _aware(moment: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive; they were written in UTC.
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def is_live(token: ApiToken, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return token.revoked_at is None and _aware(token.expires_at) > now


def token_state(token: ApiToken, now: datetime | None = None) -> str:
    """``active``, ``revoked`` or ``expired``, as the account page shows it."""
    if token.revoked_at is not None:
        return "revoked"
    return "active" if is_live(token, now) else "expired"


def list_tokens(session: Session, user: User) -> list[ApiToken]:
    """The user's tokens, newest first (revoked and expired ones too, for the record)."""
    return list(session.exec(
        select(ApiToken).where(ApiToken.user_id == user.id)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
    ).all())


def create_token(session: Session, data: Mapping[str, Any], *, actor: User,
                 now: datetime | None = None) -> IssuedToken:
    """Make a token for ``actor`` from ``name``, ``scope`` (read/write) and ``expires_in_days``.

    Raises
    ------
    ValidationFailed
        Per field: a blank or too long name, an unknown scope, a lifetime outside
        1…:data:`MAX_EXPIRY_DAYS` days; ``""`` when the user already holds
        :data:`MAX_LIVE_TOKENS` live tokens. Nothing is stored.
    """
    now = now or utcnow()
    errors = FieldErrors()
    name = read_text(data, "name", errors, max_length=NAME_MAX, required=True)
    scope = read_choice(data, "scope", errors, TOKEN_SCOPES, default="read")
    days = read_int(data, "expires_in_days", errors, minimum=1, maximum=MAX_EXPIRY_DAYS,
                    default=DEFAULT_EXPIRY_DAYS)
    errors.raise_if_any()
    live = [t for t in list_tokens(session, actor) if is_live(t, now)]
    if len(live) >= MAX_LIVE_TOKENS:
        raise ValidationFailed({"": f"you already hold {MAX_LIVE_TOKENS} active tokens; "
                                    "revoke one you no longer use first"})
    secret = TOKEN_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    token = ApiToken(user_id=actor.id, name=name, prefix=secret[:SHOWN_PREFIX_LENGTH],
                     token_hash=hash_secret(secret), scope=scope, created_at=now,
                     expires_at=now + timedelta(days=days))
    session.add(token)
    session.flush()
    record_event(session, "api_token.create", actor=actor, entity_type="api_token",
                 entity_id=token.id,
                 diff={"name": [None, name], "scope": [None, scope], "prefix": [None, token.prefix],
                       "expires_at": [None, token.expires_at.isoformat()]})
    return IssuedToken(token, secret)


def revoke_token(session: Session, token_id: int, *, actor: User,
                 now: datetime | None = None) -> ApiToken:
    """Revoke one of ``actor``'s own tokens (revoking a revoked token changes nothing).

    Raises
    ------
    NotFound
        No such token, or it is somebody else's.
    """
    token = session.get(ApiToken, token_id) if 0 < token_id < 2**31 else None
    if token is None or token.user_id != actor.id:
        raise NotFound(f"no API token {token_id} of this user")
    if token.revoked_at is None:
        token.revoked_at = now or utcnow()
        session.add(token)
        session.flush()
        record_event(session, "api_token.revoke", actor=actor, entity_type="api_token",
                     entity_id=token.id, diff={"revoked_at": [None, token.revoked_at.isoformat()]})
    return token


def authenticate(session: Session, presented: str, *,
                 now: datetime | None = None) -> tuple[ApiToken, User]:
    """The token and its (active) user for the secret a request presented.

    Raises
    ------
    TokenRefused
        Malformed, unknown, revoked or expired token, or a disabled user.
    """
    now = now or utcnow()
    if (not presented.startswith(TOKEN_PREFIX) or len(presented) > _MAX_PRESENTED
            or not presented.isascii() or not presented.isprintable()):
        raise TokenRefused("the token is not an NRR Lab API token")
    token = session.exec(
        select(ApiToken).where(ApiToken.token_hash == hash_secret(presented))).first()
    if token is None:
        raise TokenRefused("the token is unknown")
    if token.revoked_at is not None:
        raise TokenRefused("the token was revoked")
    if _aware(token.expires_at) <= now:
        raise TokenRefused("the token has expired")
    user = session.get(User, token.user_id)
    if user is None or not user.is_active:
        raise TokenRefused("the token's user is disabled")
    return token, user


def record_use(session: Session, token: ApiToken, user: User, *, method: str, path: str,
               ip: str, writes: bool, now: datetime | None = None) -> bool:
    """Stamp the token's last use and audit it (see the module docstring); flushed.

    Returns whether anything was written. Written as an
    :func:`~experiments.generation.unseen_write`: the stamp and the ``api_token.use`` row
    are shown only by the owner's token list and the admin audit pages, neither of them
    cached, so a pipeline calling the API every few seconds keeps no page cold.
    """
    now = now or utcnow()
    last = _aware(token.last_used_at)
    stamp = last is None or now - last >= USE_STAMP_INTERVAL or token.last_used_ip != ip[:64]
    audited = None if writes else _last_audited(session, token)
    audit = writes or audited is None or now - audited >= READ_AUDIT_INTERVAL
    if not (stamp or audit):
        return False  # no write, so no write lock either
    with unseen_write(session, ApiToken.__tablename__, AuditEvent.__tablename__,
                      rewrites=True):
        if stamp:
            token.last_used_at, token.last_used_ip = now, ip[:64]
            session.add(token)
        if audit:
            record_event(session, "api_token.use", actor=user, entity_type="api_token",
                         entity_id=token.id, ip=ip,
                         diff={"request": [None, f"{method} {path}"[:300]],
                               "token": [None, token.prefix]})
    return True


def _last_audited(session: Session, token: ApiToken) -> datetime | None:
    moment = session.exec(
        select(AuditEvent.occurred_at)
        .where(AuditEvent.entity_type == "api_token", AuditEvent.entity_id == str(token.id),
               AuditEvent.action == "api_token.use")
        .order_by(AuditEvent.occurred_at.desc()).limit(1)
    ).first()
    return _aware(moment)
