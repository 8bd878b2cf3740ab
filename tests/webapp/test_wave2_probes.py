"""Adversarial probes of the wave-2 pages (QA1): hostile or odd bytes, two people at
once, and where a value comes from. Each test is a defect a user would notice, found
by probing, and fails on the code before its fix."""

from __future__ import annotations

import re

import pytest
from sqlmodel import select

from experiments.notify_models import WebhookEndpoint

HTMX = {"HX-Request": "true"}


@pytest.mark.parametrize(("url", "words"), [
    ("https://[::1/hook", "is not a valid address"),  # urlsplit raised: a 500
    ("https://hooks.example.com:99999/h", "is not a valid address"),  # failed only when sent
    ("https://hooks.example.com\u202e/moc.live", "direction-changing character (U+202E)"),
    ("https://hooks.exa\u200bmple.com/h", "invisible characters (U+200B)"),
    ("https://hooks.example.com/a b", "must not contain spaces"),
])
def test_a_malformed_webhook_address_is_a_field_error_not_a_500(session, login_as, url, words):
    """An admin typing a broken address gets a 422 naming the url field, and nothing
    is stored: before, ``[::1`` raised in urlsplit (500) and a port above 65535 or a
    right-to-left override was saved and only failed (or misled) later."""
    admin = login_as("admin")
    response = admin.post("/admin/webhooks", data={
        "csrf_token": admin.csrf, "name": "Ops", "url": url, "events": "decision"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert words in html
    assert 'aria-invalid="true"' in html
    assert session.exec(select(WebhookEndpoint)).all() == []


def test_a_planned_end_on_the_last_day_python_knows_does_not_break_the_calendar_feed(
        session, login_as):
    """The experiment form accepts any ISO date as the planned end, 9999-12-31 included.
    The calendar feed wrote its all-day event's end as the day after and raised
    OverflowError: every subscriber who could see that experiment got a 500 for the
    whole feed, on every poll. Now the event is an all-day event without DTEND (one
    day, RFC 5545 §3.6.1) and the rest of the feed is intact."""
    from datetime import date

    from icalendar import Calendar

    from tests.factories import make_experiment, make_team

    member = login_as("viewer", teams={"growth": "experimenter"})
    growth = make_team(session, "growth")
    far = make_experiment(session, "far-off", team_id=growth.id, owner_id=member.user.id,
                          planned_start=date(2026, 11, 2), planned_end=date.max)
    near = make_experiment(session, "near", team_id=growth.id, owner_id=member.user.id,
                           planned_start=date(2026, 11, 2), planned_end=date(2026, 12, 1))
    session.commit()
    made = member.post("/account/calendar", data={"csrf_token": member.csrf})
    token = re.search(r"/calendar/(cal_[A-Za-z0-9_-]+)\.ics", made.get_data(as_text=True))
    response = member.get(f"/calendar/{token.group(1)}.ics")
    assert response.status_code == 200
    events = {str(e["uid"]): e for e in Calendar.from_ical(response.data).walk("VEVENT")}
    last = events[f"experiment-{far.id}-planned-end@nrrlab"]
    assert last.decoded("dtstart") == date.max and "dtend" not in last
    other = events[f"experiment-{near.id}-planned-end@nrrlab"]
    assert (other.decoded("dtstart"), other.decoded("dtend")) == (date(2026, 12, 1),
                                                                  date(2026, 12, 2))


def test_the_nrr_page_says_which_upload_its_figures_come_from(db_engine, admin, login_as,
                                                              tmp_path):
    """Where does the headline come from? The page showed NRR and GRR with no word of
    which ledger upload computed them; after a second upload next month nothing on the
    page changed but the numbers. Now a line under the headline (and the printable page
    and the JSON export) names the version, its file, the day and the uploader, and the
    periods the figures cover (read here from the uploaded files with pandas)."""
    import pandas as pd
    from sqlmodel import Session

    from experiments.ledger import import_ledger
    from tests.ledger_gen import write_csv

    admin_name = admin.name or admin.email
    viewer = login_as("viewer")
    files = []
    for number, months in ((1, 13), (2, 14)):
        path = tmp_path / f"ledger-{number}.csv"
        write_csv(path, n_accounts=120, months=months, seed=11)
        files.append(path)
        with Session(db_engine, expire_on_commit=False) as session:
            import_ledger(session, path, dimensions=("plan", "region", "size"), actor=admin,
                          filename=path.name)
            session.commit()
        html = viewer.get("/nrr").get_data(as_text=True)
        source = re.search(r'<p class="hint" id="nrr-source">([^<]*)</p>', html)
        assert source, "the page does not say where its figures come from"
        periods = pd.read_csv(path, usecols=["period"])["period"]
        assert source.group(1) == (
            f"Computed at the upload of ledger version {number} ({path.name}) on "
            f"{pd.Timestamp.now(tz='UTC'):%Y-%m-%d} by {admin_name}; the figures cover "
            f"{periods.min()} to {periods.max()}.")
        # The exports carry the same source: a printed page or a JSON file keeps it.
        assert source.group(1) in viewer.get("/nrr/print").get_data(as_text=True)
        document = viewer.get("/nrr.json").get_json()
        assert {k: document["source"][k] for k in ("ledger_version", "filename", "uploaded_by",
                                                   "first_period", "last_period")} == {
            "ledger_version": number, "filename": path.name, "uploaded_by": admin_name,
            "first_period": periods.min(), "last_period": periods.max()}


def test_a_key_result_posted_under_another_quarters_address_is_a_404(session, login_as):
    """The key-result routes carry the quarter in the address but ignored it: a form
    posted under 2026-Q3 added the key result to the 2026-Q4 objective and then sent
    the user to the Q3 page, where it is not (or to a 404 page for a quarter that does
    not exist, after saving). Now the objective must belong to that quarter."""
    from experiments.review_models import KeyResult, Objective
    from tests.factories import make_node, make_team

    member = login_as("viewer", teams={"growth": "experimenter"})
    growth = make_team(session, "growth")
    node = make_node(session, "Seats", team_id=growth.id)
    objective = Objective(quarter="2026-Q4", title="Grow seats", team_id=growth.id)
    session.add(objective)
    session.commit()
    form = {"csrf_token": member.csrf, "title": "Seats per account", "node_id": str(node.id),
            "target": "3.2"}
    for quarter in ("2026-Q3", "9999-Q4"):
        wrong = member.post(f"/quarterly/{quarter}/objectives/{objective.id}/key-results",
                            data=form)
        assert wrong.status_code == 404, quarter
    assert session.exec(select(KeyResult)).all() == []
    right = member.post(f"/quarterly/2026-Q4/objectives/{objective.id}/key-results", data=form)
    assert right.status_code == 303
    assert right.headers["Location"].endswith(f"/quarterly/2026-Q4#objective-{objective.id}")
    kr = session.exec(select(KeyResult)).one()
    moved = member.post(f"/quarterly/2026-Q3/key-results/{kr.id}",
                        data={**form, "version": str(kr.version), "target": "9"})
    assert moved.status_code == 404
    session.refresh(kr)
    assert kr.target == 3.2


def test_objective_titles_are_literal_text_in_the_quarterly_markdown(session, login_as):
    """The quarterly review's Markdown escaped table cells but wrote each objective's
    title as a raw heading and its team and owner as raw text, so a title such as
    ``[Board deck](javascript:alert(1)) <img src=x onerror=alert(1)>`` became a live link
    and raw HTML in any Markdown viewer. Now it reads as typed (CommonMark backslash
    escapes), like every other user text in the exports."""
    from experiments.review_models import Objective
    from tests.factories import make_team

    member = login_as("viewer", teams={"growth": "experimenter"})
    growth = make_team(session, "growth")
    growth.name = "Growth <b>team</b>"
    hostile = "[Board deck](javascript:alert(1)) <img src=x onerror=alert(1)> *now*"
    session.add(Objective(quarter="2026-Q4", title=hostile, team_id=growth.id,
                          owner_id=member.user.id))
    member.user.name = "Ana [x](http://evil.example)"
    session.merge(member.user)
    session.commit()
    response = member.get("/quarterly/2026-Q4/export.md")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    heading = next(line for line in text.splitlines() if line.startswith("### "))
    assert heading == ("### \\[Board deck\\](javascript:alert(1)) \\<img src=x "
                       "onerror=alert(1)\\> \\*now\\*")
    assert "Team: Growth \\<b\\>team\\</b\\>; owner: Ana \\[x\\](http://evil.example)." in text
    assert "](javascript:" not in text.replace("\\](javascript:", "")


@pytest.mark.parametrize("invisible", ["\u200b\u200b", "\u202e\u202c", "\ufeff \u3000"])
def test_a_required_text_of_only_invisible_characters_is_refused(session, login_as,
                                                                 invisible):
    """A rationale (or an action title) made only of zero-width spaces, direction
    controls or a BOM passed "is required": the decision was recorded with a rationale
    nobody can read, and the action listed with an empty title. Now it is the same
    field error as a blank one, and nothing is stored."""
    from experiments.models import Experiment
    from experiments.review_models import Action
    from tests.factories import make_experiment, make_team

    member = login_as("viewer", teams={"growth": "experimenter"})
    growth = make_team(session, "growth")
    make_experiment(session, "nudge", status="stopped", team_id=growth.id,
                    owner_id=member.user.id)
    session.commit()
    decided = member.post("/experiments/nudge/decide", data={
        "csrf_token": member.csrf, "version": "1", "decision": "kill",
        "rationale": invisible})
    assert decided.status_code == 422
    assert "is required (this has only invisible characters)" in decided.get_data(as_text=True)
    session.expire_all()
    assert session.exec(select(Experiment)).one().status == "stopped"
    raised = member.post("/review/2026-W48/actions", data={
        "csrf_token": member.csrf, "title": invisible, "experiment": "nudge",
        "owner_id": str(member.user.id)})
    assert raised.status_code == 422
    assert "only invisible characters" in raised.get_data(as_text=True)
    assert session.exec(select(Action)).all() == []


@pytest.mark.parametrize(("name", "value", "words"), [
    ("NRRLAB_REVIEW_TIME", "10am", "NRRLAB_REVIEW_TIME must be HH:MM"),
    ("NRRLAB_REVIEW_WEEKDAY", "mon", "NRRLAB_REVIEW_WEEKDAY must be one of"),
    ("NRRLAB_DIGEST_HOURS_BEFORE", "two", "NRRLAB_DIGEST_HOURS_BEFORE"),
])
def test_a_malformed_meeting_schedule_stops_the_app_at_start(monkeypatch, database_url,
                                                             tmp_path, name, value, words):
    """The meeting schedule comes from the environment. A typo was read only when
    needed: every calendar feed answered 500 and every digest run failed, with nothing
    said at start. Now ``create_app`` refuses with one line naming the variable, like
    the other settings."""
    from webapp import create_app
    from webapp.config import ConfigError

    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=words):
        create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "t" * 48,
                    "DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path / "i")})


def test_an_actual_dated_in_year_26_is_a_field_error(session, login_as):
    """A mistyped year (0026-11-02 for 2026-11-02) was stored as the node's oldest actual;
    weeks, quarters and action due dates already refuse years before 1900."""
    from experiments.tree_models import DriverActual
    from tests.factories import make_node, make_team

    owner = login_as("viewer", teams={"growth": "experimenter"})
    growth = make_team(session, "growth")
    node = make_node(session, "Seats", team_id=growth.id, owner_id=owner.user.id)
    session.commit()
    response = owner.post(f"/tree/{node.id}/actuals", headers=HTMX | {"X-CSRFToken": owner.csrf},
                          data={"measured_on": "0026-11-02", "value": "3.1"})
    assert response.status_code == 422
    assert "must be in 1900 or later" in response.get_data(as_text=True)
    assert session.exec(select(DriverActual)).all() == []
