"""The app as a whole: factory, navigation, health, error pages, bad configuration."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from experiments.demo import DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD
from tests.helpers import dispose_app

NAV_PAGES = ["/", "/tree/", "/experiments/", "/review/", "/planner/"]


@pytest.fixture
def demo_app(scratch_database, tmp_path):
    """A fresh database brought up exactly as `make run` does: migrations, then the demo seed."""
    from experiments import migrate
    from experiments.db import make_engine, session_scope
    from experiments.demo import seed
    from experiments.setup import ensure_defaults
    from webapp import create_app

    url = scratch_database()
    migrate.upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        ensure_defaults(session)
        seed(session)
    engine.dispose()
    app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "s" * 40, "DATABASE_URL": url,
                      "INSTANCE_PATH": str(tmp_path / "instance")})
    yield app
    dispose_app(app)


def test_migrated_and_seeded_app_serves_every_navigation_page(demo_app):
    from tests.helpers import Auth

    client = demo_app.test_client()
    assert Auth(client).login(DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD).status_code == 303
    for path in NAV_PAGES:
        response = client.get(path, follow_redirects=True)
        assert response.status_code == 200, path
        assert "Dashboard" in response.get_data(as_text=True)
    dashboard = client.get("/").get_data(as_text=True)
    for text in ("Net Revenue Retention", "Multi-seat expansion", "Downgrade prevention",
                 "onboarding-checklist", "winback-sequence", "annual-plan-upsell"):
        assert text in dashboard


def test_dashboard_shows_alerts_and_pending_decisions_of_the_demo(demo_app):
    from tests.helpers import Auth

    client = demo_app.test_client()
    Auth(client).login(DEMO_ADMIN_EMAIL, DEMO_ADMIN_PASSWORD)
    page = client.get("/").get_data(as_text=True)
    alerts = page.split('id="alerts-heading"')[1].split("</section>")[0]
    decisions = page.split('id="decide-heading"')[1].split("</section>")[0]
    # The demo plants a sample-ratio mismatch in the win-back test (1380 vs 1120 at 50/50).
    assert "Win-back email sequence" in alerts and "sample ratio mismatch" in alerts
    # The downgrade offer was stopped and nobody has decided yet.
    assert (
        "Right-size offer before downgrade" in decisions
        and "stopped without a decision" in decisions
    )
    assert "Guided onboarding checklist" not in decisions  # already decided: ship


def test_pages_need_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_health_answers_without_sign_in(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok", "database": "ok"}


def test_unknown_page_is_a_404_page_in_the_layout(login_as):
    client = login_as("viewer")
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert "There is nothing here" in response.get_data(as_text=True)
    assert "Driver tree" in response.get_data(as_text=True)  # inside the layout


def test_unexpected_error_shows_a_generic_500_without_traceback(app, login_as):
    @app.route("/boom-for-test")
    def boom():
        raise RuntimeError("secret internals")

    boom.nrrlab_permission = "viewer"
    client = login_as("viewer")
    app.testing = False
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = client.get("/boom-for-test")
    body = response.get_data(as_text=True)
    assert response.status_code == 500
    assert "Something went wrong" in body
    assert "secret internals" not in body and "Traceback" not in body


def test_htmx_is_served_from_the_installed_asset(client):
    page = client.get("/login").get_data(as_text=True)
    found = re.search(r'/static/vendor/htmx\.min\.[0-9a-f]{10}\.js', page)
    assert found, "the page does not load htmx under its hashed name"
    with client.get(found.group(0)) as asset:
        assert asset.status_code == 200
        assert b"htmx" in asset.data[:2000]


def _run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "experiments.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_unreachable_database_fails_at_start_with_one_line(tmp_path):
    import os

    env = {**os.environ, "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none",
           "NRRLAB_INSTANCE_PATH": str(tmp_path)}
    result = _run_cli("serve", "--port", "0", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nrrlab: cannot connect to the database")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("secret", [None, "short", "changeme"])
def test_production_refuses_a_missing_or_weak_secret_key(tmp_path, secret):
    import os

    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    env.update({"NRRLAB_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
                "NRRLAB_INSTANCE_PATH": str(tmp_path)})
    if secret:
        env["SECRET_KEY"] = secret
    result = _run_cli("serve", "--port", "0", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SECRET_KEY" in lines[0], result.stderr
