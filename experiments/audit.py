"""The append-only audit log: one ``entity.verb`` event per change, with a diff.

This module only appends and reads: there is deliberately no function to edit or
delete an event, and no route calls one (a test enforces both).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from experiments.formatting import csv_cell
from experiments.generation import unseen_write
from experiments.input_rules import FieldErrors, read_date_range, read_page, read_text
from experiments.models import AuditEvent, Team, User

AUDIT_PAGE_SIZE = 50
CSV_COLUMNS = ("id", "occurred_at", "action", "actor", "actor_id", "team", "entity_type",
               "entity_id", "diff", "ip")


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
        entity_id=str(entity_id)[:64],
        team_id=team_id,
        diff=_plain(dict(diff or {})),
        ip=ip[:64],
    )
    session.add(event)
    session.flush()
    return event


# ------------------------------------------------------------------ searching


@dataclass(frozen=True)
class AuditFilter:
    """What the audit page and its CSV export show; every field optional.

    ``action`` is an exact action (``user.create``) or an entity prefix (``user`` or
    ``user.*`` for every ``user.`` action); ``actor`` is an email; ``since`` and
    ``until`` are inclusive UTC dates.
    """

    action: str = ""
    actor: str = ""
    entity_type: str = ""
    entity_id: str = ""
    since: date | None = None
    until: date | None = None

    def as_params(self) -> dict[str, str]:
        """The non-empty fields as query-string values (for links that keep the filter)."""
        return {k: (v.isoformat() if isinstance(v, date) else v)
                for k, v in asdict(self).items() if v}


#: The longest value each text filter takes (the columns it is compared with).
FILTER_LENGTHS = {"action": 60, "actor": 254, "entity_type": 40, "entity_id": 64}


def parse_filter(params: Mapping[str, str]) -> tuple[AuditFilter, int]:
    """The filter and page number from query parameters (read with the validation kit).

    Raises
    ------
    ValidationFailed
        A date that is not ISO ``YYYY-MM-DD``, ``until`` before ``since``, a page that
        is not a positive whole number, a value too long to be real, or one holding a
        control character.
    """
    errors = FieldErrors()
    texts = {name: read_text(params, name, errors, max_length=limit)
             for name, limit in FILTER_LENGTHS.items()}
    since, until = read_date_range(params, "since", "until", errors)
    page = read_page(params, errors)
    errors.raise_if_any()
    return AuditFilter(**texts, since=since, until=until), page


@dataclass(frozen=True)
class Change:
    """One field of an event's diff, in words: ``kind`` is "set" (from nothing to
    ``new``), "cleared" (from ``old`` to nothing), "changed" (``old`` to ``new``) or
    "value" (a diff entry that is not an [old, new] pair: ``new`` holds it)."""

    field: str
    kind: str
    old: str = ""
    new: str = ""

    def __str__(self) -> str:
        if self.kind == "set":
            return f"{self.field}: set to {self.new}"
        if self.kind == "cleared":
            return f"{self.field}: cleared (was {self.old})"
        if self.kind == "changed":
            return f"{self.field}: {self.old} \u2192 {self.new}"
        return f"{self.field}: {self.new}"


def shown_value(value: Any) -> str:
    """A stored diff value as a person reads it: text as typed (no JSON quoting or
    escaping), numbers and booleans plainly, lists and objects as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:g}" if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def _is_empty(value: Any) -> bool:
    return value is None or value == ""


def readable_changes(diff: Mapping[str, Any] | None) -> list[Change]:
    """An event's ``{field: [old, new]}`` diff as :class:`Change` entries, in its order."""
    changes = []
    for name, change in (diff or {}).items():
        if isinstance(change, list | tuple) and len(change) == 2:
            old, new = change
            if _is_empty(old) and _is_empty(new):
                continue
            if _is_empty(old):
                changes.append(Change(name, "set", new=shown_value(new)))
            elif _is_empty(new):
                changes.append(Change(name, "cleared", old=shown_value(old)))
            else:
                changes.append(Change(name, "changed", shown_value(old), shown_value(new)))
        else:
            changes.append(Change(name, "value", new=shown_value(change)))
    return changes


