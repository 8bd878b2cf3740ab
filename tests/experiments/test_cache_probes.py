"""Adversarial probes of the per-process and per-transaction caches behind the read pages
(issue 18 review H7): parsed stored analyses (experiments.stored_analyses), reference
rows per session transaction (experiments.reference_rows), review rows per data
generation (experiments.review_rows), ledger figures per version
(experiments.ledger.stored_figures) and the data generation itself.

A second engine on the same database stands for another worker process. Probes that
found nothing stay as regression tests (each was seen to fail with its guard removed);
the two that found a defect (empty parsed parts counted as free; a statement write not
dropping the reference rows) failed until the fix and now guard it.
"""

from __future__ import annotations

import copy
import tracemalloc
from datetime import timedelta

import pytest
from sqlalchemy import insert
from sqlmodel import Session, SQLModel

from experiments import migrate, review_rows, stored_analyses
from experiments.analysis import load_results
from experiments.db import make_engine
from experiments.documents import document_now
from experiments.generation import read_generation
from experiments.ledger import import_ledger, stored_figures
from experiments.models import DriverNode, utcnow
from experiments.reference_rows import all_rows
from experiments.review import build_review
from experiments.review_rows import every_review_row
from experiments.review_weeks import Window, current_week
from experiments.setup import ensure_defaults
from tests.experiments.test_planning_ledger import CSV
from tests.experiments.test_stored_analyses import _upload
from tests.factories import make_experiment, make_user, root_node

pytestmark = pytest.mark.db

#: The ledger of test_planning_ledger with a6 starting 2026-10 at 200 MRR, not 100.
MORE_MRR = CSV.replace(b"a6,2026-10,100,", b"a6,2026-10,200,")
MUCH_MORE_MRR = CSV.replace(b"a6,2026-10,100,", b"a6,2026-10,300,")


@pytest.fixture(autouse=True)
def empty_process_caches():
    stored_analyses.clear()
    review_rows._kept.clear()
    yield
    stored_analyses.clear()
    review_rows._kept.clear()


def _window() -> Window:
    now = utcnow()
    return Window(now - timedelta(days=14), now + timedelta(days=1), now)


