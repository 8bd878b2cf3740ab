"""The pre-meeting digest: one email per person before the weekly review.

Each person who wants it (their notification settings; on by default) gets, for the
review of an ISO week and as of the moment it is built:

* **agenda** — the experiments they may see that the week's review lists under "Needs a
  decision" (the review's own rule, :func:`experiments.review_rows.review_rows`);
* **alerts** — the review's alerts (sample ratio mismatch, running past the planned end,
  will not reach its sample size) and experiments whose verdict is ``underpowered``;
* **actions** — their own open actions due by the end of the week (overdue ones first).

The same module's :func:`send_time_alerts` (hourly) sends the alerts that come with time
rather than data — running past the planned end, will not reach the sample size — to
webhooks and emails as ``alert`` events, once per experiment and planned end.

Nobody gets an empty digest. A digest goes out once per person and week (the delivery's
``dedupe_key``), however often the job runs. It is queued :data:`DIGEST_LEAD` before the
meeting by the periodic job (:func:`send_digest_if_due`), or by hand with
``nrrlab notify digest --week 2026-W49``.

The meeting's time is configured once for the digest and the calendar feed:
``NRRLAB_REVIEW_WEEKDAY`` (``monday``…``sunday``, default ``monday``),
``NRRLAB_REVIEW_TIME`` (``HH:MM`` UTC, default ``10:00``), ``NRRLAB_REVIEW_MINUTES``
(default 60) and ``NRRLAB_DIGEST_HOURS_BEFORE`` (default 2).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from experiments.access import visible_team_ids
from experiments.actions import ActionView, open_actions_of
from experiments.models import Experiment, User, utcnow
from experiments.notify import (
    alert_event,
    email_footer,
    emit,
    link,
    preferences_of,
    queue_email,
)
from experiments.notify_models import DIGEST, Delivery
from experiments.review_rows import ReviewRow, review_rows
from experiments.review_weeks import Week, Window, aware, current_week

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME = re.compile(r"([01]\d|2[0-3]):([0-5]\d)", re.ASCII)


class ScheduleConfigError(ValueError):
    """A ``NRRLAB_REVIEW_*`` / ``NRRLAB_DIGEST_*`` variable is unusable (named in the text)."""


@dataclass(frozen=True)
class MeetingSchedule:
    """When the weekly review meets (UTC), and how long before it the digest goes out."""

    weekday: int = 0  # Monday
    at: time = time(10, 0)
    minutes: int = 60
    digest_lead: timedelta = timedelta(hours=2)

    def meeting_at(self, week: Week) -> datetime:
        day = week.start.date() + timedelta(days=self.weekday)
        return datetime.combine(day, self.at, tzinfo=UTC)

    def meeting_end(self, week: Week) -> datetime:
        return self.meeting_at(week) + timedelta(minutes=self.minutes)

    def describe(self, week: Week) -> str:
        return f"{self.meeting_at(week):%A %-d %B %Y, %H:%M} UTC"


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ScheduleConfigError(f"{name} must be a whole number from {low} to {high}, "
                                  f"not {raw[:20]!r}")
    return int(raw)


def meeting_schedule(environ: Mapping[str, str] | None = None) -> MeetingSchedule:
    """The schedule from the environment (see the module docstring).

    Raises
    ------
    ScheduleConfigError
        A weekday, time or number that cannot be read.
    """
    env = os.environ if environ is None else environ
    day = env.get("NRRLAB_REVIEW_WEEKDAY", "monday").strip().lower() or "monday"
    if day not in WEEKDAYS:
        raise ScheduleConfigError(f"NRRLAB_REVIEW_WEEKDAY must be one of {', '.join(WEEKDAYS)}, "
                                  f"not {day[:20]!r}")
    raw_time = env.get("NRRLAB_REVIEW_TIME", "10:00").strip() or "10:00"
    match = _TIME.fullmatch(raw_time)
    if not match:
        raise ScheduleConfigError(f"NRRLAB_REVIEW_TIME must be HH:MM (UTC, 24 h), "
                                  f"not {raw_time[:20]!r}")
    return MeetingSchedule(
        weekday=WEEKDAYS.index(day), at=time(int(match.group(1)), int(match.group(2))),
        minutes=_whole(env, "NRRLAB_REVIEW_MINUTES", 60, 5, 24 * 60),
        digest_lead=timedelta(hours=_whole(env, "NRRLAB_DIGEST_HOURS_BEFORE", 2, 0, 72)))


# ---------------------------------------------------------------- one person's digest


@dataclass(frozen=True)
class DigestLine:
    key: str
    name: str
    text: str
    yours: bool


@dataclass(frozen=True)
class Digest:
    """What one person's digest holds for one week."""

    user: User
    week: Week
    meeting: str  # "Monday 7 December 2026, 10:00 UTC"
    agenda: tuple[DigestLine, ...]
    alerts: tuple[DigestLine, ...]
    actions: tuple[ActionView, ...]

    @property
    def empty(self) -> bool:
        return not (self.agenda or self.alerts or self.actions)

    def subject(self) -> str:
        def count(n: int, one: str, many: str) -> str:
            return f"{n} {one if n == 1 else many}"

        return (f"[NRR Lab] Weekly review {self.week.label}: "
                f"{count(len(self.agenda), 'decision', 'decisions')}, "
                f"{count(len(self.alerts), 'alert', 'alerts')}, "
                f"{count(len(self.actions), 'action due', 'actions due')}")

    def body(self, environ: Mapping[str, str] | None = None) -> str:
        out = [f"Weekly review {self.week.label} — {self.meeting}", ""]

        def section(title: str, lines: list[str], none: str) -> None:
            out.append(f"{title} ({len(lines)})")
            out.extend(lines or [f"  {none}"])
            out.append("")

        section("Needs a decision",
                [f"- {line.name} ({line.key}){' [yours]' if line.yours else ''}: {line.text}"
                 for line in self.agenda], "nothing to decide")
        section("Alerts", [f"- {line.name} ({line.key}): {line.text}" for line in self.alerts],
                "no alerts")
        section("Your actions due this week", [_action_line(view) for view in self.actions],
                "no actions due")
        where = link(f"/review/{self.week.label}", environ)
        if where:
            out += [f"Open the review: {where}"]
        return "\n".join(out).rstrip("\n") + "\n" + email_footer(environ)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _action_line(view: ActionView) -> str:
    action = view.action
    due = f"due {action.due.isoformat()}" if action.due else "no due date"
    about = f" [{view.experiment_key}]" if view.experiment_key else ""
    return f"- {_one_line(action.title)} — {due}{' (overdue)' if view.overdue else ''}{about}"


