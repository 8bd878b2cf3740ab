"""The access rule of experiments/access.py: global admin everywhere, team roles inside
their team (upwards or downwards), global roles on objects of no team, default deny."""

from __future__ import annotations

import pytest

from experiments.access import (
    can,
    effective_role,
    highest_role,
    require,
    team_roles,
    visible_team_ids,
)
from experiments.errors import NotFound, PermissionDenied
from experiments.users import create_user, ensure_team, set_team_role
from tests.helpers import TEST_PASSWORD


@pytest.fixture
def teams(session):
    return ensure_team(session, "growth", "Growth"), ensure_team(session, "success", "Success")


def make(session, email, role, memberships=()):
    user = create_user(session, email, TEST_PASSWORD, role=role)
    for team, team_role in memberships:
        set_team_role(session, user, team, team_role, actor=None)
    return user


def test_a_global_admin_acts_as_admin_everywhere(session, teams):
    growth, success = teams
    admin = make(session, "admin@example.com", "admin")
    assert {effective_role(session, admin, t) for t in (None, growth.id, success.id)} == {"admin"}
    assert visible_team_ids(session, admin) is None


def test_another_teams_object_is_invisible_whatever_the_global_role(session, teams):
    growth, success = teams
    user = make(session, "exp@example.com", "experimenter", [(growth, "analyst")])
    assert effective_role(session, user, success.id) is None
    with pytest.raises(NotFound):
        require(session, user, success.id, "viewer")
    assert not can(session, user, success.id, "viewer")
    assert visible_team_ids(session, user) == {growth.id}


def test_the_team_role_replaces_the_global_role_inside_the_team(session, teams):
    growth, _ = teams
    up = make(session, "up@example.com", "viewer", [(growth, "experimenter")])
    down = make(session, "down@example.com", "experimenter", [(growth, "viewer")])
    assert effective_role(session, up, growth.id) == "experimenter"
    assert require(session, up, growth.id, "experimenter") == "experimenter"
    assert effective_role(session, down, growth.id) == "viewer"
    with pytest.raises(PermissionDenied, match="needs the experimenter role; you are viewer here"):
        require(session, down, growth.id, "experimenter")


def test_objects_of_no_team_use_the_global_role(session, teams):
    growth, _ = teams
    user = make(session, "ana@example.com", "analyst", [(growth, "admin")])
    assert effective_role(session, user, None) == "analyst"
    assert can(session, user, None, "analyst") and not can(session, user, None, "experimenter")


def test_highest_role_counts_team_roles(session, teams):
    growth, success = teams
    user = make(
        session, "ana@example.com", "viewer", [(growth, "analyst"), (success, "experimenter")]
    )
    assert highest_role(session, user) == "experimenter"
    assert team_roles(session, user) == {growth.id: "analyst", success.id: "experimenter"}
    assert highest_role(session, make(session, "bob@example.com", "viewer")) == "viewer"
