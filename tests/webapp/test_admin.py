"""Administration pages: inviting, roles, disabling, teams and memberships, and the
audit log with its filters, pages and CSV export. XSS payloads render escaped."""

from __future__ import annotations

import csv
import inspect
import io
import re
from datetime import timedelta

import pytest
from sqlmodel import Session, select

from experiments.models import AuditEvent, Team, TeamMembership, User, utcnow
from tests.helpers import Auth

XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg/onload=alert(1)>",
]


def events(db_engine, action: str | None = None) -> list[AuditEvent]:
    with Session(db_engine) as session:
        query = select(AuditEvent).order_by(AuditEvent.id)
        if action:
            query = query.where(AuditEvent.action == action)
        return list(session.exec(query).all())


def load(db_engine, model, **where):
    with Session(db_engine) as session:
        query = select(model)
        for field, value in where.items():
            query = query.where(getattr(model, field) == value)
        return session.exec(query).first()


@pytest.fixture
def admin(login_as):
    return login_as("admin")


def post(client, url, **data):
    return client.post(url, data={"csrf_token": client.csrf, **data})


def assert_escaped(body: str, payload: str) -> None:
    """Present, but only in escaped form: as HTML text or as JSON inside HTML (``tojson``)."""
    from flask.json.tag import TaggedJSONSerializer  # noqa: F401  (keeps flask.json importable)
    from jinja2.utils import htmlsafe_json_dumps
    from markupsafe import escape

    assert payload not in body, f"{payload!r} rendered raw"
    forms = (str(escape(payload)), str(htmlsafe_json_dumps(payload)).strip('"'))
    assert any(form in body for form in forms), f"{payload!r} not shown at all"


# ------------------------------------------------------------------ users


def test_admin_pages_render(admin):
    for path in ("/admin/", "/admin/users", "/admin/teams", "/admin/audit"):
        response = admin.get(path, follow_redirects=True)
        assert response.status_code == 200, path
        assert "Administration" in response.get_data(as_text=True)


def test_administration_needs_the_global_admin_role(login_as):
    team_admin = login_as("viewer", teams={"growth": "admin"})
    for path in ("/admin/users", "/admin/teams", "/admin/audit", "/admin/audit.csv"):
        assert team_admin.get(path).status_code == 403, path
    assert post(team_admin, "/admin/teams", slug="mine", name="Mine").status_code == 403


