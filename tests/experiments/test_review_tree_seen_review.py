"""Review of H6 (a week keeps the tree summary its views showed): a viewer who sees only
some nodes still stores every node's line; a running week's view writes once per change,
then settles (the write moves the data generation, the next view must not write again);
a node's name or target changing refreshes the running week's copy."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import update
from sqlmodel import select

from experiments.generation import read_generation
from experiments.models import DriverNode
from experiments.review import build_review
from experiments.review_models import ReviewTreeSeen
from experiments.tree_actuals import record_actual
from tests.factories import make_experiment, make_node, make_team, make_user

pytestmark = pytest.mark.db

WEEK = "2026-W47"
DURING = datetime(2026, 11, 20, 12, tzinfo=UTC)
LATER = datetime(2026, 11, 20, 13, tzinfo=UTC)
AFTER = datetime(2026, 12, 10, 12, tzinfo=UTC)


@pytest.fixture
def tree(session):
    """Two hand-entered nodes, one per team, each with an actual on the week's Monday."""
    admin = make_user(session, "chair@example.com", "admin")
    growth, success = make_team(session, "growth"), make_team(session, "success")
    mine = make_node(session, "Seats per account", team_id=growth.id, baseline=2.0, target=3.0)
    theirs = make_node(session, "Tickets per account", team_id=success.id, baseline=5.0,
                       target=4.0)
    make_experiment(session, "nudge", node=mine, started_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
                    created_at=datetime(2026, 11, 1, 9, tzinfo=UTC))
    viewer = make_user(session, "g@example.com", "viewer", {"growth": "viewer"})
    session.commit()
    for node, value in ((mine, "2.5"), (theirs, "4.5")):
        record_actual(session, node, {"measured_on": "2026-11-16", "value": value}, actor=admin)
    session.commit()
    return admin, viewer, mine, theirs


def kept(session) -> dict:
    [row] = session.exec(select(ReviewTreeSeen)
                         .execution_options(populate_existing=True)).all()
    return row.seen


def test_a_viewer_seeing_some_nodes_keeps_every_node_for_the_others(session, tree):
    admin, viewer, mine, theirs = tree
    review = build_review(session, viewer, WEEK, now=DURING)
    session.commit()
    assert [line.node_id for line in review.tree_actuals] == [mine.id]  # filtered view
    assert {line["node_id"] for line in kept(session)["lines"]} == {mine.id, theirs.id}
    past = build_review(session, admin, WEEK, now=AFTER)
    session.commit()
    assert {line.node_id: line.actual for line in past.tree_actuals} == \
        {mine.id: 2.5, theirs.id: 4.5}
    assert not past.tree_kept.reconstructed


def test_a_running_week_writes_its_copy_once_then_settles(session, tree):
    admin, _viewer, _mine, _theirs = tree
    build_review(session, admin, WEEK, now=DURING)
    session.commit()
    first = session.exec(select(ReviewTreeSeen.seen_at)).one()
    generation = read_generation(session.connection())
    session.commit()
    build_review(session, admin, WEEK, now=LATER)  # nothing changed since
    session.commit()
    assert session.exec(select(ReviewTreeSeen.seen_at)).one() == first
    assert read_generation(session.connection()) == generation  # no write: page cache stays warm
    session.commit()


@pytest.mark.parametrize("change", [{"name": "Seats per paying account"}, {"target": 3.5}])
def test_a_node_s_name_or_target_refreshes_the_running_week(session, tree, change):
    admin, _viewer, mine, _theirs = tree
    build_review(session, admin, WEEK, now=DURING)
    session.commit()
    session.exec(update(DriverNode).where(DriverNode.id == mine.id).values(**change))
    session.commit()
    build_review(session, admin, WEEK, now=LATER)
    session.commit()
    [line] = [line for line in kept(session)["lines"] if line["node_id"] == mine.id]
    key, value = next(iter(change.items()))
    assert line["node" if key == "name" else key] == value


def test_two_views_of_the_running_week_at_once_both_answer_and_keep_the_later(
        db_engine, monkeypatch):
    """A view that computed its copy, then waited while a later view stored a corrected
    one, commits without an error (no unique violation, no lock error) and leaves the
    later view's copy."""
    import threading

    from sqlalchemy import delete
    from sqlmodel import Session

    import experiments.review_tree as review_tree
    from tests.experiments.test_review_tree_kept import correct

    with Session(db_engine, expire_on_commit=False) as setup:
        admin = make_user(setup, "chair@example.com", "admin")
        node = make_node(setup, "Seats per account", baseline=2.0, target=3.0)
        make_experiment(setup, "nudge", node=node,
                        started_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
                        created_at=datetime(2026, 11, 1, 9, tzinfo=UTC))
        setup.commit()
        record_actual(setup, node, {"measured_on": "2026-11-16", "value": "2.5"}, actor=admin)
        setup.commit()
        build_review(setup, admin, WEEK, now=DURING)  # the meeting and its rows exist
        setup.exec(delete(ReviewTreeSeen))  # but no tree copy yet: both views will write
        setup.commit()

    computed, go_on = threading.Event(), threading.Event()
    store_newer = review_tree._store_newer

    def slow_store_newer(*args, **kwargs):
        if threading.current_thread().name == "slow-view":
            computed.set()  # its copy (2.5) is computed, not stored yet
            assert go_on.wait(30)
        return store_newer(*args, **kwargs)

    monkeypatch.setattr(review_tree, "_store_newer", slow_store_newer)
    shown: dict[str, object] = {}

    def slow_view() -> None:
        with Session(db_engine) as mine:
            try:
                review = build_review(mine, mine.get(type(admin), admin.id), WEEK,
                                      now=DURING)
                mine.commit()
                shown["slow"] = [line.actual for line in review.tree_actuals]
            except Exception as exc:  # noqa: BLE001 - reported below
                shown["slow"] = exc

    viewer = threading.Thread(target=slow_view, name="slow-view")
    viewer.start()
    assert computed.wait(30)
    with Session(db_engine, expire_on_commit=False) as other:
        correct(other, other.get(type(node), node.id), "2.9", other.get(type(admin), admin.id))
        later = build_review(other, other.get(type(admin), admin.id), WEEK, now=LATER)
        other.commit()
    go_on.set()
    viewer.join(30)
    assert not viewer.is_alive()
    assert [line.actual for line in later.tree_actuals] == [2.9]
    assert shown["slow"] == [2.5], shown["slow"]  # the running week shows its own read
    with Session(db_engine) as check:
        assert [line["actual"] for line in kept(check)["lines"]] == [2.9]