def _set_generation(engine, n: int) -> None:
    """Put ``n`` in the generation row behind the engine's back (no commit hook runs)."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(f"UPDATE data_generation SET n = {int(n)} WHERE id = 1")
        cursor.close()
        raw.commit()
    finally:
        raw.close()


# ------------------------------------------------------------------ stored analyses


def test_read_pages_never_change_the_shared_parsed_analyses(session, admin):
    """The parsed JSON is shared by every request of the process: no reader may change it
    (a change would show in the next request's page, anyone's)."""
    experiment = make_experiment(session, started_at=utcnow() - timedelta(days=3))
    _upload(session, experiment, 1)
    session.commit()
    load_results(session, experiment)  # fills the cache
    before = copy.deepcopy(dict(stored_analyses._CACHE._entries))
    assert before

    from experiments.documents import experiment_document

    load_results(session, experiment)
    document_now(session, experiment).to_json()
    experiment_document(session, admin, experiment.key).to_json()
    for _ in range(2):
        build_review(session, admin, current_week().label, keep_rows=False)
        session.rollback()
    assert dict(stored_analyses._CACHE._entries) == before


def test_the_parsed_analyses_cache_is_bounded_for_empty_parts():
    cache = stored_analyses._ParsedCache(64 * 1024)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for snapshot_id in range(20_000):
            key = stored_analyses.snapshot_key(snapshot_id, utcnow(), snapshot_id)
            cache.put((key, "segments"), None, 0)
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert held <= 2 * cache.max_bytes, f"{len(cache)} entries, {held} bytes"


# ------------------------------------------------------------------ reference rows


def test_reference_rows_see_another_workers_commit_in_the_next_transaction(session, db_engine):
    root_node(session)
    session.commit()
    names = {n.name for n in all_rows(session, DriverNode)}
    with Session(db_engine) as other:  # another worker adds a node and commits
        other.add(DriverNode(parent_id=root_node(other).id, name="Elsewhere", kind="lever"))
        other.commit()
    session.commit()  # this request ends; the next one reads afresh
    assert {n.name for n in all_rows(session, DriverNode)} == names | {"Elsewhere"}


def test_reference_rows_see_a_statement_written_in_the_same_transaction(session):
    root = root_node(session)
    session.commit()
    assert "Statement-written" not in {n.name for n in all_rows(session, DriverNode)}
    session.execute(insert(DriverNode).values(parent_id=root.id, name="Statement-written",
                                              kind="lever", position=0, status="active"))
    assert "Statement-written" in {n.name for n in all_rows(session, DriverNode)}


# ------------------------------------------------------------------ review rows


def test_kept_review_rows_show_another_workers_commit_at_once(session, db_engine):
    make_experiment(session, "first", started_at=utcnow() - timedelta(days=2))
    session.commit()
    window = _window()
    assert {r.experiment.key for r in every_review_row(session, window, keep=True)} == {"first"}
    session.rollback()
    with Session(db_engine) as other:
        make_experiment(other, "second", started_at=utcnow() - timedelta(days=1))
        other.commit()
    with Session(db_engine) as fresh:  # the next request, any worker
        keys = {r.experiment.key for r in every_review_row(fresh, window, keep=True)}
    assert keys == {"first", "second"}


def test_kept_review_rows_are_per_database_even_at_one_generation(
        session, db_engine, scratch_database):
    """One process, two databases whose generations happen to be equal (the key must
    name the database, not only the number)."""
    make_experiment(session, "here", started_at=utcnow() - timedelta(days=2))
    session.commit()
    other_engine = make_engine(scratch_database())
    try:
        SQLModel.metadata.create_all(other_engine)
        with Session(other_engine) as other:
            ensure_defaults(other)
            make_experiment(other, "there", started_at=utcnow() - timedelta(days=2))
            other.commit()
        for engine in (db_engine, other_engine):
            _set_generation(engine, 4242)
        window = _window()
        with Session(db_engine) as first:
            assert {r.experiment.key for r in every_review_row(first, window, keep=True)} \
                == {"here"}
        with Session(other_engine) as second:
            assert read_generation(second.connection()) == 4242
            assert {r.experiment.key for r in every_review_row(second, window, keep=True)} \
                == {"there"}
    finally:
        other_engine.dispose()


def test_who_may_see_a_kept_row_is_decided_per_request(session, db_engine):
    from tests.factories import make_team

    growth, success = make_team(session, "growth"), make_team(session, "success")
    make_experiment(session, "g-exp", team_id=growth.id, started_at=utcnow() - timedelta(days=2))
    make_experiment(session, "s-exp", team_id=success.id, started_at=utcnow() - timedelta(days=2))
    grower = make_user(session, "grower@example.com", "viewer", {"growth": "viewer"})
    succ = make_user(session, "succ@example.com", "viewer", {"success": "viewer"})
    session.commit()
    week = current_week()
    seen = {}
    for user in (grower, succ, grower):  # the rows are kept after the first request
        with Session(db_engine) as request_session:
            review = build_review(request_session, user, week, date_from=week.start.date(),
                                  keep_rows=True)
            seen.setdefault(user.email, set()).add(frozenset(r.key for r in review.rows))
    assert seen == {"grower@example.com": {frozenset({"g-exp"})},
                    "succ@example.com": {frozenset({"s-exp"})}}


# ------------------------------------------------------------------ ledger figures


def test_ledger_figures_of_another_workers_upload_are_read_at_once(session, db_engine):
    import_ledger(session, CSV, dimensions="plan", actor=None, filename="first.csv")
    session.commit()
    first = stored_figures(session)
    assert stored_figures(session) is first  # parsed once, kept
    session.rollback()
    with Session(db_engine) as other:  # another worker (or the CLI) uploads again
        import_ledger(other, MORE_MRR, dimensions="plan", actor=None, filename="second.csv")
        other.commit()
    with Session(db_engine) as fresh:
        second = stored_figures(fresh)
    # a6 starts at 200 instead of 100 in 2026-10: Σ start MRR of the period moves by 100
    assert second.last_period(None, None).start_mrr \
        == first.last_period(None, None).start_mrr + 100


def test_ledger_figures_of_a_rolled_back_upload_are_never_served(session, db_engine):
    """The figures read inside an import that then rolled back are kept by the process;
    the next upload may get the same version and figures ids (SQLite hands a rolled-back
    insert's id out again) and must still be read afresh."""
    import_ledger(session, CSV, dimensions="plan", actor=None, filename="kept.csv")
    session.commit()
    base = stored_figures(session).last_period(None, None).start_mrr
    with Session(db_engine) as other:
        import_ledger(other, MORE_MRR, dimensions="plan", actor=None,
                      filename="rolled-back.csv")
        during = stored_figures(other)  # read inside the uncommitted import
        other.rollback()
    assert during.last_period(None, None).start_mrr == base + 100
    with Session(db_engine) as other:
        import_ledger(other, MUCH_MORE_MRR, dimensions="plan", actor=None,
                      filename="committed.csv")
        other.commit()
    with Session(db_engine) as fresh:
        assert stored_figures(fresh).last_period(None, None).start_mrr == base + 200


# ------------------------------------------------------------------ the data generation


def test_an_alembic_upgrade_moves_the_generation(scratch_database):
    """Alembic's engine is the app's (make_engine): a migration's own writes are counted.
    A plain engine would leave the row at the 1 the revision inserts."""
    url = scratch_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            n = read_generation(connection)
        assert n is not None and n > 1
    finally:
        engine.dispose()
