"""Signing in and out: rotation, server-side invalidation, timeouts, cookie flags,
rate limiting, identical failure answers, safe redirects and password changes."""

from __future__ import annotations

import logging
import re

import pytest
from sqlmodel import Session, select

from experiments.models import AuditEvent, User
from tests.helpers import TEST_PASSWORD, Auth, csrf_token_of, dispose_app

COOKIE = "nrrlab_session"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def signed_in(client) -> bool:
    response = client.get("/")
    return response.status_code == 200


def actions(db_engine, action: str) -> list[AuditEvent]:
    with Session(db_engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def post_login(client, email, password, **kwargs):
    token = csrf_token_of(client)
    return client.post(
        "/login",
        data={"email": email, "password": password, "csrf_token": token, **kwargs.pop("data", {})},
        **kwargs,
    )


# ------------------------------------------------------------------ sign-in and out


def test_sign_in_rotates_the_session(client, factory, db_engine):
    user = factory.user("ana@example.com")
    csrf_token_of(client)
    with client.session_transaction() as session:
        session["planted"] = "by an attacker before sign-in"
    assert Auth(client).login(user.email).status_code == 303
    with client.session_transaction() as session:
        assert "planted" not in session
        first_sid = session["sid"]
    Auth(client).login(user.email)
    with client.session_transaction() as session:
        assert session["sid"] != first_sid
    assert [e.actor_id for e in actions(db_engine, "auth.login")] == [user.id, user.id]


def test_sign_in_goes_to_the_page_asked_for(client, factory):
    factory.user("ana@example.com")
    response = client.get("/tree/")
    assert response.status_code == 302 and "/login?next=/tree/" in response.headers["Location"]
    response = post_login(client, "ana@example.com", TEST_PASSWORD, data={"next": "/tree/"})
    assert response.status_code == 303 and response.headers["Location"] == "/tree/"


def test_sign_in_leaves_no_stray_next_in_the_address(client, factory):
    # issue 14, item 4: the home page asked for no next; a path without a query kept "?"
    factory.user("ana@example.com")
    assert client.get("/").headers["Location"] == "/login"
    assert client.get("/tree/").headers["Location"] == "/login?next=/tree/"
    assert client.get("/tree/?open=3").headers["Location"] == "/login?next=/tree/?open%3D3"
    response = post_login(client, "ana@example.com", TEST_PASSWORD, data={"next": "/?"})
    assert response.status_code == 303 and response.headers["Location"] == "/"


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "javascript:alert(1)",
        "/\tevil",
        "evil",
    ],
)
def test_sign_in_never_redirects_off_site(client, factory, target):
    factory.user("ana@example.com")
    response = post_login(client, "ana@example.com", TEST_PASSWORD, data={"next": target})
    # Instead, the landing page: a non-admin's own week (issue 17 item 3).
    assert response.status_code == 303 and response.headers["Location"] == "/me"


def test_sign_out_refuses_get(login_as):
    client = login_as("viewer")
    assert client.get("/logout").status_code == 405
    assert signed_in(client)


def test_a_session_cookie_replayed_after_sign_out_goes_to_the_sign_in_page(
    app, login_as, db_engine
):
    client = login_as("viewer")
    stolen = client.get_cookie(COOKIE).value
    response = client.post("/logout", data={"csrf_token": client.csrf})
    assert response.status_code == 303 and response.headers["Location"] == "/login"
    attacker = app.test_client()
    attacker.set_cookie(COOKIE, stolen)
    response = attacker.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert len(actions(db_engine, "auth.logout")) == 1


def test_sign_out_ends_the_users_other_sessions_too(app, login_as):
    client = login_as("viewer")
    other = app.test_client()
    Auth(other).login(client.user.email)
    assert signed_in(other)
    client.post("/logout", data={"csrf_token": client.csrf})
    assert not signed_in(other)


def test_disabling_a_user_ends_their_sessions_at_once(login_as, db_engine):
    client = login_as("viewer")
    assert signed_in(client)
    with Session(db_engine) as session:
        from experiments.users import disable_user

        disable_user(session, session.get(User, client.user.id), actor=None)
        session.commit()
    assert not signed_in(client)


# ------------------------------------------------------------------ timeouts


