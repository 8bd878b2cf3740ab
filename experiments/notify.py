"""Notifications: events become deliveries, deliveries are sent by a background job.

1. A service that makes something worth telling (a decision, an analysed upload, an
   alert) builds an :class:`Event` and calls :func:`emit` inside its transaction.
   ``emit`` writes one :class:`~experiments.notify_models.Delivery` per recipient — each
   active webhook subscribed to the event, each user whose preferences ask for it by
   email and who may see the experiment — with the exact body to send, and remembers
   their ids on the session.
2. When that transaction commits (never before, never after a rollback) the ids are
   handed to the process's dispatcher — the Huey queue of :mod:`experiments.jobs` — so
   the request returns without waiting for any network call.
3. The job :func:`deliver` claims a delivery (``queued``/``retrying`` → ``sending``, one
   compare-and-set, so two workers never both send it), sends it and records the outcome:
   ``sent``; ``skipped`` (no SMTP configured, webhook switched off); or ``retrying`` with
   exponential backoff (30 s, 1, 2, 4, 8 min) until :data:`MAX_ATTEMPTS`, then ``failed``.
   An admin can retry a failed one from the delivery log. A sweep (every minute) re-queues
   anything due whose queue entry was lost. The job's two writes (the claim, the outcome)
   are marked :func:`~experiments.generation.unseen_write`: a delivery's state is shown only by
   the admin's delivery log, which is not cached, so sending leaves the data generation,
   and every kept page, as it was.

Links in messages use ``NRRLAB_BASE_URL`` (e.g. ``https://nrrlab.example.com``); without
it, messages name things without links.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy import event as sa_event
from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from experiments.access import effective_role
from experiments.audit import record_event
from experiments.errors import Conflict, NotFound
from experiments.generation import unseen_write
from experiments.input_rules import FieldErrors, parse_id, read_choice, read_flag
from experiments.mailer import (
    MailConfigError,
    MailError,
    MailNotConfigured,
    SmtpSettings,
    build_message,
    clean_subject,
    send_message,
)
from experiments.models import Experiment, Team, User, utcnow
from experiments.notify_models import (
    DEFAULT_EMAIL_EVENTS,
    DIGEST,
    EVENTS,
    SCOPES,
    Delivery,
    NotificationPreference,
    WebhookEndpoint,
)
from experiments.review_weeks import aware
from experiments.versioning import compare_and_set, parse_version
from experiments.webhooks import WebhookError, endpoint_secret, payload_bytes, post, slack_link

log = logging.getLogger("nrrlab.notify")

BASE_URL_ENV = "NRRLAB_BASE_URL"
MAX_ATTEMPTS = 6
RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 3600.0
#: A delivery left ``sending`` this long was being sent by a worker that died.
STUCK_AFTER = timedelta(minutes=15)
#: A ``queued`` delivery older than this was lost by its queue (the sweep re-queues it).
QUEUED_GRACE = timedelta(minutes=2)
_PENDING = "nrrlab.notify.pending"
_HOOKED = "nrrlab.notify.hooked"


# ---------------------------------------------------------------- settings


def base_url(environ: Mapping[str, str] | None = None) -> str | None:
    """``NRRLAB_BASE_URL`` without its trailing slash, or ``None`` (unset or not http/https)."""
    env = os.environ if environ is None else environ
    raw = env.get(BASE_URL_ENV, "").strip().rstrip("/")
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return raw


def link(path: str, environ: Mapping[str, str] | None = None) -> str | None:
    root = base_url(environ)
    return f"{root}{path}" if root else None


def experiment_path(key: str) -> str:
    return f"/experiments/{quote(key, safe='')}"


# ---------------------------------------------------------------- events


@dataclass(frozen=True)
class Event:
    """Something worth telling, about one experiment (or none, for a test ping).

    ``title`` is one plain line (the email subject); ``lines`` are label/value pairs
    shown in the email and the Slack text; ``data`` is the structured part of the
    webhook JSON.
    """

    kind: str
    title: str
    occurred_at: datetime
    experiment: Mapping[str, Any] | None = None  # key, name, team, team_id, owner_id
    lines: tuple[tuple[str, str], ...] = ()
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def team_id(self) -> int | None:
        return (self.experiment or {}).get("team_id")

    @property
    def owner_id(self) -> int | None:
        return (self.experiment or {}).get("owner_id")

    def url(self, environ: Mapping[str, str] | None = None) -> str | None:
        if not self.experiment:
            return None
        return link(experiment_path(self.experiment["key"]), environ)

    def slack_text(self, environ: Mapping[str, str] | None = None) -> str:
        """Slack mrkdwn: the title in bold, the experiment as a link, then one line per fact."""
        head = f"*{slack_link(None, self.title)}*"
        if self.experiment:
            name = f"{self.experiment['name']} ({self.experiment['key']})"
            head += f"\n{slack_link(self.url(environ), name)}"
        body = "".join(f"\n• {slack_link(None, k)}: {slack_link(None, v)}" for k, v in self.lines)
        return head + body

    def webhook_payload(self, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        experiment = None
        if self.experiment:
            experiment = {"key": self.experiment["key"], "name": self.experiment["name"],
                          "team": self.experiment.get("team"), "url": self.url(environ)}
        return {"event": self.kind, "occurred_at": self.occurred_at.isoformat(),
                "text": self.slack_text(environ), "title": self.title,
                "experiment": experiment, "data": dict(self.data)}

    def email_subject(self) -> str:
        return clean_subject(f"[NRR Lab] {self.title}")

    def email_body(self, environ: Mapping[str, str] | None = None) -> str:
        out = [self.title, ""]
        if self.experiment:
            out.append(f"Experiment: {self.experiment['name']} ({self.experiment['key']})")
            if self.experiment.get("team"):
                out.append(f"Team: {self.experiment['team']}")
        out += [f"{k}: {v}" for k, v in self.lines]
        url = self.url(environ)
        if url:
            out += ["", f"Open it: {url}"]
        return "\n".join(out) + "\n" + email_footer(environ)


def email_footer(environ: Mapping[str, str] | None = None) -> str:
    where = link("/account/notifications", environ)
    return ("\n-- \nYou get this email because of your NRR Lab notification settings"
            + (f": {where}" if where else " (your account → Notifications).") + "\n")


def experiment_ref(session: Session, experiment: Experiment) -> dict[str, Any]:
    team = session.get(Team, experiment.team_id) if experiment.team_id else None
    return {"key": experiment.key, "name": experiment.name,
            "team": team.name if team else None, "team_id": experiment.team_id,
            "owner_id": experiment.owner_id}


def _pct(value: Any) -> str:
    return f"{value * 100:.4g}%" if isinstance(value, int | float) else "—"


def decision_event(session: Session, experiment: Experiment, *, actor: User | None,
                   now: datetime | None = None) -> Event:
    """The event of a decision just recorded on ``experiment``."""
    who = (actor.name or actor.email) if actor else None
    lines = [("Decision", experiment.decision or "—")]
    if experiment.decision == "ship":
        lines += [("Ships", experiment.shipped_variant or "—"),
                  ("Rollout", _pct(experiment.rollout_share))]
    lines += [("Rationale", " ".join((experiment.decision_rationale or "").split())),
              ("Decided by", who or "—"), ("Where", experiment.decision_source or "—")]
    return Event(
        kind="decision",
        title=f"Decision on {experiment.name} ({experiment.key}): {experiment.decision}",
        occurred_at=now or utcnow(), experiment=experiment_ref(session, experiment),
        lines=tuple(lines),
        data={"decision": experiment.decision, "rationale": experiment.decision_rationale,
              "shipped_variant": experiment.shipped_variant,
              "rollout_share": experiment.rollout_share, "decided_by": who,
              "source": experiment.decision_source or None})


def upload_event(session: Session, experiment: Experiment, *, version: int, rows: int,
                 filename: str, verdict: str | None, actor: User | None,
                 now: datetime | None = None) -> Event:
    """The event of an upload whose analysis was just stored."""
    who = (actor.name or actor.email) if actor else None
    return Event(
        kind="upload",
        title=(f"New data for {experiment.name} ({experiment.key}): version {version}, "
               f"{rows:,} accounts, verdict {verdict or 'none'}"),
        occurred_at=now or utcnow(), experiment=experiment_ref(session, experiment),
        lines=(("Version", str(version)), ("Accounts", f"{rows:,}"), ("File", filename),
               ("Verdict", verdict or "none"), ("Uploaded by", who or "—")),
        data={"version": version, "rows": rows, "filename": filename, "verdict": verdict,
              "uploaded_by": who})


def analysis_alerts(result: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(kind, text)`` alerts a fresh analysis raises: sample ratio mismatch, and each
    failed guardrail (DESIGN §4 ``srm.flag``, §4b ``guardrails[].status``)."""
    result = result or {}
    alerts: list[tuple[str, str]] = []
    srm = result.get("srm") or {}
    if isinstance(srm, Mapping) and srm.get("flag"):
        p = srm.get("p_value")
        shown = (("p < 0.001" if p < 0.001 else f"p = {p:.3g}")
                 if isinstance(p, int | float) else "unplanned variant")
        alerts.append(("srm", f"sample ratio mismatch ({shown}): results cannot be trusted"))
    for comparison in result.get("comparisons") or []:
        if not isinstance(comparison, Mapping):
            continue
        for guardrail in comparison.get("guardrails") or []:
            if isinstance(guardrail, Mapping) and guardrail.get("status") == "fail":
                alerts.append(("guardrail", f"{comparison.get('variant')}: guardrail "
                                            f"{guardrail.get('metric')} failed"))
    return alerts


