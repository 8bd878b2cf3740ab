"""Review rows kept per process (experiments.review_rows.every_review_row, issue 18): reused
only while no write was committed, for the same window and day and at most KEPT_SECONDS;
a reused row equals a fresh one but for its ``as_of``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from benchmarks.workspace import ADMIN_EMAIL, build_workspace
from experiments import review_rows as module
from experiments.models import Experiment, User, utcnow
from experiments.review import build_review
from experiments.review_rows import every_review_row, row_digest
from experiments.review_weeks import Window, current_week, iso


@pytest.fixture
def workspace(db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=10, nodes=6, weeks=4, accounts=20)
    module._kept.clear()
    yield db_engine
    module._kept.clear()


@pytest.fixture
def computed(monkeypatch):
    """How many times the rows were computed (not reused)."""
    calls: list[int] = []
    real = module.review_rows

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "review_rows", counting)
    return calls


def _window(now):
    week = current_week(now)
    return Window(week.previous.start, week.end, now)


def _json(rows):
    return [{**r.to_json(), "as_of": None} for r in rows]


def test_rows_are_reused_until_a_write_is_committed(workspace, computed):
    now = utcnow()
    with Session(workspace) as session:
        first = every_review_row(session, _window(now), keep=True)
    with Session(workspace) as session:
        later = now + timedelta(seconds=5)
        again = every_review_row(session, _window(later), keep=True)
    assert len(computed) == 1  # the second read reused the first's rows
    assert _json(again) == _json(first)
    assert {r.document.as_of for r in again} == {iso(later)}
    assert all(r.digest == row_digest(type(r)(r.document, r.review)) for r in again)

    with Session(workspace) as session:  # a committed write anywhere: computed again
        experiment = session.exec(select(Experiment).where(Experiment.key == "exp-0001")).one()
        experiment.name = "Renamed"
        session.add(experiment)
        session.commit()
    with Session(workspace) as session:
        renamed = every_review_row(session, _window(now + timedelta(seconds=6)), keep=True)
    assert len(computed) == 2
    assert "Renamed" in {r.experiment.name for r in renamed}


def test_rows_are_not_reused_across_days_windows_or_after_the_time_limit(
        workspace, computed, monkeypatch):
    now = utcnow()
    with Session(workspace) as session:
        every_review_row(session, _window(now), keep=True)
        every_review_row(session, _window(now + timedelta(days=1)), keep=True)  # next day
        week = current_week(now).previous
        every_review_row(session, Window(week.previous.start, week.end, week.end), keep=True)
    assert len(computed) == 3
    monkeypatch.setattr(module, "KEPT_SECONDS", -1.0)
    with Session(workspace) as session:
        every_review_row(session, _window(now), keep=True)
    assert len(computed) == 4


def test_without_keep_rows_are_computed_every_time(workspace, computed):
    """Services that may have written in their transaction (the default) never reuse."""
    now = utcnow()
    with Session(workspace) as session:
        every_review_row(session, _window(now), keep=True)
        every_review_row(session, _window(now))
        every_review_row(session, _window(now))
    assert len(computed) == 3


def test_a_kept_review_equals_a_fresh_one(workspace):
    """The page's review (kept rows, kept revenue impact) shows what a fresh build shows."""
    with Session(workspace) as session:
        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        build_review(session, admin, current_week().label, keep_rows=True)  # stores the items
        session.commit()
    with Session(workspace) as session:
        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        build_review(session, admin, current_week().label, keep_rows=True)  # computes, keeps
        kept = build_review(session, admin, current_week().label, keep_rows=True)
        fresh = build_review(session, admin, current_week().label)
        for review in (kept, fresh):
            review.window = fresh.window  # the moment of observation differs, nothing else
        kept_json, fresh_json = kept.to_dict(), fresh.to_dict()
        session.rollback()
    for data in (kept_json, fresh_json):
        data["review"].pop("as_of")
        for experiment in data["experiments"]:
            experiment.pop("as_of")
    assert kept_json == fresh_json
    assert kept.impact is not None and kept.impact.to_json() == fresh.impact.to_json()


def test_a_frozen_week_s_copies_are_read_once_until_a_write(workspace, monkeypatch):
    reads: list[int] = []
    real = module.meeting_items

    def counting(*args, **kwargs):
        reads.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "meeting_items", counting)
    last_week = current_week().previous.label
    with Session(workspace) as session:
        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        build_review(session, admin, last_week)  # reconstructs and freezes the week
        session.commit()
    reads.clear()
    pages = []
    for _ in range(3):
        with Session(workspace) as session:
            admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
            review = build_review(session, admin, last_week, agenda_page=1, keep_rows=True)
            assert review.frozen
            pages.append(([r.to_json() for r in review.rows], [v.key for v in review.agenda]))
            session.commit()
    assert len(reads) == 1  # the copies were read once, then reused
    assert pages[0] == pages[1] == pages[2]
    with Session(workspace) as session:  # a write: read again, still the frozen copy
        experiment = session.exec(select(Experiment).where(Experiment.key == "exp-0001")).one()
        experiment.name = "Renamed after the week"
        session.add(experiment)
        session.commit()
    with Session(workspace) as session:
        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        review = build_review(session, admin, last_week, agenda_page=1, keep_rows=True)
        assert [r.to_json() for r in review.rows] == pages[0][0]
        session.rollback()
    assert len(reads) == 2
