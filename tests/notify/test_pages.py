"""The notify pages: one's own settings and calendar feed, the admin's webhooks and
delivery log; and a request that triggers an event answers without waiting for it."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time

import pytest
from sqlmodel import Session, select

from experiments.models import Experiment
from experiments.notify_models import Delivery, NotificationPreference, WebhookEndpoint
from tests.notify.conftest import BASE_URL

pytestmark = pytest.mark.db


@pytest.fixture(autouse=True)
def _no_smtp(monkeypatch):
    monkeypatch.delenv("NRRLAB_SMTP_HOST", raising=False)
    monkeypatch.setenv("NRRLAB_BASE_URL", BASE_URL)


def _post(client, url, data=None):
    return client.post(url, data={"csrf_token": client.csrf, **(data or {})})


def test_preferences_saved_with_compare_and_set(login_as, db_engine):
    client = login_as("viewer")
    page = client.get("/account/notifications")
    assert page.status_code == 200
    assert "Email is not set up on this server" in page.get_data(as_text=True)
    saved = _post(client, "/account/notifications",
                  {"digest": "on", "decision": "on", "scope": "all"})
    assert saved.status_code == 303
    with Session(db_engine) as session:
        row = session.exec(select(NotificationPreference)).one()
        assert (row.digest, row.alert, row.decision, row.upload, row.scope, row.version) == \
            (True, False, True, False, "all", 1)
    assert _post(client, "/account/notifications",
                 {"alert": "on", "scope": "mine", "version": "1"}).status_code == 303
    stale = _post(client, "/account/notifications", {"upload": "on", "version": "1"})
    assert stale.status_code == 409
    assert "changed" in stale.get_data(as_text=True)
    bad = _post(client, "/account/notifications", {"scope": "everyone", "version": "2"})
    assert bad.status_code == 422
    assert "must be one of: mine, all" in bad.get_data(as_text=True)
    with Session(db_engine) as session:
        row = session.exec(select(NotificationPreference)).one()
        assert (row.alert, row.upload, row.scope, row.version) == (True, False, "mine", 2)


def test_calendar_url_is_shown_once_and_revocable(login_as, client):
    me = login_as("viewer")
    made = _post(me, "/account/calendar")
    assert made.status_code == 201
    assert made.headers["Cache-Control"] == "no-store"
    url = re.search(r"http://localhost/calendar/(cal_[A-Za-z0-9_-]+)\.ics",
                    made.get_data(as_text=True))
    assert url, made.get_data(as_text=True)
    token = url.group(1)
    assert client.get(f"/calendar/{token}.ics").status_code == 200  # no sign-in needed
    again = me.get("/account/calendar").get_data(as_text=True)
    assert token not in again and f"cal_{token[4:10]}" in again
    assert _post(me, "/account/calendar/revoke").status_code == 303
    assert client.get(f"/calendar/{token}.ics").status_code == 404


def test_admin_manages_webhooks(login_as, db_engine):
    admin = login_as("admin")
    form = {"name": "Slack", "url": "https://hooks.example.com/x", "events": ["decision"]}
    made = admin.post("/admin/webhooks", data={"csrf_token": admin.csrf, **form})
    assert made.status_code == 201
    secret = re.search(r"whsec_[A-Za-z0-9_-]+", made.get_data(as_text=True)).group(0)
    listing = admin.get("/admin/webhooks").get_data(as_text=True)
    assert "hooks.example.com" in listing and secret not in listing
    with Session(db_engine) as session:
        hook = session.exec(select(WebhookEndpoint)).one()
        assert hook.secret == secret and hook.events == ["decision"]
    update = {"name": "Slack", "url": "https://hooks.example.com/y", "events": ["alert", "upload"],
              "active": "on", "version": "1"}
    assert admin.post(f"/admin/webhooks/{hook.id}",
                      data={"csrf_token": admin.csrf, **update}).status_code == 303
    stale = admin.post(f"/admin/webhooks/{hook.id}", data={"csrf_token": admin.csrf, **update})
    assert stale.status_code == 409
    bad = admin.post("/admin/webhooks", data={"csrf_token": admin.csrf, "name": "x",
                                               "url": "javascript:alert(1)", "events": "alert"})
    assert bad.status_code == 422
    assert "must be an http:// or https:// address" in bad.get_data(as_text=True)
    with Session(db_engine) as session:
        hook = session.exec(select(WebhookEndpoint)).one()
        assert (hook.url, hook.events, hook.version) == ("https://hooks.example.com/y",
                                                         ["alert", "upload"], 2)
    assert _post(admin, f"/admin/webhooks/{hook.id}/delete").status_code == 303
    assert admin.post("/admin/webhooks/999/delete",
                      data={"csrf_token": admin.csrf}).status_code == 404
    with Session(db_engine) as session:
        assert session.exec(select(WebhookEndpoint)).all() == []


def test_delivery_log_and_retry(login_as, db_engine):
    admin = login_as("admin")
    with Session(db_engine) as session:
        session.add(Delivery(channel="email", event="alert", recipient="x@example.com",
                             subject="[NRR Lab] Alert <b>", body="…", status="failed",
                             attempts=6, last_error="SMTP refused"))
        session.commit()
    page = admin.get("/admin/deliveries?status=failed").get_data(as_text=True)
    assert "SMTP refused" in page and "[NRR Lab] Alert &lt;b&gt;" in page
    [delivery_id] = re.findall(r"/admin/deliveries/(\d+)/retry", page)
    assert _post(admin, f"/admin/deliveries/{delivery_id}/retry").status_code == 303
    with Session(db_engine) as session:
        row = session.get(Delivery, int(delivery_id))
        # Re-queued and, the test queue being immediate, tried at once: no SMTP → skipped.
        assert (row.status, row.attempts) == ("skipped", 1)
    again = admin.post(f"/admin/deliveries/{delivery_id}/retry",
                       data={"csrf_token": admin.csrf}, follow_redirects=True)
    assert again.status_code == 200
    assert _post(admin, "/admin/deliveries/777/retry").status_code == 404


def _decide_setup(login_as, factory, db_engine, url):
    user = login_as("viewer", teams={"growth": "experimenter"})
    experiment = factory.experiment("nudge", team="growth", status="stopped",
                                    name="Onboarding nudge")
    with Session(db_engine) as session:
        session.add(WebhookEndpoint(name="Slow", url=url, events=["decision"], secret="s"))
        session.commit()
    return user, experiment


def _decide(user, experiment):
    return user.post(f"/experiments/{experiment.key}/decide", data={
        "csrf_token": user.csrf, "decision": "kill", "rationale": "No lift.",
        "version": str(experiment.version)})


def test_a_decision_answers_without_waiting_for_the_webhook(app, login_as, factory, db_engine,
                                                            receiver):
    """With the real queue (SQLite, as `nrrlab serve` runs it) the request only queues:
    a receiver that takes 3 s does not slow it; the worker then sends."""
    app.config["JOBS_BACKEND"] = "sqlite"
    receiver.delay = 3.0
    user, experiment = _decide_setup(login_as, factory, db_engine, receiver.url)
    started = time.monotonic()
    response = _decide(user, experiment)
    took = time.monotonic() - started
    assert response.status_code == 303
    assert took < 1.5, f"the decision took {took:.2f} s"
    assert receiver.calls == []
    with Session(db_engine) as session:
        assert session.exec(select(Experiment.status)).one() == "decided"
        [delivery] = session.exec(select(Delivery)).all()
        assert delivery.status == "queued"
    queue = app.extensions["nrrlab.jobs"].queue
    queue.execute(queue.dequeue())  # what `nrrlab worker` does
    assert len(receiver.calls) == 1
    with Session(db_engine) as session:
        assert session.exec(select(Delivery.status)).one() == "sent"


def test_in_immediate_mode_the_webhook_is_sent_before_the_answer(app, login_as, factory,
                                                                 db_engine, receiver):
    """The test default (NRRLAB_JOBS=immediate) runs the job in the request, after commit."""
    user, experiment = _decide_setup(login_as, factory, db_engine, receiver.url)
    assert _decide(user, experiment).status_code == 303
    [call] = receiver.calls
    assert b'"decision":"kill"' in call.body


def test_a_rolled_back_decision_sends_nothing(app, login_as, factory, db_engine, receiver):
    user, experiment = _decide_setup(login_as, factory, db_engine, receiver.url)
    refused = user.post(f"/experiments/{experiment.key}/decide", data={
        "csrf_token": user.csrf, "decision": "kill", "rationale": "",
        "version": str(experiment.version)})
    assert refused.status_code == 422
    assert receiver.calls == []
    with Session(db_engine) as session:
        assert session.exec(select(Delivery)).all() == []


def test_send_a_test_to_a_webhook(login_as, db_engine, receiver):
    admin = login_as("admin")
    with Session(db_engine) as session:
        hook = WebhookEndpoint(name="Ops", url=receiver.url, events=["alert"], secret="t0p",
                               active=False)
        session.add(hook)
        session.commit()
        hook_id = hook.id
    response = _post(admin, f"/admin/webhooks/{hook_id}/test")
    assert response.status_code == 303 and response.headers["Location"].endswith(
        "/admin/deliveries")
    [call] = receiver.calls  # sent even while switched off: that is what a test is for
    assert call.headers["x-nrrlab-event"] == "ping"
    ts = call.headers["x-nrrlab-timestamp"]
    expected = "sha256=" + hmac.new(b"t0p", ts.encode() + b"." + call.body,
                                    hashlib.sha256).hexdigest()
    assert call.headers["x-nrrlab-signature"] == expected
    body = json.loads(call.body)
    assert (body["event"], body["experiment"], body["data"]) == ("ping", None, {"webhook": "Ops"})


def test_a_first_save_that_lost_the_race_is_a_conflict(session, monkeypatch):
    """Two tabs save for the first time at once: the second insert hits the unique user
    row and answers a conflict instead of a 500 (PostgreSQL; SQLite serialises them)."""
    from experiments import notify
    from experiments.errors import Conflict
    from tests.factories import make_user

    user = make_user(session, "twice@example.com")
    session.add(NotificationPreference(user_id=user.id, upload=False))  # the other tab's
    session.commit()
    monkeypatch.setattr(notify, "_preference_row", lambda _session, _user: None)  # read before
    with pytest.raises(Conflict, match="saved meanwhile"):
        notify.save_preferences(session, user, {"upload": "on"})
    session.rollback()
    [row] = session.exec(select(NotificationPreference)).all()
    assert row.upload is False


def test_a_refused_webhook_comes_back_as_typed_so_a_resubmit_cannot_cut_it(login_as,
                                                                           db_engine):
    """A name one character over its limit is refused; the form puts it back whole (cut at
    the limit it came back valid, and submitting the page again stored it cut, unsaid)."""
    admin = login_as("admin")
    name = "Revenue alerts for the EMEA growth team " * 6  # 240 characters, limit 200
    url = "https://hooks.example.com/" + "p" * 2_000  # over the URL's 2,000
    form = {"name": name, "url": url, "events": "decision"}
    refused = admin.post("/admin/webhooks", data={"csrf_token": admin.csrf, **form})
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert f'value="{name}"' in page and url in page
    again = admin.post("/admin/webhooks", data={"csrf_token": admin.csrf, "name": name,
                                                 "url": url, "events": "decision"})
    assert again.status_code == 422
    with Session(db_engine) as session:
        assert session.exec(select(WebhookEndpoint)).all() == []
