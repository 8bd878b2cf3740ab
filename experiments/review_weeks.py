"""ISO weeks and the windows a review looks through.

A review covers the ISO week ``YYYY-Www``, Monday 00:00 UTC to the next Monday, and
is evaluated *as of* a moment (:class:`Window`): the end of the week, or now while
the week is still running. Moments stored in documents are ISO 8601 strings in UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from experiments.models import utcnow

_WEEK = re.compile(r"(\d{4})-W(\d{2})", re.ASCII)


@dataclass(frozen=True)
class Week:
    """One ISO week: ``start`` is Monday 00:00 UTC, ``end`` the next Monday (exclusive)."""

    label: str
    start: datetime
    end: datetime

    @property
    def previous(self) -> Week:
        return week_of(self.start.date() - timedelta(days=7))

    @property
    def next(self) -> Week:
        return week_of(self.end.date())

    @property
    def last_day(self) -> date:
        return self.end.date() - timedelta(days=1)


def midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def week_of(day: date) -> Week:
    """The ISO week containing ``day``."""
    year, number, weekday = day.isocalendar()
    monday = day - timedelta(days=weekday - 1)
    return Week(f"{year}-W{number:02d}", midnight(monday), midnight(monday + timedelta(days=7)))


def parse_week(label: str) -> Week:
    """The ISO week named ``label`` (``2026-W48``).

    Raises
    ------
    ValueError
        Not of the form ``YYYY-Www``, or a week the year does not have (``2026-W53``).
    """
    match = _WEEK.fullmatch(label or "")
    if not match:
        raise ValueError(f"week must look like 2026-W48, not {label[:20]!r}")
    year, number = int(match.group(1)), int(match.group(2))
    if not 1900 <= year <= 9998:
        raise ValueError(f"week year must be between 1900 and 9998, not {year}")
    try:
        monday = date.fromisocalendar(year, number, 1)
    except ValueError:
        raise ValueError(f"{year} has no ISO week {number}") from None
    return week_of(monday)


def current_week(now: datetime | None = None) -> Week:
    return week_of((now or utcnow()).astimezone(UTC).date())


def quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def aware(moment: datetime | None) -> datetime | None:
    """``moment`` with UTC attached when it is naive (SQLite hands back naive UTC)."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def iso(value: datetime | date | None) -> str | None:
    """A moment as an ISO 8601 UTC string, a day as ``YYYY-MM-DD``; ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return aware(value).astimezone(UTC).isoformat()
    return value.isoformat()


def parse_moment(value: str | None) -> datetime | None:
    """Inverse of :func:`iso` for moments (``None`` or garbage gives ``None``)."""
    if not value:
        return None
    try:
        return aware(datetime.fromisoformat(value))
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Window:
    """What a review looks at: changes in ``[changes_from, changes_to)``, state as of ``as_of``."""

    changes_from: datetime
    changes_to: datetime
    as_of: datetime

    @property
    def closed(self) -> bool:
        """The window is over: ``as_of`` is its (exclusive) end, not a moment inside it."""
        return self.as_of >= self.changes_to

    def happened(self, moment: datetime | None) -> bool:
        """``moment`` is at or before the review's point in time."""
        if moment is None:
            return False
        moment = aware(moment)
        return moment < self.as_of if self.closed else moment <= self.as_of

    def in_window(self, moment: datetime | None) -> bool:
        return self.happened(moment) and aware(moment) >= self.changes_from

