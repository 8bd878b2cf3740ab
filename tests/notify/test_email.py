"""Email through a local SMTP server (aiosmtpd): the message byte for byte (headers) and
its decoded text, preferences and team scoping of recipients, no SMTP → skipped."""

from __future__ import annotations

import quopri

import pytest
from sqlmodel import Session, select

from experiments import notify
from experiments.decisions import decide
from experiments.mailer import build_message, clean_subject
from experiments.notify_models import Delivery, NotificationPreference
from tests.factories import make_experiment, make_team, make_user
from tests.notify.conftest import FIXED_NOW

pytestmark = pytest.mark.db

EXPECTED_HEADERS = (
    b"From: NRR Lab <nrrlab@example.com>\r\n"
    b"To: bob@example.com\r\n"
    b"Subject: [NRR Lab] Decision on Onboarding nudge (nudge): kill\r\n"
    b"Date: Mon, 07 Dec 2026 08:00:00 +0000\r\n"
    b"Message-ID: <nrrlab.delivery.{id}@example.com>\r\n"
    b"Auto-Submitted: auto-generated\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"MIME-Version: 1.0\r\n"
)
EXPECTED_TEXT = (
    "Decision on Onboarding nudge (nudge): kill\n"
    "\n"
    "Experiment: Onboarding nudge (nudge)\n"
    "Team: Growth\n"
    "Decision: kill\n"
    "Rationale: No lift; costs too much.\n"
    "Decided by: Ana Admin\n"
    "Where: experiment page\n"
    "\n"
    "Open it: https://nrr.example.com/experiments/nudge\n"
    "\n"
    "-- \n"
    "You get this email because of your NRR Lab notification settings: "
    "https://nrr.example.com/account/notifications\n"
)


@pytest.fixture
def fixed_clock(monkeypatch):
    monkeypatch.setattr(notify, "utcnow", lambda: FIXED_NOW)


def _world(session: Session):
    ana = make_user(session, "ana@example.com", "admin")
    ana.name = "Ana Admin"
    growth = make_team(session, "growth", "Growth")
    bob = make_user(session, "bob@example.com", "viewer", {"growth": "viewer"})
    carol = make_user(session, "carol@example.com", "viewer", {"other": "viewer"})
    for user in (bob, carol):  # both ask for every decision they can see
        session.add(NotificationPreference(user_id=user.id, decision=True, scope="all"))
    experiment = make_experiment(session, "nudge", status="stopped", name="Onboarding nudge",
                                 team_id=growth.id, owner_id=ana.id)
    session.commit()
    return ana, bob, experiment


def _decide(session, experiment, ana) -> list[Delivery]:
    decide(session, experiment, {"decision": "kill", "rationale": "No lift; costs too much."},
           actor=ana, source="experiment page")
    session.commit()
    return session.exec(select(Delivery).order_by(Delivery.id)).all()


def test_decision_email_byte_for_byte_through_smtp(session, db_engine, smtp_env, fixed_clock,
                                                   no_dispatch):
    ana, _bob, experiment = _world(session)
    # Carol (another team) may not see it; Ana keeps the defaults (digest, alerts).
    [delivery] = _decide(session, experiment, ana)
    assert (delivery.channel, delivery.recipient) == ("email", "bob@example.com")
    assert smtp_env.messages == []

    assert notify.deliver(db_engine, delivery.id, now=FIXED_NOW).status == "sent"
    [envelope] = smtp_env.messages
    assert envelope.mail_from == "nrrlab@example.com"
    assert envelope.rcpt_tos == ["bob@example.com"]
    raw = envelope.original_content
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head + b"\r\n" == EXPECTED_HEADERS.replace(b"{id}", str(delivery.id).encode())
    # The body is quoted-printable: decoded by the standard library's quopri (not the
    # email package that wrote it), it is the text above, with CRLF line ends on the wire.
    assert quopri.decodestring(body).decode("utf-8") == EXPECTED_TEXT.replace("\n", "\r\n")
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert body.isascii()


def test_without_smtp_the_delivery_is_skipped_not_an_error(session, db_engine, monkeypatch,
                                                           fixed_clock, no_dispatch):
    monkeypatch.delenv("NRRLAB_SMTP_HOST", raising=False)
    ana, _bob, experiment = _world(session)
    [delivery] = _decide(session, experiment, ana)
    outcome = notify.deliver(db_engine, delivery.id, now=FIXED_NOW)
    assert outcome.status == "skipped"
    session.expire_all()
    row = session.get(Delivery, delivery.id)
    assert row.status == "skipped" and "NRRLAB_SMTP_HOST" in row.last_error


def test_unreachable_smtp_is_retried(session, db_engine, smtp_env, monkeypatch, fixed_clock,
                                     no_dispatch):
    ana, _bob, experiment = _world(session)
    [delivery] = _decide(session, experiment, ana)
    monkeypatch.setenv("NRRLAB_SMTP_PORT", "1")  # nothing listens there
    outcome = notify.deliver(db_engine, delivery.id, now=FIXED_NOW)
    assert (outcome.status, outcome.retry_in) == ("retrying", 30.0)
    session.expire_all()
    assert session.get(Delivery, delivery.id).last_error.startswith("SMTP 127.0.0.1:1")


def test_hostile_subject_cannot_add_headers():
    message = build_message(sender="NRR Lab <n@example.com>", to="bob@example.com",
                            subject="Hi\r\nBcc: eve@example.com\x00", body="x\n",
                            date=FIXED_NOW, message_id="<1@example.com>")
    raw = message.as_bytes()
    assert b"\nBcc:" not in raw and b"Subject: Hi Bcc: eve@example.com\r\n" in raw
    assert clean_subject("a" * 300).endswith("…") and len(clean_subject("a" * 300)) == 200


def test_preferences_decide_who_gets_what(session, no_dispatch, monkeypatch):
    """Defaults: digest and alerts about one's own experiments; "all" widens to every
    experiment one may see; switching an event off stops it."""
    monkeypatch.setattr(notify, "utcnow", lambda: FIXED_NOW)
    ana = make_user(session, "ana@example.com", "admin")
    growth = make_team(session, "growth", "Growth")
    owner = make_user(session, "owner@example.com", "viewer", {"growth": "experimenter"})
    watcher = make_user(session, "watch@example.com", "viewer", {"growth": "viewer"})
    quiet = make_user(session, "quiet@example.com", "viewer", {"growth": "viewer"})
    session.add(NotificationPreference(user_id=watcher.id, alert=True, scope="all"))
    session.add(NotificationPreference(user_id=quiet.id, alert=False, digest=False, scope="all"))
    experiment = make_experiment(session, "srm", team_id=growth.id, owner_id=owner.id)
    session.commit()
    event = notify.alert_event(session, experiment, [("srm", "sample ratio mismatch")])
    emails = [d.recipient for d in notify.emit(session, event) if d.channel == "email"]
    assert emails == ["owner@example.com", "watch@example.com"]
    assert ana.email not in emails
