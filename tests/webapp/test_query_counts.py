"""Statements per page do not grow with the workspace (issue 18: N+1 cannot return).

A workspace of 10 experiments (every status, uploaded data, stored analyses, a decided
one on this week's agenda) is built with ``benchmarks/workspace.py`` through the
services; each read page is fetched once to warm it (the review's first GET freezes the
week) and then counted: every statement the app's engine sends (a SQLAlchemy
``before_cursor_execute`` listener). Then 40 more experiments are added and the pages
are counted again. The counts must be the same for 10 and 50 experiments, and stay under
the fixed bounds in :data:`BOUNDS` (today's count plus a small margin: raising a bound is
a decision to read about in the diff).

Before issue 18 the review page sent one variants query per agenda item (45 statements
at 10 experiments, 87 at 50).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import event, text
from sqlmodel import Session

from benchmarks.workspace import ADMIN_EMAIL, PASSWORD, build_workspace
from experiments.review_weeks import current_week
from tests.helpers import Auth

#: Page → the most statements it may send (signed in as an admin).
BOUNDS: dict[str, int] = {
    "dashboard": 18,  # 29 before the shared reference reads and the review-row table
    "experiment list": 16,  # 18 before; one more for the page count since the list is paged
    "results page": 20,  # 23 before the versions and snapshot came from the document's facts
    "tree": 8,  # 9 before the roll-up's one statement
    "review": 24,  # 20 now; 23 before lookups by id shared the ordered reads (H2), 36
    # before the review shared its reads (fourth pass)
    "nrr": 5,
    "me": 10,  # 12 before
}


def _pages() -> dict[str, str]:
    return {
        "dashboard": "/",
        "experiment list": "/experiments/",
        "results page": "/experiments/exp-0001",
        "tree": "/tree/",
        "review": f"/review/{current_week().label}",
        "nrr": "/nrr",
        "me": "/me",
    }


def _counter(app) -> tuple[list[str], Callable[[], None]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engine = app.extensions["nrrlab.engine"]
    event.listen(engine, "before_cursor_execute", record)
    return statements, lambda: event.remove(engine, "before_cursor_execute", record)


def _count(client, statements: list[str], db_engine) -> dict[str, int]:
    counts = {}
    for name, path in _pages().items():
        assert client.get(path).status_code == 200, path  # warm: the review freezes its week
        # The counted view is the first after a write in both workspaces (a running week's
        # copies move no generation, so the review could reuse the rows kept by the warm view
        # in one workspace and not in the other).
        with db_engine.begin() as connection:
            connection.execute(text("UPDATE data_generation SET n = n + 1 WHERE id = 1"))
        statements.clear()
        response = client.get(path)
        assert response.status_code == 200, (path, response.status_code)
        counts[name] = len(statements)
    return counts


@pytest.fixture
def signed_in(app, db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=10, nodes=12, weeks=4, accounts=20)
    client = app.test_client()
    assert Auth(client).login(ADMIN_EMAIL, PASSWORD).status_code == 303
    return client


def test_statements_per_page_do_not_grow_from_10_to_50_experiments(app, db_engine, signed_in):
    statements, stop = _counter(app)
    try:
        at_10 = _count(signed_in, statements, db_engine)
        with Session(db_engine, expire_on_commit=False) as session:
            build_workspace(session, experiments=50, weeks=4, accounts=20, first=10)
        at_50 = _count(signed_in, statements, db_engine)
    finally:
        stop()
    assert at_50 == at_10, f"statements grew with the workspace: {at_10} → {at_50}"
    over = {page: (n, BOUNDS[page]) for page, n in at_50.items() if n > BOUNDS[page]}
    assert not over, f"pages over their statement bound (count, bound): {over}"


def test_the_review_agenda_reads_every_item_s_variants_in_one_statement(app, signed_in):
    """The agenda shows each decided experiment's ship choices: one query for all."""
    statements, stop = _counter(app)
    try:
        path = _pages()["review"]
        signed_in.get(path)
        statements.clear()
        page = signed_in.get(path).get_data(as_text=True)
    finally:
        stop()
    variant_reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")
                     and "FROM variant" in s]
    assert len(variant_reads) <= 2, variant_reads  # documents' variants + the agenda's
    assert "Experiment 0008" in page  # the decided experiment is on the page


# ------------------------------------------------------------------ the page cache (H6)


@pytest.fixture(autouse=True)
def _every_page_rendered(app):
    """The counts above are of a page rendered from the database: a repeated GET would be
    answered by the page cache (``webapp.page_cache``) and hide an N+1. Off here; the test
    below switches it on."""
    app.config["PAGE_CACHE"] = False


def test_a_kept_page_costs_two_statements_the_user_and_the_data_generation(app, signed_in):
    app.config["PAGE_CACHE"] = True
    cache = app.extensions["nrrlab.page_cache"]
    statements, stop = _counter(app)
    sent: dict[str, list[str]] = {}
    try:
        for name, path in _pages().items():
            signed_in.get(path)  # the review's first GET freezes its week (a write)
            signed_in.get(path)  # rendered at the new generation and kept
            hits = cache.hits
            statements.clear()
            assert signed_in.get(path).status_code == 200, path
            assert cache.hits == hits + 1, f"{path} was not served from the cache"
            sent[name] = list(statements)
    finally:
        stop()
    over = {name: s for name, s in sent.items() if len(s) > 2}
    assert not over, f"kept pages sending more than the user and generation reads: {over}"
    assert all(any("data_generation" in s for s in page) for page in sent.values()), sent
