"""The route inventory: every route of the app is declared, listed here, and behaves
as listed — for every role, without a CSRF token, with the wrong method, and when
probed with another team's ids.

When you add a route
--------------------
1. Declare it in its view with ``@allow(role)`` / ``@allow("admin", scope="global")``
   or ``@public`` (``create_app`` refuses to start otherwise).
2. Add its endpoint to :data:`INVENTORY` below with the same permission.
3. If its URL has an argument whose name is new, add it to :data:`PROBE_VALUES`,
   saying how to fill it from the test world and whether it names a team-scoped
   object (then the cross-team probe expects 404 for team B's object).
4. If its GET deliberately writes rows, say why in :data:`GET_MAY_WRITE`.

Everything else is derived from ``app.url_map``: the tests are parametrised over it,
so a new route is checked the moment it exists.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import pytest
from sqlalchemy import func
from sqlmodel import Session, SQLModel, select

from experiments.models import (
    ROLES,
    AuditEvent,
    Dataset,
    DriverNode,
    Experiment,
    JourneyStage,
    ReviewItem,
    ReviewMeeting,
    UploadJob,
    User,
    Variant,
    utcnow,
)
from tests.helpers import TEST_PASSWORD, Auth, csrf_token_of, dispose_app

SAMPLE_CSV = Path(__file__).resolve().parents[1] / "data" / "accounts_example.csv"
GLOBAL = "global:"  # prefix of a permission that needs the role globally

# --------------------------------------------------------------------------------------
# The inventory: endpoint → the permission it must declare.
#   "public"        no sign-in
#   "<role>"        that role globally or in any team (the view checks the object's team)
#   "global:admin"  the global admin role (administration)
# --------------------------------------------------------------------------------------
INVENTORY: dict[str, str] = {
    # sign-in and one's own account
    "auth.login": "public",
    "auth.logout": "viewer",
    "auth.password": "viewer",
    "auth.change_password": "viewer",
    "health.index": "public",
    "health.ready": "public",
    # reading
    "dashboard.index": "viewer",
    "tree.index": "viewer",
    # the NRR page and its exports (issue 16)
    "nrr.index": "viewer",
    "nrr.dimension": "viewer",
    "nrr.export_csv": "viewer",
    "nrr.export_json": "viewer",
    "nrr.printable": "viewer",
    # the revenue ledger (the company's: replacing it takes the analyst role globally)
    "ledger.form": "global:analyst",
    "ledger.upload": "global:analyst",
    "ledger.versions": "viewer",
    # editing the driver tree
    "tree.edit": "experimenter",
    "tree.update": "experimenter",
    "tree.new_child": "experimenter",
    "tree.create": "experimenter",
    "tree.move_form": "experimenter",
    "tree.move": "experimenter",
    "tree.delete_form": "experimenter",
    "tree.delete": "experimenter",
    "tree.add_actual": "viewer",  # the node's owner, whatever their role; else experimenter
    "tree.actual_form": "viewer",  # add_actual's form on demand: offered to whom add_actual allows
    "experiments.index": "viewer",
    "experiments.detail": "viewer",
    "experiments.export_json": "viewer",
    "experiments.sample_size_hint": "viewer",
    # registering and running experiments
    "experiments.new": "experimenter",
    "experiments.create": "experimenter",
    "experiments.edit": "experimenter",
    "experiments.update": "experimenter",
    "experiments.start": "experimenter",
    "experiments.stop": "experimenter",
    "experiments.decide": "experimenter",
    "experiments.reopen": "experimenter",
    "review.current": "viewer",
    "review.week": "viewer",
    "review.item": "viewer",
    "review.update_item": "experimenter",
    "review.create_action": "experimenter",
    "review.update_action": "experimenter",
    "review.action_status": "experimenter",
    "me.index": "viewer",
    "quarterly.current": "viewer",
    "quarterly.show": "viewer",
    "quarterly.export": "viewer",
    "quarterly.create_objective": "experimenter",
    "quarterly.add_key_result": "experimenter",
    "quarterly.update_key_result": "experimenter",
    # exports (reading)
    "exports.experiment": "viewer",
    "exports.review": "viewer",
    # journeys and their stages (shared by every team)
    "journeys.index": "viewer",
    "journeys.create": "experimenter",
    "journeys.update": "experimenter",
    "journeys.add_stage": "experimenter",
    "journeys.rename_stage": "experimenter",
    "journeys.delete_stage": "experimenter",
    "journeys.move_stage": "experimenter",
    "planner.index": "viewer",
    # results and data
    "results.show": "viewer",
    "results.upload": "analyst",
    "results.upload_status": "analyst",
    "results.recompute": "analyst",
    # administration
    "admin.index": "global:admin",
    "admin.users": "global:admin",
    "admin.invite": "global:admin",
    "admin.user": "global:admin",
    "admin.update": "global:admin",
    "admin.disable": "global:admin",
    "admin.enable": "global:admin",
    "admin.reset": "global:admin",
    "admin.teams": "global:admin",
    "admin.create_team": "global:admin",
    "admin.team": "global:admin",
    "admin.update_team": "global:admin",
    "admin.member": "global:admin",
    "admin.audit": "global:admin",
    "admin.audit_csv": "global:admin",
    # notifications and calendar feeds (issue 17): one's own settings, the token-only feed
    "notify.preferences": "viewer",
    "notify.save_preferences": "viewer",
    "notify.calendar": "viewer",
    "notify.create_feed": "viewer",
    "notify.revoke_feed": "viewer",
    "notify.feed": "public",
    "notify.webhooks": "global:admin",
    "notify.create_webhook": "global:admin",
    "notify.update_webhook": "global:admin",
    "notify.delete_webhook": "global:admin",
    "notify.test_webhook": "global:admin",
    "notify.deliveries": "global:admin",
    "notify.retry_delivery": "global:admin",
    # warehouse data sources and queries (issue 18)
    "warehouse.sources": "global:admin",
    "warehouse.create_source": "global:admin",
    "warehouse.experiment_query": "analyst",
    "warehouse.save_experiment_query": "analyst",
    "warehouse.refresh_experiment": "analyst",
    "warehouse.ledger_query": "global:analyst",
    "warehouse.save_ledger_query": "global:analyst",
    "warehouse.refresh_ledger": "global:analyst",
    # one's own personal API tokens
    "tokens.index": "viewer",
    "tokens.create": "viewer",
    "tokens.revoke": "viewer",
    # the JSON API (issue 19). "api:<role>" routes authenticate by API token only, never by
    # the session cookie (so CSRF does not apply to them): the cookie-based checks below skip
    # them, test_api_routes_ignore_the_session_cookie holds them to 401 for a signed-in
    # browser, and tests/api/test_permissions.py checks roles, scopes and cross-team 404s
    # with tokens.
    "api.openapi": "public",
    "api.docs": "public",
    "api.me": "api:viewer",
    "api.list_nodes": "api:viewer",
    "api.create_node_": "api:experimenter",
    "api.get_node_": "api:viewer",
    "api.update_node_": "api:experimenter",
    "api.list_experiments_": "api:viewer",
    "api.create_experiment": "api:experimenter",
    "api.get_experiment_": "api:viewer",
    "api.update_experiment_": "api:experimenter",
    "api.start": "api:experimenter",
    "api.stop": "api:experimenter",
    "api.decide": "api:experimenter",
    "api.results": "api:viewer",
    "api.upload_dataset": "api:analyst",
    "api.upload_job": "api:analyst",
    "api.review_week": "api:viewer",
    "api.ledger_figures": "api:viewer",
    "api.ledger_versions_": "api:viewer",
    "api.upload_ledger": "api:analyst",  # and globally (the view checks: the ledger is global)
}
API = "api:"  # prefix of a route that authenticates by API token (see above)

# GET routes that write rows on purpose, with the reason (anything else must not).
GET_MAY_WRITE: dict[str, str] = {
    "review.week":
        "opening a week freezes what the meeting saw (experiments/review.py, 'Freezing')",
}


@dataclass(frozen=True)
class Side:
    """One team's objects in the test world."""

    team_id: int
    node_id: int
    experiment_key: str
    experiment_id: int
    dataset_version: int
    review_item_id: int
    upload_job_id: int = 0
    action_id: int = 0
    objective_id: int = 0
    key_result_id: int = 0