def alert_event(session: Session, experiment: Experiment, alerts: Sequence[tuple[str, str]], *,
                now: datetime | None = None) -> Event:
    """One event for the alerts of ``experiment`` (see :func:`analysis_alerts`)."""
    texts = "; ".join(text for _, text in alerts)
    return Event(
        kind="alert", title=f"Alert on {experiment.name} ({experiment.key}): {texts}",
        occurred_at=now or utcnow(), experiment=experiment_ref(session, experiment),
        lines=tuple(("Alert", text) for _, text in alerts),
        data={"alerts": [{"kind": kind, "text": text} for kind, text in alerts]})


# ---------------------------------------------------------------- preferences


@dataclass(frozen=True)
class Preferences:
    """A user's email choices (the defaults when they never saved any)."""

    events: frozenset[str]
    scope: str
    version: int | None  # None: never saved

    def wants(self, kind: str) -> bool:
        return kind in self.events


def _preference_row(session: Session, user: User) -> NotificationPreference | None:
    return session.exec(select(NotificationPreference)
                        .where(NotificationPreference.user_id == user.id)).first()


def preferences_of(session: Session, user: User) -> Preferences:
    row = _preference_row(session, user)
    if row is None:
        return Preferences(frozenset(DEFAULT_EMAIL_EVENTS), "mine", None)
    chosen = {name for name in (DIGEST, *EVENTS) if getattr(row, name)}
    return Preferences(frozenset(chosen), row.scope, row.version)


