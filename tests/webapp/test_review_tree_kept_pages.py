"""Last week's review page, its Markdown export and the API keep the tree actual the
meeting saw (H6); the page says where a past week's tree actuals come from."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete
from sqlmodel import Session, select

from experiments.review import build_review
from experiments.review_models import ReviewTreeSeen
from experiments.review_weeks import current_week
from experiments.tree_actuals import record_actual
from experiments.tree_models import DriverActual
from tests.api.conftest import TokenClient, issue_token
from tests.factories import make_experiment, make_node

pytestmark = pytest.mark.db


def tree_table(html: str) -> str:
    match = re.search(r'<table class="table" id="tree-actuals".*?</table>', html, re.S)
    assert match, "no tree actuals table"
    return match.group(0)


@pytest.fixture
def last_week(app, db_engine, factory):
    """Last week's meeting saw 2.5 (viewed on its Thursday); the actual was corrected to
    2.9 after the week."""
    week = current_week().previous
    admin = factory.user("chair@example.com", "admin")
    with Session(db_engine, expire_on_commit=False) as session:
        node = make_node(session, "Seats per account", baseline=2.0, target=3.0)
        make_experiment(session, "nudge", node=node, started_at=week.start - timedelta(days=5),
                        created_at=week.start - timedelta(days=6))
        session.commit()
        record_actual(session, node, {"measured_on": week.start.date().isoformat(),
                                      "value": "2.5"}, actor=admin)
        session.commit()
        build_review(session, admin, week.label, now=week.start + timedelta(days=3, hours=10))
        session.commit()
        row = session.exec(select(DriverActual)).one()
        record_actual(session, node, {"measured_on": week.start.date().isoformat(),
                                      "value": "2.9", "version": str(row.version)}, actor=admin)
        session.commit()
    return week, admin


def test_last_week_s_page_export_and_api_show_what_the_meeting_saw(app, login_as, db_engine,
                                                                   last_week):
    week, admin = last_week
    viewer = login_as("viewer")
    html = viewer.get(f"/review/{week.label}").get_data(as_text=True)
    table = tree_table(html)
    assert "2.5" in table and "2.9" not in table
    assert "As this week&#39;s review showed them" in html or \
        "As this week's review showed them" in html
    markdown = viewer.get(f"/review/{week.label}/export.md").get_data(as_text=True)
    assert "| 2.5 |" in markdown and "2.9" not in markdown
    api = TokenClient(app.test_client(), issue_token(db_engine, admin), admin)
    document = api.get(f"/api/v1/review-weeks/{week.label}").get_json()
    assert [a["actual"] for a in document["driver_tree_actuals"]] == [2.5]
    assert document["driver_tree_actuals_kept"]["reconstructed"] is False
    # This week's page shows the corrected value.
    now = tree_table(viewer.get(f"/review/{current_week().label}").get_data(as_text=True))
    assert "2.9" in now and "2.5" not in now


def test_a_week_frozen_before_copies_were_kept_says_its_actuals_were_reconstructed(
        login_as, db_engine, last_week):
    week, _admin = last_week
    with Session(db_engine) as session:
        session.exec(delete(ReviewTreeSeen))  # as a meeting frozen before this change
        session.commit()
    viewer = login_as("viewer")
    html = viewer.get(f"/review/{week.label}").get_data(as_text=True)
    assert "2.9" in tree_table(html)  # today's value: nothing kept the meeting's
    kept = re.search(r'<p class="hint" id="tree-actuals-kept">(.*?)</p>', html, re.S).group(1)
    assert "kept no copy of its tree actuals while it ran" in kept
    assert datetime.now(UTC).strftime("%Y-%m-%d") in kept
