"""The append-only audit log: one ``entity.verb`` event per change, with a diff."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from sqlmodel import Session

from experiments.models import AuditEvent, User


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def diff_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{field: [old, new]}`` for the fields whose value changed."""
    keys = list(dict.fromkeys([*before, *after]))
    return {
        k: [_plain(before.get(k)), _plain(after.get(k))]
        for k in keys
        if before.get(k) != after.get(k)
    }


def record_event(
    session: Session,
    action: str,
    *,
    actor: User | None,
    entity_type: str,
    entity_id: object = "",
    team_id: int | None = None,
    diff: Mapping[str, Any] | None = None,
    ip: str = "",
) -> AuditEvent:
    """Append one audit event (flushed, not committed: it commits with the change it records)."""
    if "." not in action:
        raise ValueError(f"audit action must be 'entity.verb', got {action!r}")
    event = AuditEvent(
        action=action,
        actor_id=actor.id if actor is not None else None,
        entity_type=entity_type,
        entity_id=str(entity_id),
        team_id=team_id,
        diff=_plain(dict(diff or {})),
        ip=ip[:64],
    )
    session.add(event)
    session.flush()
    return event


def list_events(session: Session, *, limit: int = 200) -> list[AuditEvent]:
    """The newest audit events first."""
    from sqlmodel import select

    return list(session.exec(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)).all())