def save_preferences(session: Session, user: User, data: Mapping[str, Any]) -> Preferences:
    """Save ``user``'s choices: a checkbox per event (``digest``, ``alert``, ``decision``,
    ``upload``) and ``scope`` (``mine``/``all``), on the version the form saw.

    Raises
    ------
    ValidationFailed
        A scope not in :data:`SCOPES`, a malformed ``version``.
    experiments.errors.Conflict
        The preferences changed since, or were first saved meanwhile (another tab).
    """
    errors = FieldErrors()
    scope = read_choice(data, "scope", errors, SCOPES, default="mine")
    errors.raise_if_any()
    values = {name: read_flag(data, name) for name in (DIGEST, *EVENTS)}
    before = preferences_of(session, user)
    row = _preference_row(session, user)
    if row is None:
        row = NotificationPreference(user_id=user.id, scope=scope, **values)
        try:
            with session.begin_nested():  # two first saves at once: one row, one conflict
                session.add(row)
                session.flush()
        except IntegrityError:
            raise Conflict("your notification settings were saved meanwhile (another tab?); "
                           "reload the page to see them") from None
    else:
        compare_and_set(session, row, parse_version(data.get("version")),
                        {**values, "scope": scope, "updated_at": utcnow()},
                        what="your notification settings", entity_type="notification_preference",
                        entity_id=row.id)
    after = preferences_of(session, user)
    record_event(session, "notification.preferences", actor=user, entity_type="user",
                 entity_id=user.id,
                 diff={"events": [sorted(before.events), sorted(after.events)],
                       "scope": [before.scope, after.scope]})
    return after


