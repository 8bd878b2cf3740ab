"""My week (/me, issue 17 item 3): the landing page after sign-in for non-admins, with my
branches, my experiments (status and next step), my open actions and the decisions I owe —
and nothing of other teams."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

import pytest

from experiments.review import current_week
from experiments.review_models import Action
from tests.factories import make_experiment, make_node, make_team
from tests.helpers import TEST_PASSWORD, Auth


def _section(html: str, section: str) -> str:
    start = html.index(f'id="{section}"')
    end = html.find("</section>", start)
    return html[start:end]


@pytest.fixture
def week_of_exp(session, login_as):
    me = login_as("viewer", teams={"growth": "experimenter"})
    other = login_as("viewer", teams={"success": "experimenter"})
    growth, success = make_team(session, "growth"), make_team(session, "success")
    mine = make_node(session, "Expansion", team_id=growth.id, owner_id=me.user.id)
    driver = make_node(session, "Onboarding", parent=mine, kind="driver", team_id=growth.id)
    theirs = make_node(session, "Support", team_id=success.id, owner_id=other.user.id)
    now = datetime.now(UTC)
    past_end = (now - timedelta(days=3)).date()
    make_experiment(session, "stopped-one", node=driver, team_id=growth.id, owner_id=me.user.id,
                    status="stopped", started_at=now - timedelta(days=30),
                    stopped_at=now - timedelta(days=1))
    make_experiment(session, "late-one", node=mine, team_id=growth.id, owner_id=me.user.id,
                    status="running", started_at=now - timedelta(days=30),
                    planned_end=past_end)
    make_experiment(session, "fresh-one", node=mine, team_id=growth.id, owner_id=me.user.id,
                    status="running", started_at=now - timedelta(days=2))
    make_experiment(session, "draft-one", node=mine, team_id=growth.id, owner_id=me.user.id,
                    status="draft")
    make_experiment(session, "not-mine", node=mine, team_id=growth.id,
                    owner_id=other.user.id, status="stopped", started_at=now,
                    stopped_at=now)
    make_experiment(session, "secret", node=theirs, team_id=success.id,
                    owner_id=other.user.id, status="stopped", started_at=now, stopped_at=now)
    week = current_week()
    session.add(Action(title="Send the memo", team_id=growth.id, raised_week=week.previous.label,
                       owner_id=me.user.id, due=week.start.date() - timedelta(days=2)))
    session.add(Action(title="Someone else's", team_id=growth.id, raised_week=week.label,
                       owner_id=other.user.id))
    session.add(Action(title="Closed already", team_id=growth.id, raised_week=week.label,
                       owner_id=me.user.id, status="done", closed_week=week.label))
    session.commit()
    return me, other


def test_my_week_lists_what_is_mine(week_of_exp):
    me, _ = week_of_exp
    response = me.get("/me")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    owed = _section(html, "decisions-owed")
    assert set(re.findall(r'data-experiment="([\w-]+)"', owed)) == {"stopped-one", "late-one"}
    assert "stopped without a decision" in owed and "passed its planned end" in owed
    experiments = _section(html, "my-experiments")
    assert set(re.findall(r'data-experiment="([\w-]+)"', experiments)) == {
        "stopped-one", "late-one", "fresh-one", "draft-one"}
    assert "Upload the first account data" in experiments  # fresh-one's next step
    assert "Finish the plan and start it" in experiments  # draft-one's
    actions = _section(html, "my-actions")
    assert "Send the memo" in actions and "Overdue" in actions
    assert "Someone else" not in actions and "Closed already" not in actions
    assert f"/review/{current_week().label}#action-" in actions  # where to close it
    branches = _section(html, "my-branches")
    assert "Expansion" in branches and "Support" not in branches
    # Expansion holds mine and not-mine (the driver's too): 2 stopped, 2 running, 1 draft.
    cells = re.findall(r'<td class="num">(\d+)</td>', branches)
    assert cells == ["1", "2", "2", "0"]
    assert "secret" not in html


def test_other_teams_see_none_of_it(week_of_exp):
    _, other = week_of_exp
    html = other.get("/me").get_data(as_text=True)
    assert "stopped-one" not in html and "Send the memo" not in html
    # "not-mine" is theirs but sits in growth, which they may not see: not listed either.
    assert re.findall(r'data-experiment="([\w-]+)"', _section(html, "my-experiments")) == [
        "secret"]


@pytest.mark.parametrize(("role", "landing"), [("viewer", "/me"), ("experimenter", "/me"),
                                                ("admin", "/")])
def test_sign_in_lands_non_admins_on_my_week(app, factory, role, landing):
    user = factory.user(f"{role}@landing.test", role)
    response = Auth(app.test_client()).login(user.email, TEST_PASSWORD)
    assert response.status_code == 303 and response.headers["Location"] == landing


def test_my_week_needs_sign_in_and_has_a_nav_link(client, login_as):
    assert client.get("/me").headers["Location"] == "/login?next=/me"
    html = login_as("viewer").get("/me").get_data(as_text=True)
    assert '<a href="/me" aria-current="page">My week</a>' in html
    assert "You own no experiments." in html and "You have no open actions." in html


def test_a_date_far_back_is_still_listed_once(session, week_of_exp):
    me, _ = week_of_exp
    session.add(Action(title="Ancient", raised_week="2020-W01", owner_id=me.user.id,
                       due=date(2020, 1, 3)))
    session.commit()
    html = me.get("/me").get_data(as_text=True)
    assert _section(html, "my-actions").count("Ancient") == 1
