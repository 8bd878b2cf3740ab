"""One denial path: domain NotFound/PermissionDenied and failed CSRF checks answer
404/403/400 (page or htmx fragment) through webapp.errors, each recorded once as
``authz.denied`` — and a probe cannot flood the audit log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from experiments.models import AuditEvent, DriverNode, Experiment, Team, Variant, utcnow
from tests.helpers import TEST_PASSWORD

pytestmark = pytest.mark.db


def denied(engine) -> list[AuditEvent]:
    with Session(engine) as session:
        query = (select(AuditEvent).where(AuditEvent.action == "authz.denied")
                 .order_by(AuditEvent.id))
        return list(session.exec(query).all())


def without_csrf_token(response) -> str:
    import re

    return re.sub(r'"X-CSRFToken": "[^"]*"|name="csrf_token" value="[^"]*"', "TOKEN",
                  response.get_data(as_text=True))


def team_experiment(engine, key: str, team_slug: str) -> Experiment:
    with Session(engine, expire_on_commit=False) as session:
        team_id = session.exec(select(Team.id).where(Team.slug == team_slug)).one()
        root = session.exec(select(DriverNode).where(DriverNode.kind == "root")).one()
        experiment = Experiment(key=key, name=f"Experiment {key}", node_id=root.id, team_id=team_id,
                                status="running")
        session.add(experiment)
        session.flush()
        for position, variant in enumerate(("control", "treatment")):
            session.add(Variant(experiment_id=experiment.id, key=variant, is_control=position == 0,
                                position=position))
        session.commit()
        return experiment


@pytest.fixture
def world(factory, login_as, db_engine):
    """A viewer of growth, and one experiment in growth and one in success."""
    factory.team("growth")
    factory.team("success")
    client = login_as("viewer", teams={"growth": "viewer"})
    team_experiment(db_engine, "ours", "growth")
    team_experiment(db_engine, "theirs", "success")
    return client


def test_another_teams_experiment_is_a_404_page_and_fragment_recorded_once(world, db_engine):
    own = world.get("/experiments/ours")
    assert own.status_code == 200
    assert denied(db_engine) == []

    page = world.get("/experiments/theirs")
    assert page.status_code == 404
    body = page.get_data(as_text=True)
    assert "There is nothing here" in body and "<html" in body and "theirs" not in body
    fragment = world.get("/experiments/theirs", headers={"HX-Request": "true"})
    assert fragment.status_code == 404
    assert "There is nothing here" in fragment.get_data(as_text=True)
    assert "<html" not in fragment.get_data(as_text=True)

    # Two refusals of the same path within a minute: one row.
    [event] = denied(db_engine)
    assert (event.actor_id, event.entity_type, event.entity_id) == (world.user.id, "route",
                                                                    "experiments.detail")
    assert event.diff["path"] == [None, "/experiments/theirs"]
    assert event.ip == "127.0.0.1"


def test_a_missing_experiment_looks_exactly_like_another_teams(world, db_engine):
    missing = world.get("/experiments/no-such-key")
    theirs = world.get("/experiments/theirs")
    assert missing.status_code == theirs.status_code == 404
    # Byte for byte, but for the CSRF token (signed with the current second).
    assert without_csrf_token(missing) == without_csrf_token(theirs)
    assert [e.diff["path"][1] for e in denied(db_engine)] == ["/experiments/no-such-key",
                                                              "/experiments/theirs"]


def test_a_role_below_the_objects_team_role_is_a_403_with_the_reason(world, db_engine):
    """A growth viewer may read, not edit: PermissionDenied → 403 naming the role."""
    response = world.post("/experiments/ours/start",
                          data={"csrf_token": world.csrf, "version": "1"})
    assert response.status_code == 403
    assert "experimenter" in response.get_data(as_text=True)
    [event] = denied(db_engine)
    assert event.actor_id == world.user.id and "experimenter" in event.diff["reason"][1]
    with Session(db_engine) as session:
        status = session.exec(select(Experiment.status).where(Experiment.key == "ours")).one()
        assert status == "running"


def test_a_probe_of_many_paths_writes_a_bounded_number_of_rows(world, db_engine):
    for n in range(35):
        assert world.get(f"/experiments/probe-{n}").status_code == 404
    rows = denied(db_engine)
    # experiments.denials: at most 20 rows per client a minute (literal here on purpose).
    assert len(rows) == 20
    assert [r.diff["path"][1] for r in rows] == [f"/experiments/probe-{n}" for n in range(20)]
    # Refused requests are still refused once the log stops recording them.
    assert world.get("/experiments/theirs").status_code == 404


def test_a_failed_csrf_check_is_recorded_once_per_path(client, db_engine, factory):
    factory.user("ana@example.com")
    for _ in range(3):
        response = client.post("/login",
                               data={"email": "ana@example.com", "password": TEST_PASSWORD})
        assert response.status_code == 400
        assert "CSRF check failed" in response.get_data(as_text=True)
    [event] = denied(db_engine)
    assert event.actor_id is None and event.ip == "127.0.0.1"
    assert event.diff["path"] == [None, "/login"]
    assert event.diff["reason"][1].startswith("CSRF check failed")


def test_a_signed_in_csrf_failure_names_the_actor(world, db_engine):
    response = world.post("/logout", headers={"HX-Request": "true"})
    assert response.status_code == 400
    assert "<html" not in response.get_data(as_text=True)
    [event] = denied(db_engine)
    assert event.actor_id == world.user.id and event.entity_id == "auth.logout"


def test_the_window_reopens_after_a_minute(session, admin):
    from experiments.denials import record_denial

    def deny(now=None):
        return record_denial(session, actor=admin, ip="10.0.0.1", path="/experiments/x",
                             endpoint="experiments.detail", reason="probe", now=now)

    assert deny() is not None
    assert deny() is None
    assert deny(utcnow() + timedelta(seconds=61)) is not None
    # Anonymous clients are told apart by address.
    other = record_denial(session, actor=None, ip="10.0.0.2", path="/login", endpoint="auth.login",
                          reason="csrf")
    same_again = record_denial(session, actor=None, ip="10.0.0.2", path="/login",
                               endpoint="auth.login", reason="csrf")
    third = record_denial(session, actor=None, ip="10.0.0.3", path="/login", endpoint="auth.login",
                          reason="csrf")
    assert other is not None and same_again is None and third is not None


@pytest.mark.parametrize("view", ["webapp/admin/views.py", "webapp/exports/views.py",
                                  "webapp/review/views.py", "webapp/experiments/views.py",
                                  "webapp/experiments/forms.py", "webapp/results/views.py",
                                  "webapp/tree/views.py", "webapp/journeys/views.py",
                                  "webapp/security.py"])
def test_no_view_maps_denials_by_hand(view):
    """Views let NotFound/PermissionDenied reach webapp.errors (which records them)."""
    import re
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / view).read_text()
    by_hand = re.compile(r"except NotFound[^\n]*:\n(\s*session\.rollback\(\)\n)?\s*abort\(40[34]")
    assert not by_hand.search(source)
    assert "except PermissionDenied" not in source
    assert "abort(404" not in source  # a hand-made 404 would skip the audit row