@dataclass(frozen=True)
class World:
    a: Side  # the team the signed-in test users belong to
    b: Side  # the other team: its objects must look absent
    week: str
    user_id: int
    stage_id: int
    journey_id: int


@dataclass(frozen=True)
class Probe:
    value: Callable[[World, Side], object]
    scoped: bool  # names a team-scoped object: team B's answers 404 to team A


# --------------------------------------------------------------------------------------
# How to fill each URL argument, by its name. ``Side`` is team A for the role checks
# and team B for the cross-team probe.
# --------------------------------------------------------------------------------------
PROBE_VALUES: dict[str, Probe] = {
    "key": Probe(lambda w, s: s.experiment_key, scoped=True),
    "experiment_id": Probe(lambda w, s: s.experiment_id, scoped=True),
    "node_id": Probe(lambda w, s: s.node_id, scoped=True),
    "item_id": Probe(lambda w, s: s.review_item_id, scoped=True),
    "action_id": Probe(lambda w, s: s.action_id, scoped=True),  # a review action, with <week>
    "quarter": Probe(lambda w, s: "2026-Q4", scoped=False),  # a quarter is shared; OKRs are not
    "objective_id": Probe(lambda w, s: s.objective_id, scoped=True),
    "key_result_id": Probe(lambda w, s: s.key_result_id, scoped=True),
    "job_id": Probe(lambda w, s: s.upload_job_id, scoped=True),  # an upload job, with <key>
    "dataset_version": Probe(lambda w, s: s.dataset_version, scoped=False),  # with <key>
    "version": Probe(lambda w, s: s.dataset_version, scoped=False),  # with <key>
    "week": Probe(lambda w, s: w.week, scoped=False),  # a week is shared; its items are not
    "team_id": Probe(lambda w, s: s.team_id, scoped=True),
    "user_id": Probe(lambda w, s: w.user_id, scoped=False),  # users are global (admin only)
    "stage_id": Probe(lambda w, s: w.stage_id, scoped=False),  # journeys are shared
    "journey_id": Probe(lambda w, s: w.journey_id, scoped=False),
    "fmt": Probe(lambda w, s: "csv", scoped=False),
    "format": Probe(lambda w, s: "csv", scoped=False),
    "name": Probe(lambda w, s: "plan", scoped=False),  # a ledger dimension (company-wide)
    "token": Probe(lambda w, s: "cal_" + "x" * 43, scoped=False),  # a calendar feed (public)
    "webhook_id": Probe(lambda w, s: 1, scoped=False),  # webhooks are global (admin only)
    "delivery_id": Probe(lambda w, s: 1, scoped=False),  # the delivery log is global
    "token_id": Probe(lambda w, s: 1, scoped=False),  # one's own API token (others': 404)
}