def test_invite_shows_a_temporary_password_once_and_it_signs_in(app, admin, db_engine):
    response = post(
        admin, "/admin/users", email="New@Example.com", name="New Person", role="analyst"
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    password = re.search(r'<p class="secret"><code>([^<]+)</code>', body).group(1)
    user = load(db_engine, User, email="new@example.com")
    assert (user.name, user.role, user.password_changed_at) == ("New Person", "analyst", None)
    assert [e.action for e in events(db_engine) if e.entity_id == str(user.id)] == ["user.create"]
    listing = admin.get("/admin/users").get_data(as_text=True)
    assert "new@example.com" in listing and password not in listing
    invited = app.test_client()
    response = Auth(invited).login("new@example.com", password)
    assert response.status_code == 303 and response.headers["Location"] == "/account/password"


def test_invite_with_bad_input_is_422_with_field_messages(admin):
    response = post(admin, "/admin/users", email="not-an-email", name="x" * 201, role="owner")
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Email must be an email address such as ana@example.com" in body
    assert "Name must be at most 200 characters" in body
    assert "Global role must be one of: viewer, analyst, experimenter, admin" in body
    assert 'value="not-an-email"' in body  # what was typed is kept


def test_invite_of_a_taken_email_is_422(admin):
    response = post(admin, "/admin/users", email=admin.user.email.upper(), name="", role="viewer")
    assert response.status_code == 422
    assert "Email is already used by another account" in response.get_data(as_text=True)


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_xss_in_user_fields_renders_escaped(admin, db_engine, payload):
    response = post(
        admin, "/admin/users", email=f"{payload}@example.com", name=payload, role="viewer"
    )
    assert response.status_code == 422  # such an email is refused …
    assert_escaped(response.get_data(as_text=True), payload)  # … and echoed back escaped
    response = post(admin, "/admin/users", email="ok@example.com", name=payload, role="viewer")
    assert response.status_code == 201
    assert_escaped(response.get_data(as_text=True), payload)
    user = load(db_engine, User, email="ok@example.com")
    for path in ("/admin/users", f"/admin/users/{user.id}", "/admin/audit"):
        assert_escaped(admin.get(path).get_data(as_text=True), payload)
    # A tab passes the request-wide guard; the kit refuses it in a one-line field and the
    # form comes back with the value escaped.
    response = post(admin, f"/admin/users/{user.id}", name=payload + "\tend", role="viewer")
    assert response.status_code == 422
    assert "must not contain control characters or line breaks" in response.get_data(as_text=True)
    assert_escaped(response.get_data(as_text=True), payload)


def test_changing_a_role_records_one_event(admin, factory, db_engine):
    user = factory.user("ana@example.com")
    response = post(admin, f"/admin/users/{user.id}", name="Ana", role="experimenter")
    assert response.status_code == 303 and response.headers["Location"] == f"/admin/users/{user.id}"
    assert load(db_engine, User, id=user.id).role == "experimenter"
    changes = [
        (e.action, e.diff, e.actor_id) for e in events(db_engine) if e.entity_id == str(user.id)
    ][1:]
    assert changes == [
        ("user.update", {"name": ["", "Ana"]}, admin.user.id),
        ("role.update", {"role": ["viewer", "experimenter"]}, admin.user.id),
    ]
    assert "Saved ana@example.com" in admin.get(response.headers["Location"]).get_data(as_text=True)


def test_demoting_the_last_admin_is_refused(admin, db_engine):
    response = post(admin, f"/admin/users/{admin.user.id}", name="", role="viewer")
    assert response.status_code == 422
    assert "last active admin" in response.get_data(as_text=True)
    assert load(db_engine, User, id=admin.user.id).role == "admin"


def test_disable_signs_the_user_out_and_enable_lets_them_back(app, admin, login_as, db_engine):
    victim = login_as("analyst")
    assert victim.get("/").status_code == 200
    response = post(admin, f"/admin/users/{victim.user.id}/disable")
    assert response.status_code == 303
    assert victim.get("/").status_code == 302
    assert Auth(app.test_client()).login(victim.user.email).status_code == 401
    assert [e.action for e in events(db_engine, "user.disable")] == ["user.disable"]
    assert post(admin, f"/admin/users/{victim.user.id}/enable").status_code == 303
    assert Auth(app.test_client()).login(victim.user.email).status_code == 303


def test_an_admin_cannot_disable_themselves(admin, factory):
    factory.user("second-admin@example.com", "admin")
    response = post(admin, f"/admin/users/{admin.user.id}/disable")
    assert response.status_code == 422
    assert "cannot disable your own account" in response.get_data(as_text=True)


def test_reset_password_shows_a_new_temporary_password_and_ends_sessions(
    admin, login_as, db_engine
):
    victim = login_as("viewer")
    response = post(admin, f"/admin/users/{victim.user.id}/password")
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert "New temporary password" in response.get_data(as_text=True)
    assert victim.get("/").status_code == 302
    assert load(db_engine, User, id=victim.user.id).password_changed_at is None


def test_unknown_user_and_team_are_404(admin):
    assert admin.get("/admin/users/99999").status_code == 404
    assert admin.get("/admin/teams/99999").status_code == 404
    assert post(admin, "/admin/users/99999/disable").status_code == 404
    assert post(admin, "/admin/teams/99999/members", user_id="1", role="viewer").status_code == 404


# ------------------------------------------------------------------ teams


def test_create_team_and_manage_its_members(admin, factory, db_engine):
    user = factory.user("ana@example.com")
    response = post(admin, "/admin/teams", slug="growth", name="Growth")
    team = load(db_engine, Team, slug="growth")
    assert response.status_code == 303 and response.headers["Location"] == f"/admin/teams/{team.id}"
    assert (
        post(
            admin, f"/admin/teams/{team.id}/members", user_id=str(user.id), role="analyst"
        ).status_code
        == 303
    )
    assert load(db_engine, TeamMembership, user_id=user.id).role == "analyst"
    page = admin.get(f"/admin/teams/{team.id}").get_data(as_text=True)
    assert "ana@example.com" in page
    response = post(
        admin,
        f"/admin/teams/{team.id}/members",
        user_id=str(user.id),
        role="experimenter",
        return_to="user",
    )
    assert response.headers["Location"] == f"/admin/users/{user.id}"
    assert (
        post(admin, f"/admin/teams/{team.id}/members", user_id=str(user.id), role="").status_code
        == 303
    )
    assert load(db_engine, TeamMembership, user_id=user.id) is None
    assert [e.diff["team_role"] for e in events(db_engine, "role.update")] == [
        [None, "analyst"],
        ["analyst", "experimenter"],
        ["experimenter", None],
    ]
    assert post(admin, f"/admin/teams/{team.id}", name="Growth EU").status_code == 303
    assert load(db_engine, Team, id=team.id).name == "Growth EU"
    assert [e.action for e in events(db_engine) if e.entity_type == "team"] == [
        "team.create",
        "team.update",
    ]


def test_team_forms_answer_422_with_messages(admin, factory):
    response = post(admin, "/admin/teams", slug="Not a slug!", name="")
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Slug must be 1-64 lowercase letters" in body and "Name is required" in body
    factory.team("growth")
    response = post(admin, "/admin/teams/1/members", user_id="nobody", role="viewer")
    assert response.status_code == 422 and "choose a user from the list" in response.get_data(
        as_text=True
    )
    response = post(admin, "/admin/teams/1", name="")
    assert response.status_code == 422 and "Name is required" in response.get_data(as_text=True)


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_xss_in_team_name_renders_escaped(admin, db_engine, payload):
    assert post(admin, "/admin/teams", slug="growth", name=payload).status_code == 303
    team = load(db_engine, Team, slug="growth")
    for path in (
        "/admin/teams",
        f"/admin/teams/{team.id}",
        f"/admin/users/{admin.user.id}",
        "/admin/audit",
    ):
        assert_escaped(admin.get(path).get_data(as_text=True), payload)
    fragment = admin.get("/admin/audit", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert payload not in fragment


# ------------------------------------------------------------------ the audit log


@pytest.fixture
def logged(db_engine, factory):
    """Sixty events over three days: user.create (ana), role.update, team.create, login failures."""
    from experiments.audit import record_event

    ana = factory.user("ana@example.com", "admin")
    now = utcnow()
    with Session(db_engine) as session:
        actor = session.get(User, ana.id)
        for i in range(57):
            event = record_event(
                session,
                "role.update" if i % 3 else "team.create",
                actor=actor,
                entity_type="user" if i % 3 else "team",
                entity_id=i,
                diff={"n": [i, i + 1]},
            )
            event.occurred_at = now - timedelta(days=i % 3)
        session.commit()
    return ana


def test_audit_log_pages_newest_first(admin, logged):
    first = admin.get("/admin/audit").get_data(as_text=True)
    assert "page 1 of 2" in first and 'rel="next"' in first
    second = admin.get("/admin/audit?page=2").get_data(as_text=True)
    assert "page 2 of 2" in second and 'rel="prev"' in second
    assert admin.get("/admin/audit?page=0").status_code == 422
    assert "page must be a positive whole number" in admin.get("/admin/audit?page=x").get_data(
        as_text=True
    )


def test_audit_log_filters_are_get_parameters(admin, logged):
    def count(query: str) -> int:
        body = admin.get(f"/admin/audit?{query}").get_data(as_text=True)
        match = re.search(r"(\d+) events?, newest first", body)
        return int(match.group(1)) if match else 0

    assert count("action=team.create") == 19
    assert count("action=role") == count("action=role.*") == 38
    assert count("actor=ANA@example.com") == 57
    assert count("actor=nobody@example.com") == 0
    assert count("entity_type=team") == 19
    assert count("entity_type=user&entity_id=4") == 1
    today = utcnow().date()
    assert count(f"since={today}&until={today}&action=team.create") == 19
    yesterday = today - timedelta(days=1)
    assert count(f"since={yesterday}&until={yesterday}&actor=ana@example.com") == 19
    page = admin.get("/admin/audit?action=role&actor=ana@example.com&page=2").get_data(as_text=True)
    assert 'value="role"' in page  # the filter stays in the form
    assert (
        "/admin/audit.csv?action=role&amp;actor=ana@example.com" in page
    )  # and in the export link


def test_audit_log_bad_filter_is_422_with_the_field(admin):
    response = admin.get("/admin/audit?since=yesterday&until=2026-01-01")
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "From (UTC) must be a date such as 2026-12-01" in body
    response = admin.get("/admin/audit?since=2026-02-01&until=2026-01-01")
    assert response.status_code == 422 and "must not be before the start date" in response.get_data(
        as_text=True
    )
    assert admin.get("/admin/audit.csv?since=soon").status_code == 422


def test_audit_log_htmx_request_gets_the_results_fragment(admin, logged):
    response = admin.get("/admin/audit?action=team.create", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "HX-Request" in response.headers["Vary"]
    assert body.lstrip().startswith('<section id="audit-results"') and "<html" not in body
    page = admin.get("/admin/audit").get_data(as_text=True)
    assert 'hx-get="/admin/audit"' in page and 'hx-push-url="true"' in page


def test_audit_csv_export_is_filtered_neutralised_and_audited(admin, factory, db_engine):
    factory.user("ana@example.com")
    Auth(admin.application.test_client()).login(
        '=HYPERLINK("http://evil.example","x")', "wrong password"
    )
    Auth(admin.application.test_client()).login("+cmd@example.com", "wrong password")
    response = admin.get("/admin/audit.csv?action=auth.login_failed")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"] == 'attachment; filename="nrrlab-audit.csv"'
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert [r["entity_id"] for r in rows] == [
        "'+cmd@example.com",
        '\'=hyperlink("http://evil.example","x")',
    ]
    assert {r["action"] for r in rows} == {"auth.login_failed"}
    [export] = events(db_engine, "export.audit")
    assert export.actor_id == admin.user.id and export.diff == {
        "filters": [None, {"action": "auth.login_failed"}]
    }
    everything = list(
        csv.DictReader(io.StringIO(admin.get("/admin/audit.csv").get_data(as_text=True)))
    )
    assert len(everything) == len(events(db_engine))
    assert everything[0]["action"] == "export.audit"  # the export records itself before it is read
    # The stream opened its own database session and gave its connection back at the end.
    assert admin.application.extensions["nrrlab.engine"].pool.checkedout() == 0
    assert list(everything[0]) == [
        "id",
        "occurred_at",
        "action",
        "actor",
        "actor_id",
        "team",
        "entity_type",
        "entity_id",
        "diff",
        "ip",
    ]


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("plain", "plain"),
        ("a=b", "a=b"),
        (None, ""),
        (42, "42"),
    ],
)
def test_audit_csv_cells_that_look_like_formulas_are_neutralised(value, cell):
    # Through the audit CSV writer, which uses the one formula guard (formatting.csv_cell).
    from experiments.audit import _csv_line

    [row] = list(csv.reader(io.StringIO(_csv_line([value]))))
    assert row == [cell]


def test_there_is_one_formula_guard():
    import experiments.audit as audit
    import experiments.formatting as formatting

    assert audit.csv_cell is formatting.csv_cell


def test_the_audit_service_can_only_append_and_read():
    import experiments.audit as audit

    functions = [
        name
        for name, _ in inspect.getmembers(audit, inspect.isfunction)
        if _.__module__ == audit.__name__
    ]
    assert "record_event" in functions
    forbidden = [
        n
        for n in functions
        if re.search(r"update|delete|remove|edit|purge|truncate|erase|modify", n)
    ]
    assert not forbidden, f"the audit module must not offer {forbidden}"
    assert "session.delete" not in inspect.getsource(audit) and ".update(" not in inspect.getsource(
        audit
    )


def test_audit_events_come_in_one_per_action_through_the_ui(admin, db_engine):
    before = len(events(db_engine))
    post(admin, "/admin/teams", slug="growth", name="Growth")
    post(admin, "/admin/users", email="ana@example.com", name="Ana", role="viewer")
    assert [e.action for e in events(db_engine)[before:]] == ["team.create", "user.create"]
    assert all(e.actor_id == admin.user.id for e in events(db_engine)[before:])


def test_auth_pages_and_admin_link_in_the_layout(admin, login_as):
    page = admin.get("/").get_data(as_text=True)
    assert 'href="/admin/users"' in page and 'href="/account/password"' in page
    viewer_page = login_as("viewer").get("/").get_data(as_text=True)
    assert 'href="/admin/users"' not in viewer_page and 'href="/account/password"' in viewer_page


def test_audit_diffs_read_as_words_with_what_was_typed(admin, factory, db_engine):
    # issue 14, item 6: no "null →", no JSON quoting, no "\u003c" for a typed "<"
    from experiments.audit import record_event

    with Session(db_engine) as session:
        actor = session.get(User, admin.user.id)
        record_event(session, "node.update", actor=actor, entity_type="driver_node", entity_id=7,
                     diff={"hypothesis": [None, "If <b> & co"], "owner_id": [3, None],
                           "target": [0.05, 0.12], "team": [None, ""]})
        session.commit()
    body = admin.get("/admin/audit?entity_type=driver_node").get_data(as_text=True)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))
    assert "hypothesis set to If &lt;b&gt; &amp; co" in text
    assert "owner_id cleared (was 3 )" in text
    assert "target 0.05 → 0.12" in text
    assert "null" not in text and "\\u003c" not in body and "&#34;" not in body
    assert "3 fields: hypothesis, owner_id, target" in text  # "" → None is no change
    assert "<details class=\"diff\"" in body