def _email_recipients(session: Session, event: Event) -> list[User]:
    users = session.exec(select(User).where(User.is_active.is_(True)).order_by(User.id)).all()
    rows = {p.user_id: p for p in session.exec(select(NotificationPreference)).all()}
    chosen = []
    for user in users:
        row = rows.get(user.id)
        wants = getattr(row, event.kind, False) if row else event.kind in DEFAULT_EMAIL_EVENTS
        if not wants:
            continue
        scope = row.scope if row else "mine"
        if scope == "mine" and event.owner_id != user.id:
            continue
        if effective_role(session, user, event.team_id) is None:
            continue
        chosen.append(user)
    return chosen


# ---------------------------------------------------------------- emitting


def emit(session: Session, event: Event, *, environ: Mapping[str, str] | None = None,
         once: str | None = None) -> list[Delivery]:
    """Record a delivery per recipient of ``event`` and send them once the session commits.

    With ``once`` (a key such as ``alert:past_end:<id>:<date>``) the event is emitted only
    if no delivery was made under that key before: each delivery's ``dedupe_key`` is the
    key plus its recipient. Flushed, not committed; nothing is sent if the transaction
    rolls back.
    """
    deliveries: list[Delivery] = []
    now = event.occurred_at
    if once is not None:
        done_before = select(Delivery.id).where(
            Delivery.dedupe_key.startswith(f"{once}:", autoescape=True))
        if session.exec(done_before).first() is not None:
            return deliveries
    if event.kind in EVENTS:
        body = payload_bytes(event.webhook_payload(environ)).decode("utf-8")
        endpoints = session.exec(select(WebhookEndpoint)
                                 .where(WebhookEndpoint.active.is_(True))
                                 .order_by(WebhookEndpoint.id)).all()
        for endpoint in endpoints:
            if event.kind in (endpoint.events or []):
                deliveries.append(Delivery(channel="webhook", event=event.kind,
                                           webhook_id=endpoint.id, recipient=endpoint.url,
                                           subject=clean_subject(event.title)[:300], body=body,
                                           created_at=now, updated_at=now))
        subject, text = event.email_subject(), event.email_body(environ)
        for user in _email_recipients(session, event):
            deliveries.append(Delivery(channel="email", event=event.kind, user_id=user.id,
                                       recipient=user.email, subject=subject, body=text,
                                       created_at=now, updated_at=now))
    for delivery in deliveries:
        if once is not None:
            who = f"w{delivery.webhook_id}" if delivery.channel == "webhook" \
                else f"u{delivery.user_id}"
            delivery.dedupe_key = f"{once}:{who}"[:120]
        session.add(delivery)
    session.flush()
    dispatch_after_commit(session, [d.id for d in deliveries])
    return deliveries


