"""Review actions (issue 17 item 1): a four-week scenario of raising, carrying, flagging,
closing and reopening; audit, compare-and-set, permissions, hostile input; and the data
migration that turned review items' action text into actions (and back)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from sqlmodel import select

from experiments import migrate
from experiments.actions import (
    open_actions_of,
    raise_action,
    set_action_status,
    update_action,
    week_actions,
)
from experiments.db import make_engine
from experiments.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from experiments.models import AuditEvent
from experiments.review_models import Action
from tests.factories import make_experiment, make_team, make_user

W45, W46, W47, W48 = "2026-W45", "2026-W46", "2026-W47", "2026-W48"
# Mondays: W45 2026-11-02, W46 11-09, W47 11-16, W48 11-23.
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)  # Friday of W48: every week has begun


@pytest.fixture
def world(session):
    growth = make_team(session, "growth")
    success = make_team(session, "success")
    people = {
        "admin": make_user(session, "admin@actions.test", "admin"),
        "exp": make_user(session, "exp@actions.test", "viewer", {"growth": "experimenter"}),
        "mate": make_user(session, "mate@actions.test", "viewer", {"growth": "experimenter"}),
        "viewer": make_user(session, "viewer@actions.test", "viewer", {"growth": "viewer"}),
        "other": make_user(session, "cs@actions.test", "viewer", {"success": "experimenter"}),
    }
    experiments = {
        "growth": make_experiment(session, "onboarding-email", team_id=growth.id),
        "success": make_experiment(session, "cs-call", team_id=success.id),
    }
    session.commit()
    return people, experiments


def _raise(session, user, week, title, owner, *, due=None, experiment="onboarding-email"):
    action = raise_action(session, user, week, {
        "title": title, "owner_id": str(owner.id), "due": due or "", "experiment": experiment,
    }, now=NOW)
    session.commit()
    return action


def _shown(session, user, week) -> dict[str, tuple[str, bool, bool]]:
    """``{title: (state, overdue, carried)}`` on ``week``'s review."""
    return {v.action.title: (v.state, v.overdue, v.carried)
            for v in week_actions(session, user, week)}


def test_four_weeks_actions_carry_until_closed(session, world):
    people, _ = world
    exp, mate = people["exp"], people["mate"]
    a = _raise(session, exp, W45, "Ask finance for Q4 figures", mate, due="2026-11-04")
    b = _raise(session, exp, W45, "Write the pricing memo", exp)
    c = _raise(session, mate, W46, "Check the SRM dashboard", exp, due="2026-11-20")

    # Week 1: raised here, nothing overdue yet (due Wednesday of the same week).
    assert _shown(session, exp, W45) == {a.title: ("open", False, False),
                                         b.title: ("open", False, False)}
    # Week 2: carried; A's due date lies before this Monday, so it is overdue and first.
    views = week_actions(session, exp, W46)
    assert [v.action.title for v in views] == [a.title, c.title, b.title]
    assert _shown(session, exp, W46) == {a.title: ("open", True, True),
                                         b.title: ("open", False, True),
                                         c.title: ("open", False, False)}

    set_action_status(session, mate, W47, a.id, {"status": "done", "version": "1",
                                                 "resolution": "Figures arrived"}, now=NOW)
    session.commit()
    # Week 3: A closed here stays visible, closed; C is not overdue yet (due Friday of W47).
    assert _shown(session, exp, W47) == {a.title: ("done", False, True),
                                         b.title: ("open", False, True),
                                         c.title: ("open", False, True)}
    set_action_status(session, exp, W48, b.id, {"status": "dropped", "version": "1"}, now=NOW)
    session.commit()
    # Week 4: A gone; B dropped here; C overdue.
    assert _shown(session, exp, W48) == {b.title: ("dropped", False, True),
                                         c.title: ("open", True, True)}
    # The earlier weeks still show what their meetings saw: A and B open.
    assert _shown(session, exp, W46)[a.title] == ("open", True, True)
    assert _shown(session, exp, W47)[b.title] == ("open", False, True)
    # Only C is still carried into the weeks after.
    assert list(_shown(session, exp, "2026-W49")) == [c.title]

    # Reopening puts B back on the carried list.
    set_action_status(session, exp, W48, b.id, {"status": "open", "version": "2"}, now=NOW)
    session.commit()
    assert _shown(session, exp, "2026-W49") == {b.title: ("open", False, True),
                                                c.title: ("open", True, True)}
    events = session.exec(select(AuditEvent.action, AuditEvent.entity_id, AuditEvent.actor_id)
                          .where(AuditEvent.entity_type == "action")
                          .order_by(AuditEvent.id)).all()
    assert events == [("action.create", str(a.id), exp.id), ("action.create", str(b.id), exp.id),
                      ("action.create", str(c.id), mate.id), ("action.close", str(a.id), mate.id),
                      ("action.drop", str(b.id), exp.id), ("action.reopen", str(b.id), exp.id)]
    close = session.exec(select(AuditEvent).where(AuditEvent.action == "action.close")).one()
    assert close.diff["status"] == ["open", "done"] and close.diff["closed_week"] == [None, W47]


