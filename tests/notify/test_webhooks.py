"""Webhooks: the body byte for byte, the HMAC signature (checked with hashlib/hmac by
hand), retries with backoff against a failing loopback receiver, the Huey path, and
escaping of hostile names in the Slack text."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from huey import MemoryHuey
from sqlmodel import Session, select

from experiments import notify
from experiments.decisions import decide
from experiments.jobs import Jobs
from experiments.models import AuditEvent
from experiments.notify_models import Delivery
from experiments.webhooks import create_webhook, verify_signature
from tests.factories import make_experiment, make_team, make_user
from tests.notify.conftest import BASE_URL, FIXED_NOW

pytestmark = pytest.mark.db

# What the receiver must get for the decision below: written out by hand (sorted keys,
# no spaces, UTF-8 "•", "\n" escaped by JSON).
EXPECTED_DECISION_BODY = (
    '{"data":{"decided_by":"Ana Admin","decision":"kill",'
    '"rationale":"No lift; costs too much.","rollout_share":null,"shipped_variant":null,'
    '"source":"experiment page"},"event":"decision","experiment":{"key":"nudge",'
    '"name":"Onboarding nudge","team":"Growth",'
    '"url":"https://nrr.example.com/experiments/nudge"},'
    '"occurred_at":"2026-12-07T08:00:00+00:00",'
    '"text":"*Decision on Onboarding nudge (nudge): kill*\\n'
    '<https://nrr.example.com/experiments/nudge|Onboarding nudge (nudge)>\\n'
    '• Decision: kill\\n• Rationale: No lift; costs too much.\\n• Decided by: Ana Admin\\n'
    '• Where: experiment page","title":"Decision on Onboarding nudge (nudge): kill"}'
).encode()


@pytest.fixture
def fixed_clock(monkeypatch):
    monkeypatch.setattr(notify, "utcnow", lambda: FIXED_NOW)
    monkeypatch.setenv("NRRLAB_BASE_URL", BASE_URL)
    return FIXED_NOW


def _world(session: Session, url: str, *, name: str = "Onboarding nudge"):
    ana = make_user(session, "ana@example.com", "admin")
    ana.name = "Ana Admin"
    growth = make_team(session, "growth", "Growth")
    experiment = make_experiment(session, "nudge", status="stopped", name=name,
                                 team_id=growth.id, owner_id=ana.id)
    endpoint, secret = create_webhook(session, {"name": "Slack", "url": url,
                                                "events": ["decision", "alert"]}, actor=ana)
    session.commit()
    return ana, experiment, endpoint, secret


def _decide(session: Session, experiment, ana) -> list[Delivery]:
    decide(session, experiment, {"decision": "kill", "rationale": "No lift; costs too much."},
           actor=ana, source="experiment page")
    session.commit()
    # Only the decision's: a background consumer's periodic digest (every quarter hour
    # of the wall clock) may add its own delivery while a test runs.
    return session.exec(select(Delivery).where(Delivery.event == "decision")
                        .order_by(Delivery.id)).all()


def _hmac(secret: str, timestamp: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body,
                                hashlib.sha256).hexdigest()


def test_decision_webhook_body_and_signature_byte_for_byte(session, db_engine, receiver,
                                                           fixed_clock, no_dispatch):
    ana, experiment, _endpoint, secret = _world(session, receiver.url)
    [delivery] = _decide(session, experiment, ana)
    assert (delivery.channel, delivery.event, delivery.status) == ("webhook", "decision", "queued")
    assert receiver.calls == []  # nothing is sent inside the transaction

    outcome = notify.deliver(db_engine, delivery.id, now=FIXED_NOW)
    assert outcome.status == "sent"
    [call] = receiver.calls
    assert call.body == EXPECTED_DECISION_BODY
    assert call.headers["content-type"] == "application/json"
    assert call.headers["x-nrrlab-event"] == "decision"
    assert call.headers["x-nrrlab-delivery"] == str(delivery.id)
    timestamp = str(int((FIXED_NOW - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()))
    assert call.headers["x-nrrlab-timestamp"] == timestamp == "1796630400"
    assert call.headers["x-nrrlab-signature"] == _hmac(secret, timestamp, EXPECTED_DECISION_BODY)
    # The documented receiver check accepts it, and refuses a changed body or an old call.
    now = FIXED_NOW.timestamp()
    assert verify_signature(secret, timestamp, call.headers["x-nrrlab-signature"], call.body,
                            now=now)
    assert not verify_signature(secret, timestamp, call.headers["x-nrrlab-signature"],
                                call.body.replace(b"kill", b"ship"), now=now)
    assert not verify_signature(secret, timestamp, call.headers["x-nrrlab-signature"], call.body,
                                now=now + 301)
    assert not verify_signature("wrong", timestamp, call.headers["x-nrrlab-signature"],
                                call.body, now=now)
    session.expire_all()
    stored = session.get(Delivery, delivery.id)
    assert (stored.status, stored.attempts, stored.response_code) == ("sent", 1, 200)
    # The stored payload parses, and its text is what Slack shows.
    assert json.loads(stored.body)["text"].startswith("*Decision on Onboarding nudge")


def test_failing_receiver_is_retried_with_backoff_then_succeeds(session, db_engine, receiver,
                                                                fixed_clock, no_dispatch):
    ana, experiment, _endpoint, secret = _world(session, receiver.url)
    [delivery] = _decide(session, experiment, ana)
    receiver.statuses = [500, 503]
    t0 = FIXED_NOW

    first = notify.deliver(db_engine, delivery.id, now=t0)
    assert (first.status, first.retry_in) == ("retrying", 30.0)
    session.expire_all()
    row = session.get(Delivery, delivery.id)
    assert (row.attempts, row.response_code) == (1, 500)
    assert row.last_error.startswith("HTTP 500")
    assert notify_aware(row.next_attempt_at) == t0 + timedelta(seconds=30)

    assert notify.deliver(db_engine, delivery.id, now=t0 + timedelta(seconds=10)) is None
    assert len(receiver.calls) == 1  # not due yet: not sent

    second = notify.deliver(db_engine, delivery.id, now=t0 + timedelta(seconds=30))
    assert (second.status, second.retry_in) == ("retrying", 60.0)  # doubled
    third = notify.deliver(db_engine, delivery.id, now=t0 + timedelta(seconds=90))
    assert third.status == "sent"
    assert [c.body for c in receiver.calls] == [EXPECTED_DECISION_BODY] * 3
    for call in receiver.calls:  # each attempt signed at its own moment
        ts = call.headers["x-nrrlab-timestamp"]
        assert call.headers["x-nrrlab-signature"] == _hmac(secret, ts, call.body)
    assert [c.headers["x-nrrlab-timestamp"] for c in receiver.calls] == [
        "1796630400", "1796630430", "1796630490"]
    session.expire_all()
    row = session.get(Delivery, delivery.id)
    assert (row.status, row.attempts, row.last_error, row.next_attempt_at) == ("sent", 3, "",
                                                                               None)


def notify_aware(moment):
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def test_gives_up_after_the_last_attempt_and_an_admin_can_retry(session, db_engine, receiver,
                                                                fixed_clock, no_dispatch):
    ana, experiment, _endpoint, _secret = _world(session, receiver.url)
    [delivery] = _decide(session, experiment, ana)
    receiver.statuses = [500] * notify.MAX_ATTEMPTS
    moment = FIXED_NOW
    delays = []
    for _ in range(notify.MAX_ATTEMPTS):
        outcome = notify.deliver(db_engine, delivery.id, now=moment)
        delays.append(outcome.retry_in)
        moment += timedelta(seconds=outcome.retry_in or 0)
    assert delays == [30.0, 60.0, 120.0, 240.0, 480.0, None]
    assert outcome.status == "failed"
    assert len(receiver.calls) == notify.MAX_ATTEMPTS

    notify.retry_delivery(session, delivery.id, actor=ana)
    session.commit()
    session.expire_all()
    row = session.get(Delivery, delivery.id)
    assert (row.status, row.attempts) == ("queued", 0)
    assert session.exec(select(AuditEvent.action)
                        .where(AuditEvent.action == "notification.retry")).all()
    assert notify.deliver(db_engine, delivery.id, now=moment).status == "sent"


def test_huey_task_retries_on_schedule(session, db_engine, receiver, fixed_clock, tmp_path):
    """The real job path: the commit queues a Huey task; a failure schedules the retry."""
    queue = MemoryHuey("notify-test", immediate=False, results=False, utc=True)
    jobs = Jobs(queue, db_engine, tmp_path / "uploads", retry_base=0.2)
    try:
        ana, experiment, _endpoint, _secret = _world(session, receiver.url)
        receiver.statuses = [500]
        [delivery] = _decide(session, experiment, ana)
        assert queue.pending_count() == 1 and receiver.calls == []
        with pytest.MonkeyPatch.context() as patch:  # the job runs on the real clock
            patch.setattr(notify, "utcnow", lambda: datetime.now(UTC))
            queue.execute(queue.dequeue())
            assert len(receiver.calls) == 1 and queue.pending_count() == 1
            retry = queue.dequeue()  # the retry, due 0.2 s later (the consumer waits for it)
            wait = (retry.eta - datetime.now(UTC).replace(tzinfo=None)).total_seconds()
            assert 0 < wait <= 0.2
            time.sleep(wait + 0.05)
            queue.execute(retry)
        assert len(receiver.calls) == 2
        session.expire_all()
        assert session.get(Delivery, delivery.id).status == "sent"
        assert jobs.queue is queue
    finally:
        notify._dispatchers.pop(db_engine.pool, None)


def test_hostile_names_cannot_mention_or_link_in_slack(session, db_engine, receiver, fixed_clock,
                                                       no_dispatch):
    ana, experiment, _endpoint, _secret = _world(
        session, receiver.url, name="<!channel> & <https://evil.example|click>")
    [delivery] = _decide(session, experiment, ana)
    text = json.loads(delivery.body)["text"]
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example¦click&gt;" in text
    # The structured field keeps the name as typed.
    assert json.loads(delivery.body)["experiment"]["name"] == \
        "<!channel> & <https://evil.example|click>"


def test_secret_from_the_environment(session, db_engine, receiver, fixed_clock, no_dispatch,
                                     monkeypatch):
    ana = make_user(session, "ana@example.com", "admin")
    experiment = make_experiment(session, "nudge", status="stopped", owner_id=ana.id)
    create_webhook(session, {"name": "Ops", "url": receiver.url, "events": ["decision"],
                             "secret_env": "NRRLAB_WEBHOOK_OPS"}, actor=ana)
    session.commit()
    [delivery] = _decide(session, experiment, ana)
    monkeypatch.delenv("NRRLAB_WEBHOOK_OPS", raising=False)
    outcome = notify.deliver(db_engine, delivery.id, now=FIXED_NOW)
    assert outcome.status == "retrying" and receiver.calls == []
    session.expire_all()
    assert "NRRLAB_WEBHOOK_OPS is not set" in session.get(Delivery, delivery.id).last_error
    monkeypatch.setenv("NRRLAB_WEBHOOK_OPS", "s3cret")
    later = FIXED_NOW + timedelta(seconds=30)
    assert notify.deliver(db_engine, delivery.id, now=later).status == "sent"
    [call] = receiver.calls
    assert call.headers["x-nrrlab-signature"] == _hmac("s3cret", "1796630430", call.body)


@pytest.mark.parametrize(("data", "field", "words"), [
    ({"name": "x", "url": "ftp://example.com/h", "events": ["decision"]}, "url", "http"),
    ({"name": "x", "url": "https://u:p@example.com/h", "events": ["decision"]}, "url",
     "password"),
    ({"name": "x", "url": "https://example.com/h", "events": []}, "events", "at least one"),
    ({"name": "x", "url": "https://example.com/h", "events": ["nope"]}, "events", "unknown"),
    ({"name": "x", "url": "https://example.com/h", "events": ["alert"],
      "secret_env": "SECRET_KEY"}, "secret_env", "NRRLAB_WEBHOOK_"),
    ({"name": "a\x00b", "url": "https://example.com/h", "events": ["alert"]}, "name",
     "control"),
])
def test_bad_webhook_forms_say_which_field_and_why(session, data, field, words):
    from experiments.errors import ValidationFailed

    ana = make_user(session, "ana@example.com", "admin")
    with pytest.raises(ValidationFailed) as caught:
        create_webhook(session, data, actor=ana)
    assert words in caught.value.errors[field]


def test_the_background_worker_sends_what_a_commit_queued(session, db_engine, receiver,
                                                          fixed_clock, tmp_path):
    """End to end on the embedded queue (SqliteHuey) with the consumer threads that
    `nrrlab serve` runs: the commit queues, a worker thread sends."""
    from experiments.jobs import make_jobs

    jobs = make_jobs(db_engine, tmp_path / "instance", "sqlite")
    consumer = jobs.start_in_background(workers=1)
    try:
        ana, experiment, _endpoint, _secret = _world(session, receiver.url)
        [delivery] = _decide(session, experiment, ana)
        deadline = time.monotonic() + 10
        while not receiver.calls and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [c.body for c in receiver.calls] == [EXPECTED_DECISION_BODY]
        while time.monotonic() < deadline:
            session.expire_all()
            if session.get(Delivery, delivery.id).status == "sent":
                break
            time.sleep(0.05)
        assert session.get(Delivery, delivery.id).status == "sent"
    finally:
        consumer.stop(graceful=True)
        notify._dispatchers.pop(db_engine.pool, None)