def ping_webhook(session: Session, endpoint: WebhookEndpoint, *, actor: User,
                 ip: str = "") -> Delivery:
    """A ``ping`` delivery to ``endpoint`` only (the admin's "send a test"), sent after
    commit even when the endpoint is switched off; audited as ``webhook.test``."""
    event = Event(kind="ping", title="Test message from NRR Lab", occurred_at=utcnow(),
                  lines=(("Webhook", endpoint.name),), data={"webhook": endpoint.name})
    delivery = Delivery(channel="webhook", event="ping", webhook_id=endpoint.id,
                        recipient=endpoint.url, subject=event.title,
                        body=payload_bytes(event.webhook_payload()).decode("utf-8"),
                        created_at=event.occurred_at, updated_at=event.occurred_at)
    session.add(delivery)
    session.flush()
    record_event(session, "webhook.test", actor=actor, entity_type="webhook",
                 entity_id=endpoint.id, ip=ip, diff={"delivery": [None, delivery.id]})
    dispatch_after_commit(session, [delivery.id])
    return delivery


def queue_email(session: Session, user: User, *, event: str, subject: str, body: str,
                dedupe_key: str | None = None, now: datetime | None = None) -> Delivery | None:
    """One email to ``user`` (e.g. the digest), sent after commit; ``None`` when a delivery
    with ``dedupe_key`` exists already."""
    if dedupe_key is not None and session.exec(
            select(Delivery.id).where(Delivery.dedupe_key == dedupe_key)).first() is not None:
        return None
    now = now or utcnow()
    delivery = Delivery(channel="email", event=event, user_id=user.id, recipient=user.email,
                        subject=clean_subject(subject), body=body, dedupe_key=dedupe_key,
                        created_at=now, updated_at=now)
    session.add(delivery)
    session.flush()
    dispatch_after_commit(session, [delivery.id])
    return delivery


# ---------------------------------------------------------------- after commit

# The dispatcher of each connection pool: the queue of the app or worker that owns it.
# Keyed by pool because a request's session may be bound to an option-engine of the
# app's engine (``experiments.db.write_engine``), which shares its pool.
_dispatchers: weakref.WeakKeyDictionary[Any, Callable[[list[int]], None]] = \
    weakref.WeakKeyDictionary()


def register_dispatcher(engine: Engine, dispatch: Callable[[list[int]], None]) -> None:
    """Send deliveries committed on ``engine`` with ``dispatch(ids)`` (the job queue)."""
    _dispatchers[engine.pool] = dispatch


def _dispatcher_of(session: Session) -> Callable[[list[int]], None] | None:
    bind = session.get_bind()
    return _dispatchers.get(getattr(bind, "pool", None))


def _after_commit(session: Session) -> None:
    ids = session.info.pop(_PENDING, None)
    if not ids:
        return
    dispatch = _dispatcher_of(session)
    if dispatch is None:
        log.info("no job queue in this process: %d deliveries wait for the sweep", len(ids))
        return
    try:
        dispatch(list(ids))
    except Exception:  # the rows are committed: the sweep sends them later
        log.exception("could not queue deliveries %s", ids)


def _after_rollback(session: Session) -> None:
    session.info.pop(_PENDING, None)


def dispatch_after_commit(session: Session, ids: Iterable[int]) -> None:
    """Hand ``ids`` to the dispatcher when ``session`` commits (dropped on rollback)."""
    ids = [i for i in ids if i is not None]
    if not ids:
        return
    session.info.setdefault(_PENDING, []).extend(ids)
    if not session.info.get(_HOOKED):
        session.info[_HOOKED] = True
        sa_event.listen(session, "after_commit", _after_commit)
        sa_event.listen(session, "after_soft_rollback", lambda s, _t: _after_rollback(s))


# ---------------------------------------------------------------- sending (the job)