def test_my_open_actions_are_the_ones_i_own(session, world):
    people, _ = world
    _raise(session, people["exp"], W45, "Mine", people["exp"], due="2026-11-01")
    _raise(session, people["exp"], W45, "Someone else's", people["mate"])
    mine = open_actions_of(session, people["exp"], people["exp"], now=NOW)
    assert [(v.action.title, v.overdue) for v in mine] == [("Mine", True)]


def test_two_editors_on_one_version_get_one_conflict(session, world):
    people, _ = world
    action = _raise(session, people["exp"], W47, "Draft the memo", people["exp"])
    form = {"title": "Draft the memo", "owner_id": str(people["exp"].id), "version": "1"}
    update_action(session, people["exp"], W47, action.id, {**form, "due": "2026-12-01"}, now=NOW)
    session.commit()
    with pytest.raises(Conflict, match=r"This action was changed by exp@actions.test.*version 1"):
        update_action(session, people["mate"], W47, action.id,
                      {**form, "owner_id": str(people["mate"].id)}, now=NOW)
    session.rollback()
    with pytest.raises(Conflict):  # closing on the stale version is refused too
        set_action_status(session, people["mate"], W47, action.id,
                          {"status": "done", "version": "1"}, now=NOW)
    session.rollback()
    session.refresh(action)
    assert (action.version, action.owner_id, action.due, action.status) == (
        2, people["exp"].id, date(2026, 12, 1), "open")


def test_only_experimenters_of_the_team_may_edit_and_others_do_not_see_it(session, world):
    people, _ = world
    action = _raise(session, people["exp"], W46, "Team only", people["exp"])
    form = {"status": "done", "version": "1"}
    with pytest.raises(PermissionDenied):
        set_action_status(session, people["viewer"], W46, action.id, form, now=NOW)
    with pytest.raises(NotFound):
        set_action_status(session, people["other"], W46, action.id, form, now=NOW)
    with pytest.raises(NotFound):  # a week before it was raised
        set_action_status(session, people["admin"], W45, action.id, form, now=NOW)
    assert _shown(session, people["other"], W46) == {}
    assert list(_shown(session, people["viewer"], W46)) == ["Team only"]
    with pytest.raises(ValidationFailed) as caught:  # another team's experiment reads as unknown
        raise_action(session, people["other"], W46, {"title": "x", "owner_id": "1",
                                                     "experiment": "onboarding-email"}, now=NOW)
    assert caught.value.errors["experiment"] == "unknown experiment"


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"title": ""}, "title", "is required"),
    ({"title": "a\x1bb"}, "title", "control characters"),
    ({"title": "a\x00b"}, "title", "control characters"),
    ({"title": "x" * 2001}, "title", "at most 2,000"),
    ({"owner_id": ""}, "owner_id", "choose a owner"),
    ({"owner_id": "abc"}, "owner_id", "unknown owner"),
    ({"owner_id": "OTHER"}, "owner_id", "member of the experiment's team"),
    ({"due": "next friday"}, "due", "must be a date such as"),
    ({"due": "0001-01-01"}, "due", "between 1900 and 9998"),
    ({"experiment": "no-such"}, "experiment", "unknown experiment"),
])
def test_bad_action_fields_are_refused_field_by_field(session, world, fields, field, message):
    people, _ = world
    data = {"title": "Do it", "owner_id": str(people["exp"].id), "due": "",
            "experiment": "onboarding-email", **fields}
    if data["owner_id"] == "OTHER":
        data["owner_id"] = str(people["other"].id)
    with pytest.raises(ValidationFailed) as caught:
        raise_action(session, people["exp"], W46, data, now=NOW)
    assert message in caught.value.errors[field]
    session.rollback()
    assert session.exec(select(Action)).all() == []