# ------------------------------------------------------------------ the routes


class Route(NamedTuple):
    rule: str
    endpoint: str
    args: tuple[str, ...]
    methods: frozenset[str]
    declared: str | None  # as the view declares it, in INVENTORY's notation

    @property
    def listed(self) -> str | None:
        return INVENTORY.get(self.endpoint)

    @property
    def role(self) -> str:
        """The least role, or "public"; KeyError for an unlisted route."""
        return INVENTORY[self.endpoint].removeprefix(GLOBAL)

    @property
    def needs_global(self) -> bool:
        return INVENTORY[self.endpoint].startswith(GLOBAL)

    @property
    def by_token(self) -> bool:
        return (self.listed or "").startswith(API)

    @property
    def protected(self) -> bool:
        """Signed in by the session cookie (the API's token routes are checked apart)."""
        return self.listed is not None and self.listed != "public" and not self.by_token


def _collect_routes() -> list[Route]:
    """Every rule of the app (Flask's own ``static`` aside), read once at collection."""
    from webapp import create_app
    from webapp.security import declared_permission, declared_scope

    with tempfile.TemporaryDirectory() as instance:
        app = create_app(
            {
                "NRRLAB_ENV": "testing",
                "SECRET_KEY": "c" * 40,
                "DATABASE_URL": "sqlite://",
                "CHECK_DATABASE_AT_START": False,
                "INSTANCE_PATH": instance,
            }
        )
        routes = []
        for r in app.url_map.iter_rules():
            if r.endpoint == "static":
                continue
            declared = declared_permission(app, r.endpoint)
            if declared is not None and declared_scope(app, r.endpoint) == "global":
                declared = GLOBAL + declared
            routes.append(Route(r.rule, r.endpoint, tuple(sorted(r.arguments)),
                                frozenset(r.methods - {"HEAD", "OPTIONS"}), declared))
        dispose_app(app)
    return sorted(routes)


ROUTES = _collect_routes()