def retry_delay(attempts: int, base: float = RETRY_BASE_SECONDS) -> float:
    """Seconds before the next attempt after ``attempts`` failures: base·2^(attempts−1), ≤ 1 h."""
    return min(base * 2 ** max(attempts - 1, 0), RETRY_CAP_SECONDS)


def _webhook(session: Session, delivery: Delivery) -> WebhookEndpoint | None:
    """The endpoint a webhook delivery goes to (``None`` for an email); raises ``_Skip``."""
    if delivery.channel != "webhook":
        return None
    endpoint = session.get(WebhookEndpoint, delivery.webhook_id) \
        if delivery.webhook_id else None
    if endpoint is None:
        raise _Skip("the webhook was deleted")
    if not endpoint.active and delivery.event != "ping":
        raise _Skip("the webhook is switched off")
    return endpoint


def _send(delivery: Delivery, endpoint: WebhookEndpoint | None, now: datetime,
          environ: Mapping[str, str] | None) -> int | None:
    """Send once; the HTTP status for a webhook. Raises what :func:`deliver` sorts out."""
    if endpoint is not None:
        return post(endpoint.url, delivery.body.encode("utf-8"),
                    secret=endpoint_secret(endpoint, environ), event=delivery.event,
                    delivery_id=delivery.id, timestamp=int(now.timestamp()))
    settings = SmtpSettings.from_env(environ)
    if settings is None:
        raise MailNotConfigured("email is off: NRRLAB_SMTP_HOST is not set")
    message = build_message(
        sender=settings.sender, to=delivery.recipient, subject=delivery.subject,
        body=delivery.body, date=aware(delivery.created_at),
        message_id=f"<nrrlab.delivery.{delivery.id}@{settings.sender_domain}>")
    send_message(settings, message)
    return None


class _Skip(Exception):
    """Nothing to send to: recorded as ``skipped``, never retried."""


@dataclass(frozen=True)
class Outcome:
    status: str
    retry_in: float | None = None  # seconds, when status is "retrying"


def deliver(engine: Engine, delivery_id: int, *, now: datetime | None = None,
            environ: Mapping[str, str] | None = None,
            retry_base: float = RETRY_BASE_SECONDS) -> Outcome | None:
    """Send delivery ``delivery_id`` once and record what happened (its own transactions).

    ``None`` when it was not due or someone else holds it. Never raises for a failed send.
    """
    now = aware(now) or utcnow()
    with Session(engine, expire_on_commit=False) as session:
        with unseen_write(session, Delivery.__tablename__, rewrites=True):
            claimed = session.exec(
                update(Delivery)
                .where(Delivery.id == delivery_id, Delivery.status.in_(("queued", "retrying")),
                       or_(Delivery.next_attempt_at.is_(None),
                           Delivery.next_attempt_at <= now + timedelta(seconds=1)))
                .values(status="sending", attempts=Delivery.attempts + 1, updated_at=now)
                .execution_options(synchronize_session=False))
        session.commit()
        if claimed.rowcount != 1:
            return None
        delivery = session.get(Delivery, delivery_id)
        outcome: Outcome
        error, code, recipient = "", None, delivery.recipient
        try:
            endpoint = _webhook(session, delivery)
            recipient = endpoint.url if endpoint is not None else recipient
            code = _send(delivery, endpoint, now, environ)
            outcome = Outcome("sent")
        except (_Skip, MailNotConfigured) as exc:
            outcome, error = Outcome("skipped"), str(exc)
        except (MailError, MailConfigError, WebhookError) as exc:
            error, code = str(exc), getattr(exc, "status", None)
            outcome = _failure(delivery.attempts, retry_base)
        except Exception as exc:  # a bug must not lose the delivery: record and retry
            log.exception("delivery %s failed unexpectedly", delivery_id)
            error = f"{type(exc).__name__}: {exc}"[:500]
            outcome = _failure(delivery.attempts, retry_base)
        # Set inside the block: unseen_write flushes before it, and a change made before
        # would be written outside the block (and move the generation).
        with unseen_write(session, Delivery.__tablename__, rewrites=True):
            delivery.recipient = recipient
            delivery.status = outcome.status
            delivery.last_error = error
            delivery.response_code = code
            delivery.updated_at = utcnow()
            delivery.sent_at = delivery.updated_at if outcome.status == "sent" else None
            delivery.next_attempt_at = (now + timedelta(seconds=outcome.retry_in)
                                        if outcome.retry_in is not None else None)
            session.add(delivery)
        session.commit()
        if outcome.status != "sent":
            log.info("delivery %s %s: %s", delivery_id, outcome.status, error)
        return outcome


