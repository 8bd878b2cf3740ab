"""Control characters never reach the database: the request-wide guard and the kit's readers.

PostgreSQL refuses NUL in text, so before the guard these requests were 500s there
(issue 12, item 3); SQLite stored them. Every test runs on both databases.
"""

from __future__ import annotations

import io

import pytest
from sqlmodel import Session, select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from experiments.models import AccountRow, AuditEvent, Dataset, ReviewItem, User
from tests.helpers import TEST_PASSWORD, Auth
from tests.webapp.test_results import HEADER, analyst, experiment, text_of, upload  # noqa: F401
from tests.webapp.test_review import HTMX, _form, _item, parse, world  # noqa: F401 (fixture)

pytestmark = pytest.mark.db

GUARD = "contains a control character"
LOGIN_FAILED = "That email and password do not match an active account."


def audit_rows(engine, action: str) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def assert_refused(response, status: int = 422) -> str:
    body = response.get_data(as_text=True)
    assert response.status_code == status, body[:500]
    assert "Traceback" not in body and "Internal" not in body
    return body


# ------------------------------------------------------------------ sign-in


@pytest.mark.parametrize("email", ["a\x00b@x", "ana\x00@example.com", "\x1b[31mana@example.com"])
def test_sign_in_with_a_control_character_in_the_email_is_422(client, db_engine, factory, email):
    factory.user("ana@example.com")
    body = assert_refused(Auth(client).login(email))
    assert GUARD in body and "U+00" in body
    assert audit_rows(db_engine, "auth.login_failed") == []  # nothing was looked up or stored


def test_sign_in_with_a_nul_in_the_password_is_422(client, db_engine, factory):
    factory.user("ana@example.com")
    assert GUARD in assert_refused(Auth(client).login("ana@example.com", TEST_PASSWORD + "\x00"))
    assert audit_rows(db_engine, "auth.login") == []


def test_a_tab_passes_the_guard_and_gets_the_usual_failure_from_the_kit(client, db_engine, factory):
    factory.user("ana@example.com")
    body = assert_refused(Auth(client).login("ana\t@example.com"))
    assert LOGIN_FAILED in body and GUARD not in body
    response = Auth(client).login("ana@example.com")  # the account still signs in
    assert response.status_code == 303


def test_a_control_character_in_next_is_ignored_not_followed(client, factory):
    factory.user("ana@example.com")
    token = Auth(client).token()
    response = client.post(
        "/login",
        data={
            "email": "ana@example.com",
            "password": TEST_PASSWORD,
            "next": "/tree/\t//evil.example",
            "csrf_token": token,
        },
    )
    assert response.status_code == 303 and "evil" not in response.headers["Location"]


# ------------------------------------------------------------------ audit filters


@pytest.fixture
def admin_client(login_as):
    return login_as("admin")


@pytest.mark.parametrize("name", ["actor", "action", "entity_type", "entity_id", "since", "page"])
@pytest.mark.parametrize("path", ["/admin/audit", "/admin/audit.csv"])
def test_audit_filters_with_nul_are_422(admin_client, name, path):
    body = assert_refused(admin_client.get(f"{path}?{name}=%00"))
    assert GUARD in body and name in body


def test_audit_filter_nul_answers_an_htmx_request_with_a_fragment(admin_client):
    body = assert_refused(
        admin_client.get("/admin/audit?actor=a%00b", headers={"HX-Request": "true"})
    )
    assert GUARD in body and "<html" not in body


@pytest.mark.parametrize("value", ["a%09b", "a%0Ab", "a%0Db"])
def test_audit_filter_with_a_line_break_or_tab_gets_the_field_message(admin_client, value):
    # Tab and line ends pass the guard (multi-line fields allow them); the kit refuses
    # them in a one-line filter, beside the field.
    body = assert_refused(admin_client.get(f"/admin/audit?actor={value}"))
    assert "must not contain control characters or line breaks" in body
    assert_refused(admin_client.get(f"/admin/audit.csv?entity_id={value}"))


def test_a_clean_audit_filter_still_works(admin_client):
    response = admin_client.get("/admin/audit?actor=nobody%40example.com&action=user")
    assert response.status_code == 200 and "No events match" in response.get_data(as_text=True)