def _route_params(keep: Callable[[Route], bool] = lambda r: True) -> list:
    return [
        pytest.param(r, id=f"{'/'.join(sorted(r.methods))} {r.rule}") for r in ROUTES if keep(r)
    ]


def _method_params(keep: Callable[[Route, str], bool]) -> list:
    return [
        pytest.param(r, m, id=f"{m} {r.rule}")
        for r in ROUTES
        for m in sorted(r.methods)
        if keep(r, m)
    ]


def _below(role: str) -> str | None:
    rank = ROLES.index(role)
    return ROLES[rank - 1] if rank > 0 else None


def _url(route: Route, world: World, side: Side) -> str:
    url = route.rule
    for name in route.args:
        probe = PROBE_VALUES.get(name)
        if probe is None:
            pytest.fail(
                f"add a probe value for argument {name!r} (route {route.rule}) to PROBE_VALUES "
                f"in tests/webapp/test_route_inventory.py"
            )
        url = re.sub(rf"<(?:[^<>:]+:)?{name}>", str(probe.value(world, side)), url)
    return url


# ------------------------------------------------------------------ the world


def _dataset(session: Session, experiment: Experiment, owner: User) -> Dataset:
    from experiments.accounts_csv import read_accounts
    from experiments.datasets import store_dataset

    table = read_accounts(SAMPLE_CSV.read_bytes(), variants=["control", "treatment"])
    dataset = store_dataset(session, experiment, table, filename="accounts.csv", actor=owner)
    try:
        from experiments.analysis import refresh_snapshot
    except ImportError:
        return dataset
    refresh_snapshot(session, experiment, dataset)
    return dataset


def _side(
    session: Session,
    slug: str,
    root: DriverNode,
    stage: JourneyStage,
    owner_role: str = "experimenter",
) -> tuple:
    from experiments.users import create_user, ensure_team, set_team_role

    team = ensure_team(session, slug, f"Team {slug}")
    owner = create_user(session, f"owner-{slug}@inventory.test", TEST_PASSWORD, role="viewer")
    set_team_role(session, owner, team, owner_role, actor=None)
    node = DriverNode(
        parent_id=root.id,
        team_id=team.id,
        owner_id=owner.id,
        name=f"Lever of {slug}",
        kind="lever",
        hypothesis="If we probe, then we learn, because tests run.",
    )
    session.add(node)
    session.flush()
    started = utcnow() - timedelta(days=3)
    experiment = Experiment(
        key=f"probe-{slug}",
        name=f"Probe of {slug}",
        node_id=node.id,
        stage_id=stage.id,
        team_id=team.id,
        owner_id=owner.id,
        status="running",
        started_at=started,
        created_at=started - timedelta(days=1),
        created_by_id=owner.id,
        hypothesis="If we probe, then we learn, because tests run.",
    )
    session.add(experiment)
    session.flush()
    session.add(
        Variant(experiment_id=experiment.id, key="control", weight=1, is_control=True, position=0)
    )
    session.add(
        Variant(
            experiment_id=experiment.id, key="treatment", weight=1, is_control=False, position=1
        )
    )
    session.flush()
    dataset = _dataset(session, experiment, owner)
    # A finished upload job, for /experiments/<key>/uploads/<job_id>.
    session.add(UploadJob(experiment_id=experiment.id, filename="accounts.csv", state="done",
                          dataset_id=dataset.id, created_by_id=owner.id))
    session.flush()
    return team, node, experiment, dataset


def _action_on(session: Session, week: str, experiment: Experiment) -> int:
    """An open review action on ``experiment`` raised in ``week`` (its team scopes it)."""
    from experiments.review_models import Action

    action = Action(title=f"Follow up {experiment.key}", experiment_id=experiment.id,
                    team_id=experiment.team_id, raised_week=week, owner_id=experiment.owner_id)
    session.add(action)
    session.commit()
    return action.id


def _okr_of(session: Session, team, node: DriverNode) -> tuple[int, int]:
    """An objective of ``team`` in 2026-Q4 with one key result on ``node``."""
    from experiments.review_models import KeyResult, Objective

    objective = Objective(quarter="2026-Q4", title=f"Grow {team.slug}", team_id=team.id)
    session.add(objective)
    session.flush()
    key_result = KeyResult(objective_id=objective.id, node_id=node.id, title="NRR", target=1.05)
    session.add(key_result)
    session.commit()
    return objective.id, key_result.id


