"""The pre-meeting digest (text byte for byte with a fixed clock, once per person and
week, team scoping, nobody gets an empty one, the schedule, the CLI) and the iCalendar
feed (parsed back with icalendar; hostile text; revoked or unknown tokens are 404)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from click.testing import CliRunner
from icalendar import Calendar
from sqlmodel import Session, select

from experiments import notify
from experiments.calendar_feed import create_feed, revoke_feed
from experiments.digest import build_digest, meeting_schedule, send_digest, send_digest_if_due
from experiments.models import User
from experiments.notify_models import Delivery, NotificationPreference
from experiments.review_models import Action
from experiments.review_weeks import parse_week
from tests.factories import make_experiment, make_team, make_user
from tests.notify.conftest import BASE_URL, FIXED_NOW

pytestmark = pytest.mark.db

W50 = parse_week("2026-W50")  # Monday 7 December 2026; FIXED_NOW is 08:00 that day

EXPECTED_BOB = (
    "Weekly review 2026-W50 — Monday 7 December 2026, 10:00 UTC\n"
    "\n"
    "Needs a decision (2)\n"
    "- Late one (late) [yours]: passed its planned end (2026-12-01)\n"
    "- Stopped one (stop): stopped without a decision\n"
    "\n"
    "Alerts (1)\n"
    "- Late one (late): still running past its planned end (2026-12-01)\n"
    "\n"
    "Your actions due this week (2)\n"
    "- Follow up — due 2026-12-02 (overdue) [late]\n"
    "- Call the pricing team — due 2026-12-09 [late]\n"
    "\n"
    "Open the review: https://nrr.example.com/review/2026-W50\n"
    "\n"
    "-- \n"
    "You get this email because of your NRR Lab notification settings: "
    "https://nrr.example.com/account/notifications\n"
)
HOSTILE_NAME = 'Launch; "quote", comma\\ backslash'
HOSTILE_HYPOTHESIS = "Line one\nLine two; with, commas"


@pytest.fixture
def world(session: Session, monkeypatch):
    monkeypatch.setenv("NRRLAB_BASE_URL", BASE_URL)
    for name in ("NRRLAB_REVIEW_WEEKDAY", "NRRLAB_REVIEW_TIME", "NRRLAB_REVIEW_MINUTES",
                 "NRRLAB_DIGEST_HOURS_BEFORE"):
        monkeypatch.delenv(name, raising=False)
    growth = make_team(session, "growth", "Growth")
    other = make_team(session, "other", "Other")
    ana = make_user(session, "ana@example.com", "viewer", {"growth": "experimenter"})
    bob = make_user(session, "bob@example.com", "viewer", {"growth": "viewer"})
    carol = make_user(session, "carol@example.com", "viewer", {"other": "viewer"})
    dave = make_user(session, "dave@example.com", "viewer", {"growth": "viewer"})
    make_user(session, "frank@example.com", "viewer")  # no team: nothing to read
    session.add(NotificationPreference(user_id=dave.id, digest=False))
    started = datetime(2026, 11, 1, tzinfo=UTC)
    make_experiment(session, "stop", status="stopped", name="Stopped one", team_id=growth.id,
                    owner_id=ana.id, started_at=started,
                    stopped_at=datetime(2026, 12, 1, tzinfo=UTC))
    late = make_experiment(session, "late", status="running", name="Late one",
                           team_id=growth.id, owner_id=bob.id, started_at=started,
                           planned_end=date(2026, 12, 1))
    make_experiment(session, "draft", status="draft", name=HOSTILE_NAME, team_id=growth.id,
                    owner_id=ana.id, planned_end=date(2026, 12, 20),
                    hypothesis=HOSTILE_HYPOTHESIS)
    make_experiment(session, "hidden", status="stopped", name="Hidden", team_id=other.id,
                    started_at=started, stopped_at=datetime(2026, 12, 1, tzinfo=UTC),
                    planned_end=date(2026, 12, 10))
    for title, due, status in (("Call the pricing team", date(2026, 12, 9), "open"),
                               ("Follow up", date(2026, 12, 2), "open"),
                               ("Later", date(2026, 12, 20), "open"),
                               ("Done already", date(2026, 12, 8), "done")):
        session.add(Action(title=title, experiment_id=late.id, team_id=growth.id,
                           raised_week="2026-W49", owner_id=bob.id, due=due, status=status,
                           closed_week="2026-W49" if status != "open" else None))
    session.commit()
    return {"bob": bob, "carol": carol, "ana": ana, "late": late}


def test_digest_text_byte_for_byte(session, world):
    digest = build_digest(session, world["bob"], W50, now=FIXED_NOW)
    assert digest.subject() == ("[NRR Lab] Weekly review 2026-W50: 2 decisions, 1 alert, "
                                "2 actions due")
    assert digest.body() == EXPECTED_BOB


def test_digest_goes_once_to_each_person_with_something_to_read(session, world, no_dispatch):
    run = send_digest(session, W50, now=FIXED_NOW)
    session.commit()
    to = sorted(d.recipient for d in run.queued)
    # ana and bob (growth), carol (her team's stopped experiment); dave opted out;
    # frank sees nothing, so gets nothing.
    assert to == ["ana@example.com", "bob@example.com", "carol@example.com"]
    assert run.empty == 1
    carol = next(d for d in run.queued if d.recipient == "carol@example.com")
    assert "Hidden (hidden)" in carol.body and "Late one" not in carol.body
    assert all(d.dedupe_key == f"digest:2026-W50:{d.user_id}" for d in run.queued)
    again = send_digest(session, W50, now=FIXED_NOW + timedelta(minutes=15))
    session.commit()
    assert (again.queued, again.already_sent) == ([], 3)
    assert session.exec(select(Delivery)).all().__len__() == 3


def test_the_periodic_job_sends_in_the_lead_time_only(session, db_engine, world, no_dispatch):
    schedule = meeting_schedule()
    assert schedule.meeting_at(W50) == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert send_digest_if_due(db_engine, now=datetime(2026, 12, 7, 7, 59, tzinfo=UTC)) is None
    run = send_digest_if_due(db_engine, now=FIXED_NOW)
    assert len(run.queued) == 3
    assert send_digest_if_due(db_engine, now=datetime(2026, 12, 7, 10, 0, tzinfo=UTC)) is None
    other = meeting_schedule({"NRRLAB_REVIEW_WEEKDAY": "wednesday", "NRRLAB_REVIEW_TIME": "15:30"})
    assert other.meeting_at(W50) == datetime(2026, 12, 9, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(("env", "words"), [
    ({"NRRLAB_REVIEW_WEEKDAY": "moonday"}, "NRRLAB_REVIEW_WEEKDAY"),
    ({"NRRLAB_REVIEW_TIME": "25:00"}, "HH:MM"),
    ({"NRRLAB_DIGEST_HOURS_BEFORE": "-1"}, "NRRLAB_DIGEST_HOURS_BEFORE"),
])
def test_bad_schedule_settings_are_named(env, words):
    from experiments.digest import ScheduleConfigError

    with pytest.raises(ScheduleConfigError, match=words):
        meeting_schedule(env)


def test_cli_digest(world, database_url, tmp_path, monkeypatch):
    from experiments.cli import main

    env = {"DATABASE_URL": database_url, "NRRLAB_JOBS": "immediate",
           "NRRLAB_INSTANCE_PATH": str(tmp_path), "NRRLAB_SMTP_HOST": ""}
    dry = CliRunner().invoke(main, ["notify", "digest", "--week", "2026-W50", "--dry-run"],
                             env=env)
    assert dry.exit_code == 0, dry.output
    assert "To: bob@example.com" in dry.output and "Weekly review 2026-W50" in dry.output
    real = CliRunner().invoke(main, ["notify", "digest", "--week", "2026-W50"], env=env)
    assert real.exit_code == 0, real.output
    assert "3 queued" in real.output
    bad = CliRunner().invoke(main, ["notify", "digest", "--week", "2026-W60"], env=env)
    assert bad.exit_code == 2 and "no ISO week 60" in bad.output


# ---------------------------------------------------------------- the calendar feed


def _ics(client, token: str):
    return client.get(f"/calendar/{token}.ics")


def test_feed_parses_back_with_the_users_events(session, world, client, monkeypatch):
    monkeypatch.setattr(notify, "utcnow", lambda: FIXED_NOW)
    import experiments.calendar_feed as feed_module

    monkeypatch.setattr(feed_module, "utcnow", lambda: FIXED_NOW)
    _, token = create_feed(session, world["bob"])
    session.commit()
    response = _ics(client, token)
    assert response.status_code == 200
    assert response.mimetype == "text/calendar"
    calendar = Calendar.from_ical(response.data)
    events = {str(e["uid"]): e for e in calendar.walk("VEVENT")}
    reviews = sorted(uid for uid in events if uid.startswith("review-"))
    # 4 weeks back, this week, 12 ahead; 2026 has an ISO week 53 (1 January was a Thursday).
    assert len(reviews) == 17 and reviews[0] == "review-2026-W46@nrrlab" \
        and "review-2026-W53@nrrlab" in reviews and reviews[-1] == "review-2027-W09@nrrlab"
    meeting = events["review-2026-W50@nrrlab"]
    assert meeting.decoded("dtstart") == datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    assert meeting.decoded("dtend") == datetime(2026, 12, 7, 11, 0, tzinfo=UTC)
    assert str(meeting["url"]) == "https://nrr.example.com/review/2026-W50"
    late = events[f"experiment-{world['late'].id}-planned-end@nrrlab"]
    assert late.decoded("dtstart") == date(2026, 12, 1)  # all day
    assert late.decoded("dtend") == date(2026, 12, 2)
    planned = [e for uid, e in events.items() if "planned-end" in uid]
    names = sorted(str(e["summary"]) for e in planned)
    # Running and draft only (not the stopped one), and not another team's.
    assert names == ["Planned end: Late one (late)", f"Planned end: {HOSTILE_NAME} (draft)"]
    hostile = next(e for e in planned if "draft" in str(e["summary"]))
    assert str(hostile["description"]) == f"Status: draft\nHypothesis: {HOSTILE_HYPOTHESIS}"
    # On the wire the text is escaped as RFC 5545 §3.3.11 says.
    assert b'Launch\\; "quote"\\, comma\\\\ backslash' in response.data.replace(b"\r\n ", b"")
    dues = sorted((str(e["summary"]), e.decoded("dtstart"))
                  for uid, e in events.items() if uid.startswith("action-"))
    assert dues == [("Action due: Call the pricing team", date(2026, 12, 9)),
                    ("Action due: Follow up", date(2026, 12, 2)),
                    ("Action due: Later", date(2026, 12, 20))]
    assert all("dtstamp" in e for e in events.values())
    assert str(calendar["version"]) == "2.0" and "NRR Lab" in str(calendar["prodid"])
    # Stable UIDs: the same feed a week later names the same events the same way.
    monkeypatch.setattr(feed_module, "utcnow", lambda: FIXED_NOW + timedelta(days=7))
    later = Calendar.from_ical(_ics(client, token).data)
    later_uids = {str(e["uid"]) for e in later.walk("VEVENT")}
    assert {uid for uid in events if not uid.startswith("review-")} <= later_uids


def test_revoked_replaced_unknown_and_disabled_feeds_are_404(session, world, client):
    _, first = create_feed(session, world["bob"])
    session.commit()
    assert _ics(client, first).status_code == 200
    _, second = create_feed(session, world["bob"])  # a new address revokes the old one
    session.commit()
    assert _ics(client, first).status_code == 404
    assert _ics(client, second).status_code == 200
    assert revoke_feed(session, world["bob"]) == 1
    session.commit()
    assert _ics(client, second).status_code == 404
    assert _ics(client, "cal_" + "A" * 43).status_code == 404
    assert _ics(client, "not-a-token").status_code == 404
    _, carols = create_feed(session, world["carol"])
    session.commit()
    assert _ics(client, carols).status_code == 200
    carol = session.get(User, world["carol"].id)
    carol.is_active = False
    session.commit()
    assert _ics(client, carols).status_code == 404


def test_time_alerts_go_out_once(session, db_engine, world, no_dispatch, receiver):
    """Running past its planned end is an alert without new data: the hourly job sends it
    to webhooks (and the owner's email), once per experiment and planned end."""
    from experiments.digest import send_time_alerts
    from experiments.notify_models import WebhookEndpoint

    session.add(WebhookEndpoint(name="Ops", url=receiver.url, events=["alert"], secret="s"))
    session.commit()
    assert send_time_alerts(db_engine, now=FIXED_NOW) == 1
    deliveries = session.exec(select(Delivery).order_by(Delivery.id)).all()
    assert [(d.channel, d.recipient) for d in deliveries] == [
        ("webhook", receiver.url), ("email", "bob@example.com")]  # bob owns "late"
    assert deliveries[0].subject == ("Alert on Late one (late): still running past its "
                                     "planned end (2026-12-01)")
    assert send_time_alerts(db_engine, now=FIXED_NOW + timedelta(hours=1)) == 0
    assert len(session.exec(select(Delivery)).all()) == 2
