"""The weekly review stays bounded as the workspace grows (issue 18: 300 experiments made
it take a second): statements per view and decision forms do not grow with experiments;
long sections list their first rows with a "Show all" link; the agenda is paged with
the items needing a decision first; every item has a page of its own that works without
JavaScript; a running week's view rewrites only the frozen copies that changed.

The workspace is ``benchmarks/workspace.py`` (built through the services): 60 experiments
started over the last four weeks, every one uploaded this week (so each of the 54 non-draft
ones is "changed"), a few stopped without a decision (so "needs a decision").
"""

from __future__ import annotations

import re
from collections import defaultdict
from html.parser import HTMLParser

import pytest
from sqlalchemy import event
from sqlalchemy import text as sql_text
from sqlmodel import Session, select

from benchmarks.workspace import ADMIN_EMAIL, PASSWORD, TEAMS, build_workspace
from experiments.models import Experiment, ReviewItem, ReviewMeeting, Team
from experiments.review import AGENDA_PAGE_SIZE
from experiments.review_rows import seen_digest
from experiments.review_weeks import current_week
from tests.helpers import Auth, csrf_token_of, dispose_app
from webapp.review.views import SECTION_ROWS

HTMX = {"HX-Request": "true"}


class Page(HTMLParser):
    """Rows per section (``data-experiment``), item forms and articles, links by text."""

    def __init__(self):
        super().__init__()
        self.section: str | None = None
        self.rows: dict[str, list[str]] = defaultdict(list)
        self.forms: dict[str, str] = {}  # key → action
        self.articles: list[str] = []
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._href: str | None = None
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("id"):
            self.section = a["id"]
        if tag == "tr" and "data-experiment" in a and self.section:
            self.rows[self.section].append(a["data-experiment"])
        if tag == "form" and (a.get("id") or "").startswith("item-"):
            self.forms[a["id"].removeprefix("item-")] = a.get("action")
        if tag == "article" and (a.get("id") or "").startswith("item-"):
            self.articles.append(a["id"].removeprefix("item-"))
        if tag == "a":
            self._href, self._text = a.get("href"), ""

    def handle_data(self, data):
        if self._href is not None:
            self._text += data

    def handle_endtag(self, tag):
        if tag == "section":
            self.section = None
        if tag == "a" and self._href is not None:
            self.links.append((self._href, " ".join(self._text.split())))
            self._href = None


def parse(response) -> Page:
    assert response.status_code == 200, response.status_code
    page = Page()
    page.feed(response.get_data(as_text=True))
    return page


def link(page: Page, text: str) -> str:
    found = [href for href, label in page.links if label.startswith(text)]
    assert found, f"no link {text!r} on the page"
    return found[0]


@pytest.fixture
def app(db_engine, database_url, tmp_path):
    """The app without the rendered-page cache: each GET below does the review's work."""
    from webapp import create_app

    app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "t" * 48,
                      "DATABASE_URL": database_url, "PAGE_CACHE": False,
                      "INSTANCE_PATH": str(tmp_path / "instance")})
    yield app
    dispose_app(app)


def _sign_in(app, email: str = ADMIN_EMAIL):
    client = app.test_client()
    assert Auth(client).login(email, PASSWORD).status_code == 303
    client.csrf = csrf_token_of(client)
    return client


@pytest.fixture
def workspace(db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=60, nodes=12, weeks=4, accounts=20)
    return db_engine


def _statements(app):
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = app.extensions["nrrlab.engine"]
    event.listen(engine, "before_cursor_execute", record)
    return statements, lambda: event.remove(engine, "before_cursor_execute", record)


def _week() -> str:
    return f"/review/{current_week().label}"


# ------------------------------------------------------------------ bounded growth


def test_statements_and_decision_forms_do_not_grow_from_10_to_60_experiments(app, db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=10, nodes=12, weeks=4, accounts=20)
    client = _sign_in(app)
    statements, stop = _statements(app)

    def view() -> tuple[int, Page]:
        client.get(_week())  # the first view of a grown workspace stores the new rows
        # ... which moves no generation (a running week's copies): the counted view is the
        # first after a write in both workspaces.
        with db_engine.begin() as connection:
            connection.execute(sql_text("UPDATE data_generation SET n = n + 1 WHERE id = 1"))
        statements.clear()
        page = parse(client.get(_week()))
        return len(statements), page

    try:
        at_10, page_10 = view()
        with Session(db_engine, expire_on_commit=False) as session:
            build_workspace(session, experiments=60, weeks=4, accounts=20, first=10)
        at_60, page_60 = view()
    finally:
        stop()
    assert at_60 == at_10, f"statements grew with the workspace: {at_10} → {at_60}"
    assert at_60 <= 36  # the bound of tests/webapp/test_query_counts.py
    assert 0 < len(page_10.forms) <= len(page_60.forms) == AGENDA_PAGE_SIZE
    for section in ("needs-decision", "changed", "alerts", "portfolio"):
        assert len(page_60.rows[section]) <= SECTION_ROWS, section
    assert len(page_60.rows["changed"]) == SECTION_ROWS  # 54 changed: the first 25 listed