def _upload_job_of(session: Session, experiment_id: int) -> int:
    return session.exec(select(UploadJob.id).where(UploadJob.experiment_id == experiment_id)).one()


def _review_items(
    app, session: Session, admin_email: str, week: str, experiments: list[Experiment]
) -> dict[int, int]:
    """Review items of ``week`` per experiment id: made the app's own way (opening the
    week's page freezes them), else inserted directly."""
    client = app.test_client()
    Auth(client).login(admin_email)
    client.get(f"/review/{week}")
    session.expire_all()
    meeting = session.exec(select(ReviewMeeting).where(ReviewMeeting.iso_week == week)).first()
    if meeting is None:
        meeting = ReviewMeeting(iso_week=week)
        session.add(meeting)
        session.flush()
    items = {
        i.experiment_id: i.id
        for i in session.exec(select(ReviewItem).where(ReviewItem.meeting_id == meeting.id)).all()
    }
    for experiment in experiments:
        if experiment.id not in items:
            item = ReviewItem(meeting_id=meeting.id, experiment_id=experiment.id, seen={})
            session.add(item)
            session.flush()
            items[experiment.id] = item.id
    session.commit()
    return items


@dataclass
class Inventory:
    app: object
    world: World
    clients: dict[str, object]  # role → client signed in as that role (global and in team A)
    engine: object

    def counts(self) -> dict[str, int]:
        with Session(self.engine) as session:
            return {t.name: session.exec(select(func.count()).select_from(t)).one()
                    for t in SQLModel.metadata.sorted_tables if t.name != "audit_event"}

    def audit_actions_since(self, last_id: int) -> list[str]:
        with Session(self.engine) as session:
            return list(
                session.exec(select(AuditEvent.action).where(AuditEvent.id > last_id)).all()
            )

    def last_audit_id(self) -> int:
        with Session(self.engine) as session:
            return session.exec(select(func.coalesce(func.max(AuditEvent.id), 0))).one()


@pytest.fixture(scope="module")
def inventory(scratch_database, tmp_path_factory) -> Iterator[Inventory]:
    """One database and app for the whole module: two teams, each with a driver node,
    a running experiment with data and a review item; a signed-in client per role
    (that role globally and in team A) plus ``prober`` (global experimenter, admin of
    team A) and ``anonymous``. Requests here do not change what later ones see."""
    from experiments.db import make_engine
    from experiments.setup import ensure_defaults
    from experiments.users import create_user, set_team_role
    from webapp import create_app

    url = scratch_database()
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    with Session(engine, expire_on_commit=False) as session:
        ensure_defaults(session)
        root = session.exec(select(DriverNode).where(DriverNode.kind == "root")).one()
        stage = session.exec(select(JourneyStage).order_by(JourneyStage.position)).first()
        team_a, node_a, exp_a, data_a = _side(session, "alpha", root, stage)
        team_b, node_b, exp_b, data_b = _side(session, "bravo", root, stage)
        emails = {}
        for role in ROLES:
            user = create_user(session, f"{role}@inventory.test", TEST_PASSWORD, role=role)
            set_team_role(session, user, team_a, role, actor=None)
            emails[role] = user.email
        prober = create_user(session, "prober@inventory.test", TEST_PASSWORD, role="experimenter")
        set_team_role(session, prober, team_a, "admin", actor=None)
        emails["prober"] = prober.email
        viewer_id = session.exec(select(User.id).where(User.email == emails["viewer"])).one()
        session.commit()
        app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "i" * 48, "DATABASE_URL": url,
                          "INSTANCE_PATH": str(tmp_path_factory.mktemp("inventory-instance"))})
        year, number, _ = datetime.now(UTC).date().isocalendar()
        week = f"{year}-W{number:02d}"  # this week's review holds both experiments (running)
        items = _review_items(app, session, emails["admin"], week, [exp_a, exp_b])
        world = World(
            a=Side(team_a.id, node_a.id, exp_a.key, exp_a.id, data_a.version, items[exp_a.id],
                   _upload_job_of(session, exp_a.id), _action_on(session, week, exp_a),
                   *_okr_of(session, team_a, node_a)),
            b=Side(team_b.id, node_b.id, exp_b.key, exp_b.id, data_b.version, items[exp_b.id],
                   _upload_job_of(session, exp_b.id), _action_on(session, week, exp_b),
                   *_okr_of(session, team_b, node_b)),
            week=week, user_id=viewer_id, stage_id=stage.id, journey_id=stage.journey_id,
        )
    clients = {}
    for name, email in emails.items():
        client = app.test_client()
        response = Auth(client).login(email)
        assert response.status_code == 303, f"{name} could not sign in: {response.status_code}"
        client.csrf = csrf_token_of(client)
        clients[name] = client
    anonymous = app.test_client()
    anonymous.csrf = csrf_token_of(anonymous)
    clients["anonymous"] = anonymous
    yield Inventory(app, world, clients, engine)
    dispose_app(app)
    engine.dispose()


