"""The review's rows and the week's meeting are read with statements built once (issue 18,
H4): building the 28-column read of every experiment and the meeting's two statements
cost ~0.2 ms each per view, as much as running them on the demo. A view of a running
week, of a past week and the dashboard's range build none of them again, and they answer
as before: the running week is refreshed, the past week renders its frozen copy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session

from benchmarks.workspace import build_workspace
from experiments import review_rows
from experiments.models import User
from experiments.review import build_review
from experiments.review_weeks import current_week


@pytest.fixture
def workspace(db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        info = build_workspace(session, experiments=4, nodes=6, weeks=4, accounts=20)
    return info


@pytest.fixture
def selects_built(monkeypatch):
    built: list[tuple] = []
    real = review_rows.select

    def counting(*args, **kwargs):
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(review_rows, "select", counting)
    return built


def _admin(session: Session) -> User:
    from sqlmodel import select

    return session.exec(select(User).where(User.role == "admin")).first()


def test_views_of_a_running_and_a_past_week_build_no_statement(db_engine, workspace,
                                                               selects_built):
    this_week = current_week()
    last_week = this_week.previous
    with Session(db_engine, expire_on_commit=False) as session:
        admin = _admin(session)
        # first views create the meetings and their items (an insert builds its own)
        build_review(session, admin, this_week, keep_rows=True)
        build_review(session, admin, last_week, keep_rows=True)
        session.commit()
    selects_built.clear()
    with Session(db_engine, expire_on_commit=False) as session:
        admin = _admin(session)
        running = build_review(session, admin, this_week, keep_rows=True)
        session.commit()
        past = build_review(session, admin, last_week, keep_rows=True)
        session.commit()
        today = this_week.start.date() + timedelta(days=2)
        ranged = build_review(session, admin, this_week, date_from=today - timedelta(days=7),
                              date_to=today, rows_only=True, keep_rows=True)
    assert selects_built == [], f"{len(selects_built)} statements built per view"
    assert running.rows and not running.frozen and running.meeting_id is not None
    assert past.frozen and {r.key for r in past.rows} <= {r.key for r in running.rows}
    assert ranged.mode == "range" and ranged.rows
