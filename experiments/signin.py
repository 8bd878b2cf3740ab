"""Signing in and out, and the sign-in limiter (OWASP ASVS 5.0 §6.3).

The limiter counts attempts, not failures, and counts them *before* the password is
checked: each attempt bumps its counters with one atomic
``INSERT … ON CONFLICT DO UPDATE … RETURNING`` and learns its own position, so sixty
parallel guesses cannot all read "9 so far" and all be checked. A successful sign-in
gives its own attempt back.

Three keys, each counted over a fixed window that starts at its first attempt:

- the **account** (the email as typed, normalised): at most ``account_limit`` attempts
  from anywhere — a guessing attack on one account stops there;
- the **account and address** pair: at most ``pair_limit`` attempts — one noisy client
  cannot use up an account's whole allowance;
- the **address** alone is never blocked, only *slowed*: after ``address_slow_after``
  failures the web layer waits a growing, capped delay before checking. Behind a proxy
  every user may share one address; blocking it would lock everyone out.

A refused attempt (HTTP 429) writes one ``auth.login_throttled`` audit row per key and
window (the first refusal), so a flood cannot flood the log; every wrong password
writes ``auth.login_failed`` as before. Both are written as
:func:`~experiments.generation.unseen_write`: a transaction that only counts an attempt
or a failure leaves the data generation, and so every kept page, as it was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session
from sqlmodel import select as sm_select

from experiments.audit import record_event
from experiments.generation import unseen_write
from experiments.models import AuditEvent, LoginThrottle, User, utcnow
from experiments.passwords import (
    burn_verification_time,
    hash_password,
    needs_rehash,
    normalise_email,
    verify_password,
)

THROTTLED_ACTION = "auth.login_throttled"


def failure_key(email: str) -> str:
    """The audit entity id that counts failed sign-ins for ``email`` (fits 64 characters).

    A long address is hashed rather than cut, so two addresses sharing their first 64
    characters cannot lock each other out.
    """
    normalised = normalise_email(email)
    if len(normalised) <= 64:
        return normalised
    return "sha256:" + hashlib.sha256(normalised.encode()).hexdigest()[:57]


@dataclass(frozen=True)
class SignInLimits:
    """The limiter's settings (the web app reads them from its config)."""

    window: timedelta = timedelta(minutes=15)
    account_limit: int = 30
    pair_limit: int = 10
    address_slow_after: int = 10
    address_delay_base: float = 0.25
    address_delay_max: float = 2.0


@dataclass(frozen=True)
class SignInGate:
    """What the limiter decided for one attempt."""

    allowed: bool
    #: Seconds until the refusing window ends (0 when allowed).
    retry_after: int
    #: Seconds the caller should wait before checking the password (per-address slowing).
    delay: float


def _keys(email: str, ip: str) -> tuple[str, str, str]:
    account = failure_key(email)
    return f"account:{account}", f"pair:{account}|{ip[:64]}", f"address:{ip[:64]}"


def _insert_for(session: Session):
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise NotImplementedError(f"the sign-in limiter does not support {dialect}")


def _bump(session: Session, key: str, now: datetime, window: timedelta) -> tuple[int, datetime]:
    """Count one attempt on ``key`` atomically; (attempts in the window, window start)."""
    table = LoginThrottle.__table__
    expired = table.c.window_start <= now - window
    insert = _insert_for(session)(table).values(key=key, window_start=now, attempts=1)
    statement = insert.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={
            "attempts": case((expired, 1), else_=table.c.attempts + 1),
            "window_start": case((expired, now), else_=table.c.window_start),
        },
    ).returning(table.c.attempts, table.c.window_start)
    attempts, window_start = session.execute(statement).one()
    return attempts, _aware(window_start)


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; they are UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _current(session: Session, key: str, now: datetime, window: timedelta) -> int:
    row = session.execute(
        select(LoginThrottle.attempts, LoginThrottle.window_start).where(LoginThrottle.key == key)
    ).first()
    if row is None or _aware(row.window_start) <= now - window:
        return 0
    return row.attempts


