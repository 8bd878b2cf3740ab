"""Review R2 of the review rows kept by their inputs (experiments.review_rows): what a kept
list or row may depend on beyond its key. An experiment that does not exist yet at a live
window's point in time (its creation stamped later: another host's clock, or a commit after
the request took its "now") must appear once that moment has passed, even while no write
has moved the data generation and the whole list is kept; and a point in time before an
experiment's birth must not be shown it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from benchmarks.workspace import build_workspace
from experiments import review_rows as module
from experiments.models import DriverNode, Experiment, utcnow
from experiments.review_rows import every_review_row, review_rows
from experiments.review_weeks import Window, current_week

LATE = "exp-late"


@pytest.fixture
def workspace(db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=4, nodes=3, weeks=2, accounts=10)
    module._kept.clear()
    yield db_engine
    module._kept.clear()


def _window(now):
    week = current_week(now)
    return Window(week.previous.start, week.end, now)


def _add_experiment(engine, created_at) -> None:
    with Session(engine) as session:
        node = session.exec(select(DriverNode).where(DriverNode.parent_id.is_not(None))
                            .order_by(DriverNode.id)).first()
        session.add(Experiment(key=LATE, name="Created later", node_id=node.id,
                               created_at=created_at, updated_at=created_at))
        session.commit()


def _keys(engine, now, *, keep=True):
    with Session(engine) as session:
        if keep:
            rows = every_review_row(session, _window(now), keep=True)
        else:
            rows = review_rows(session, _window(now), session.exec(select(Experiment)).all())
    return sorted(r.key for r in rows)


def test_an_experiment_born_after_a_kept_view_shows_once_born(workspace):
    """The whole list kept for this generation is not reused past an experiment's birth."""
    now = utcnow()
    later = now + timedelta(minutes=5)
    _add_experiment(workspace, later)
    assert LATE not in _keys(workspace, now)  # kept: the list without it
    after = later + timedelta(seconds=1)  # same generation, within the kept minute
    assert LATE in _keys(workspace, after, keep=False)
    assert _keys(workspace, after) == _keys(workspace, after, keep=False)


def test_a_point_in_time_before_an_experiments_birth_is_not_shown_it(workspace):
    """A view whose point in time is earlier than a kept list's (another thread's "now")
    does not get an experiment that did not exist yet then."""
    born = utcnow() + timedelta(seconds=30)  # after every other input's moment
    _add_experiment(workspace, born)
    assert LATE in _keys(workspace, born + timedelta(seconds=1))  # kept: the list with it
    before = born - timedelta(seconds=1)
    assert LATE not in _keys(workspace, before, keep=False)
    assert _keys(workspace, before) == _keys(workspace, before, keep=False)
