"""The weekly review page: the three-week scenario section by section, filters, the
htmx item edits (permissions, stale versions, validation, CSRF header), XSS, freezing."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from sqlmodel import select

from experiments.models import AuditEvent, Experiment, ReviewItem, ReviewMeeting
from experiments.review import current_week
from tests.experiments.test_review import EXISTING, EXPECTED, build_scenario

XSS = '<script>alert("review")</script><img src=x onerror=alert(1)>'


class PageSections(HTMLParser):
    """``{section id: {data-experiment keys of its table rows}}`` and the item forms."""

    def __init__(self):
        super().__init__()
        self.current: str | None = None
        self.rows: dict[str, set[str]] = defaultdict(set)
        self.forms: dict[str, dict[str, str]] = {}
        self.articles: set[str] = set()
        self.inline: list[str] = []
        self._form: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("id"):
            self.current = a["id"]
        if tag == "tr" and "data-experiment" in a and self.current:
            self.rows[self.current].add(a["data-experiment"])
        if tag == "form" and (a.get("id") or "").startswith("item-"):
            self._form = a["id"].removeprefix("item-")
            self.forms[self._form] = {"action": a.get("action"), "hx-post": a.get("hx-post")}
        if tag == "article" and (a.get("id") or "").startswith("item-"):
            self.articles.add(a["id"].removeprefix("item-"))
        if tag == "input" and self._form and a.get("name") == "version":
            self.forms[self._form]["version"] = a.get("value")
        if (
            "style" in a
            or any(name.startswith("hx-on") for name in a)
            or (tag == "script" and "src" not in a)
        ):
            self.inline.append(tag)

    def handle_endtag(self, tag):
        if tag == "section":
            self.current = None
        if tag == "form":
            self._form = None


def parse(response) -> PageSections:
    page = PageSections()
    page.feed(response.get_data(as_text=True))
    return page


def page_sections(page: PageSections) -> dict[str, set[str]]:
    return {
        "needs_decision": page.rows["needs-decision"],
        "changed": page.rows["changed"],
        "alerts": page.rows["alerts"],
    }


@pytest.fixture
def world(session, db_engine, login_as):
    """The scenario ending last week (so all three weeks are over), and signed-in clients."""
    clients = {
        "admin": login_as("admin"),
        "growth_exp": login_as("viewer", teams={"growth": "experimenter"}),
        "growth_viewer": login_as("viewer", teams={"growth": "viewer"}),
        "success_exp": login_as("viewer", teams={"success": "experimenter"}),
        "growth_analyst": login_as("viewer", teams={"growth": "analyst"}),
    }
    scenario = build_scenario(session, current_week().previous)
    yield scenario, clients
    session.rollback()


def _item(session, week: str, experiment_id: int) -> ReviewItem:
    session.expire_all()
    meeting = session.exec(select(ReviewMeeting).where(ReviewMeeting.iso_week == week)).one()
    return session.exec(
        select(ReviewItem).where(
            ReviewItem.meeting_id == meeting.id, ReviewItem.experiment_id == experiment_id
        )
    ).one()


def _form(version, **fields):
    return {
        "version": str(version),
        "note": "",
        "decision": "",
        "decision_rationale": "",
        **fields,
    }


HTMX = {"HX-Request": "true"}


# ------------------------------------------------------------------ navigation


def test_review_redirects_to_the_current_week(login_as):
    client = login_as("viewer")
    response = client.get("/review/")
    assert response.status_code == 302
    assert response.headers["Location"].endswith(f"/review/{current_week().label}")


@pytest.mark.parametrize(
    "week",
    ["2026-W99", "2025-W53", "garbage", "2026-w48", "2026-W48 ", "9999-W01", "2026-W4%0A8", "%00"],
)
def test_an_invalid_week_is_404(login_as, week):
    response = login_as("viewer").get(f"/review/{week}")
    assert response.status_code == 404


def test_an_empty_week_renders_every_section(login_as):
    response = login_as("viewer").get("/review/2026-W48")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for heading in (
        "Needs a decision",
        "Changed since last review",
        "Alerts",
        "Driver tree summary",
        "Portfolio",
    ):
        assert heading in html


# ------------------------------------------------------------------ the scenario


@pytest.mark.parametrize("name", ["W1", "W2", "W3"])
def test_each_section_of_each_weeks_page_lists_exactly_the_right_experiments(world, name):
    scenario, clients = world
    week = scenario.weeks[name].label
    response = clients["admin"].get(f"/review/{week}")
    assert response.status_code == 200
    page = parse(response)
    assert page_sections(page) == EXPECTED[name]
    assert page.rows["portfolio"] <= EXISTING[name]
    assert not page.inline, f"inline script/style/hx-on on the page: {page.inline}"
    # The team's viewer sees the same minus the other team's experiment, and cannot edit.
    viewer = parse(clients["growth_viewer"].get(f"/review/{week}"))
    assert page_sections(viewer) == {k: v - {"other-team"} for k, v in EXPECTED[name].items()}
    assert viewer.forms == {} and viewer.articles


def test_the_page_states_the_window_and_the_portfolio_adjustment(world):
    scenario, clients = world
    html = clients["admin"].get(f"/review/{scenario.weeks['W3'].label}").get_data(as_text=True)
    assert "As the meeting saw it" in html
    assert "Benjamini-Hochberg adjusted across the" in html and "p (BH, portfolio)" in html
    assert "underpowered" in html and "win" in html  # the verdict change of win-late
    assert re.search(r"Changes from \S+ \S+ UTC to", html)


def test_htmx_gets_the_fragment_and_a_vary_header(world):
    scenario, clients = world
    url = f"/review/{scenario.weeks['W2'].label}"
    full = clients["admin"].get(url)
    fragment = clients["admin"].get(url, headers=HTMX)
    assert "HX-Request" in full.headers["Vary"] and "HX-Request" in fragment.headers["Vary"]
    assert "<html" in full.get_data(as_text=True)
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and 'id="review"' in body
    assert page_sections(parse(fragment)) == EXPECTED["W2"]


def test_branch_and_date_range_filters(world):
    scenario, clients = world
    w1, w2, w3 = (scenario.weeks[k] for k in ("W1", "W2", "W3"))
    churn = scenario.nodes["Churn"].id
    page = parse(clients["admin"].get(f"/review/{w3.label}?branch={churn}"))
    assert page.rows["portfolio"] == {"stopped-undecided", "amended"}
    assert page_sections(page)["needs_decision"] == {"stopped-undecided", "amended", "other-team"}
    ranged = clients["admin"].get(f"/review/{w3.label}?from={w1.start.date()}&to={w2.last_day}")
    assert ranged.status_code == 200
    assert "read-only report for a date range" in ranged.get_data(as_text=True)
    page = parse(ranged)
    assert page_sections(page)["changed"] == {
        "win-late",
        "decided-ship",
        "stopped-undecided",
        "srm-running",
        "other-team",
    }
    assert page.forms == {}


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("from=yesterday", 422),
        ("to=2026-02-30", 422),
        ("from=2026-11-20&to=2026-11-01", 422),
        ("branch=abc", 422),
        ("branch=99999999", 404),
        ("branch=999999999999", 422),  # beyond any id column: the kit says "unknown"
        ("from=99999-01-01", 422),
        ("branch=" + "9" * 40, 422),
    ],
)
def test_bad_filters_are_refused_without_a_500(world, query, status):
    scenario, clients = world
    response = clients["admin"].get(f"/review/{scenario.weeks['W3'].label}?{query}")
    assert response.status_code == status
    html = response.get_data(as_text=True)
    assert "Traceback" not in html
    if status == 422:  # the whole week, with the message beside the filter
        assert 'class="field-error"' in html and "could not be used" in html
        assert page_sections(parse(response)) == EXPECTED["W3"]


def test_a_past_week_is_unchanged_by_later_experiment_edits(world, session):
    scenario, clients = world
    url = f"/review/{scenario.weeks['W2'].label}"
    before = parse(clients["admin"].get(url))
    experiment = session.get(Experiment, scenario.experiments["stopped-undecided"].id)
    experiment.status, experiment.decision, experiment.decision_rationale = (
        "decided",
        "kill",
        "No effect.",
    )
    experiment.decided_at = current_week().start + timedelta(minutes=1)
    experiment.name = "Renamed afterwards"
    session.add(experiment)
    session.commit()
    after = clients["admin"].get(url)
    assert page_sections(parse(after)) == page_sections(before)
    assert "Renamed afterwards" not in after.get_data(as_text=True)


# ------------------------------------------------------------------ item edits


def test_an_experimenter_saves_an_item_inline(world, session):
    scenario, clients = world
    week = scenario.weeks["W3"].label
    client = clients["growth_exp"]
    page = parse(client.get(f"/review/{week}"))
    form = page.forms["amended"]
    assert form["action"] == form["hx-post"] and form["action"].startswith(f"/review/{week}/items/")
    response = client.post(
        form["hx-post"],
        headers={**HTMX, "X-CSRFToken": client.csrf},
        data=_form(form["version"], note=XSS),
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    html = response.get_data(as_text=True)
    assert "<html" not in html and "Saved." in html and "version 2" in html
    assert (
        "<script>alert" not in html
        and "&lt;script&gt;alert(&#34;review&#34;)&lt;/script&gt;" in html
    )
    item = _item(session, week, scenario.experiments["amended"].id)
    assert (item.note, item.version, item.updated_by_id) == (XSS, 2, client.user.id)
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "review.update")).one()
    assert event.actor_id == client.user.id
    # The whole page shows it escaped too.
    page_html = clients["growth_viewer"].get(f"/review/{week}").get_data(as_text=True)
    assert "<script>alert" not in page_html and "<img src=x" not in page_html
    assert "&lt;script&gt;" in page_html


def test_the_csrf_header_alone_authorises_an_htmx_post(world, session):
    """base.html sends the token as X-CSRFToken on every htmx request; prove it is enough."""
    scenario, clients = world
    week = scenario.weeks["W3"].label
    client = clients["growth_exp"]
    form = parse(client.get(f"/review/{week}")).forms["amended"]
    data = _form(form["version"], note="via header")
    assert (
        client.post(form["hx-post"], headers=HTMX, data=data).status_code == 400
    )  # no token at all
    response = client.post(form["hx-post"], headers={**HTMX, "X-CSRFToken": client.csrf}, data=data)
    assert response.status_code == 200


def test_without_javascript_the_form_posts_and_redirects(world, session):
    scenario, clients = world
    week = scenario.weeks["W3"].label
    client = clients["growth_exp"]
    form = parse(client.get(f"/review/{week}")).forms["stopped-undecided"]
    response = client.post(
        form["action"],
        data={**_form(form["version"], note="plain post"), "csrf_token": client.csrf},
    )
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/review/{week}#item-stopped-undecided")


def test_a_stale_version_is_409_with_a_clear_message(world, session):
    scenario, clients = world
    week = scenario.weeks["W3"].label
    first, second = clients["growth_exp"], clients["admin"]
    form = parse(first.get(f"/review/{week}")).forms["amended"]
    url = form["hx-post"]
    assert (
        second.post(
            url,
            headers={**HTMX, "X-CSRFToken": second.csrf},
            data=_form(form["version"], note="admin first"),
        ).status_code
        == 200
    )
    response = first.post(
        url, headers={**HTMX, "X-CSRFToken": first.csrf}, data=_form(form["version"], note="stale")
    )
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "Not saved" in html and "Reload" in html and "version 2" in html
    assert "admin first" in html  # the card now shows what is stored
    assert _item(session, week, scenario.experiments["amended"].id).note == "admin first"
    # Without htmx: a full page with the same message.
    page = first.post(url, data={**_form(form["version"], note="stale"), "csrf_token": first.csrf})
    assert page.status_code == 409 and "<html" in page.get_data(as_text=True)


def test_a_viewer_is_403_and_another_team_404(world, session):
    scenario, clients = world
    week = scenario.weeks["W3"].label
    item = None
    parse(clients["admin"].get(f"/review/{week}"))
    item = _item(session, week, scenario.experiments["amended"].id)
    url = f"/review/{week}/items/{item.id}"
    for name, expected in (("growth_viewer", 403), ("growth_analyst", 403), ("success_exp", 404)):
        client = clients[name]
        response = client.post(
            url, headers={**HTMX, "X-CSRFToken": client.csrf}, data=_form(1, note="no")
        )
        assert response.status_code == expected, name
        assert "Traceback" not in response.get_data(as_text=True)
    # The analyst's refusal says why.
    analyst = clients["growth_analyst"]
    response = analyst.post(url, headers={"X-CSRFToken": analyst.csrf}, data=_form(1, note="no"))
    assert "experimenter" in response.get_data(as_text=True)
    assert _item(session, week, scenario.experiments["amended"].id).version == 1
    # An item id of another week is not found through this week.
    other_week = scenario.weeks["W2"].label
    response = clients["admin"].post(
        f"/review/{other_week}/items/{item.id}",
        headers={"X-CSRFToken": clients["admin"].csrf},
        data=_form(1, note="x"),
    )
    assert response.status_code == 404
    for huge in (2**31, 10**30):
        response = clients["admin"].post(
            f"/review/{week}/items/{huge}",
            headers={"X-CSRFToken": clients["admin"].csrf},
            data=_form(1, note="x"),
        )
        assert response.status_code == 404
    response = clients["admin"].post(
        f"/review/not-a-week/items/{item.id}",
        headers={"X-CSRFToken": clients["admin"].csrf},
        data=_form(1, note="x"),
    )
    assert response.status_code == 404


def test_bad_fields_are_422_with_messages_next_to_them(world, session):
    scenario, clients = world
    week = scenario.weeks["W3"].label
    client = clients["growth_exp"]
    form = parse(client.get(f"/review/{week}")).forms["amended"]
    response = client.post(
        form["hx-post"],
        headers={**HTMX, "X-CSRFToken": client.csrf},
        data=_form(form["version"], note="keep me", decision="ship"),
    )
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "a decision needs a rationale" in html
    assert "keep me" in html and 'aria-invalid="true"' in html  # what was typed stays
    response = client.post(
        form["hx-post"],
        headers={**HTMX, "X-CSRFToken": client.csrf},
        data={"note": "no version", "csrf_token": client.csrf},
    )
    assert response.status_code == 422 and "reload the page" in response.get_data(as_text=True)
    response = client.post(
        form["hx-post"],
        headers={**HTMX, "X-CSRFToken": client.csrf},
        data=_form(form["version"], note="x" * 10_001),
    )
    assert response.status_code == 422 and "at most 10,000 characters" in response.get_data(
        as_text=True
    )
    assert _item(session, week, scenario.experiments["amended"].id).version == 1


def test_a_decision_on_the_page_decides_the_experiment(world, session):
    scenario, clients = world
    week = scenario.weeks["W3"].label
    client = clients["growth_exp"]
    form = parse(client.get(f"/review/{week}")).forms["stopped-undecided"]
    response = client.post(
        form["hx-post"],
        headers={**HTMX, "X-CSRFToken": client.csrf},
        data=_form(form["version"], decision="kill", decision_rationale="Flat after 700/arm."),
    )
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    # The one record, with a link to the control that changes it (reopen on the page).
    assert "Reopen or change it on the experiment page" in html
    assert "/experiments/stopped-undecided#decision-reopen" in html
    session.expire_all()
    experiment = session.get(Experiment, scenario.experiments["stopped-undecided"].id)
    assert (experiment.status, experiment.decision) == ("decided", "kill")
    actions = set(session.exec(select(AuditEvent.action)).all())
    assert {"review.update", "experiment.decide"} <= actions


def test_an_item_is_only_found_under_its_own_week_and_refuses_unknown_methods(world, session):
    """GET of an item shows its page (issue 18), but only under the week it belongs to,
    and PUT/DELETE are not routes."""
    scenario, clients = world
    admin = clients["admin"]
    week, other = scenario.weeks["W3"].label, scenario.weeks["W2"].label
    assert admin.get(f"/review/{week}").status_code == 200  # opens the week's items
    assert admin.get(f"/review/{other}").status_code == 200
    item = _item(session, week, scenario.experiments["amended"].id)
    assert admin.get(f"/review/{week}/items/{item.id}").status_code == 200
    assert admin.get(f"/review/{other}/items/{item.id}").status_code == 404
    for method in ("put", "delete"):
        assert getattr(admin, method)(f"/review/{week}/items/{item.id}").status_code == 405


def test_weeks_that_have_not_begun_or_had_no_experiments_store_nothing(login_as, session):
    """Any viewer can type any week into the URL: opening one must not create rows."""
    from sqlmodel import func, select

    from experiments.models import ReviewItem, ReviewMeeting

    client = login_as("viewer")
    for week in ("9998-W10", "2030-W05", "1900-W01"):
        response = client.get(f"/review/{week}")
        assert response.status_code == 200, week
        assert "stores nothing" in response.get_data(as_text=True)
    assert session.exec(select(func.count()).select_from(ReviewMeeting)).one() == 0
    assert session.exec(select(func.count()).select_from(ReviewItem)).one() == 0
