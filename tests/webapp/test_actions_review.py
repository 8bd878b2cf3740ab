"""Actions on the weekly review pages (issue 17 items 1 and 4, acceptance): a generated
four-week scenario through the pages /review/2026-W45 … W48 — an action raised in week 1
shows in weeks 2–4 until closed, overdue flagged; closing it (htmx, and without JS) is
audited; one 409 for two editors; hostile input; scoping. A ship decided on the review
page appears in the review and in the quarter, whose totals equal the sum of its weeks."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import select

from experiments.models import AuditEvent, ReviewItem, ReviewMeeting
from experiments.review import current_week
from experiments.review_models import Action
from tests.factories import (
    accounts_csv,
    make_experiment,
    make_node,
    make_team,
    store_accounts,
    team_clients,
)

W45, W46, W47, W48 = "2026-W45", "2026-W46", "2026-W47", "2026-W48"
HTMX = {"HX-Request": "true"}
XSS = '<script>alert("act")</script>'


@pytest.fixture
def world(session, login_as):
    clients = team_clients(login_as)
    growth = make_team(session, "growth")
    node = make_node(session, "Expansion", team_id=growth.id)
    started = datetime(2026, 10, 26, 9, tzinfo=UTC)  # W44: exists in all four weeks
    experiment = make_experiment(session, "onboarding-email", node=node, team_id=growth.id,
                                 owner_id=clients["exp"].user.id, started_at=started,
                                 created_at=started - timedelta(days=1))
    session.commit()
    return clients, experiment


def _actions_on(client, week: str) -> dict[str, str]:
    """``{action id: state}`` in the #actions section of ``week``'s page."""
    response = client.get(f"/review/{week}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    section = html[html.index('id="actions"'):html.index('id="needs-decision"')]
    return dict(re.findall(r'data-action="(\d+)" data-state="(\w+)"', section))


def _raise(client, week: str, **fields):
    data = {"csrf_token": client.csrf, "title": "Ask finance for Q4 figures",
            "experiment": "onboarding-email", "owner_id": str(client.user.id), "due": "",
            **fields}
    return client.post(f"/review/{week}/actions", data=data)


def test_four_weeks_an_action_carries_until_it_is_closed(session, world):
    clients, _ = world
    exp, mate = clients["exp"], clients["mate"]
    response = _raise(exp, W45, due="2026-11-04")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/review/{W45}#actions")
    action = session.exec(select(Action)).one()
    aid = str(action.id)

    assert _actions_on(exp, W45) == {aid: "open"}
    for week in (W46, W47, W48):
        assert _actions_on(exp, week) == {aid: "open"}, week
    week2 = exp.get(f"/review/{W46}").get_data(as_text=True)
    card = week2[week2.index(f'id="action-{aid}"'):]
    card = card[:card.index("</article>")]
    assert "Overdue" in card and f"carried from <a href=\"/review/{W45}#action-{aid}\">" in card

    # Closed during week 3's meeting, with htmx: the card replaces itself.
    response = mate.post(f"/review/{W47}/actions/{aid}/status",
                         headers={**HTMX, "X-CSRFToken": mate.csrf},
                         data={"version": "1", "status": "done", "resolution": "Arrived"})
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert "<html" not in fragment and "Closed as done." in fragment
    assert 'data-state="done"' in fragment and "Reopen" in fragment
    assert _actions_on(exp, W47) == {aid: "done"}  # stays visible where it was closed
    assert _actions_on(exp, W48) == {}  # and leaves the carried list
    assert _actions_on(exp, W46) == {aid: "open"}  # earlier weeks saw it open
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "action.close")).one()
    assert event.actor_id == mate.user.id and event.entity_id == aid


def test_without_javascript_closing_posts_and_redirects(session, world):
    clients, _ = world
    exp = clients["exp"]
    _raise(exp, W46)
    aid = session.exec(select(Action.id)).one()
    response = exp.post(f"/review/{W46}/actions/{aid}/status",
                        data={"csrf_token": exp.csrf, "version": "1", "status": "dropped"})
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/review/{W46}#action-{aid}")
    assert _actions_on(exp, W46) == {str(aid): "dropped"}


def test_two_editors_of_one_action_get_one_conflict(session, world):
    clients, _ = world
    exp, mate = clients["exp"], clients["mate"]
    _raise(exp, W47)
    aid = session.exec(select(Action.id)).one()
    edit = {"version": "1", "title": "Ask finance", "owner_id": str(exp.user.id), "due": ""}
    first = exp.post(f"/review/{W47}/actions/{aid}", headers={**HTMX, "X-CSRFToken": exp.csrf},
                     data={**edit, "due": "2026-12-04"})
    assert first.status_code == 200 and "Saved." in first.get_data(as_text=True)
    second = mate.post(f"/review/{W47}/actions/{aid}/status",
                       headers={**HTMX, "X-CSRFToken": mate.csrf},
                       data={"version": "1", "status": "done"})
    assert second.status_code == 409
    message = second.get_data(as_text=True)
    assert "This action was changed by" in message and "you saw version 1" in message
    assert 'name="version" value="2"' in message  # the card shows the newer version
    session.expire_all()
    stored = session.get(Action, aid)
    assert (stored.status, stored.version, str(stored.due)) == ("open", 2, "2026-12-04")