def test_idle_timeout_after_30_minutes(login_as, monkeypatch):
    import webapp.security

    client = login_as("viewer")
    real_now = webapp.security._now()
    monkeypatch.setattr(webapp.security, "_now", lambda: real_now + 29 * 60)
    assert signed_in(client)  # activity at +29 min resets the idle clock
    monkeypatch.setattr(webapp.security, "_now", lambda: real_now + 58 * 60)
    assert signed_in(client)
    monkeypatch.setattr(webapp.security, "_now", lambda: real_now + 89 * 60)
    response = client.get("/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert "timed out" in client.get(response.headers["Location"]).get_data(as_text=True)
    monkeypatch.setattr(webapp.security, "_now", lambda: real_now + 90 * 60)
    assert not signed_in(client)  # the session is gone, not just refused once


def test_absolute_timeout_after_12_hours_even_when_active(login_as, monkeypatch):
    import webapp.security

    client = login_as("viewer")
    start = webapp.security._now()
    clock = {"now": start}
    monkeypatch.setattr(webapp.security, "_now", lambda: clock["now"])
    while clock["now"] < start + 12 * 3600 - 20 * 60:
        clock["now"] += 20 * 60
        assert signed_in(client), (
            f"signed out after {(clock['now'] - start) / 3600:.1f} h of activity"
        )
    clock["now"] = start + 12 * 3600 + 1
    assert not signed_in(client)


def test_idle_timeout_is_configurable_and_htmx_gets_a_401_redirect(
    factory, database_url, tmp_path, monkeypatch
):
    from datetime import timedelta

    import webapp.security
    from webapp import create_app

    app = create_app(
        {
            "NRRLAB_ENV": "testing",
            "SECRET_KEY": "k" * 40,
            "DATABASE_URL": database_url,
            "INSTANCE_PATH": str(tmp_path),
            "IDLE_TIMEOUT": timedelta(minutes=5),
        }
    )
    try:
        client = app.test_client()
        Auth(client).login(factory.user("ana@example.com").email)
        real_now = webapp.security._now()
        monkeypatch.setattr(webapp.security, "_now", lambda: real_now + 6 * 60)
        response = client.get("/tree/", headers={"HX-Request": "true"})
        assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/login")
    finally:
        dispose_app(app)


def test_idle_timeout_reads_the_environment(monkeypatch, tmp_path):
    from webapp.config import ConfigError, load_config

    monkeypatch.setenv("NRRLAB_IDLE_MINUTES", "10")
    assert load_config(tmp_path, {"SECRET_KEY": "k" * 40})["IDLE_TIMEOUT"].total_seconds() == 600
    monkeypatch.setenv("NRRLAB_IDLE_MINUTES", "ten")
    with pytest.raises(ConfigError, match="NRRLAB_IDLE_MINUTES must be a whole number"):
        load_config(tmp_path, {"SECRET_KEY": "k" * 40})


# ------------------------------------------------------------------ cookies


def _set_cookie(response) -> str:
    cookies = [v for k, v in response.headers.items() if k == "Set-Cookie"]
    assert len(cookies) == 1, cookies
    return cookies[0]


def test_session_cookie_is_httponly_and_samesite_lax_on_local_http(client, factory):
    factory.user("ana@example.com")
    cookie = _set_cookie(post_login(client, "ana@example.com", TEST_PASSWORD))
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain-http development: a Secure cookie would be dropped


def test_secure_cookies_are_host_prefixed_secure_and_send_hsts(
    factory, database_url, tmp_path, monkeypatch
):
    from webapp import create_app

    monkeypatch.setenv("NRRLAB_SECURE_COOKIES", "1")
    app = create_app(
        {
            "NRRLAB_ENV": "testing",
            "SECRET_KEY": "k" * 40,
            "DATABASE_URL": database_url,
            "INSTANCE_PATH": str(tmp_path),
        }
    )
    try:
        factory.user("ana@example.com")
        client = app.test_client()
        page = client.get("/login", base_url="https://nrrlab.example")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.get_data(as_text=True)).group(
            1
        )
        response = client.post(
            "/login",
            base_url="https://nrrlab.example",
            headers={"Referer": "https://nrrlab.example/login"},
            data={"email": "ana@example.com", "password": TEST_PASSWORD, "csrf_token": token},
        )
        assert response.status_code == 303, response.get_data(as_text=True)
        cookie = _set_cookie(response)
        assert cookie.startswith("__Host-nrrlab=")
        assert all(flag in cookie for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"))
        assert "Domain" not in cookie  # __Host- forbids it
        assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    finally:
        dispose_app(app)


# ------------------------------------------------------------------ rate limit and answers


def test_the_eleventh_failed_sign_in_for_an_account_answers_429(client, factory, db_engine):
    factory.user("ana@example.com")
    for attempt in range(10):
        response = post_login(client, "ana@example.com", f"wrong password {attempt}")
        assert response.status_code == 401, attempt
    response = post_login(client, "ana@example.com", TEST_PASSWORD)  # even the right one
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "900"
    assert "Too many failed sign-ins" in response.get_data(as_text=True)
    assert len(actions(db_engine, "auth.login_failed")) == 10


def test_failures_from_an_address_slow_it_but_do_not_lock_out_users_behind_it(app, factory):
    # Issue 12 item 6: behind a proxy everyone shares an address; ten failures there
    # used to lock every valid user out (OWASP ASVS 5.0 §6.3: slow the address instead).
    factory.user("ana@example.com")
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = "203.0.113.9"
    for attempt in range(10):
        assert (
            post_login(attacker, f"guess{attempt}@example.com", "whatever it is").status_code == 401
        )
    assert post_login(attacker, "ana@example.com", TEST_PASSWORD).status_code == 303
    bystander = app.test_client()
    bystander.environ_base["REMOTE_ADDR"] = "198.51.100.7"
    assert post_login(bystander, "ana@example.com", TEST_PASSWORD).status_code == 303


def test_unknown_email_wrong_password_and_disabled_account_get_the_same_answer(
    app, factory, db_engine
):
    factory.user("ana@example.com")
    disabled = factory.user("gone@example.com")
    with Session(db_engine) as session:
        session.get(User, disabled.id).is_active = False
        session.commit()
    answers = []
    for email, password in [
        ("ana@example.com", "not the password"),
        ("nobody@example.com", "not the password"),
        ("gone@example.com", TEST_PASSWORD),
    ]:
        response = post_login(app.test_client(), email, password)
        body = response.get_data(as_text=True)
        token = _TOKEN.search(body).group(1)
        body = body.replace(token, "…")  # the CSRF token differs per session
        answers.append((response.status_code, body))
    assert answers[0][0] == 401
    assert answers[0] == answers[1] == answers[2]
    assert "That email and password do not match an active account." in answers[0][1]


def test_a_failed_sign_in_logs_no_secret(client, factory):
    from webapp.logging_setup import SafeFormatter

    factory.user("ana@example.com")
    stream = []

    class Capture(logging.Handler):
        def emit(self, record):
            stream.append(self.format(record))

    handler = Capture()
    handler.setFormatter(SafeFormatter("%(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("nrrlab")
    logger.addHandler(handler)
    try:
        post_login(client, "ana@example.com", "Hunter2-Secret-Phrase")
        post_login(client, "ana@example.com\nINFO nrrlab: forged line", "Another-Secret-Phrase")
        post_login(client, "ana@example.com", TEST_PASSWORD)
    finally:
        logger.removeHandler(handler)
    text = "\n".join(stream)
    assert "sign-in failed" in text and "signed in" in text
    cookie = client.get_cookie(COOKIE).value
    for secret in (
        "Hunter2-Secret-Phrase",
        "Another-Secret-Phrase",
        TEST_PASSWORD,
        cookie,
        "forged line",
    ):
        assert secret not in text, f"{secret!r} reached the log"
    assert all("\n" not in line for line in stream)


# ------------------------------------------------------------------ password change


def change(client, current, new, confirmation=None):
    return client.post(
        "/account/password",
        data={
            "csrf_token": client.csrf,
            "current_password": current,
            "new_password": new,
            "confirmation": new if confirmation is None else confirmation,
        },
    )


def test_password_change_keeps_this_session_and_ends_the_others(app, login_as):
    client = login_as("viewer")
    other = app.test_client()
    Auth(other).login(client.user.email)
    assert client.get("/account/password").status_code == 200
    response = change(client, TEST_PASSWORD, "a brand new passphrase")
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert "Your password was changed" in client.get("/").get_data(as_text=True)
    assert signed_in(client)
    assert not signed_in(other)
    assert post_login(app.test_client(), client.user.email, TEST_PASSWORD).status_code == 401
    assert (
        post_login(app.test_client(), client.user.email, "a brand new passphrase").status_code
        == 303
    )


def test_password_change_keeps_the_absolute_timeout(login_as, monkeypatch):

    client = login_as("viewer")
    with client.session_transaction() as session:
        login_at = session["login_at"]
    change(client, TEST_PASSWORD, "a brand new passphrase")
    with client.session_transaction() as session:
        assert session["login_at"] == login_at


def test_password_change_with_a_wrong_current_password_is_422_and_counts_as_a_failure(
    login_as, db_engine
):
    client = login_as("viewer")
    response = change(client, "not my password", "a brand new passphrase")
    assert response.status_code == 422
    assert "Current password is not your current password" in response.get_data(as_text=True)
    assert [e.entity_id for e in actions(db_engine, "auth.login_failed")] == [client.user.email]
    for _ in range(9):
        change(client, "not my password", "a brand new passphrase")
    assert change(client, TEST_PASSWORD, "a brand new passphrase").status_code == 429


def test_password_change_shows_every_problem_with_the_new_password(login_as):
    client = login_as("viewer")
    response = change(client, TEST_PASSWORD, "short", "shorter")
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "New password must be at least 8 characters" in body
    assert "Repeated password does not match the new password" in body


def test_an_invited_user_must_choose_a_password_before_anything_else(app, session, factory):
    from experiments.users import invite_user

    admin = factory.user("root@example.com", "admin")
    _, temporary = invite_user(
        session, email="new@example.com", name="", role="viewer", actor=admin
    )
    session.commit()
    client = app.test_client()
    response = post_login(client, "new@example.com", temporary)
    assert response.status_code == 303 and response.headers["Location"] == "/account/password"
    for path in ("/", "/tree/", "/experiments/"):
        response = client.get(path)
        assert (
            response.status_code == 302 and response.headers["Location"] == "/account/password"
        ), path
    response = client.get("/tree/", headers={"HX-Request": "true"})
    assert response.status_code == 401 and response.headers["HX-Redirect"] == "/account/password"
    page = client.get("/account/password").get_data(as_text=True)
    assert "temporary password" in page
    client.csrf = csrf_token_of(client)
    assert change(client, temporary, "my very own passphrase").status_code == 303
    assert signed_in(client)
