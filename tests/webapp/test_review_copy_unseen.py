"""The running week's copies (``review_item.seen``, ``review_tree_seen``) are written by
the review's own view, and shown by no cached page while the week runs: writing them
leaves the data generation as it was (``experiments.generation.unseen_write``).

Before, the first view after any edit rewrote the edited experiment's copy and committed,
which moved the generation a second time: every kept page was emptied again for everyone,
and the next view of the review itself rendered again. A past week renders from its
copies, and a rewrite of a copy must still show on the running week's page at once.
Runs on SQLite and in the PostgreSQL pass (long copies go to PostgreSQL's TOAST table,
which counts as the named table's)."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from benchmarks.workspace import ADMIN_EMAIL, PASSWORD, build_workspace
from experiments.models import Experiment
from experiments.review_weeks import current_week
from tests.experiments.test_generation import generation
from tests.helpers import Auth
from tests.webapp.test_h4_review_first_view import _edit, _seen_hypothesis
from tests.webapp.test_page_cache_unseen_writes import Kept

pytestmark = pytest.mark.db


@pytest.fixture(autouse=True)
def _page_cache_on(app):
    app.config["PAGE_CACHE"] = True


@pytest.fixture
def signed_in(app, db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=6, nodes=8, weeks=4, accounts=20)
    client = app.test_client()
    assert Auth(client).login(ADMIN_EMAIL, PASSWORD).status_code == 303
    return client


def test_the_first_view_after_an_edit_moves_the_generation_no_further(
        app, db_engine, signed_in):
    review = f"/review/{current_week().label}"
    assert signed_in.get(review).status_code == 200  # the week's copies exist
    long_hypothesis = "H6 edit: " + "a much longer hypothesis, " * 200  # ~5 KB: TOASTed
    _edit(db_engine, "exp-0002", long_hypothesis)
    moved_by_the_edit = generation(db_engine)

    first = signed_in.get(review)
    assert first.status_code == 200
    assert _seen_hypothesis(db_engine, "exp-0002") == long_hypothesis  # the copy rewritten
    assert generation(db_engine) == moved_by_the_edit  # ... and nothing emptied

    Kept(app, signed_in, "/").assert_kept("the dashboard, after the review's view")
    # the review itself, rendered once after the edit, is now kept
    cache = app.extensions["nrrlab.page_cache"]
    hits = cache.hits
    assert signed_in.get(review).status_code == 200
    assert cache.hits == hits + 1


def _rename(db_engine, key: str, name: str) -> None:
    with Session(db_engine) as session:
        experiment = session.exec(select(Experiment).where(Experiment.key == key)).one()
        experiment.name = name
        session.add(experiment)
        session.commit()


def test_a_rewritten_copy_still_shows_and_a_real_edit_still_moves_it(
        app, db_engine, signed_in):
    review = f"/review/{current_week().label}"
    assert signed_in.get(review).status_code == 200
    _rename(db_engine, "exp-0003", "Renamed once")
    assert "Renamed once" in signed_in.get(review).get_data(as_text=True)
    before = generation(db_engine)
    _rename(db_engine, "exp-0003", "Renamed twice")
    assert generation(db_engine) > before
    page = signed_in.get(review).get_data(as_text=True)
    assert "Renamed twice" in page and "Renamed once" not in page
    assert "Renamed twice" in signed_in.get("/").get_data(as_text=True)
