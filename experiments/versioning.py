"""Compare-and-set writes: no save made on a stale page overwrites a newer one.

Every editable row (experiments, driver nodes, journeys, journey stages) carries a
``version``. A form sends the version it was rendered from; the write is one SQL
statement ``UPDATE … SET …, version = version + 1 WHERE id = ? AND version = ?``.
When it touches no row, somebody else saved first: the service raises
:class:`StaleVersion` (a :class:`~experiments.errors.Conflict`) naming who changed
the row and when, taken from the audit log. Checking the version in Python first
only gives an earlier, friendlier answer; the database statement is what decides
between two simultaneous writers (PostgreSQL re-checks the ``WHERE`` after the
first writer commits; SQLite serialises writers).

A form without a version, or with one that is not a whole number, is a
:class:`~experiments.errors.ValidationFailed` (422): the server cannot know what
the user saw. Internal callers (the review meeting, the CLI) pass ``None`` and
compare against the row as they loaded it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, select

from experiments.errors import Conflict, ValidationFailed
from experiments.models import AuditEvent, User

_VERSION_DIGITS = 9
MISSING_VERSION = (
    "the form did not say which version it was made on; reload the page and make the change again"
)
BAD_VERSION = "must be the whole-number version the form was made on; reload the page"


class StaleVersion(Conflict):
    """A compare-and-set found a newer version than the one the actor saw."""

    def __init__(
        self,
        message: str,
        *,
        seen: int,
        current: int | None,
        changed_by: str | None,
        changed_at: datetime | None,
    ):
        super().__init__(message)
        self.seen = seen
        self.current = current
        self.changed_by = changed_by
        self.changed_at = changed_at


def parse_version(raw: Any) -> int:
    """The version a form sent.

    Raises
    ------
    ValidationFailed
        ``version`` missing, blank or not a positive whole number.
    """
    text = "" if raw is None else str(raw).strip()
    if not text:
        raise ValidationFailed({"version": MISSING_VERSION})
    if not (text.isascii() and text.isdigit()) or len(text) > _VERSION_DIGITS or int(text) < 1:
        raise ValidationFailed({"version": BAD_VERSION})
    return int(text)


def expected_version(row: Any, raw: Any) -> int:
    """The version to compare against: the form's (``raw``), or the loaded row's for ``None``."""
    return row.version if raw is None else parse_version(raw)


#: Audit actions that record a read, not a change (a download: ``export.csv``, ...).
READ_ONLY_PREFIX = "export."


def last_change(
    session: Session, entity_type: str, entity_id: object
) -> tuple[str | None, datetime | None]:
    """Who made the newest audited change to an entity, and when (``None`` when unknown).

    A download's ``export.<format>`` row names the entity too but changed nothing: left
    out, so a conflict never names the last person who downloaded the experiment."""
    event = session.exec(
        select(AuditEvent)
        .where(AuditEvent.entity_type == entity_type, AuditEvent.entity_id == str(entity_id)[:64],
               AuditEvent.action.not_like(f"{READ_ONLY_PREFIX}%"))
        .order_by(AuditEvent.occurred_at.desc(), AuditEvent.id.desc())
    ).first()
    if event is None:
        return None, None
    actor = session.get(User, event.actor_id) if event.actor_id else None
    return (actor.name or actor.email) if actor else None, event.occurred_at


def stale(
    session: Session, row: Any, seen: int, *, what: str, entity_type: str, entity_id: object
) -> StaleVersion:
    """The conflict to raise when ``row`` is no longer at version ``seen``."""
    session.expire(row)
    current = session.exec(select(type(row).version).where(type(row).id == row.id)).first()
    who, when = last_change(session, entity_type, entity_id)
    by = f" by {who}" if who else " by someone else"
    at = f" on {when:%Y-%m-%d} at {when:%H:%M} UTC" if when else ""
    now = f", it is now version {current}" if current is not None else ", it no longer exists"
    message = (
        f"{what} was changed{by}{at} after you opened this page (you saw version {seen}"
        f"{now}). Nothing of yours was saved: your input is kept below; check the current "
        "state and save again."
    )
    return StaleVersion(message, seen=seen, current=current, changed_by=who, changed_at=when)


def check_version(
    session: Session, row: Any, seen: int, *, what: str, entity_type: str, entity_id: object
) -> None:
    """Refuse early when the loaded row is already past ``seen`` (the SQL write re-checks)."""
    if row.version != seen:
        raise stale(session, row, seen, what=what, entity_type=entity_type, entity_id=entity_id)


def compare_and_set(
    session: Session,
    row: Any,
    seen: int,
    values: Mapping[str, Any],
    *,
    what: str,
    entity_type: str,
    entity_id: object,
) -> None:
    """``UPDATE row SET values, version = version + 1 WHERE id = row.id AND version = seen``.

    The row object is reloaded afterwards. Every status move bumps the version
    too, so a version match also means the status the caller checked still holds.

    Raises
    ------
    StaleVersion
        No row matched: it changed (or was deleted) since version ``seen``.
    """
    model = type(row)
    session.flush()
    statement = (
        update(model)
        .where(model.id == row.id, model.version == seen)
        .values(**values, version=model.version + 1)
        .execution_options(synchronize_session=False)
    )
    result = session.connection().execute(statement)
    if result.rowcount != 1:
        raise stale(session, row, seen, what=what, entity_type=entity_type, entity_id=entity_id)
    session.refresh(row)