def test_audit_rows_made_through_the_site_carry_the_address(admin, db_engine):
    post(admin, "/admin/teams", slug="ops", name="Ops")
    (created,) = events(db_engine, "team.create")
    assert created.ip == "127.0.0.1"


def test_audit_rows_without_an_address_say_why(admin, factory, db_engine):
    from experiments.audit import record_event

    with Session(db_engine) as session:
        record_event(session, "job.run", actor=None, entity_type="upload_job", entity_id=1)
        session.commit()
    (made,) = events(db_engine, "job.run")
    assert made.ip == ""
    body = admin.get("/admin/audit?action=job.run").get_data(as_text=True)
    assert "not recorded: made outside a web request" in body
    assert re.search(r'<td><span class="muted">not recorded: made outside a web request', body)


@pytest.mark.parametrize("name", ["Ana \u202ekcab", "Ana \u2067x\u2069", "Ana\u202d"])
def test_a_name_with_a_direction_control_is_refused_and_nothing_stored(admin, db_engine,
                                                                      name):
    """A user or team named with U+202E (and the other embeddings, overrides, isolates)
    showed every sentence naming it — "Decision by …: ship" — reordered after the name.
    Refused with the character named; a right-to-left name needs none of them."""
    users = post(admin, "/admin/users", email="bidi@example.com", name=name, role="viewer")
    teams = post(admin, "/admin/teams", slug="bidi", name=name)
    for response in (users, teams):
        body = response.get_data(as_text=True)
        assert response.status_code == 422
        assert "must not contain an invisible direction-changing character (U+" in body
    with Session(db_engine) as session:
        assert session.exec(select(User).where(User.email == "bidi@example.com")).first() is None
        assert session.exec(select(Team).where(Team.slug == "bidi")).first() is None


def test_a_right_to_left_name_is_kept_as_typed(admin, db_engine):
    hebrew = "\u05e9\u05e8\u05d4 \u05dc\u05d5\u05d9"
    arabic = "\u0641\u0631\u064a\u0642 \u0627\u0644\u0646\u0645\u0648"
    assert post(admin, "/admin/users", email="sara@example.com", name=hebrew,
                role="viewer").status_code in (201, 303)
    assert post(admin, "/admin/teams", slug="growth-ar", name=arabic).status_code in (201, 303)
    with Session(db_engine) as session:
        assert session.exec(
            select(User.name).where(User.email == "sara@example.com")).one() == hebrew
        assert session.exec(select(Team.name).where(Team.slug == "growth-ar")).one() == arabic
