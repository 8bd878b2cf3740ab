"""A personal iCalendar feed (RFC 5545) behind a secret, revocable URL.

A user makes a feed on their account page and gets ``/calendar/<token>.ics`` once; only
the token's SHA-256 is stored, so the URL cannot be shown again — making a new one revokes
the old, and revoking answers every later request for it with 404. The token alone
authenticates the feed (calendar apps send no cookies), and it shows only what its owner
may see, as of each request.

Events (``VEVENT``), each with a UID that never changes, so calendar apps update
rather than duplicate them:

* the **weekly review** of each ISO week from 4 weeks back to 12 ahead, at the configured
  weekday and time (:func:`experiments.digest.meeting_schedule`; default Monday 10:00
  UTC, 60 minutes) — ``review-2026-W49@nrrlab``;
* each visible draft or running experiment's **planned end** (all-day) —
  ``experiment-<id>-planned-end@nrrlab``;
* each of the owner's open **actions** with a due date (all-day) —
  ``action-<id>-due@nrrlab``.

Text (names, titles, hypotheses) is escaped by the ``icalendar`` package (commas,
semicolons, backslashes and line breaks, RFC 5545 §3.3.11) and folded at 75 octets.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from icalendar import Calendar
from icalendar import Event as CalendarEvent
from sqlmodel import Session, select

from experiments.access import visible_team_ids
from experiments.audit import record_event
from experiments.errors import NotFound
from experiments.models import Experiment, User, utcnow
from experiments.notify import experiment_path, link
from experiments.notify_models import CalendarFeed
from experiments.review_models import Action
from experiments.review_weeks import aware, current_week, week_of

TOKEN_PREFIX = "cal_"  # noqa: S105 (a prefix, not a secret)
_TOKEN = re.compile(r"cal_[A-Za-z0-9_-]{40,60}", re.ASCII)
WEEKS_BACK = 4
WEEKS_AHEAD = 12
UID_DOMAIN = "nrrlab"
PRODID = "-//NRR Lab//Calendar feed//EN"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def active_feed(session: Session, user: User) -> CalendarFeed | None:
    """The user's live feed (at most one), or ``None``."""
    return session.exec(select(CalendarFeed)
                        .where(CalendarFeed.user_id == user.id, CalendarFeed.revoked_at.is_(None))
                        .order_by(CalendarFeed.id.desc())).first()


def _revoke_all(session: Session, user: User, now: datetime) -> int:
    # One change of a user's feeds at a time: the user's row is locked first (PostgreSQL;
    # SQLite writes are serialised anyway), so of two "new address" clicks at once the
    # second waits and revokes the first one's feed instead of leaving two live URLs.
    session.exec(select(User.id).where(User.id == user.id).with_for_update()).one()
    feeds = session.exec(select(CalendarFeed).where(CalendarFeed.user_id == user.id,
                                                    CalendarFeed.revoked_at.is_(None))).all()
    for feed in feeds:
        feed.revoked_at = now
        session.add(feed)
    session.flush()
    return len(feeds)


def create_feed(session: Session, user: User, *, ip: str = "") -> tuple[CalendarFeed, str]:
    """A new feed for ``user`` and its token (to show once); any older feed is revoked.
    Audited as ``calendar.create``. Flushed, not committed."""
    now = utcnow()
    replaced = _revoke_all(session, user, now)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    feed = CalendarFeed(user_id=user.id, token_sha256=token_hash(token),
                        hint=token[len(TOKEN_PREFIX):][:6], created_at=now)
    session.add(feed)
    session.flush()
    record_event(session, "calendar.create", actor=user, entity_type="calendar_feed",
                 entity_id=feed.id, ip=ip, diff={"replaced": [None, replaced]})
    return feed, token


def revoke_feed(session: Session, user: User, *, ip: str = "") -> int:
    """Revoke ``user``'s feed (its URL answers 404 from now on); how many were live."""
    count = _revoke_all(session, user, utcnow())
    if count:
        record_event(session, "calendar.revoke", actor=user, entity_type="calendar_feed",
                     entity_id=user.id, ip=ip, diff={"revoked": [None, count]})
    return count


def feed_owner(session: Session, token: str) -> User:
    """The active user whose live feed ``token`` opens.

    Raises
    ------
    NotFound
        Malformed, unknown or revoked token, or a disabled user — all alike.
    """
    if not _TOKEN.fullmatch(token or ""):
        raise NotFound("no such calendar feed")
    feed = session.exec(select(CalendarFeed)
                        .where(CalendarFeed.token_sha256 == token_hash(token))).first()
    if feed is None or feed.revoked_at is not None:
        raise NotFound("no such calendar feed")
    user = session.get(User, feed.user_id)
    if user is None or not user.is_active:
        raise NotFound("no such calendar feed")
    return user


