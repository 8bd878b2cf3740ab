"""R5 review of 37a4bdf: a running week's review copies are written as unseen writes.

The view of a running week rewrites the week's copies (``review_item.seen``) inside
``unseen_write(..., rewrites=True)``, so that write alone leaves the data generation.
These tests hold the edges of that claim:

* an item edit (``update_item``) committed in the same transaction as a copy write still
  moves the generation, whether it comes before the copy write or after it;
* a past week renders from the copies the running week left and writes nothing;
* a view begun in the week's last five minutes moves the generation (its commit may land
  when the week is past, and a past week's kept page would show the older copies);
* on PostgreSQL a long value written to *another* table (its TOAST table) inside a
  marked block still moves the generation; a long value of the named table does not.
  (Another table's TOAST rows never change without a counted change of that table's own
  row, so even counting every TOAST table as named would not hide it: the owner's row
  spoils the count.)

Runs on SQLite and in the PostgreSQL pass (the TOAST tests only there).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from sqlalchemy import text, update
from sqlmodel import Session, select

from benchmarks.workspace import ADMIN_EMAIL, build_workspace
from experiments.generation import unseen_write
from experiments.models import DriverNode, Experiment, ReviewItem, ReviewMeeting, User, utcnow
from experiments.review_items import update_item
from experiments.review_models import ReviewTreeSeen
from experiments.review_rows import meeting_state
from experiments.review_tree import week_tree
from experiments.review_weeks import current_week
from tests.experiments.test_generation import generation

#: ~20 KB that does not compress: stored out of line (TOAST) on PostgreSQL.
LONG = "R5: " + secrets.token_urlsafe(15_000)


@pytest.fixture
def week_with_copies(db_engine):
    """A workspace whose running week has its copies (one view of the week)."""
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=4, nodes=6, weeks=2, accounts=20)
    week = current_week()
    with Session(db_engine) as session:
        meeting_state(session, week, utcnow())
        session.commit()
    return week


def _edit_experiment(db_engine, key: str, hypothesis: str) -> None:
    with Session(db_engine) as session:
        experiment = session.exec(select(Experiment).where(Experiment.key == key)).one()
        experiment.hypothesis = hypothesis
        session.add(experiment)
        session.commit()


def _item(session: Session, week, key: str) -> ReviewItem:
    return session.exec(
        select(ReviewItem).join(Experiment, Experiment.id == ReviewItem.experiment_id)
        .join(ReviewMeeting, ReviewMeeting.id == ReviewItem.meeting_id)
        .where(Experiment.key == key, ReviewMeeting.iso_week == week.label)).one()


def _seen_hypothesis(db_engine, week, key: str) -> str:
    with Session(db_engine) as session:
        return _item(session, week, key).seen["experiment"]["hypothesis"]


def test_a_copy_write_alone_leaves_the_generation(db_engine, week_with_copies):
    """The control: the path the next two tests take is the unmarked one."""
    week = week_with_copies
    _edit_experiment(db_engine, "exp-0001", "R5: edited, copy to rewrite")
    before = generation(db_engine)
    with Session(db_engine) as session:
        meeting_state(session, week, utcnow())
        session.commit()
    assert _seen_hypothesis(db_engine, week, "exp-0001") == "R5: edited, copy to rewrite"
    assert generation(db_engine) == before


@pytest.mark.parametrize("edit_first", [True, False], ids=["edit-then-copy", "copy-then-edit"])
def test_an_item_edit_beside_a_copy_write_moves_the_generation(db_engine, week_with_copies,
                                                               edit_first):
    week = week_with_copies
    _edit_experiment(db_engine, "exp-0002", "R5: edited, copy to rewrite")
    before = generation(db_engine)
    with Session(db_engine) as session:
        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        item = _item(session, week, "exp-0003")
        form = {"version": str(item.version), "note": "R5: a note saved in the meeting",
                "decision": "", "decision_rationale": ""}
        if edit_first:
            update_item(session, admin, week.label, item.id, form)
        meeting_state(session, week, utcnow())  # rewrites exp-0002's copy (marked)
        if not edit_first:
            update_item(session, admin, week.label, item.id, form)
        session.commit()
    assert _seen_hypothesis(db_engine, week, "exp-0002") == "R5: edited, copy to rewrite"
    with Session(db_engine) as session:
        saved = _item(session, week, "exp-0003")
        assert (saved.note, saved.version) == ("R5: a note saved in the meeting", 2)
    # the note shows on the review: a page kept before it must not be served
    assert generation(db_engine) > before


def test_a_past_week_renders_the_running_weeks_copies_and_writes_nothing(
        db_engine, week_with_copies):
    week = week_with_copies
    _edit_experiment(db_engine, "exp-0001", "R5: the last state the week saw")
    with Session(db_engine) as session:  # the week's last running view
        meeting_state(session, week, week.end - timedelta(microseconds=1))
        session.commit()
    _edit_experiment(db_engine, "exp-0001", "R5: edited after the week ended")
    before = generation(db_engine)
    with Session(db_engine) as session:
        state = meeting_state(session, week, week.end + timedelta(seconds=1))
        session.commit()
    assert state.frozen
    shown = {r.key: r.experiment.hypothesis for r in state.rows}
    assert shown["exp-0001"] == "R5: the last state the week saw"
    assert generation(db_engine) == before


# ------------------------------------------------------------------ the week's end
#
# A view begun just before the week ends may commit after it; the week is past then and
# its page renders from the copies. Were that commit unseen, a past week's page rendered
# before it (and the frozen rows kept per process) would stay kept under the same
# generation, showing the older copies, then the newer ones. So a view of the week's last
# minutes moves the generation, as before 37a4bdf.


@pytest.mark.parametrize(("before_end", "moves"), [
    (timedelta(minutes=1), True), (timedelta(seconds=1), True),
    (timedelta(minutes=5, seconds=1), False), (timedelta(hours=1), False)])
def test_a_view_in_the_weeks_last_minutes_moves_the_generation(
        db_engine, week_with_copies, before_end, moves):
    week = week_with_copies
    _edit_experiment(db_engine, "exp-0001", "R5: edited near the week's end")
    before = generation(db_engine)
    with Session(db_engine) as session:
        meeting_state(session, week, week.end - before_end)
        session.commit()
    assert _seen_hypothesis(db_engine, week, "exp-0001") == "R5: edited near the week's end"
    assert (generation(db_engine) > before) is moves


@pytest.mark.parametrize(("before_end", "moves"), [
    (timedelta(minutes=1), True), (timedelta(hours=1), False)])
def test_a_tree_copy_in_the_weeks_last_minutes_moves_the_generation(
        db_engine, week_with_copies, before_end, moves):
    week = week_with_copies
    with Session(db_engine) as session:
        meeting_id = session.exec(select(ReviewMeeting.id)
                                  .where(ReviewMeeting.iso_week == week.label)).one()
        nodes = session.exec(select(DriverNode)).all()
        now = week.end - before_end
        before = generation(db_engine)
        week_tree(session, meeting_id, frozen=False, stored=None, stored_digest="other",
                  stored_at=None, nodes=nodes, dated_by=now.date(), now=now)
        session.commit()
    with Session(db_engine) as session:
        stored = session.exec(select(ReviewTreeSeen)
                              .where(ReviewTreeSeen.meeting_id == meeting_id)).one()
        assert stored.seen_at.replace(tzinfo=None) == now.replace(tzinfo=None)
    assert (generation(db_engine) > before) is moves


# ---------------------------------------------------------------- PostgreSQL's TOAST


def _postgresql(db_engine) -> None:
    if db_engine.dialect.name != "postgresql":
        pytest.skip("TOAST tables are PostgreSQL's")


def _toasted(db_engine, table: str) -> int:
    """Rows of ``table``'s TOAST table (> 0: a value is stored out of line)."""
    with db_engine.connect() as connection:
        toast = connection.execute(text(
            "SELECT reltoastrelid::regclass::text FROM pg_class WHERE oid = to_regclass(:t)"),
            {"t": table}).scalar_one()
        return connection.execute(text(f"SELECT count(*) FROM {toast}")).scalar_one()