def _request(client, method: str, url: str, *, csrf: bool = True, htmx: bool = False):
    """One request, its body read to the end (a streamed answer must not outlive it)."""
    headers = {"HX-Request": "true"} if htmx else {}
    data = {"csrf_token": client.csrf} if csrf and method != "GET" else None
    response = client.open(url, method=method, data=data, headers=headers)
    response.get_data()
    response.close()
    return response


def _is_login_redirect(response) -> bool:
    if response.status_code == 401:
        return "/login" in response.headers.get("HX-Redirect", "/login")
    return response.status_code in (302, 303) and "/login" in response.headers.get("Location", "")


def _assert_security_headers(response, what: str) -> None:
    from webapp.security import CONTENT_SECURITY_POLICY

    assert response.headers.get("Content-Security-Policy") == CONTENT_SECURITY_POLICY, \
        f"{what}: Content-Security-Policy is {response.headers.get('Content-Security-Policy')!r}"
    assert response.headers.get("X-Content-Type-Options") == "nosniff", f"{what}: no nosniff"
    assert response.headers.get("Referrer-Policy"), f"{what}: no Referrer-Policy"


# ------------------------------------------------------------------ declarations


@pytest.mark.parametrize("route", _route_params())
def test_every_route_is_listed_with_the_permission_it_declares(route):
    assert route.listed is not None, (
        f"route {route.rule} (endpoint {route.endpoint}) is not in INVENTORY of "
        f"tests/webapp/test_route_inventory.py: add it with its intended permission")
    assert route.declared == route.listed, (
        f"{route.endpoint} declares {route.declared!r} but INVENTORY says {route.listed!r}; "
        f"fix whichever is wrong")


def test_inventory_lists_no_route_that_is_gone():
    stale = sorted(set(INVENTORY) - {r.endpoint for r in ROUTES})
    assert not stale, f"INVENTORY lists endpoints the app no longer has: {stale}"


@pytest.mark.parametrize("route", _route_params(lambda r: bool(r.args)))
def test_every_url_argument_has_a_probe_value(route):
    unknown = [name for name in route.args if name not in PROBE_VALUES]
    assert not unknown, (
        f"add a probe value for argument(s) {unknown} of route {route.rule} to PROBE_VALUES in "
        f"tests/webapp/test_route_inventory.py (and say whether it names a team-scoped object)")


def test_a_route_without_a_declared_permission_stops_the_app(app):
    from webapp.security import check_route_declarations

    app.add_url_rule("/undeclared-for-test", "undeclared_for_test", lambda: "open")
    with pytest.raises(RuntimeError, match="undeclared_for_test"):
        check_route_declarations(app)


def test_audit_log_routes_only_read():
    audit_routes = [r for r in ROUTES if r.rule.startswith("/admin/audit")]
    assert audit_routes, "the audit log has no route"
    for route in audit_routes:
        assert route.methods == {"GET"}, (
            f"{route.rule} accepts {sorted(route.methods)}: "
            "audit rows must never be edited or deleted"
        )


# ------------------------------------------------------------------ roles and routes


def _role_params() -> list:
    return [pytest.param(r, role, id=f"{role} GET {r.rule}")
            for r in ROUTES if "GET" in r.methods and r.protected for role in ROLES]


