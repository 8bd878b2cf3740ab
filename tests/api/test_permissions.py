"""Permissions of the API, per role and team, over the route table itself: a token never
does more than its user's roles allow, another team's objects are 404, cookies never
authenticate and CSRF does not apply to token requests."""

from __future__ import annotations

import re

import pytest
from sqlmodel import Session, func, select

from experiments.models import (
    ROLES,
    AuditEvent,
    DriverNode,
    Experiment,
    JourneyStage,
    UploadJob,
)
from tests.api.conftest import TokenClient, issue_token
from tests.factories import accounts_csv, make_node, make_team, make_user, store_accounts

pytestmark = pytest.mark.db

#: A body that gets past the shape check of each writing endpoint.
BODIES = {
    "api.create_node_": {"json": {"parent_id": 1, "name": "n"}},
    "api.update_node_": {"json": {"name": "renamed"}},
    "api.create_experiment": {"json": {"key": "k", "name": "n", "node_id": 1, "stage_id": 1,
                                       "hypothesis": "h", "mde": 0.02,
                                       "variants": [{"key": "a"}, {"key": "b"}]}},
    "api.update_experiment_": {"json": {"name": "renamed"}},
    "api.decide": {"json": {"decision": "kill", "rationale": "r"}},
    "api.upload_dataset": {"data": b"account_id\n", "headers": {"Content-Type": "text/csv"}},
}


def _operations(app):
    from webapp.api.spec import operations
    from webapp.api.views import bp

    return [op for op in operations(bp) if op.role is not None]


def _world(engine):
    """Two teams, each with a node, a running experiment with data and an upload job."""
    sides = {}
    with Session(engine, expire_on_commit=False) as session:
        stage_id = session.exec(select(JourneyStage.id)).first()
        owner = make_user(session, "owner@perm.test", "experimenter",
                          {"alpha": "experimenter", "bravo": "experimenter"})
        for slug in ("alpha", "bravo"):
            team = make_team(session, slug)
            node = make_node(session, f"{slug} node", team_id=team.id)
            experiment = Experiment(key=f"{slug}-exp", name=slug, node_id=node.id,
                                    team_id=team.id, status="running", stage_id=stage_id,
                                    owner_id=owner.id, hypothesis="If we …")
            session.add(experiment)
            session.flush()
            from experiments.models import Variant

            for position, key in enumerate(("control", "treatment")):
                session.add(Variant(experiment_id=experiment.id, key=key, weight=1,
                                    name=key.title(),
                                    is_control=position == 0, position=position))
            session.flush()
            store_accounts(session, experiment, accounts_csv(seed=1, n=40))
            job = UploadJob(experiment_id=experiment.id, filename="x.csv", state="done")
            session.add(job)
            session.flush()
            sides[slug] = {"key": experiment.key, "node_id": node.id, "job_id": job.id,
                           "week": "2026-W48"}
        session.commit()
    return sides


def _url(op, side) -> str:
    path = "/api/v1" + op.path
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: str(side[m.group(1)]), path)


def _call(api: TokenClient, op, side):
    kwargs = dict(BODIES.get(f"api.{op.endpoint}", {}))
    headers = {**kwargs.pop("headers", {}), "If-Match": "*"}
    return api.open(op.method, _url(op, side), headers=headers, **kwargs)


def _rows(engine) -> tuple:
    with Session(engine) as session:
        return tuple(session.exec(select(func.count()).select_from(model)).one()
                     for model in (Experiment, DriverNode, UploadJob))