#: Why an event has no address: it was not made through a web request.
NO_ADDRESS_REASON = "not recorded: made outside a web request (command line or background job)"


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    actor_email: str | None
    team_slug: str | None

    @property
    def changes(self) -> list[Change]:
        return readable_changes(self.event.diff)


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    filters: AuditFilter
    page: int
    per_page: int
    total: int
    actions: list[str]
    entity_types: list[str]

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_previous(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def _where(query, filters: AuditFilter):
    if filters.action:
        action = filters.action.removesuffix("*")
        if action.endswith(".") or "." not in action:
            prefix = action.rstrip(".") + "."
            query = query.where(AuditEvent.action.startswith(prefix, autoescape=True))
        else:
            query = query.where(AuditEvent.action == action)
    if filters.actor:
        query = query.where(func.lower(User.email) == filters.actor.lower())
    if filters.entity_type:
        query = query.where(AuditEvent.entity_type == filters.entity_type)
    if filters.entity_id:
        query = query.where(AuditEvent.entity_id == filters.entity_id)
    if filters.since:
        query = query.where(AuditEvent.occurred_at >= datetime.combine(filters.since, time(), UTC))
    if filters.until:
        next_day = datetime.combine(filters.until + timedelta(days=1), time(), UTC)
        query = query.where(AuditEvent.occurred_at < next_day)
    return query


def _joined(*columns):
    return (select(*columns)
            .outerjoin(User, User.id == AuditEvent.actor_id)
            .outerjoin(Team, Team.id == AuditEvent.team_id))


def search_events(session: Session, filters: AuditFilter, *, page: int = 1,
                  per_page: int = AUDIT_PAGE_SIZE) -> AuditPage:
    """One page of matching events, newest first, with the total and the filter choices."""
    total = session.exec(_where(_joined(func.count(AuditEvent.id)), filters)).one()
    rows = session.exec(
        _where(_joined(AuditEvent, User.email, Team.slug), filters)
        .order_by(AuditEvent.id.desc()).offset((page - 1) * per_page).limit(per_page)
    ).all()
    actions = list(session.exec(
        select(AuditEvent.action).distinct().order_by(AuditEvent.action)).all())
    types = list(session.exec(
        select(AuditEvent.entity_type).distinct().order_by(AuditEvent.entity_type)).all())
    return AuditPage([AuditRow(e, email, slug) for e, email, slug in rows], filters, page, per_page,
                     total, actions, types)


def iter_events(session: Session, filters: AuditFilter, *, batch: int = 1000) -> Iterator[AuditRow]:
    """Every matching event, newest first, read in keyset batches (any log size)."""
    last_id: int | None = None
    while True:
        query = _where(_joined(AuditEvent, User.email, Team.slug), filters)
        if last_id is not None:
            query = query.where(AuditEvent.id < last_id)
        rows = session.exec(query.order_by(AuditEvent.id.desc()).limit(batch)).all()
        for event, email, slug in rows:
            yield AuditRow(event, email, slug)
        if len(rows) < batch:
            return
        last_id = rows[-1][0].id


def _csv_line(values: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow([csv_cell(v) for v in values])
    return out.getvalue()


def events_csv(session: Session, filters: AuditFilter) -> Iterator[str]:
    """The matching events as CSV lines (header first), formula-neutralised."""
    yield _csv_line(list(CSV_COLUMNS))
    for row in iter_events(session, filters):
        e = row.event
        yield _csv_line([e.id, e.occurred_at.astimezone(UTC).isoformat(), e.action,
                         row.actor_email or "", e.actor_id or "", row.team_slug or "",
                         e.entity_type, e.entity_id,
                         json.dumps(e.diff, ensure_ascii=False, sort_keys=True), e.ip])


def record_audit_export(session: Session, filters: AuditFilter, *, actor: User,
                        ip: str = "") -> AuditEvent:
    """``export.audit``: who downloaded which slice of the log (a row only the audit log
    shows, which is not cached: an ``unseen_write``, as every export's)."""
    with unseen_write(session, AuditEvent.__tablename__):
        return record_event(session, "export.audit", actor=actor, entity_type="audit_log",
                            diff={"filters": [None, filters.as_params()]}, ip=ip)