@pytest.mark.parametrize(("route", "role"), _role_params())
def test_get_answers_each_role_as_declared(inventory, route, role):
    """At or above the declared role: served (never 401/403/405/500, no bounce to the
    sign-in page, no rows written), full page and htmx fragment alike; below it: 403
    (or 404). Security headers on every answer."""
    url = _url(route, inventory.world, inventory.world.a)
    client = inventory.clients[role]
    before_rows, before_audit = inventory.counts(), inventory.last_audit_id()
    response = _request(client, "GET", url)
    what = f"GET {url} as {role}"
    _assert_security_headers(response, what)
    if ROLES.index(role) < ROLES.index(route.role):
        assert response.status_code in (403, 404), (
            f"{what} answered {response.status_code}, expected 403"
        )
        return
    assert response.status_code not in (401, 403, 405, 500), (
        f"{what} answered {response.status_code}"
    )
    assert not _is_login_redirect(response), f"{what} bounced to the sign-in page"
    if route.endpoint not in GET_MAY_WRITE:
        after = inventory.counts()
        changed = {t: after[t] - before_rows[t] for t in after if after[t] != before_rows[t]}
        assert not changed, (f"{what} changed rows {changed}: a GET must not change state "
                             f"(or list it in GET_MAY_WRITE with the reason)")
        written = [a for a in inventory.audit_actions_since(before_audit)
                   if not a.startswith(("export.", "authz.", "auth."))]
        assert not written, f"{what} recorded {written}: a GET must not change state"
    fragment = _request(client, "GET", url, htmx=True)
    _assert_security_headers(fragment, f"htmx {what}")
    assert fragment.status_code not in (401, 403, 405, 500), (
        f"htmx {what} answered {fragment.status_code}"
    )


def test_global_administration_refuses_a_team_admin(inventory):
    """The prober is admin of team A but only experimenter globally: no administration."""
    admin_routes = [r for r in ROUTES if r.listed == GLOBAL + "admin" and "GET" in r.methods]
    assert admin_routes
    for route in admin_routes:
        url = _url(route, inventory.world, inventory.world.a)
        response = _request(inventory.clients["prober"], "GET", url)
        assert response.status_code == 403, (
            f"GET {url} as a team admin answered {response.status_code}"
        )


@pytest.mark.parametrize("route", _route_params(lambda r: "GET" in r.methods and r.protected))
def test_get_without_sign_in_goes_to_the_sign_in_page(inventory, route):
    url = _url(route, inventory.world, inventory.world.a)
    response = _request(inventory.clients["anonymous"], "GET", url)
    assert _is_login_redirect(response), f"GET {url} signed out answered {response.status_code}"
    fragment = _request(inventory.clients["anonymous"], "GET", url, htmx=True)
    assert fragment.status_code == 401 and "/login" in fragment.headers.get("HX-Redirect", ""), \
        f"htmx GET {url} signed out should answer 401 with HX-Redirect to the sign-in page"


@pytest.mark.parametrize(
    ("route", "method"), _method_params(lambda r, m: m != "GET" and r.protected)
)
def test_state_change_without_sign_in_goes_to_the_sign_in_page(inventory, route, method):
    url = _url(route, inventory.world, inventory.world.a)
    response = _request(inventory.clients["anonymous"], method, url)
    assert _is_login_redirect(response), (
        f"{method} {url} signed out answered {response.status_code}"
    )


def _below_role_params() -> list:
    return [pytest.param(r, m, _below(r.role), id=f"{_below(r.role)} {m} {r.rule}")
            for r in ROUTES for m in sorted(r.methods)
            if m != "GET" and r.protected and _below(r.role)]


@pytest.mark.parametrize(("route", "method", "role"), _below_role_params())
def test_state_change_below_the_role_is_forbidden(inventory, route, method, role):
    url = _url(route, inventory.world, inventory.world.a)
    before = inventory.counts()
    response = _request(inventory.clients[role], method, url)
    assert response.status_code == 403, (
        f"{method} {url} as {role} answered {response.status_code}, expected 403"
    )
    _assert_security_headers(response, f"{method} {url} as {role}")
    assert inventory.counts() == before, f"{method} {url} as {role} was refused but changed rows"


@pytest.mark.parametrize("route", _route_params(lambda r: "GET" not in r.methods))
def test_state_changing_route_refuses_get(inventory, route):
    """A GET to a state-changing endpoint's URL is 405, or is served by another endpoint
    of the same URL (a form page), which the role matrix holds to "no rows written"."""
    from werkzeug.exceptions import MethodNotAllowed

    url = _url(route, inventory.world, inventory.world.a)
    adapter = inventory.app.url_map.bind("localhost")
    try:
        endpoint, _ = adapter.match(url, method="GET")
    except MethodNotAllowed:
        response = _request(inventory.clients["admin"], "GET", url)
        assert response.status_code == 405, (
            f"GET {url} answered {response.status_code}; a state change must refuse GET"
        )
        _assert_security_headers(response, f"GET {url}")
        return
    assert endpoint != route.endpoint, (
        f"GET {url} reaches the state-changing endpoint {route.endpoint}"
    )
    assert INVENTORY.get(endpoint) is not None, (
        f"GET {url} is served by {endpoint}, which is not in INVENTORY"
    )