def address_delay(failures: int, limits: SignInLimits) -> float:
    """Seconds to wait before checking a password from an address with ``failures`` so far.

    Nothing up to ``address_slow_after``; then ``base · 2^(failures − slow_after)``,
    capped at ``address_delay_max``.
    """
    excess = failures - limits.address_slow_after
    if excess < 0:
        return 0.0
    return min(limits.address_delay_max, limits.address_delay_base * 2 ** min(excess, 30))


def admit_sign_in(
    session: Session, *, email: str, ip: str, limits: SignInLimits, now: datetime | None = None
) -> SignInGate:
    """Count this attempt against the account and the account-and-address pair.

    Flushes; the caller commits before checking the password, so the counters are
    not held locked during the (deliberately slow) hash. A refusal records one
    ``auth.login_throttled`` event per key and window.
    """
    now = now or utcnow()
    # No cached page shows these counters or audit rows: counting an attempt leaves the
    # page cache as it was (experiments.generation, "Writes no cached page shows").
    with unseen_write(session, LoginThrottle.__tablename__, AuditEvent.__tablename__,
                      rewrites=True):
        return _admit(session, email=email, ip=ip, limits=limits, now=now)


def _admit(session: Session, *, email: str, ip: str, limits: SignInLimits,
           now: datetime) -> SignInGate:
    account_key, pair_key, address_key = _keys(email, ip)
    refusals = []
    for key, limit in ((account_key, limits.account_limit), (pair_key, limits.pair_limit)):
        attempts, window_start = _bump(session, key, now, limits.window)
        if attempts > limit:
            refusals.append((key, attempts, limit, window_start))
        if key == account_key and attempts == 1:
            # A new window for an account: sweep counters two windows old, so spraying
            # many emails cannot grow the table without bound.
            forget_attempts(session, before=now - 2 * limits.window)
    if refusals:
        for key, attempts, limit, _start in refusals:
            if attempts == limit + 1:  # the first refusal of this window: audit it once
                record_event(session, THROTTLED_ACTION, actor=None, entity_type="user",
                             entity_id=failure_key(email), ip=ip,
                             diff={"key": [None, key.partition(":")[0]],
                                   "limit": [None, limit]})
        ends = max(start + limits.window for *_rest, start in refusals)
        return SignInGate(False, max(1, int((ends - now).total_seconds()) + 1), 0.0)
    failures = _current(session, address_key, now, limits.window)
    return SignInGate(True, 0, address_delay(failures, limits))


def record_login_failure(
    session: Session, *, email: str, ip: str, limits: SignInLimits | None = None,
    now: datetime | None = None,
) -> None:
    """``auth.login_failed`` (the attempted email, normalised, is the entity); the address
    counts one more failure for the slowing."""
    with unseen_write(session, LoginThrottle.__tablename__, AuditEvent.__tablename__,
                      rewrites=True):
        record_event(session, "auth.login_failed", actor=None, entity_type="user",
                     entity_id=failure_key(email), ip=ip)
        if ip:
            _bump(session, _keys(email, ip)[2], now or utcnow(),
                  (limits or SignInLimits()).window)


def give_back_attempt(session: Session, *, email: str, ip: str) -> None:
    """A successful sign-in does not use up the account's or the pair's allowance."""
    account_key, pair_key, _address = _keys(email, ip)
    session.execute(
        update(LoginThrottle)
        .where(LoginThrottle.key.in_([account_key, pair_key]), LoginThrottle.attempts > 0)
        .values(attempts=LoginThrottle.attempts - 1)
    )


def forget_attempts(session: Session, *, before: datetime) -> int:
    """Delete counters whose window started before ``before`` (housekeeping)."""
    result = session.execute(delete(LoginThrottle).where(LoginThrottle.window_start < before))
    return result.rowcount or 0


def authenticate(session: Session, email: str, password: str) -> User | None:
    """The active user with this email and password, else ``None`` (same work either way)."""
    user = session.exec(sm_select(User).where(User.email == normalise_email(email))).first()
    if user is None or not user.is_active:
        burn_verification_time(password)
        return None
    if not verify_password(user.password_hash, password):
        return None
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    user.last_login_at = utcnow()
    session.flush()
    return user


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
