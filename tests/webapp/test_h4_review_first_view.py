"""The review's first view after an experiment edit (issue 18, H4).

The edit changes that experiment's row, so the view rewrites the week's frozen copy of it
(``review_item``). That write used to drop the transaction's copy of the small tables
(``experiments.reference_rows``), and the "raise an action" owner list read the users a
second time. The write touches no table the copy holds, so the copy is kept: the view
reads the users once (besides the signed-in user's own row). What the page shows must not
change: an edit of a user and of an experiment made in one commit shows at once.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import event, text
from sqlmodel import Session, select

from benchmarks.workspace import ADMIN_EMAIL, PASSWORD, build_workspace
from experiments.models import Experiment, ReviewItem, User
from experiments.review_weeks import current_week
from tests.experiments.test_generation import generation
from tests.helpers import Auth
from tests.webapp.test_page_cache_unseen_writes import Kept

#: Statements of the review's first view after an experiment edit: 22 before H4.
BOUND = 21


@pytest.fixture(autouse=True)
def _page_cache_on(app):
    """As in production: the edit moves the data generation, so the page is rendered."""
    app.config["PAGE_CACHE"] = True


@pytest.fixture
def signed_in(app, db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=6, nodes=8, weeks=4, accounts=20)
    client = app.test_client()
    assert Auth(client).login(ADMIN_EMAIL, PASSWORD).status_code == 303
    return client


def _counter(app) -> tuple[list[str], Callable[[], None]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(" ".join(statement.split()))

    engine = app.extensions["nrrlab.engine"]
    event.listen(engine, "before_cursor_execute", record)
    return statements, lambda: event.remove(engine, "before_cursor_execute", record)


def _edit(db_engine, key: str, hypothesis: str, user_email: str | None = None,
          user_name: str | None = None) -> None:
    """One commit: an experiment's hypothesis and, optionally, a user's name."""
    with Session(db_engine) as session:
        experiment = session.exec(select(Experiment).where(Experiment.key == key)).one()
        experiment.hypothesis = hypothesis
        session.add(experiment)
        if user_email is not None:
            user = session.exec(select(User).where(User.email == user_email)).one()
            user.name = user_name
            session.add(user)
        session.commit()


def _seen_hypothesis(db_engine, key: str) -> str:
    with db_engine.connect() as connection:
        seen = connection.execute(text(
            "SELECT i.seen FROM review_item i JOIN experiment e ON e.id = i.experiment_id "
            "JOIN review_meeting m ON m.id = i.meeting_id WHERE e.key = :key "
            "AND m.iso_week = :week"), {"key": key, "week": current_week().label}).scalar_one()
    import json

    seen = json.loads(seen) if isinstance(seen, str) else seen
    return seen["experiment"]["hypothesis"]


def test_the_first_view_after_an_experiment_edit_reads_the_users_once(app, db_engine,
                                                                        signed_in):
    path = f"/review/{current_week().label}"
    assert signed_in.get(path).status_code == 200  # freezes the week
    _edit(db_engine, "exp-0002", "H4: a hypothesis edited after the week was frozen")
    statements, stop = _counter(app)
    try:
        response = signed_in.get(path)
    finally:
        stop()
    assert response.status_code == 200
    # the view rewrote the edited experiment's frozen copy (the write this test is about)
    assert any(s.startswith("UPDATE review_item SET seen") for s in statements), statements
    assert _seen_hypothesis(db_engine, "exp-0002") == \
        "H4: a hypothesis edited after the week was frozen"
    users = [s for s in statements if s.startswith("SELECT") and "FROM user_account" in s]
    # the signed-in user's row, then every user once (documents, owner lists)
    assert len(users) == 2, users
    assert len(statements) <= BOUND, (len(statements), statements)


def test_an_edit_of_a_user_and_an_experiment_shows_at_once(app, db_engine, signed_in):
    """The copy kept across the frozen-copy write is this view's own read: a user renamed
    in the edit's commit is shown renamed in the owner list rendered after that write."""
    path = f"/review/{current_week().label}"
    assert signed_in.get(path).status_code == 200
    with Session(db_engine) as session:
        someone = session.exec(select(User).where(User.email != ADMIN_EMAIL)
                               .order_by(User.id)).first()
        email = someone.email
    _edit(db_engine, "exp-0003", "H4: before", email, "Named Before H4")
    page = signed_in.get(path).get_data(as_text=True)
    assert "Named Before H4" in page  # in the "raise an action" owner list
    _edit(db_engine, "exp-0003", "H4: edited with a user's new name", email,
          "Renamed By H4")
    response = signed_in.get(path)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Renamed By H4" in page
    assert "Named Before H4" not in page
    assert _seen_hypothesis(db_engine, "exp-0003") == "H4: edited with a user's new name"
    # and the next view (no write in between) is the same page, kept
    assert signed_in.get(path).get_data(as_text=True).count("Renamed By H4") == \
        page.count("Renamed By H4")


def test_the_frozen_copy_write_leaves_other_items_untouched(app, db_engine, signed_in):
    path = f"/review/{current_week().label}"
    assert signed_in.get(path).status_code == 200
    with Session(db_engine) as session:
        before = {i.id: i.seen_digest for i in session.exec(select(ReviewItem)).all()}
    _edit(db_engine, "exp-0004", "H4: only this row changes")
    assert signed_in.get(path).status_code == 200
    with Session(db_engine) as session:
        after = {i.id: i.seen_digest for i in session.exec(select(ReviewItem)).all()}
    changed = [i for i in before if before[i] != after[i]]
    assert len(changed) == 1 and set(after) == set(before)


# --- A running week's copies move no generation (experiments.generation.unseen_write)
#
# The running week's copies (``review_item.seen``, ``review_tree_seen``) are written by
# the review's own view, and shown by no cached page while the week runs: writing them
# leaves the data generation as it was (``experiments.generation.unseen_write``).
#
# Before, the first view after any edit rewrote the edited experiment's copy and committed,
# which moved the generation a second time: every kept page was emptied again for everyone,
# and the next view of the review itself rendered again. A past week renders from its
# copies, and a rewrite of a copy must still show on the running week's page at once.
# Runs on SQLite and in the PostgreSQL pass (long copies go to PostgreSQL's TOAST table,
# which counts as the named table's).


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