# ------------------------------------------------------------------ forms, paths, uploads


def test_a_nul_in_an_admin_form_is_422_and_nothing_is_stored(admin_client, db_engine):
    data = {
        "email": "new@example.com",
        "name": "Ne\x00w",
        "role": "viewer",
        "csrf_token": admin_client.csrf,
    }
    assert GUARD in assert_refused(admin_client.post("/admin/users", data=data))
    with Session(db_engine) as session:
        assert session.exec(select(User).where(User.email == "new@example.com")).first() is None


def test_a_control_character_in_a_form_field_name_is_422(admin_client):
    data = {"slug": "growth", "name": "Growth", "x\x01y": "1", "csrf_token": admin_client.csrf}
    assert_refused(admin_client.post("/admin/teams", data=data))


def test_a_line_break_in_a_one_line_field_gets_the_field_message(admin_client):
    data = {"slug": "growth", "name": "Gro\nwth", "csrf_token": admin_client.csrf}
    body = assert_refused(admin_client.post("/admin/teams", data=data))
    assert "Name must not contain control characters or line breaks" in body


@pytest.mark.parametrize("path", ["/experiments/a%00b", "/review/%00", "/admin/users/%01"])
def test_a_control_character_in_the_path_is_404(admin_client, path):
    assert_refused(admin_client.get(path), 404)


@pytest.mark.parametrize(
    "path",
    ["/admin/users/99999999999", "/admin/teams/2147483648", "/admin/users/2147483648/password"],
)
def test_an_id_in_the_path_beyond_any_id_column_is_404(admin_client, path):
    # PostgreSQL refuses such a number as an INTEGER parameter: this was a 500 there.
    if path.endswith("/password"):
        response = admin_client.post(path, data={"csrf_token": admin_client.csrf})
    else:
        response = admin_client.get(path)
    assert_refused(response, 404)


@pytest.mark.parametrize("filename", ["acc\x00ounts.csv", "acc\x01ounts.csv", "acc\x7founts.csv"])
def test_an_upload_whose_file_name_holds_a_control_character_is_422(admin_client, filename):
    values = MultiDict({"csrf_token": admin_client.csrf})
    values.add(
        "file", FileStorage(io.BytesIO(b"account_id\n"), filename=filename, content_type="text/csv")
    )
    boundary, body = encode_multipart(values)
    response = admin_client.post(
        "/experiments/any-key/datasets",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )
    assert "name of the file" in assert_refused(response)


# ------------------------------------------------------------------ review note


def test_a_review_note_with_nul_is_422_and_the_item_is_unchanged(world, session):  # noqa: F811
    scenario, clients = world
    week = scenario.weeks["W3"].label
    client = clients["growth_exp"]
    form = parse(client.get(f"/review/{week}")).forms["amended"]
    before = _item(session, week, scenario.experiments["amended"].id)
    for headers in ({**HTMX, "X-CSRFToken": client.csrf}, {}):
        data = _form(form["version"], note="before\x00after", csrf_token=client.csrf)
        body = assert_refused(client.post(form["hx-post"], headers=headers, data=data))
        assert GUARD in body
        assert ("<html" in body) is (not headers)
    after = _item(session, week, scenario.experiments["amended"].id)
    assert (after.note, after.version) == (before.note, before.version)
    assert isinstance(after, ReviewItem)


# ------------------------------------------------------------------ CSV cells


@pytest.mark.parametrize(
    ("cell", "code"), [("a\x00b", "U+0000"), ("a\x1bb", "U+001B"), ('"a\nb"', "U+000A")]
)
def test_an_upload_with_a_control_character_in_a_cell_is_refused_by_line(
    analyst, experiment, db_engine, cell, code  # noqa: F811 (fixtures)
):
    rows = "".join(f"g{i},control,10,0,0,0\n" for i in range(5)) + f"{cell},control,10,0,0,0\n"
    response = upload(analyst, experiment.key, (HEADER + rows).encode(), filename="bad.csv")
    assert response.status_code == 422
    assert f"line 7, account_id: contains a control character ({code})" in text_of(response)
    with Session(db_engine) as session:
        assert session.exec(select(Dataset)).first() is None
        assert session.exec(select(AccountRow)).first() is None
