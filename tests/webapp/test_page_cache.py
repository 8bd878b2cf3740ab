"""The rendered-page cache never serves a stale page or another user's (issue 18, item 2).

Every test reads a page once to fill the cache, then reads it again (a hit when nothing
changed) or after a write (must show the write). ``webapp.page_cache`` explains the key.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlmodel import Session, select

from experiments.models import DriverNode
from tests.api.conftest import issue_token
from tests.factories import make_node
from tests.helpers import TEST_PASSWORD, Auth, csrf_token_of
from tests.ledger_gen import write_csv
from tests.webapp.test_results import GOOD_ROWS, HEADER, make_experiment, upload

ROOT = Path(__file__).resolve().parents[2]
_CSRF_IN_PAGE = re.compile(r'name="csrf_token" value="([^"]+)"')
NODE_NAME = "Cache probe lever"


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def secrets_of(page: str) -> set[str]:
    """The session secrets the page's CSRF tokens carry (a token is the secret, signed and
    timestamped: two tokens of one session differ only after the first dot)."""
    return {token.split(".")[0] for token in _CSRF_IN_PAGE.findall(page)}


def page_cache(app):
    return app.extensions["nrrlab.page_cache"]


def root_id(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(DriverNode.id).where(DriverNode.parent_id.is_(None))).one()


@pytest.fixture
def admin_client(login_as):
    return login_as("admin")


# ----------------------------------------------------------- writes reach the next page
#
# Each write adds the node NODE_NAME to the driver tree by another road; the tree and
# the dashboard (which draws the tree) must show it on the very next read.


def write_by_form(app, client, engine) -> None:
    response = client.post(f"/tree/{root_id(engine)}/children", data={
        "csrf_token": client.csrf, "name": NODE_NAME, "kind": "lever", "status": "active"})
    assert response.status_code == 303, text(response)


def write_by_api(app, client, engine) -> None:
    secret = issue_token(engine, client.user, "write")
    response = app.test_client().post(
        "/api/v1/nodes", headers={"Authorization": f"Bearer {secret}"},
        json={"parent_id": root_id(engine), "name": NODE_NAME, "kind": "lever"})
    assert response.status_code == 201, text(response)


def write_by_another_engine(app, client, engine) -> None:
    # The test's engine is not the app's: another pool, as a second worker process has.
    with Session(engine) as session:
        make_node(session, NODE_NAME)
        session.commit()


def write_by_another_process(app, client, engine) -> None:
    code = (
        "import sys\n"
        "from sqlmodel import Session\n"
        "from experiments.db import make_engine\n"
        "from tests.factories import make_node\n"
        "import experiments.models\n"
        "engine = make_engine(sys.argv[1])\n"
        "with Session(engine) as session:\n"
        "    make_node(session, sys.argv[2])\n"
        "    session.commit()\n"
        "engine.dispose()\n")
    url = engine.url.render_as_string(hide_password=False)
    done = subprocess.run([sys.executable, "-c", code, url, NODE_NAME], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr


WRITES = [write_by_form, write_by_api, write_by_another_engine, write_by_another_process]


@pytest.mark.parametrize("path", ["/tree/", "/"])
@pytest.mark.parametrize("write", WRITES, ids=lambda w: w.__name__)
def test_the_page_after_a_write_shows_it(app, admin_client, db_engine, write, path):
    first = admin_client.get(path)
    assert first.status_code == 200 and NODE_NAME not in text(first)
    again = admin_client.get(path)
    assert NODE_NAME not in text(again)
    assert page_cache(app).hits >= 1  # the second read came from the cache

    write(app, admin_client, db_engine)

    after = admin_client.get(path)
    assert after.status_code == 200
    assert NODE_NAME in text(after), f"{path} is stale after {write.__name__}"


def test_a_background_upload_job_reaches_the_experiment_page(app, login_as, factory, db_engine):
    app.config["JOBS_BACKEND"] = "sqlite"  # a real queue: the job runs below, not inline
    factory.team("growth")
    analyst = login_as("viewer", teams={"growth": "analyst"})
    experiment = make_experiment(db_engine)
    page = f"/experiments/{experiment.key}"
    before = text(analyst.get(page))
    assert "cache-probe.csv" not in before
    assert text(analyst.get(page)) == before
    assert page_cache(app).hits == 1  # kept

    upload(analyst, experiment.key, (HEADER + GOOD_ROWS).encode(), "cache-probe.csv", htmx=True)
    queue = app.extensions["nrrlab.jobs"].queue
    queue.execute(queue.dequeue())

    assert "cache-probe.csv" in text(analyst.get(page))


def test_a_cli_ledger_import_reaches_the_nrr_page(app, admin_client, database_url, tmp_path,
                                                   monkeypatch):
    before = text(admin_client.get("/nrr"))
    assert text(admin_client.get("/nrr")) == before
    assert page_cache(app).hits == 1  # kept
    ledger = tmp_path / "ledger.csv"
    write_csv(ledger, n_accounts=40, months=14, seed=3)
    monkeypatch.setenv("DATABASE_URL", database_url)
    from experiments.cli import main

    result = CliRunner().invoke(main, ["ledger", "import", str(ledger), "--dimensions",
                                       "plan,region,size"])
    assert result.exit_code == 0, result.output
    assert "No revenue ledger yet" in before
    after = text(admin_client.get("/nrr"))
    assert "No revenue ledger yet" not in after and "Ledger versions" in after


# ------------------------------------------------------------------ one user, one page


def test_another_user_never_gets_the_first_users_page(app, login_as, factory):
    factory.experiment("growth-only", team="growth", name="Growth only test")
    factory.experiment("success-only", team="success", name="Success only test")
    growth = login_as("viewer", teams={"growth": "viewer"})
    success = login_as("viewer", teams={"success": "viewer"})
    for _ in range(2):  # the second round is served from the cache
        mine, theirs = text(growth.get("/experiments/")), text(success.get("/experiments/"))
        assert "Growth only test" in mine and "Success only test" not in mine
        assert "Success only test" in theirs and "Growth only test" not in theirs
    assert page_cache(app).hits >= 2


def test_two_sessions_of_one_user_get_their_own_csrf_token_and_can_post(
        app, admin_client, db_engine):
    second = app.test_client()
    assert Auth(second).login(admin_client.user.email).status_code == 303
    first_page = text(admin_client.get("/tree/"))
    second_page = text(second.get("/tree/"))  # the same user, page and data: a hit
    assert page_cache(app).hits >= 1
    assert len(secrets_of(first_page)) == 1 and len(secrets_of(second_page)) == 1
    assert secrets_of(first_page) != secrets_of(second_page)
    second_tokens = set(_CSRF_IN_PAGE.findall(second_page))
    assert "nrrlabcsrfsentinel" not in first_page + second_page
    # A form posted with the token read off the cached page is accepted.
    response = second.post(f"/tree/{root_id(db_engine)}/children", data={
        "csrf_token": second_tokens.pop(), "name": NODE_NAME, "kind": "lever",
        "status": "active"})
    assert response.status_code == 303, text(response)
    # ... and the other session's token is not this session's.
    refused = admin_client.post(f"/tree/{root_id(db_engine)}/children", data={
        "csrf_token": _CSRF_IN_PAGE.findall(second_page)[0], "name": "Other",
        "kind": "lever", "status": "active"})
    assert refused.status_code == 400


def test_the_csrf_header_of_a_cached_page_is_this_sessions(app, admin_client):
    admin_client.get("/tree/")
    page = text(admin_client.get("/tree/"))
    header = re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)
    assert [header] == list(set(_CSRF_IN_PAGE.findall(page)))


def test_a_flashed_message_is_shown_once_not_kept(app, login_as):
    client = login_as("admin")
    client.get("/")
    client.get("/")  # the dashboard is kept
    response = client.post("/account/password", data={
        "csrf_token": client.csrf, "current_password": TEST_PASSWORD,
        "new_password": "a brand new passphrase", "confirmation": "a brand new passphrase"})
    assert response.status_code == 303 and response.headers["Location"] == "/"
    assert "Your password was changed" in text(client.get("/"))
    assert "Your password was changed" not in text(client.get("/"))
    assert "Your password was changed" not in text(client.get("/"))


# ------------------------------------------------------------------------ the clock


def test_a_new_day_changes_the_page(app, admin_client, monkeypatch):
    import experiments.my_week
    import webapp.page_cache

    today = datetime.now(UTC)
    clock = {"now": today}
    for module in (experiments.my_week, webapp.page_cache):
        monkeypatch.setattr(module, "utcnow", lambda: clock["now"])
    this_week = text(admin_client.get("/me"))
    assert text(admin_client.get("/me")) == this_week
    clock["now"] = today + timedelta(days=7)
    next_week = text(admin_client.get("/me"))
    label = today.isocalendar()
    later = (today + timedelta(days=7)).isocalendar()
    assert f"{label.year}-W{label.week:02d}" in this_week
    assert f"{later.year}-W{later.week:02d}" in next_week


def test_an_entry_expires_after_its_time_to_live(app, admin_client, monkeypatch):
    import webapp.page_cache

    admin_client.get("/tree/")
    admin_client.get("/tree/")
    hits = page_cache(app).hits
    real = webapp.page_cache.time.monotonic
    monkeypatch.setattr(webapp.page_cache.time, "monotonic",
                        lambda: real() + app.config["PAGE_CACHE_TTL_SECONDS"] + 1)
    admin_client.get("/tree/")
    assert page_cache(app).hits == hits  # expired: rendered again


# ------------------------------------------------------------------------ browsers


def test_etag_answers_if_none_match_with_304_until_the_data_changes(
        app, admin_client, db_engine):
    admin_client.get("/tree/")
    kept = admin_client.get("/tree/")
    etag = kept.headers["ETag"]
    assert kept.headers["Cache-Control"] == "no-store"  # the app's rule for every page
    assert "Cookie" in kept.headers["Vary"] and "HX-Request" in kept.headers["Vary"]
    assert kept.headers["Content-Security-Policy"].startswith("default-src 'self'")
    same = admin_client.get("/tree/", headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.get_data() == b""
    write_by_another_engine(app, admin_client, db_engine)
    changed = admin_client.get("/tree/", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and NODE_NAME in text(changed)
    assert changed.headers["ETag"] != etag


def test_another_session_never_gets_a_304_for_this_sessions_etag(app, admin_client):
    second = app.test_client()
    Auth(second).login(admin_client.user.email)
    admin_client.get("/tree/")
    etag = admin_client.get("/tree/").headers["ETag"]
    other = second.get("/tree/", headers={"If-None-Match": etag})
    assert other.status_code == 200 and other.headers["ETag"] != etag


def test_a_fragment_and_its_page_are_kept_apart(app, admin_client):
    page = text(admin_client.get("/experiments/"))
    fragment = text(admin_client.get("/experiments/", headers={"HX-Request": "true"}))
    assert "<html" in page and "<html" not in fragment
    assert "<html" in text(admin_client.get("/experiments/"))
    assert "<html" not in text(admin_client.get("/experiments/",
                                                headers={"HX-Request": "true"}))


# ------------------------------------------------------------------------ the switch


def test_page_cache_off_renders_every_time(app, admin_client):
    app.config["PAGE_CACHE"] = False
    admin_client.get("/tree/")
    response = admin_client.get("/tree/")
    assert page_cache(app).hits == 0 and "ETag" not in response.headers


def test_anonymous_requests_are_not_cached(app, client):
    assert client.get("/").status_code == 302
    assert len(page_cache(app)) == 0


def test_csrf_token_of_a_new_session_still_works(app, client):
    """The sign-in page is not cached; the login helper's token is this session's."""
    assert csrf_token_of(client)


# ------------------------------------------------------------ answers that are not kept


def test_error_answers_of_a_kept_view_carry_the_real_token(app, admin_client):
    from experiments.review_weeks import current_week

    missing = admin_client.get("/experiments/no-such-experiment")
    bad_filter = admin_client.get(f"/review/{current_week().label}?from=not-a-date")
    assert missing.status_code == 404 and bad_filter.status_code == 422
    for response in (missing, bad_filter):
        page = text(response)
        assert "nrrlabcsrfsentinel" not in page
        assert secrets_of(page) == secrets_of(text(admin_client.get("/tree/")))
    assert len(page_cache(app)) == 1  # only the tree page was kept


def test_a_token_a_view_puts_in_a_header_is_this_requests_and_not_kept(app, factory):
    from flask import make_response, render_template_string
    from flask_wtf.csrf import generate_csrf

    from webapp.page_cache import cached_page
    from webapp.security import allow

    @allow("viewer")
    @cached_page
    def probe():
        response = make_response(render_template_string("<p>{{ csrf_token() }}</p>"))
        response.headers["X-Probe-Token"] = generate_csrf()
        return response

    app.add_url_rule("/probe-token", "probe_token", probe)
    user = factory.user("probe@example.com", "viewer")
    client = app.test_client()
    assert Auth(client).login(user.email).status_code == 303
    for _ in range(2):
        response = client.get("/probe-token")
        token = response.headers["X-Probe-Token"]
        assert "nrrlabcsrfsentinel" not in token
        assert text(response) == f"<p>{token}</p>"
    assert len(page_cache(app)) == 0


def test_a_head_request_fills_the_cache_with_the_whole_page(app, admin_client):
    # HEAD and GET share a key: the body kept by a HEAD must be the page, not the empty
    # answer HEAD sends, or the next GET would be served a blank page.
    head = admin_client.head("/tree/")
    assert head.status_code == 200 and head.get_data() == b"" and len(page_cache(app)) == 1
    page = admin_client.get("/tree/")
    assert page_cache(app).hits == 1
    assert page.status_code == 200 and "<html" in text(page)
    assert int(head.headers["Content-Length"]) == len(page.get_data())
    revalidated = admin_client.head("/tree/", headers={"If-None-Match": page.headers["ETag"]})
    assert revalidated.status_code == 304