def build_digest(session: Session, user: User, week: Week, *,
                 now: datetime | None = None) -> Digest:
    """``user``'s digest for the review of ``week`` as of ``now`` (nothing is stored)."""
    now = aware(now) or utcnow()
    teams = visible_team_ids(session, user)
    experiments = [e for e in session.exec(select(Experiment).order_by(Experiment.key)).all()
                   if teams is None or e.team_id is None or e.team_id in teams]
    window = Window(week.previous.start, week.end, min(now, week.end))
    rows: list[ReviewRow] = review_rows(session, window, experiments)
    owners = {e.key: e.owner_id for e in experiments}
    agenda, alerts = [], []
    for row in rows:
        key, name = row.key, row.experiment.name
        yours = owners.get(key) == user.id
        if row.review.needs_decision:
            agenda.append(DigestLine(key, name, _one_line("; ".join(row.review.needs_decision)),
                                     yours))
        texts = [a.text for a in row.review.alerts]
        if row.review.verdict_now == "underpowered" and row.experiment.status == "running":
            texts.append("underpowered so far: not significant and below the planned sample size")
        if texts:
            alerts.append(DigestLine(key, name, _one_line("; ".join(texts)), yours))
    actions = tuple(view for view in open_actions_of(session, user, user, now=now)
                    if view.action.due is not None and view.action.due < week.end.date())
    return Digest(user=user, week=week, meeting=meeting_schedule().describe(week),
                  agenda=tuple(agenda), alerts=tuple(alerts), actions=actions)


def digest_key(week: Week, user: User) -> str:
    return f"digest:{week.label}:{user.id}"


@dataclass(frozen=True)
class DigestRun:
    queued: list[Delivery]
    already_sent: int
    empty: int


def send_digest(session: Session, week: Week, *, now: datetime | None = None,
                environ: Mapping[str, str] | None = None) -> DigestRun:
    """Queue the digest of ``week`` for every active user who wants it and has something
    in it (sent after commit; once per user and week). Flushed, not committed."""
    now = aware(now) or utcnow()
    queued: list[Delivery] = []
    already = empty = 0
    for user in session.exec(select(User).where(User.is_active.is_(True))
                             .order_by(User.id)).all():
        if not preferences_of(session, user).wants(DIGEST):
            continue
        if session.exec(select(Delivery.id)
                        .where(Delivery.dedupe_key == digest_key(week, user))).first():
            already += 1
            continue
        digest = build_digest(session, user, week, now=now)
        if digest.empty:
            empty += 1
            continue
        delivery = queue_email(session, user, event=DIGEST, subject=digest.subject(),
                               body=digest.body(environ), dedupe_key=digest_key(week, user),
                               now=now)
        if delivery is not None:
            queued.append(delivery)
    return DigestRun(queued, already, empty)


def send_digest_if_due(engine: Engine, *, now: datetime | None = None,
                       environ: Mapping[str, str] | None = None) -> DigestRun | None:
    """The periodic job: in the lead time before this week's meeting, queue its digest."""
    now = aware(now) or utcnow()
    schedule = meeting_schedule(environ)
    week = current_week(now)
    meeting = schedule.meeting_at(week)
    if not meeting - schedule.digest_lead <= now < meeting:
        return None
    with Session(engine, expire_on_commit=False) as session:
        run = send_digest(session, week, now=now, environ=environ)
        session.commit()
    return run


# ---------------------------------------------------------------- alerts that come with time

#: The review's alerts that appear without new data (DESIGN §8 "Weekly review").
TIME_ALERTS: tuple[str, ...] = ("past_end", "sample_size")


def send_time_alerts(engine: Engine, *, now: datetime | None = None,
                     environ: Mapping[str, str] | None = None) -> int:
    """The periodic job for alerts that come with time rather than data: a running
    experiment past its planned end, or one that will not reach its sample size by then
    (the review's own rules, as of ``now``). Each set of alerts goes out once per
    experiment and planned end. Returns how many experiments were alerted."""
    now = aware(now) or utcnow()
    week = current_week(now)
    with Session(engine, expire_on_commit=False) as session:
        running = session.exec(select(Experiment).where(Experiment.status == "running")
                               .order_by(Experiment.key)).all()
        by_key = {e.key: e for e in running}
        alerted = 0
        for row in review_rows(session, Window(week.previous.start, week.end, now), running):
            alerts = [(a.kind, a.text) for a in row.review.alerts if a.kind in TIME_ALERTS]
            if not alerts:
                continue
            experiment = by_key[row.key]
            kinds = "+".join(kind for kind, _ in alerts)
            once = f"alert:{kinds}:{experiment.id}:{experiment.planned_end}"
            if emit(session, alert_event(session, experiment, alerts, now=now),
                    environ=environ, once=once):
                alerted += 1
        session.commit()
    return alerted