@pytest.mark.parametrize("rewrites", [True, False], ids=["rewrites", "insert-only"])
def test_a_long_value_of_another_table_inside_a_marked_block_moves_it(
        db_engine, week_with_copies, rewrites):
    """Counting a named table's TOAST table as the table must not let another table's
    out-of-line value (here an experiment's hypothesis) pass as the named table's."""
    _postgresql(db_engine)
    toasted = _toasted(db_engine, "experiment")
    before = generation(db_engine)
    with Session(db_engine) as session:
        with unseen_write(session, "review_item", rewrites=rewrites):
            session.exec(update(Experiment).where(Experiment.key == "exp-0001")
                         .values(hypothesis=LONG))
        session.commit()
    assert _toasted(db_engine, "experiment") > toasted  # it was stored out of line
    assert generation(db_engine) > before


def test_a_long_copy_of_the_named_table_inside_its_block_leaves_it(db_engine,
                                                                    week_with_copies):
    _postgresql(db_engine)
    week = week_with_copies
    toasted = _toasted(db_engine, "review_item")
    before = generation(db_engine)
    with Session(db_engine) as session:
        item = _item(session, week, "exp-0001")
        seen = {**item.seen, "r5": LONG}
        with unseen_write(session, "review_item", rewrites=True):
            session.exec(update(ReviewItem).where(ReviewItem.id == item.id)
                         .values(seen=seen))
        session.commit()
    assert _toasted(db_engine, "review_item") > toasted
    assert generation(db_engine) == before