def test_a_running_week_rewrites_only_the_frozen_copies_that_changed(app, workspace):
    client = _sign_in(app)
    client.get(_week())
    statements, stop = _statements(app)
    try:
        client.get(_week())
        unchanged = [s for s in statements if s.lstrip().upper().startswith("UPDATE REVIEW_ITEM")]
        with Session(workspace, expire_on_commit=False) as session:
            experiment = session.exec(select(Experiment).where(Experiment.key == "exp-0003")).one()
            experiment.name = "Renamed this week"
            session.add(experiment)
            session.commit()
        statements.clear()
        page = client.get(_week()).get_data(as_text=True)
        renamed = [s for s in statements if s.lstrip().upper().startswith("UPDATE REVIEW_ITEM")]
    finally:
        stop()
    assert unchanged == []
    assert len(renamed) == 1  # one item's copy, not sixty
    assert "Renamed this week" in page
    with Session(workspace) as session:
        meeting = session.exec(select(ReviewMeeting)
                               .where(ReviewMeeting.iso_week == current_week().label)).one()
        items = session.exec(select(ReviewItem).where(ReviewItem.meeting_id == meeting.id)).all()
        assert len(items) == 60
        by_key = {i.seen["experiment"]["key"]: i for i in items}
        assert by_key["exp-0003"].seen["experiment"]["name"] == "Renamed this week"
        # Every stored digest is the digest of the stored copy (the rule the migration used).
        assert all(i.seen_digest == seen_digest(i.seen) for i in items)


# ------------------------------------------------------------------ long sections


def test_long_sections_list_their_first_rows_and_show_all_lists_every_one(app, workspace):
    client = _sign_in(app)
    page = parse(client.get(_week()))
    assert len(page.rows["changed"]) == SECTION_ROWS
    html = client.get(_week()).get_data(as_text=True)
    assert f"The first {SECTION_ROWS} of 54 changed experiments." in html
    assert re.search(r'Changed since last review <span class="review-count">54</span>', html)
    everything = parse(client.get(link(page, "Show all 54")))
    assert len(everything.rows["changed"]) == len(set(everything.rows["changed"])) == 54
    assert set(page.rows["changed"]) <= set(everything.rows["changed"])
    assert len(everything.rows["portfolio"]) == 54  # one comparison per non-draft experiment
    # The short section is whole either way, and no section claims more.
    due = len(everything.rows["needs-decision"])
    assert 0 < due < SECTION_ROWS
    assert page.rows["needs-decision"] == everything.rows["needs-decision"]
    assert f"Show all {due}" not in html


# ------------------------------------------------------------------ the agenda


