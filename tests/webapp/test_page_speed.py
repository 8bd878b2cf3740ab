"""Read pages do bounded work per request (issue 18): the session cookie is not
re-signed on every read, and the dashboard and the experiment list render a bounded
number of rows whatever the number of experiments."""

from __future__ import annotations

COOKIE = "nrrlab_session"


def _sets_cookie(response) -> bool:
    return any(k == "Set-Cookie" and v.startswith(f"{COOKIE}=")
               for k, v in response.headers.items())


def test_a_read_does_not_re_sign_the_session_cookie_until_a_minute_has_passed(
        login_as, monkeypatch):
    import webapp.security

    client = login_as("viewer")
    assert client.get("/tree/").status_code == 200  # the CSRF token is in the session now
    assert not _sets_cookie(client.get("/tree/"))
    start = webapp.security._now()
    monkeypatch.setattr(webapp.security, "_now", lambda: start + 59)
    assert not _sets_cookie(client.get("/tree/"))
    monkeypatch.setattr(webapp.security, "_now", lambda: start + 61)
    assert _sets_cookie(client.get("/tree/"))  # the idle clock moved on
    assert not _sets_cookie(client.get("/tree/"))


def test_the_idle_clock_still_counts_from_the_last_minute_of_activity(login_as, monkeypatch):
    import webapp.security

    client = login_as("viewer")
    start = webapp.security._now()
    clock = {"now": start}
    monkeypatch.setattr(webapp.security, "_now", lambda: clock["now"])
    # A read every 20 minutes for two hours keeps a 30-minute idle session alive …
    for _ in range(6):
        clock["now"] += 20 * 60
        assert client.get("/tree/").status_code == 200
    # … and 31 minutes without one ends it.
    clock["now"] += 31 * 60
    response = client.get("/tree/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]