@pytest.mark.parametrize(("route", "method"),
                         _method_params(lambda r, m: m != "GET" and not r.by_token))
def test_state_change_without_csrf_token_is_refused(inventory, route, method):
    url = _url(route, inventory.world, inventory.world.a)
    before = inventory.counts()
    response = _request(inventory.clients["admin"], method, url, csrf=False)
    assert response.status_code == 400, (
        f"{method} {url} without a CSRF token answered {response.status_code}"
    )
    assert "CSRF" in response.get_data(as_text=True)
    _assert_security_headers(response, f"{method} {url} without CSRF")
    assert inventory.counts() == before, f"{method} {url} without a CSRF token changed rows"


@pytest.mark.parametrize(("route", "method"), _method_params(lambda r, m: r.by_token))
def test_api_routes_ignore_the_session_cookie(inventory, route, method):
    """A signed-in admin's browser (cookie, CSRF token) gets 401 problem+json from the API:
    only an API token authenticates it; nothing is written."""
    url = _url(route, inventory.world, inventory.world.a)
    before = inventory.counts()
    response = _request(inventory.clients["admin"], method, url)
    assert response.status_code == 401, f"{method} {url} by cookie answered {response.status_code}"
    assert response.mimetype == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    _assert_security_headers(response, f"{method} {url} by cookie")
    assert inventory.counts() == before, f"{method} {url} by cookie changed rows"


# ------------------------------------------------------------------ cross-team probing


def _probed(route: Route) -> bool:
    # Administration is global (a global admin sees every team): there is no other
    # team to hide from it. Public routes hold no team objects.
    if not route.protected or route.needs_global:
        return False
    return any(PROBE_VALUES[a].scoped if a in PROBE_VALUES else True for a in route.args)


@pytest.mark.parametrize(("route", "method"), _method_params(lambda r, m: _probed(r)))
def test_another_teams_object_answers_404(inventory, route, method):
    """Team A's admin asks for team B's object: 404 as for a missing one — never 200, 403
    or 500 — as a full page and as an htmx fragment, and nothing is written."""
    url = _url(route, inventory.world, inventory.world.b)
    client = inventory.clients["prober"]
    before = inventory.counts()
    for htmx in (False, True):
        response = _request(client, method, url, htmx=htmx)
        kind = "htmx " if htmx else ""
        assert response.status_code == 404, (
            f"{kind}{method} {url} for team B's object answered {response.status_code}, "
            "expected 404"
        )
        _assert_security_headers(response, f"{kind}{method} {url}")
    assert inventory.counts() == before, f"{method} {url} for team B's object changed rows"
    if method == "GET":
        # Controls: the same URL exists for a global admin, and team A's equivalent is
        # served to the prober — so the 404 above is the team rule, not a bad probe value.
        for who, side in (("admin", inventory.world.b), ("prober", inventory.world.a)):
            control = _url(route, inventory.world, side)
            status = _request(inventory.clients[who], "GET", control).status_code
            assert status != 404, (
                f"control GET {control} as {who} answered 404: fix the probe values"
            )


def test_the_world_is_what_the_probes_assume(inventory):
    """Each side's objects exist and belong to its team, so a 404 for team B is the rule at work."""
    with Session(inventory.engine) as session:
        for side in (inventory.world.a, inventory.world.b):
            experiment = session.exec(
                select(Experiment).where(Experiment.key == side.experiment_key)
            ).one()
            assert experiment.id == side.experiment_id and experiment.team_id == side.team_id
            assert session.get(DriverNode, side.node_id).team_id == side.team_id
            assert session.get(ReviewItem, side.review_item_id).experiment_id == experiment.id
            assert session.exec(
                select(Dataset).where(
                    Dataset.experiment_id == experiment.id, Dataset.version == side.dataset_version
                )
            ).one()
        assert session.exec(select(ReviewMeeting.iso_week)).all() == [inventory.world.week]


def test_the_probe_covers_the_team_scoped_routes():
    probed = {r.endpoint for r in ROUTES if _probed(r)}
    assert {"experiments.detail", "results.show", "results.upload"} <= probed, probed