def test_each_role_is_refused_below_the_declared_one(app, factory, db_engine):
    """Users holding a role globally and in team alpha: below an endpoint's role, 403 before
    anything is read or written; at or above it, reading endpoints answer 200."""
    sides = _world(db_engine)
    tokens = {}
    for role in ROLES:
        user = factory.user(f"{role}@perm.test", role, {"alpha": role})
        tokens[role] = TokenClient(app.test_client(), issue_token(db_engine, user), user)
    for op in _operations(app):
        for role in ROLES:
            before = _rows(db_engine)
            response = _call(tokens[role], op, sides["alpha"])
            what = f"{op.method} {op.path} as {role}"
            if ROLES.index(role) < ROLES.index(op.role):
                assert response.status_code == 403, f"{what}: {response.status_code}"
                assert response.mimetype == "application/problem+json"
                assert _rows(db_engine) == before, f"{what} was refused but wrote rows"
            elif op.method == "GET":
                expected = 404 if op.endpoint == "ledger_figures" else 200  # no ledger yet
                assert response.status_code == expected, \
                    f"{what}: {response.get_data(as_text=True)}"
            else:
                assert response.status_code not in (401, 403, 500), \
                    f"{what}: {response.status_code} {response.get_data(as_text=True)}"


def test_another_teams_objects_are_404(app, factory, db_engine):
    """Team alpha's admin (global experimenter) names team bravo's objects: 404 for every
    endpoint that takes one, as for a missing object; nothing written; audited."""
    sides = _world(db_engine)
    prober = factory.user("prober@perm.test", "experimenter", {"alpha": "admin"})
    api = TokenClient(app.test_client(), issue_token(db_engine, prober), prober)
    scoped = [op for op in _operations(app) if re.search(r"<(?:\w+:)?(key|node_id)>", op.path)]
    assert {op.endpoint for op in scoped} >= {"get_experiment_", "results", "upload_dataset",
                                             "update_node_", "decide", "upload_job"}
    for op in scoped:
        before = _rows(db_engine)
        response = _call(api, op, sides["bravo"])
        assert response.status_code == 404, f"{op.method} {op.path}: {response.status_code}"
        assert response.mimetype == "application/problem+json"
        assert _rows(db_engine) == before
        control = _call(api, op, sides["alpha"])  # the same request on team alpha is served
        assert control.status_code != 404, f"control {op.method} {op.path} answered 404"
    listed = api.get("/api/v1/experiments").get_json()
    assert [e["key"] for e in listed["items"]] == ["alpha-exp"]
    nodes = {n["id"] for n in api.get("/api/v1/nodes").get_json()["items"]}
    assert sides["bravo"]["node_id"] not in nodes and sides["alpha"]["node_id"] in nodes
    with Session(db_engine) as session:
        denied = session.exec(select(AuditEvent).where(AuditEvent.action == "authz.denied",
                                                       AuditEvent.actor_id == prober.id)).all()
    assert denied


def test_team_role_limits_the_token(app, factory, db_engine):
    """A global viewer who is an experimenter in alpha changes alpha's experiment, and only
    reads bravo's (where they are a viewer)."""
    _world(db_engine)
    user = factory.user("split@perm.test", "viewer", {"alpha": "experimenter",
                                                       "bravo": "viewer"})
    api = TokenClient(app.test_client(), issue_token(db_engine, user), user)
    ok = api.patch("/api/v1/experiments/alpha-exp", json={"name": "Alpha renamed"},
                   headers={"If-Match": "*"})
    assert ok.status_code == 200, ok.get_data(as_text=True)
    refused = api.patch("/api/v1/experiments/bravo-exp", json={"name": "no"},
                        headers={"If-Match": "*"})
    assert refused.status_code == 403
    assert api.get("/api/v1/experiments/bravo-exp").get_json()["name"] == "bravo"


def test_cookies_never_authenticate_and_csrf_does_not_apply_to_tokens(app, login_as,
                                                                      db_engine, factory):
    factory.experiment("live", status="running")
    browser = login_as("admin")
    by_cookie = browser.post("/api/v1/experiments/live/stop",
                             headers={"If-Match": "*", "X-CSRFToken": browser.csrf})
    assert by_cookie.status_code == 401
    assert app.config.get("WTF_CSRF_ENABLED", True)  # CSRF is on for the site...
    secret = issue_token(db_engine, browser.user)
    by_token = app.test_client().post("/api/v1/experiments/live/stop", headers={
        "If-Match": "*", "Authorization": f"Bearer {secret}"})  # ...and no CSRF token here
    assert by_token.status_code == 200
    assert "Set-Cookie" not in by_token.headers