# ---------------------------------------------------------------- the calendar


@dataclass(frozen=True)
class FeedEntry:
    """One VEVENT before it is written: all-day when ``start`` is a date."""

    uid: str
    summary: str
    start: object  # datetime (timed) or date (all day)
    end: object  # None: an all-day event of one day (RFC 5545 §3.6.1)
    description: str = ""
    url: str | None = None
    modified: datetime | None = None


def _day_after(day: date) -> date | None:
    """The exclusive end of an all-day event on ``day``; ``None`` for the last date Python
    can hold (9999-12-31, which a planned end may be): RFC 5545 §3.6.1 reads an all-day
    VEVENT without DTEND as lasting one day."""
    return None if day == date.max else day + timedelta(days=1)


def feed_entries(session: Session, user: User, *, now: datetime | None = None,
                 environ: Mapping[str, str] | None = None) -> list[FeedEntry]:
    """What ``user``'s feed holds as of ``now`` (see the module docstring)."""
    from experiments.digest import meeting_schedule

    now = aware(now) or utcnow()
    schedule = meeting_schedule(environ)
    this_week = current_week(now)
    entries: list[FeedEntry] = []
    for offset in range(-WEEKS_BACK, WEEKS_AHEAD + 1):
        week = week_of(this_week.start.date() + timedelta(weeks=offset))
        entries.append(FeedEntry(
            uid=f"review-{week.label}@{UID_DOMAIN}", summary=f"Weekly review {week.label}",
            start=schedule.meeting_at(week), end=schedule.meeting_end(week),
            description="NRR Lab weekly review: decisions, alerts, actions.",
            url=link(f"/review/{week.label}", environ)))

    teams = visible_team_ids(session, user)
    experiments = session.exec(select(Experiment)
                               .where(Experiment.planned_end.is_not(None),
                                      Experiment.status.in_(("draft", "running")))
                               .order_by(Experiment.planned_end, Experiment.key)).all()
    for experiment in experiments:
        if teams is not None and experiment.team_id is not None \
                and experiment.team_id not in teams:
            continue
        entries.append(FeedEntry(
            uid=f"experiment-{experiment.id}-planned-end@{UID_DOMAIN}",
            summary=f"Planned end: {experiment.name} ({experiment.key})",
            start=experiment.planned_end, end=_day_after(experiment.planned_end),
            description=f"Status: {experiment.status}\nHypothesis: {experiment.hypothesis}",
            url=link(experiment_path(experiment.key), environ),
            modified=aware(experiment.updated_at)))

    actions = session.exec(select(Action)
                           .where(Action.owner_id == user.id, Action.status == "open",
                                  Action.due.is_not(None))
                           .order_by(Action.due, Action.id)).all()
    for action in actions:
        if teams is not None and action.team_id is not None and action.team_id not in teams:
            continue
        entries.append(FeedEntry(
            uid=f"action-{action.id}-due@{UID_DOMAIN}", summary=f"Action due: {action.title}",
            start=action.due, end=_day_after(action.due),
            description=f"Raised in the review of {action.raised_week}.",
            url=link(f"/review/{action.raised_week}", environ),
            modified=aware(action.updated_at)))
    return entries


def calendar_ics(session: Session, user: User, *, now: datetime | None = None,
                 environ: Mapping[str, str] | None = None) -> bytes:
    """``user``'s feed as an iCalendar document (``text/calendar``)."""
    now = (aware(now) or utcnow()).replace(microsecond=0)
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("method", "PUBLISH")
    calendar.add("x-wr-calname", f"NRR Lab — {user.name or user.email}")
    calendar.add("x-published-ttl", "PT1H")
    for entry in feed_entries(session, user, now=now, environ=environ):
        event = CalendarEvent()
        event.add("uid", entry.uid)
        event.add("dtstamp", now)
        event.add("summary", entry.summary)
        event.add("dtstart", entry.start)
        if entry.end is not None:
            event.add("dtend", entry.end)
        if entry.description:
            event.add("description", entry.description)
        if entry.url:
            event.add("url", entry.url)
        if entry.modified:
            event.add("last-modified", entry.modified.replace(microsecond=0))
        event.add("transp", "TRANSPARENT" if not isinstance(entry.start, datetime)
                  else "OPAQUE")
        calendar.add_component(event)
    return calendar.to_ical()
