"""A past week's review shows the driver-tree summary its meeting saw (H6): corrections of
actuals and new ledger versions after the week change the running week, not the past
week's page, exports or API; a week frozen before copies were kept gets one, reconstructed
and marked so, at its first view; two first views at once keep one copy."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import delete, event
from sqlmodel import Session, select

import experiments.review_tree as review_tree
from experiments.exports import export_review
from experiments.impact import company_start_mrr
from experiments.review import build_review
from experiments.review_models import ReviewTreeSeen
from experiments.review_weeks import current_week
from experiments.tree_actuals import record_actual
from experiments.tree_models import DriverActual
from tests.factories import make_experiment, make_node, make_user, root_node, store_ledger_file
from tests.ledger_gen import write_csv

pytestmark = pytest.mark.db

WEEK = "2026-W47"  # Monday 16 to Sunday 22 November 2026
DURING = datetime(2026, 11, 20, 12, tzinfo=UTC)  # the meeting looks at the running week
AFTER = datetime(2026, 12, 10, 12, tzinfo=UTC)  # the week is long over
FORMATS = ("json", "csv", "md", "html")


@pytest.fixture
def ana(session):
    ana = make_user(session, "ana@example.com", "admin")
    session.commit()
    return ana


@pytest.fixture
def seats(session, ana):
    """A hand-entered node with an actual of 2.5 on the week's Monday, and an experiment."""
    node = make_node(session, "Seats per account", baseline=2.0, target=3.0)
    make_experiment(session, "nudge", node=node, started_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
                    created_at=datetime(2026, 11, 1, 9, tzinfo=UTC))
    session.commit()
    record_actual(session, node, {"measured_on": "2026-11-16", "value": "2.5"}, actor=ana)
    session.commit()
    return node


def correct(session, node, value: str, ana) -> None:
    row = session.exec(select(DriverActual).where(DriverActual.node_id == node.id)
                       .execution_options(populate_existing=True)).one()
    record_actual(session, node, {"measured_on": "2026-11-16", "value": value,
                                  "version": str(row.version)}, actor=ana)
    session.commit()


def actuals(session, user, week: str = WEEK, now: datetime = AFTER) -> list[float]:
    review = build_review(session, user, week, now=now)
    session.commit()
    return [line.actual for line in review.tree_actuals]


def exports(session, user) -> dict[str, bytes]:
    files = {fmt: export_review(session, user, WEEK, fmt, now=AFTER).body for fmt in FORMATS}
    session.commit()
    return files


def statements_of(session, run) -> list[str]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        run()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def test_a_correction_after_the_meeting_leaves_the_past_week_as_it_was(session, ana, seats):
    assert actuals(session, ana, now=DURING) == [2.5]  # the meeting's view keeps the copy
    before = exports(session, ana)
    correct(session, seats, "2.9", ana)

    past = build_review(session, ana, WEEK, now=AFTER)
    assert past.frozen and [line.actual for line in past.tree_actuals] == [2.5]
    assert past.tree_kept.dated_by.isoformat() == "2026-11-20"
    assert not past.tree_kept.reconstructed
    assert past.to_dict()["driver_tree_actuals_kept"]["reconstructed"] is False
    session.commit()
    assert exports(session, ana) == before  # JSON, CSV, Markdown and HTML byte for byte
    # The past week renders from its copy: the corrected table is not even read.
    read = statements_of(session, lambda: build_review(session, ana, WEEK, now=AFTER))
    assert not [s for s in read if "driver_actual" in s]
    # The running week shows the correction.
    assert actuals(session, ana, current_week().label, datetime.now(UTC)) == [2.9]


def test_the_running_week_follows_the_corrections_until_it_ends(session, ana, seats):
    assert actuals(session, ana, now=DURING) == [2.5]
    correct(session, seats, "2.7", ana)
    assert actuals(session, ana, now=datetime(2026, 11, 22, 20, tzinfo=UTC)) == [2.7]
    correct(session, seats, "2.9", ana)  # after the last view of the week
    assert actuals(session, ana) == [2.7]
    [kept] = session.exec(select(ReviewTreeSeen)).all()
    assert [line["actual"] for line in kept.seen["lines"]] == [2.7]


def test_an_older_view_committing_later_does_not_overwrite_a_newer_copy(session, ana, seats):
    """Two views of the running week at once: the one that started later read the newer
    figures, so its copy stays whichever commits last."""
    later = datetime(2026, 11, 21, 12, tzinfo=UTC)
    correct(session, seats, "2.7", ana)
    assert actuals(session, ana, now=later) == [2.7]
    correct(session, seats, "2.5", ana)  # what the slower, earlier view had read
    assert actuals(session, ana, now=DURING) == [2.5]
    [kept] = session.exec(select(ReviewTreeSeen).execution_options(populate_existing=True)).all()
    assert [line["actual"] for line in kept.seen["lines"]] == [2.7]