@pytest.mark.parametrize(("fields", "message"), [
    ({"title": "a\x1bb"}, "field “title” contains a control character"),  # the input guard
    ({"due": "31/12/2026"}, "must be a date such as"),
    ({"owner_id": "999999"}, "member of the experiment"),
    ({"title": ""}, "is required"),
])
def test_bad_input_is_422_with_the_message_beside_the_field(session, world, fields, message):
    clients, _ = world
    exp = clients["exp"]
    response = exp.post(f"/review/{W46}/actions", headers={**HTMX, "X-CSRFToken": exp.csrf},
                        data={"title": "Keep me", "experiment": "onboarding-email",
                              "owner_id": str(exp.user.id), **fields})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert message in html and "<html" not in html
    assert "control character" in message or 'aria-invalid="true"' in html
    assert session.exec(select(Action)).all() == []


def test_titles_are_escaped_and_others_cannot_touch_an_action(session, world):
    clients, _ = world
    exp = clients["exp"]
    _raise(exp, W46, title=XSS)
    aid = session.exec(select(Action.id)).one()
    page = clients["viewer"].get(f"/review/{W46}").get_data(as_text=True)
    assert "<script>alert" not in page and "&lt;script&gt;alert" in page
    assert f'action="/review/{W46}/actions/{aid}/status"' not in page  # a viewer gets no form
    form = {"csrf_token": "", "version": "1", "status": "done"}
    viewer, other = clients["viewer"], clients["other"]
    assert viewer.post(f"/review/{W46}/actions/{aid}/status",
                       data={**form, "csrf_token": viewer.csrf}).status_code == 403
    assert other.post(f"/review/{W46}/actions/{aid}/status",
                      data={**form, "csrf_token": other.csrf}).status_code == 404
    assert _actions_on(other, W46) == {}
    assert exp.post(f"/review/{W46}/actions/{aid}/status", headers=HTMX,
                    data={"version": "1", "status": "done"}).status_code == 400  # no CSRF
    assert session.get(Action, aid).status == "open"


def test_a_ship_decided_on_the_page_appears_in_the_review_and_the_quarter(
        session, world, app):
    clients, experiment = world
    exp = clients["exp"]
    store_accounts(session, experiment, accounts_csv(seed=5, n=200))
    session.commit()
    from experiments.analysis import refresh_snapshot
    from experiments.models import Dataset

    dataset = session.exec(select(Dataset)).one()
    refresh_snapshot(session, session.merge(experiment), dataset)
    session.commit()
    week = current_week().label
    exp.get(f"/review/{week}")
    session.expire_all()
    meeting = session.exec(select(ReviewMeeting).where(ReviewMeeting.iso_week == week)).one()
    item = session.exec(select(ReviewItem).where(ReviewItem.meeting_id == meeting.id)).one()
    response = exp.post(f"/review/{week}/items/{item.id}", data={
        "csrf_token": exp.csrf, "version": str(item.version), "note": "Ship it",
        "decision": "ship", "decision_rationale": "Clear win on expansion",
        "shipped_variant": "treatment", "rollout_share": "0.5", "eligible_base": "100000"})
    assert response.status_code == 303, response.get_data(as_text=True)[-3000:]
    page = exp.get(f"/review/{week}").get_data(as_text=True)
    changed = page[page.index('id="changed"'):page.index('id="alerts"')]
    assert "decided: ship" in changed and "onboarding-email" in changed

    quarter = exp.get("/quarterly/")
    qbr_url = quarter.headers["Location"]
    html = exp.get(qbr_url).get_data(as_text=True)
    assert 'data-total="shipped">1<' in html
    document = json.loads(exp.get(f"{qbr_url}/export.json").get_data(as_text=True))
    assert document["totals"]["shipped_keys"] == ["onboarding-email"]
    [shipping_week] = [w for w in document["weeks"] if w["shipped"]]
    assert shipping_week["week"] == week
    for kind in ("run", "won", "lost", "shipped"):
        assert document["totals"][kind] == sum(w[kind] for w in document["weeks"])
    shrunk = [w["impact_shrunk"] for w in document["weeks"] if w["impact_shrunk"] is not None]
    assert document["totals"]["impact_shrunk"] == pytest.approx(sum(shrunk)) if shrunk \
        else document["totals"]["impact_shrunk"] is None