def _failure(attempts: int, retry_base: float) -> Outcome:
    if attempts >= MAX_ATTEMPTS:
        return Outcome("failed")
    return Outcome("retrying", retry_delay(attempts, retry_base))


def due_deliveries(session: Session, now: datetime | None = None, limit: int = 500) -> list[int]:
    """Deliveries to (re)queue now: retries that are due, queued ones older than
    :data:`QUEUED_GRACE` (their queue entry was lost) and ones stuck ``sending``."""
    now = aware(now) or utcnow()
    stuck = now - STUCK_AFTER
    query = select(Delivery.id).where(or_(
        (Delivery.status == "retrying") & (Delivery.next_attempt_at <= now),
        (Delivery.status == "queued") & (Delivery.created_at <= now - QUEUED_GRACE),
        (Delivery.status == "sending") & (Delivery.updated_at <= stuck),
    )).order_by(Delivery.id).limit(limit)
    ids = list(session.exec(query).all())
    if ids:
        session.exec(update(Delivery)
                     .where(Delivery.id.in_(ids), Delivery.status == "sending",
                            Delivery.updated_at <= stuck)
                     .values(status="retrying", next_attempt_at=now,
                             last_error="the worker sending it stopped")
                     .execution_options(synchronize_session=False))
    return ids


# ---------------------------------------------------------------- the delivery log (admin)

DELIVERY_PAGE = 100


def list_deliveries(session: Session, *, status: str | None = None,
                    limit: int = DELIVERY_PAGE) -> list[Delivery]:
    """The newest deliveries first, optionally of one status."""
    query = select(Delivery).order_by(Delivery.id.desc()).limit(limit)
    if status:
        query = query.where(Delivery.status == status)
    return list(session.exec(query).all())


def retry_delivery(session: Session, delivery_id: Any, *, actor: User, ip: str = "") -> Delivery:
    """Queue a failed or skipped delivery again with a fresh set of attempts (same body),
    sent after commit. Audited as ``notification.retry``.

    Raises
    ------
    NotFound
        No such delivery.
    experiments.errors.Conflict
        It is not failed or skipped (already sent, or still being tried).
    """
    found = parse_id(delivery_id)
    delivery = session.get(Delivery, found, populate_existing=True) if found else None
    if delivery is None:
        raise NotFound(f"no delivery {str(delivery_id)[:20]}")
    if delivery.status not in ("failed", "skipped"):
        raise Conflict(f"delivery {delivery.id} is {delivery.status}: only a failed or skipped "
                       "delivery can be retried")
    before = delivery.status
    result = session.exec(update(Delivery)
                          .where(Delivery.id == delivery.id, Delivery.status == before)
                          .values(status="queued", attempts=0, next_attempt_at=None,
                                  updated_at=utcnow())
                          .execution_options(synchronize_session=False))
    if result.rowcount != 1:
        raise Conflict(f"delivery {delivery.id} changed meanwhile; reload the log")
    session.refresh(delivery)
    record_event(session, "notification.retry", actor=actor, entity_type="delivery",
                 entity_id=delivery.id, ip=ip,
                 diff={"status": [before, "queued"], "recipient": [None, delivery.recipient]})
    dispatch_after_commit(session, [delivery.id])
    return delivery
