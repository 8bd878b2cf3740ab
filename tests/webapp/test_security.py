"""CSRF, security headers, the no-inline-code rule for templates, safe logging,
``visible_or_404`` and the configuration checks."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import pytest
from sqlmodel import Session, select

from experiments.models import AuditEvent
from tests.helpers import TEST_PASSWORD, Auth, csrf_token_of, dispose_app

TEMPLATES = Path(__file__).resolve().parents[2] / "webapp" / "templates"
ISSUE_CSP = ("default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
             "frame-ancestors 'none'; form-action 'self'")


def denied(db_engine) -> list[AuditEvent]:
    with Session(db_engine) as session:
        return list(
            session.exec(select(AuditEvent).where(AuditEvent.action == "authz.denied")).all()
        )


# ------------------------------------------------------------------ CSRF


def test_post_without_csrf_token_is_400(login_as):
    client = login_as("admin")
    response = client.post("/admin/teams", data={"slug": "growth", "name": "Growth"})
    assert response.status_code == 400
    assert "CSRF check failed" in response.get_data(as_text=True)
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200  # still signed in: the forged sign-out did nothing


def test_post_with_a_token_of_another_session_is_400(app, login_as):
    client = login_as("admin")
    foreign = csrf_token_of(app.test_client())
    response = client.post(
        "/admin/teams", data={"slug": "growth", "name": "Growth", "csrf_token": foreign}
    )
    assert response.status_code == 400


def _layout_headers(page: str) -> dict:
    match = re.search(r"<body hx-headers='([^']+)'>", page)
    assert match, "the layout's <body> carries no hx-headers"
    return json.loads(match.group(1))


def test_the_layout_gives_htmx_the_csrf_token_on_body(login_as):
    client = login_as("viewer")
    headers = _layout_headers(client.get("/").get_data(as_text=True))
    assert set(headers) == {"X-CSRFToken"} and headers["X-CSRFToken"]


def test_an_htmx_request_with_the_layout_token_header_passes_csrf(login_as, db_engine):
    """htmx 2 inherits hx-headers from <body>, so every hx-post sends X-CSRFToken:
    replay exactly that header, without a form token."""
    client = login_as("admin")
    token = _layout_headers(client.get("/admin/teams").get_data(as_text=True))["X-CSRFToken"]
    response = client.post("/admin/teams", data={"slug": "growth", "name": "Growth"},
                           headers={"X-CSRFToken": token, "HX-Request": "true"})
    assert 200 <= response.status_code < 400, response.status_code
    from experiments.models import Team

    with Session(db_engine) as session:
        assert session.exec(select(Team).where(Team.slug == "growth")).one()


def test_htmx_2_is_pinned_so_body_hx_headers_are_inherited():
    root = Path(__file__).resolve().parents[2]
    assert json.loads((root / "package.json").read_text())["dependencies"]["htmx.org"].startswith(
        "2."
    )
    assert 'version:"2.' in (root / "webapp" / "static" / "vendor" / "htmx.min.js").read_text()


def test_htmx_is_configured_for_the_csp(client):
    page = client.get("/login").get_data(as_text=True)
    config = json.loads(re.search(r'<meta name="htmx-config" content=\'([^\']+)\'>', page).group(1))
    assert config["allowEval"] is False and config["includeIndicatorStyles"] is False
    assert config.get("allowScriptTags") is False


# ------------------------------------------------------------------ headers


def test_the_policy_is_exactly_the_issues():
    from webapp.security import CONTENT_SECURITY_POLICY

    assert CONTENT_SECURITY_POLICY == ISSUE_CSP
    assert "unsafe" not in CONTENT_SECURITY_POLICY


def _check_headers(response, what):
    assert response.headers["Content-Security-Policy"] == ISSUE_CSP, what
    assert response.headers["X-Content-Type-Options"] == "nosniff", what
    assert response.headers["Referrer-Policy"] == "same-origin", what
    assert response.headers["X-Frame-Options"] == "DENY", what


def test_error_pages_and_fragments_carry_the_security_headers(app, client, login_as):
    @app.route("/boom-for-headers")
    def boom():
        raise RuntimeError("boom")

    boom.nrrlab_permission = "viewer"
    viewer = login_as("viewer")
    app.testing = False
    app.config["PROPAGATE_EXCEPTIONS"] = False
    cases = {
        "sign-in page": client.get("/login"),
        "redirect to sign-in": client.get("/"),
        "404 page": viewer.get("/no/such/page"),
        "404 fragment": viewer.get("/no/such/page", headers={"HX-Request": "true"}),
        "403 page": viewer.get("/admin/users"),
        "405 page": viewer.get("/logout"),
        "400 CSRF page": viewer.post("/logout"),
        "500 page": viewer.get("/boom-for-headers"),
        "500 fragment": viewer.get("/boom-for-headers", headers={"HX-Request": "true"}),
        "static file": client.get("/static/app.css"),
    }
    for what, response in cases.items():
        _check_headers(response, what)
        response.close()
    assert "<html" not in cases["404 fragment"].get_data(as_text=True)
    assert "Traceback" not in cases["500 fragment"].get_data(as_text=True)


def test_hsts_only_under_tls(client):
    assert "Strict-Transport-Security" not in client.get("/login").headers
    secure = client.get("/login", base_url="https://nrrlab.example")
    assert secure.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_pages_are_not_cached(login_as):
    assert login_as("viewer").get("/").headers["Cache-Control"] == "no-store"


# ------------------------------------------------------------------ no inline code


_JINJA = re.compile(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", re.S)
_TAG = re.compile(r"<([a-zA-Z][\w:-]*)(\s[^<>]*)?>", re.S)
_ATTR = re.compile(r"""([^\s=/>"']+)(?:\s*=\s*("[^"]*"|'[^']*'|[^\s>]+))?""")


def inline_code(source: str) -> list[str]:
    """Everything in a template the CSP would block or that runs script inline."""
    text = _JINJA.sub("J", source)
    problems = []
    for match in _TAG.finditer(text):
        tag, attrs = match.group(1).lower(), match.group(2) or ""
        names = {name.lower(): (value or "").strip("'\"") for name, value in _ATTR.findall(attrs)}
        if tag == "script" and "src" not in names:
            problems.append("<script> without src")
        if tag == "style":
            problems.append("<style> element")
        for name, value in names.items():
            if name.startswith("on"):
                problems.append(f"{name}= handler")
            if name.startswith(("hx-on", "data-hx-on")):
                problems.append(f"{name} handler")
            if name == "style":
                problems.append("style= attribute")
            if value.strip().lower().startswith("javascript:"):
                problems.append(f"javascript: URL in {name}")
    return problems


@pytest.mark.parametrize("source", [
    "<script>alert(1)</script>", "<button onclick=\"go()\">", "<div hx-on:click='x()'>",
    "<p style=\"color: red\">", "<a href=\"javascript:alert(1)\">", "<a href='JavaScript:void(0)'>",
    "<style>p {}</style>", "<svg onload=alert(1)>",
])
def test_the_template_scan_catches_inline_code(source):
    assert inline_code(source)


@pytest.mark.parametrize(
    "source",
    [
        "<script src=\"{{ url_for('static', filename='x.js') }}\" defer></script>",
        '<a href="{{ url_for(\'a\') }}" hx-get="{{ x }}" hx-confirm="Sure?">',
        "<p>onboarding = step one</p>",
        '<input name="online" value="{% if a > b %}x{% endif %}">',
    ],
)
def test_the_template_scan_lets_ordinary_markup_pass(source):
    assert inline_code(source) == []


TEMPLATE_FILES = sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.html"))


@pytest.mark.parametrize("name", TEMPLATE_FILES)
def test_no_template_has_inline_script_style_or_handlers(name):
    problems = inline_code((TEMPLATES / name).read_text(encoding="utf-8"))
    assert not problems, (
        f"webapp/templates/{name}: {', '.join(problems)} "
        "(the CSP forbids inline code; use static files)"
    )


# ------------------------------------------------------------------ logging


def _format(message: str, *args, exc_info=None) -> str:
    from webapp.logging_setup import SafeFormatter

    record = logging.LogRecord("nrrlab", logging.WARNING, __file__, 1, message, args, exc_info)
    return SafeFormatter("%(levelname)s %(message)s").format(record)


def test_log_lines_cannot_be_forged_with_control_characters():
    line = _format("sign-in failed for %s", "ana@example.com\nINFO admin granted\r\x1b[31m")
    assert "\n" not in line and "\r" not in line and "\x1b" not in line
    assert "\\x0a" in line and "\\x1b" in line


@pytest.mark.parametrize(
    "message",
    [
        "password=hunter2-secret&email=a",
        'form {"password": "hunter2-secret"}',
        "csrf_token=hunter2-secret",
        "Cookie: nrrlab_session=hunter2-secret; other=1",
        "Authorization: Bearer hunter2-secret",
        "new_password: hunter2-secret",
        "token='hunter2-secret'",
        "SECRET_KEY=hunter2-secret",
    ],
)
def test_secrets_are_masked_in_log_lines(message):
    line = _format(message)
    assert "hunter2-secret" not in line and "[redacted]" in line


def test_a_traceback_stays_indented_under_its_record():
    try:
        raise ValueError("bad\nINFO forged record password=hunter2-secret")
    except ValueError:
        line = _format("unhandled error", exc_info=sys.exc_info())
    head, *rest = line.split("\n")
    assert head == "WARNING unhandled error"
    assert rest and all(part.startswith("    ") for part in rest)
    assert "hunter2-secret" not in line


# ------------------------------------------------------------------ visible_or_404 and denials


@pytest.fixture
def probe_route(app):
    """A test-only view that asks ``visible_or_404`` about a team's object."""
    from webapp.security import allow, visible_or_404

    @app.route("/team-object-for-test/<int:team_id>/<role>")
    @allow("viewer")
    def team_object_for_test(team_id: int, role: str):
        return visible_or_404(team_id, role)

    return app


def test_visible_or_404_hides_another_teams_object_and_records_the_denial(
    probe_route, factory, login_as, db_engine
):
    growth, success = factory.team("growth"), factory.team("success")
    client = login_as("viewer", teams={"growth": "analyst"})
    assert (
        client.get(f"/team-object-for-test/{growth.id}/analyst").get_data(as_text=True) == "analyst"
    )
    assert denied(db_engine) == []
    response = client.get(f"/team-object-for-test/{success.id}/viewer")
    assert response.status_code == 404 and "There is nothing here" in response.get_data(
        as_text=True
    )
    response = client.get(f"/team-object-for-test/{growth.id}/experimenter")
    assert response.status_code == 403
    assert "needs the experimenter role; you are analyst here" in response.get_data(as_text=True)
    records = denied(db_engine)
    assert [(e.actor_id, e.diff["reason"][1]) for e in records] == [
        (client.user.id, f"object of team {success.id} is not visible"),
        (client.user.id, "this needs the experimenter role; you are analyst here"),
    ]
    assert records[0].diff["path"] == [None, f"/team-object-for-test/{success.id}/viewer"]


def test_a_role_denial_is_recorded(login_as, db_engine):
    client = login_as("analyst")
    assert client.get("/admin/audit").status_code == 403
    [event] = denied(db_engine)
    assert (event.actor_id, event.entity_id, event.diff["reason"]) == (
        client.user.id,
        "admin.audit",
        [None, "needs admin"],
    )


# ------------------------------------------------------------------ configuration


# A key typed at random once for this test: 32 distinct characters (5 bits each by the
# estimate, 160 bits), as a real key from secrets.token_urlsafe would be.
RANDOM_LOOKING_KEY = "Vq3x9LmZ0tR7bK2pW8sY4nH6cJ1dF5gE"


@pytest.mark.parametrize("secret", [
    None, "", "short", "changeme", "x" * 31,
    "a" * 32,  # long enough, but one character: 0 bits
    "r" * 64,
    "abcdefghijklmnop" * 2,  # 16 distinct characters, but one 16-character block twice: 64 bits
    "ab" * 30,  # 2 distinct characters
    "0123456789" * 4,  # 10 distinct characters repeated: as strong as "0123456789"
])
def test_production_config_refuses_a_missing_default_short_or_guessable_secret(
    tmp_path, monkeypatch, secret
):
    from webapp.config import ConfigError, load_config

    monkeypatch.delenv("SECRET_KEY", raising=False)
    overrides = {"NRRLAB_ENV": "production"} | ({} if secret is None else {"SECRET_KEY": secret})
    with pytest.raises(ConfigError, match="SECRET_KEY") as refused:
        load_config(tmp_path, overrides)
    assert "\n" not in str(refused.value)  # one start-up line for the operator
    config = load_config(tmp_path, {"NRRLAB_ENV": "production", "SECRET_KEY": RANDOM_LOOKING_KEY})
    assert config["SESSION_COOKIE_SECURE"]


def test_production_config_accepts_generated_keys(tmp_path, monkeypatch):
    import secrets

    from webapp.config import load_config

    monkeypatch.delenv("SECRET_KEY", raising=False)
    for key in [secrets.token_urlsafe(48) for _ in range(200)] + [
        secrets.token_hex(16) for _ in range(200)
    ]:
        assert (
            load_config(tmp_path, {"NRRLAB_ENV": "production", "SECRET_KEY": key})["SECRET_KEY"]
            == key
        )


def test_a_guessable_production_key_stops_the_server_with_one_line(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "NRRLAB_ENV": "production", "SECRET_KEY": "a" * 32,
           "DATABASE_URL": f"sqlite:///{tmp_path}/x.db", "NRRLAB_INSTANCE_PATH": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "experiments.cli", "serve", "--port", "0"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "nrrlab: SECRET_KEY is guessable (about 0 bits of entropy from 1 distinct characters; "
        "at least 72 bits needed); generate one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(48))'"]


def test_proxy_hops_trust_x_forwarded_for_for_rate_limits(
    factory, database_url, tmp_path, db_engine
):
    from webapp import create_app

    app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "p" * 40, "DATABASE_URL": database_url,
                      "INSTANCE_PATH": str(tmp_path), "PROXY_HOPS": 1})
    try:
        factory.user("ana@example.com")
        client = app.test_client()
        token = csrf_token_of(client)
        client.post(
            "/login",
            data={"email": "ana@example.com", "password": "wrong one", "csrf_token": token},
            headers={"X-Forwarded-For": "203.0.113.5"},
        )
        with Session(db_engine) as session:
            [event] = session.exec(
                select(AuditEvent).where(AuditEvent.action == "auth.login_failed")
            ).all()
        assert event.ip == "203.0.113.5"
        assert Auth(client).login("ana@example.com", TEST_PASSWORD).status_code == 303
    finally:
        dispose_app(app)


def test_proxy_hops_must_be_a_number(tmp_path, monkeypatch):
    from webapp.config import ConfigError, load_config

    monkeypatch.setenv("NRRLAB_PROXY_HOPS", "all")
    with pytest.raises(ConfigError, match="NRRLAB_PROXY_HOPS must be a whole number"):
        load_config(tmp_path, {"SECRET_KEY": "k" * 40})
