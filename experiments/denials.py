"""Recording refused requests (``authz.denied``) without letting a probe flood the log.

A refused request is worth one audit row, but someone walking every id of another team
(or replaying a request without its CSRF token) would otherwise write one row per try.
So within :data:`DENIAL_WINDOW` a client — the actor, or the address when nobody is
signed in — gets at most one row per path and at most :data:`DENIALS_PER_WINDOW` rows
in all. The bound is read from the audit log itself, so it holds across worker
processes; two requests racing in the same instant may each write one row.

The row is written as an :func:`~experiments.generation.unseen_write`: a transaction that
only records a denial leaves the data generation, and so every kept page, as it was.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlmodel import Session, select

from experiments.audit import record_event
from experiments.generation import unseen_write
from experiments.models import AuditEvent, User, utcnow

DENIAL_ACTION = "authz.denied"
DENIAL_WINDOW = timedelta(minutes=1)
DENIALS_PER_WINDOW = 20


def record_denial(
    session: Session,
    *,
    actor: User | None,
    ip: str,
    path: str,
    endpoint: str,
    reason: str,
    now: datetime | None = None,
) -> AuditEvent | None:
    """Append an ``authz.denied`` row unless this client already has enough of them.

    Returns the new (flushed) event, or ``None`` when the window's bound held it back.
    """
    now = now or utcnow()
    path = path[:200]
    query = select(AuditEvent.diff).where(
        AuditEvent.action == DENIAL_ACTION,
        AuditEvent.occurred_at >= now - DENIAL_WINDOW,
    )
    if actor is not None:
        query = query.where(AuditEvent.actor_id == actor.id)
    else:
        query = query.where(AuditEvent.actor_id.is_(None), AuditEvent.ip == ip[:64])
    recent = session.exec(query.limit(DENIALS_PER_WINDOW)).all()
    if len(recent) >= DENIALS_PER_WINDOW:
        return None
    if any((diff or {}).get("path", [None, None])[1] == path for diff in recent):
        return None
    # No cached page shows the audit log, so a refusal alone does not empty the page
    # cache for everyone (experiments.generation, "Writes no cached page shows").
    with unseen_write(session, AuditEvent.__tablename__):
        return record_event(
            session, DENIAL_ACTION, actor=actor, entity_type="route", entity_id=endpoint[:64],
            diff={"path": [None, path], "reason": [None, reason[:200]]}, ip=ip,
        )