def test_a_new_ledger_version_leaves_the_past_week_as_it_was(session, ana, tmp_path):
    root = root_node(session)
    root.baseline, root.target = 1.0, 1.08
    session.add(root)
    make_experiment(session, "nudge", started_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
                    created_at=datetime(2026, 11, 1, 9, tzinfo=UTC))
    session.commit()
    write_csv(tmp_path / "v1.csv", n_accounts=200, months=14, seed=3)
    first = store_ledger_file(session, tmp_path / "v1.csv", ana)
    first_mrr = company_start_mrr(session)
    meeting = build_review(session, ana, WEEK, now=DURING)
    session.commit()
    assert [line.actual for line in meeting.tree_actuals] == [first["ttm"][-1]["nrr"]]
    before = exports(session, ana)

    write_csv(tmp_path / "v2.csv", n_accounts=200, months=14, seed=4)
    second = store_ledger_file(session, tmp_path / "v2.csv", ana)
    assert second["ttm"][-1]["nrr"] != first["ttm"][-1]["nrr"]
    assert company_start_mrr(session) != first_mrr

    past = build_review(session, ana, WEEK, now=AFTER)
    session.commit()
    assert [line.actual for line in past.tree_actuals] == [first["ttm"][-1]["nrr"]]
    assert past.tree_kept.company_start_mrr == first_mrr
    assert past.impact.to_json()["company_start_mrr"] == first_mrr
    assert exports(session, ana) == before
    running = build_review(session, ana, current_week().label)
    session.commit()
    assert [line.actual for line in running.tree_actuals] == [second["ttm"][-1]["nrr"]]
    assert running.impact.to_json()["company_start_mrr"] == company_start_mrr(session)


def test_a_week_frozen_before_copies_were_kept_shows_a_reconstruction_and_keeps_it(
        session, ana, seats):
    assert actuals(session, ana, now=DURING) == [2.5]
    session.exec(delete(ReviewTreeSeen))  # as a meeting frozen before this change
    session.commit()
    correct(session, seats, "2.9", ana)

    first = build_review(session, ana, WEEK, now=AFTER)
    session.commit()
    # Nothing kept what the meeting saw: today's actuals dated by the week's point in time.
    assert [line.actual for line in first.tree_actuals] == [2.9]
    assert first.tree_kept.reconstructed
    assert first.to_dict()["driver_tree_actuals_kept"]["reconstructed"] is True
    correct(session, seats, "3.1", ana)
    assert actuals(session, ana) == [2.9]  # kept from its first view on


def test_two_first_views_of_a_past_week_keep_one_copy(db_engine, monkeypatch):
    """Two people open a past week that has no copy yet (frozen before copies were kept)
    while an actual is corrected between their reads: both are shown the one copy stored,
    and so is everyone after them."""
    with Session(db_engine, expire_on_commit=False) as setup:
        ana = make_user(setup, "ana@example.com", "admin")
        node = make_node(setup, "Seats per account", baseline=2.0, target=3.0)
        make_experiment(setup, "nudge", node=node,
                        started_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
                        created_at=datetime(2026, 11, 1, 9, tzinfo=UTC))
        setup.commit()
        record_actual(setup, node, {"measured_on": "2026-11-16", "value": "2.5"}, actor=ana)
        setup.commit()
        build_review(setup, ana, WEEK, now=DURING)
        setup.exec(delete(ReviewTreeSeen))
        setup.commit()

    computed, go_on = threading.Event(), threading.Event()
    store_first = review_tree._store_first

    def slow_store_first(*args, **kwargs):
        if threading.current_thread().name == "first-view":
            computed.set()  # its copy (2.5) is computed, not stored yet
            assert go_on.wait(30)
        return store_first(*args, **kwargs)

    monkeypatch.setattr(review_tree, "_store_first", slow_store_first)
    shown: dict[str, object] = {}

    def first_view() -> None:
        with Session(db_engine) as mine:
            try:
                review = build_review(mine, mine.get(type(ana), ana.id), WEEK, now=AFTER)
                mine.commit()
                shown["first"] = [line.actual for line in review.tree_actuals]
            except Exception as exc:  # noqa: BLE001 - reported below
                shown["first"] = exc

    viewer = threading.Thread(target=first_view, name="first-view")
    viewer.start()
    assert computed.wait(30)
    with Session(db_engine, expire_on_commit=False) as other:
        correct(other, other.get(type(node), node.id), "2.9", other.get(type(ana), ana.id))
        second = build_review(other, other.get(type(ana), ana.id), WEEK, now=AFTER)
        other.commit()
    go_on.set()
    viewer.join(30)
    assert not viewer.is_alive()
    assert [line.actual for line in second.tree_actuals] == [2.9]
    assert shown["first"] == [2.9], shown["first"]  # the copy stored first, not its own
    with Session(db_engine) as check:
        [kept] = check.exec(select(ReviewTreeSeen)).all()
        assert [line["actual"] for line in kept.seen["lines"]] == [2.9]
        assert actuals(check, check.get(type(ana), ana.id)) == [2.9]
