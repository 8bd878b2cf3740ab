"""Outages: with the database gone, pages answer 503 with Retry-After (never a bare 500),
and /readyz tells a load balancer whether the database answers at the migrations' head."""

from __future__ import annotations

import pytest

from experiments.db import make_engine
from tests.helpers import dispose_app

pytestmark = pytest.mark.db

UNREACHABLE_POSTGRES = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2"


def unreadable_sqlite(tmp_path) -> str:
    # The database "file" is a directory: SQLite cannot open it (root ignores file modes).
    path = tmp_path / "a-directory.db"
    path.mkdir()
    return f"sqlite:///{path}"


@pytest.fixture(params=["postgresql", "sqlite"])
def outage_url(request, tmp_path):
    return UNREACHABLE_POSTGRES if request.param == "postgresql" else unreadable_sqlite(tmp_path)


def take_database_away(app, url: str) -> None:
    """Point the running app at a database that does not answer (as if it went down)."""
    app.extensions["nrrlab.engine"].dispose()
    app.extensions["nrrlab.engine"] = make_engine(url)


@pytest.mark.parametrize("path", ["/", "/experiments/", "/tree/", "/review/", "/admin/users"])
def test_signed_in_pages_answer_503_with_retry_after(app, login_as, outage_url, path):
    client = login_as("admin")
    assert client.get(path, follow_redirects=True).status_code == 200
    take_database_away(app, outage_url)
    for htmx in (False, True):
        response = client.get(path, headers={"HX-Request": "true"} if htmx else {})
        body = response.get_data(as_text=True)
        assert response.status_code == 503, (path, htmx, body[:300])
        assert response.headers["Retry-After"] == "30"
        assert "database is unreachable" in body
        assert "Traceback" not in body and "OperationalError" not in body
        assert ("<html" in body) is not htmx


def test_a_form_post_during_an_outage_is_503(app, login_as, outage_url):
    client = login_as("admin")
    take_database_away(app, outage_url)
    response = client.post("/admin/teams", data={"slug": "growth", "name": "Growth",
                                                 "csrf_token": client.csrf})
    assert response.status_code == 503
    assert "nothing could be read or saved" in response.get_data(as_text=True)


def test_sign_in_page_post_during_an_outage_is_503(app, client, outage_url):
    from tests.helpers import csrf_token_of

    token = csrf_token_of(client)
    take_database_away(app, outage_url)
    response = client.post("/login", data={"email": "a@example.com", "password": "whatever",
                                            "csrf_token": token})
    assert response.status_code == 503 and response.headers["Retry-After"] == "30"


def test_health_and_readiness_say_unreachable(app, client, outage_url):
    take_database_away(app, outage_url)
    health = client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["database"] == "unreachable"
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json() == {"status": "unavailable", "database": "unreachable",
                                "reason": "the database does not answer"}


def test_readyz_is_503_on_a_schema_that_alembic_did_not_build(client):
    """The test schema comes from create_all: no alembic_version, so not ready."""
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["database"] == "ok" and body["current"] == []
    assert "nrrlab db upgrade" in body["reason"]


def _heads_on_disk() -> list[str]:
    # Independently of the code under test: the revision no other revision names as down.
    import re
    from pathlib import Path

    versions = Path(__file__).resolve().parents[2] / "migrations" / "versions"
    revisions, downs = set(), set()
    for path in versions.glob("*.py"):
        text = path.read_text()
        revisions.add(re.search(r"^revision(?::\s*str)?\s*=\s*['\"]([^'\"]+)", text, re.M).group(1))
        down = re.search(r"^down_revision[^=]*=\s*(.+)$", text, re.M).group(1)
        downs.update(re.findall(r"['\"]([^'\"]+)['\"]", down))
    return sorted(revisions - downs)


def test_readyz_follows_the_migrations(scratch_database, tmp_path):
    from experiments import migrate
    from webapp import create_app

    url = scratch_database()
    migrate.upgrade(url)
    app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "k" * 40, "DATABASE_URL": url,
                      "INSTANCE_PATH": str(tmp_path / "instance")})
    try:
        client = app.test_client()
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json() == {"status": "ok", "database": "ok", "migrations": "at head",
                                    "head": _heads_on_disk()}
        migrate.downgrade(url, "-1")
        behind = client.get("/readyz")
        assert behind.status_code == 503
        assert behind.get_json()["current"] != _heads_on_disk()
        assert "run `nrrlab db upgrade`" in behind.get_json()["reason"]
    finally:
        dispose_app(app)


def test_a_locked_database_is_a_busy_503_not_an_unreachable_one(app, login_as):
    """A write lock held too long (SQLite) is not an outage: 503 that says busy, retry soon."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    @app.route("/locked-for-test")
    def locked_for_test():
        raise OperationalError("UPDATE …", {}, sqlite3.OperationalError("database is locked"))

    locked_for_test.nrrlab_permission = "viewer"
    client = login_as("viewer")
    response = client.get("/locked-for-test")
    body = response.get_data(as_text=True)
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert "busy" in body and "unreachable" not in body


def test_htmx_swaps_the_503_fragment_so_the_outage_is_seen(client):
    """htmx drops 4xx/5xx bodies unless told otherwise: the layout lets 503 through."""
    import json
    import re

    page = client.get("/login").get_data(as_text=True)
    config = json.loads(re.search(r"name=\"htmx-config\" content='([^']+)'", page).group(1))
    swapped = [rule for rule in config["responseHandling"] if rule.get("swap")]
    assert any(re.fullmatch(rule["code"], "503") for rule in swapped), config["responseHandling"]
    assert not any(re.fullmatch(rule["code"], "500") for rule in swapped)


def test_a_lost_race_answers_htmx_with_the_busy_fragment(app, login_as):
    """After its bounded retries, a serialization failure is a 503 fragment for htmx."""
    from sqlalchemy.exc import OperationalError

    class SerializationFailure(Exception):
        sqlstate = "40001"  # PostgreSQL's serialization_failure

    @app.route("/race-for-test")
    def race_for_test():
        raise OperationalError("UPDATE …", {}, SerializationFailure("could not serialize"))

    race_for_test.nrrlab_permission = "viewer"
    client = login_as("viewer")
    response = client.get("/race-for-test", headers={"HX-Request": "true"})
    body = response.get_data(as_text=True)
    assert response.status_code == 503 and response.headers["Retry-After"] == "2"
    assert "busy" in body and "<html" not in body
