"""The review page's statements do not grow with its agenda, for a team member too
(issue 18, the review's first view after a write).

``tests/webapp/test_query_counts.py`` counts an admin's pages from 10 to 50 experiments,
when the agenda's first page is already full. Here a member of every team (not an admin:
their edit right on each item comes from their team roles) opens the review with a short
agenda, then with a full first page; the agenda's item forms grow, the statements must
not. Before this test, every item read the member's team roles again (one statement per
agenda item).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from sqlalchemy import event, text
from sqlmodel import Session

from benchmarks.workspace import TEAMS, build_workspace
from experiments.review import AGENDA_PAGE_SIZE
from experiments.review_weeks import current_week
from tests.factories import make_user
from tests.helpers import Auth

MEMBER = "member-of-all@example.com"
_ITEM_FORM = re.compile(r'<form class="card review-item" id="item-([^"]+)"')


@pytest.fixture(autouse=True)
def _no_page_cache(app):
    """Every GET below renders the page (a kept page would hide the statements)."""
    app.config["PAGE_CACHE"] = False


def _counter(app) -> tuple[list[str], Callable[[], None]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = app.extensions["nrrlab.engine"]
    event.listen(engine, "before_cursor_execute", record)
    return statements, lambda: event.remove(engine, "before_cursor_execute", record)


def _review(client, statements: list[str], db_engine) -> tuple[int, list[str]]:
    """Statements of a second view of this week's review (the first freezes the week),
    the first after a write (the running week's copies move no generation, so without it
    one view would reuse rows kept by the other), and the keys of the agenda items the
    page offers as forms."""
    path = f"/review/{current_week().label}"
    assert client.get(path).status_code == 200
    with db_engine.begin() as connection:
        connection.execute(text("UPDATE data_generation SET n = n + 1 WHERE id = 1"))
    statements.clear()
    response = client.get(path)
    assert response.status_code == 200
    return len(statements), _ITEM_FORM.findall(response.get_data(as_text=True))


def test_a_team_member_s_review_sends_as_many_statements_for_a_full_agenda(app, db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=3, nodes=8, weeks=4, accounts=20)
        make_user(session, MEMBER, "viewer", dict.fromkeys(TEAMS, "experimenter"))
        session.commit()
    client = app.test_client()
    assert Auth(client).login(MEMBER).status_code == 303
    statements, stop = _counter(app)
    try:
        few_statements, few_items = _review(client, statements, db_engine)
        with Session(db_engine, expire_on_commit=False) as session:
            build_workspace(session, experiments=30, weeks=4, accounts=20, first=3)
        full_statements, full_items = _review(client, statements, db_engine)
    finally:
        stop()
    assert 0 < len(few_items) < len(full_items) == AGENDA_PAGE_SIZE, (few_items, full_items)
    assert full_statements == few_statements, (
        f"{len(few_items)} items: {few_statements} statements; "
        f"{len(full_items)} items: {full_statements}")