def test_actions_are_raised_and_closed_only_in_weeks_that_have_begun(session, world):
    people, _ = world
    with pytest.raises(ValidationFailed, match="has not begun"):
        raise_action(session, people["exp"], "2026-W50",
                     {"title": "Later", "owner_id": str(people["exp"].id),
                      "experiment": "onboarding-email"}, now=NOW)
    with pytest.raises(NotFound):
        week_actions(session, people["exp"], "2026-W99")


def test_a_status_it_already_has_or_an_unknown_one_is_422(session, world):
    people, _ = world
    action = _raise(session, people["exp"], W46, "Twice", people["exp"])
    for status, message in (("open", "already open"), ("finished", "must be one of")):
        with pytest.raises(ValidationFailed, match=message):
            set_action_status(session, people["exp"], W46, action.id,
                              {"status": status, "version": "1"}, now=NOW)


# ------------------------------------------------------------------ the data migration

BEFORE, AFTER = "d16a4b8f2c10", "d17a9e1b5f33"


def test_the_migration_moves_item_actions_into_actions_and_back(scratch_database):
    url = scratch_database()
    migrate.upgrade(url, BEFORE)
    engine = make_engine(url)
    now = datetime(2026, 11, 10, 9, tzinfo=UTC)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO team (id, slug, name, created_at) "
                          "VALUES (7, 'growth', 'Growth', :t)"), {"t": now})
        c.execute(sa.text(
            "INSERT INTO user_account (id, email, name, password_hash, role, is_active, "
            "session_version, created_at) VALUES (3, 'o@m.test', 'Owner', 'x', 'viewer', "
            "true, 1, :t)"), {"t": now})
        node = c.execute(sa.text("SELECT id FROM driver_node WHERE parent_id IS NULL")).scalar()
        if node is None:
            c.execute(sa.text(
                "INSERT INTO driver_node (id, name, kind, hypothesis, leading_metric, status, "
                "position, version, created_at, updated_at) VALUES (1, 'NRR', 'root', '', '', "
                "'active', 0, 1, :t, :t)"), {"t": now})
            node = 1
        for eid in (11, 12):
            c.execute(sa.text(
                "INSERT INTO experiment (id, key, name, node_id, team_id, hypothesis, "
                "primary_metric, mde, alpha, power, status, decision_rationale, version, "
                "created_at, updated_at) VALUES (:id, :key, 'E', :node, 7, '', 'nrr', 0.02, "
                "0.05, 0.8, 'running', '', 1, :t, :t)"),
                {"id": eid, "key": f"e{eid}", "node": node, "t": now})
        c.execute(sa.text("INSERT INTO review_meeting (id, iso_week, notes, created_at) "
                          "VALUES (5, '2026-W46', '', :t)"), {"t": now})
        for iid, eid, action, owner, due in ((21, 11, "Call the CFO", 3, date(2026, 11, 13)),
                                             (22, 12, "", None, None)):
            c.execute(sa.text(
                "INSERT INTO review_item (id, meeting_id, experiment_id, note, action, "
                "action_owner_id, action_due, decision_rationale, seen, version, updated_by_id,"
                " updated_at) VALUES (:id, 5, :eid, '', :action, :owner, :due, '', '{}', 1, 3,"
                " :t)"), {"id": iid, "eid": eid, "action": action, "owner": owner, "due": due,
                         "t": now})
    migrate.upgrade(url, AFTER)
    with engine.connect() as c:
        rows = c.execute(sa.text(
            "SELECT title, experiment_id, team_id, raised_week, owner_id, due, status "
            "FROM review_action")).all()
        item_columns = {col["name"] for col in sa.inspect(c).get_columns("review_item")}
    # Raw SQL: SQLite hands dates back as text, PostgreSQL as dates.
    assert [(*r[:5], str(r[5]), r[6]) for r in rows] == [
        ("Call the CFO", 11, 7, "2026-W46", 3, "2026-11-13", "open")]
    assert not {"action", "action_owner_id", "action_due"} & item_columns
    migrate.downgrade(url, BEFORE)
    with engine.connect() as c:
        back = c.execute(sa.text("SELECT id, action, action_owner_id, action_due "
                                 "FROM review_item ORDER BY id")).all()
    assert [(*r[:3], r[3] and str(r[3])) for r in back] == [
        (21, "Call the CFO", 3, "2026-11-13"), (22, "", None, None)]
    engine.dispose()