def test_the_agenda_is_paged_with_decisions_first_and_loses_no_item(app, workspace):
    client = _sign_in(app)
    everything = parse(client.get(_week() + "?all=1"))
    due = set(everything.rows["needs-decision"])
    flagged = due | set(everything.rows["changed"]) | set(everything.rows["alerts"])
    seen: list[str] = []
    url = _week()
    pages = 0
    while url:
        page = parse(client.get(url))
        pages += 1
        assert 0 < len(page.forms) <= AGENDA_PAGE_SIZE
        seen.extend(page.forms)
        nexts = [href for href, text in page.links if text.startswith("Next items")]
        url = nexts[0] if nexts else None
        assert pages <= 10
    assert len(seen) == len(set(seen)) == len(flagged)  # every flagged item once
    assert set(seen) == flagged
    assert set(seen[:len(due)]) == due  # those needing a decision come first
    assert pages == -(-len(flagged) // AGENDA_PAGE_SIZE)
    # Past the last page: the last page; not a number: 422 with the message, whole week shown.
    last = parse(client.get(_week() + "?page=999"))
    assert list(last.forms) == seen[(pages - 1) * AGENDA_PAGE_SIZE:]
    bad = client.get(_week() + "?page=abc")
    assert bad.status_code == 422
    assert "Agenda page must be a positive whole number" in bad.get_data(as_text=True)


def test_show_all_offers_the_first_rows_only_where_a_section_was_cut(app, workspace):
    """With every row shown, "Show the first rows only" sits under the sections that are
    longer than the cut (a link under a short section would change nothing)."""
    client = _sign_in(app)
    response = client.get(_week() + "?all=1")
    everything = parse(response)
    long = [s for s in ("needs-decision", "changed", "alerts", "portfolio")
            if len(everything.rows[s]) > SECTION_ROWS]
    short = [s for s in ("needs-decision", "changed", "alerts", "portfolio")
             if 0 < len(everything.rows[s]) <= SECTION_ROWS]
    assert long and short  # the workspace has both kinds
    html = response.get_data(as_text=True)
    assert html.count("Show the first rows only") == len(long)


def test_the_agenda_pager_and_show_all_keep_each_other(app, workspace):
    """Paging the agenda with every row shown keeps every row shown, and "Show all" (or
    back) on page 2 of the agenda stays on page 2: neither link resets the other choice."""
    client = _sign_in(app)
    both = parse(client.get(_week() + "?all=1&page=2"))
    assert len(both.rows["changed"]) == 54
    for text in ("Next items", "← Previous items"):
        href = link(both, text)
        assert "all=1" in href, href
        assert len(parse(client.get(href)).rows["changed"]) == 54
    short = link(both, "Show the first rows only")
    assert "page=2" in short and "all=" not in short, short
    paged = parse(client.get(_week() + "?page=2"))
    show_all = link(paged, "Show all 54")
    assert "page=2" in show_all and "all=1" in show_all, show_all
    assert parse(client.get(show_all)).forms == paged.forms


def test_each_item_has_its_own_page_that_works_without_javascript(app, workspace):
    client = _sign_in(app)
    page = parse(client.get(_week()))
    on_page = set(page.forms)
    # A row whose item is on another agenda page links to that item's own page.
    key = next(k for k in page.rows["changed"] if k not in on_page)
    row_links = [href for href, text in page.links if text == "Notes & decision"
                 and "/items/" in href]
    assert row_links, "no section row links to an item page"
    with Session(workspace) as session:
        experiment_id = session.exec(select(Experiment.id).where(Experiment.key == key)).one()
        item = session.exec(select(ReviewItem).where(ReviewItem.experiment_id == experiment_id)
                            ).one()
    url = f"{_week()}/items/{item.id}"
    assert url in row_links
    full = client.get(url)
    html = full.get_data(as_text=True)
    assert "<html" in html and "Back to the review of" in html
    item_page = parse(full)
    assert item_page.forms == {key: url}  # the form posts to the same URL
    saved = client.post(url, data={"version": "1", "note": "Discussed off-page",
                                   "decision": "", "decision_rationale": "",
                                   "csrf_token": client.csrf})
    assert saved.status_code == 303
    assert saved.headers["Location"].endswith(f"{_week()}#item-{key}")
    assert "Discussed off-page" in client.get(url).get_data(as_text=True)
    # htmx: the item alone, to swap in place.
    fragment = client.get(url, headers=HTMX)
    assert "<html" not in fragment.get_data(as_text=True)
    assert "HX-Request" in fragment.headers["Vary"]
    assert parse(fragment).forms == {key: url}


def test_an_item_page_is_read_only_for_a_viewer_and_hidden_from_other_teams(
        app, workspace, factory):
    admin = _sign_in(app)
    admin.get(_week())
    with Session(workspace) as session:
        meeting = session.exec(select(ReviewMeeting)
                               .where(ReviewMeeting.iso_week == current_week().label)).one()
        experiment = session.exec(select(Experiment).where(Experiment.key == "exp-0000")).one()
        item = session.exec(select(ReviewItem).where(
            ReviewItem.meeting_id == meeting.id,
            ReviewItem.experiment_id == experiment.id)).one()
    url = f"{_week()}/items/{item.id}"
    team = "growth"  # exp-0000 is in the first team of benchmarks/workspace.py
    viewer = factory.user("scale-viewer@example.com", "viewer", {team: "viewer"})
    outsider = factory.user("scale-outsider@example.com", "viewer", {"pricing": "experimenter"})
    for user, status in ((viewer, 200), (outsider, 404)):
        client = app.test_client()
        assert Auth(client).login(user.email).status_code == 303
        response = client.get(url)
        assert response.status_code == status, user.email
        if status == 200:
            page = parse(response)
            assert page.forms == {} and page.articles == ["exp-0000"]
        else:
            assert "Traceback" not in response.get_data(as_text=True)
    for bad in (f"{_week()}/items/{2**31}", f"/review/2026-W01/items/{item.id}",
                f"/review/not-a-week/items/{item.id}"):
        assert admin.get(bad).status_code == 404, bad


def test_an_item_page_of_another_team_is_not_found_and_cannot_be_saved(app, workspace):
    """The item page (issue 18) is checked against the team: an experimenter of one team
    gets their own team's items, and a 404 for another team's, to GET and to POST."""
    _sign_in(app).get(_week())  # opens the week: its items exist
    client = _sign_in(app, f"owner-{TEAMS[0]}@example.com")
    with Session(workspace) as session:
        meeting = session.exec(select(ReviewMeeting)
                               .where(ReviewMeeting.iso_week == current_week().label)).one()
        own = session.exec(select(Team.id).where(Team.slug == TEAMS[0])).one()
        teams = dict(session.exec(select(ReviewItem.id, Experiment.team_id)
                                  .join(Experiment, Experiment.id == ReviewItem.experiment_id)
                                  .where(ReviewItem.meeting_id == meeting.id)).all())
    mine = next(i for i, team in teams.items() if team == own)
    theirs = next(i for i, team in teams.items() if team not in (own, None))
    assert client.get(f"{_week()}/items/{mine}").status_code == 200
    assert client.get(f"{_week()}/items/{theirs}").status_code == 404
    saved = client.post(f"{_week()}/items/{theirs}",
                        data={"version": "1", "note": "not mine", "csrf_token": client.csrf})
    assert saved.status_code == 404
    with Session(workspace) as session:
        assert session.get(ReviewItem, theirs).note == ""
