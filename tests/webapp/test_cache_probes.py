"""Adversarial probes of the rendered-page cache (webapp.page_cache, issue 18 review H7).

Each probe tries one way a kept page could reach the wrong eyes or outlive its data:
another worker process (its own app, engine and cache), a change of who may see what,
a second user in the same browser, odd bytes in the key, threads and memory. Probes
that found nothing stay as regression tests (those of a key part, the lock and the
sign-in check were seen to fail with that guard removed); the two that found a defect
(the mount point missing from the key; keys and headers not counted against the byte
bound) failed until the fix and now guard it.
"""

from __future__ import annotations

import html
import random
import re
import sys
import threading
import tracemalloc

import pytest
from sqlmodel import Session, select

from experiments.generation import read_generation
from experiments.models import DriverNode, Team, TeamMembership, User
from tests.factories import make_node
from tests.helpers import Auth, dispose_app

SECRET = "t" * 48
NODE_NAME = "Probe lever"
_CSRF_IN_PAGE = re.compile(r'name="csrf_token" value="([^"]+)"')


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def kept(app):
    return app.extensions["nrrlab.page_cache"]


def generation(engine) -> int | None:
    with engine.connect() as connection:
        return read_generation(connection)


@pytest.fixture
def second_worker(db_engine, database_url, tmp_path):
    """Another gunicorn worker: its own app, engine, connection pool and page cache."""
    from webapp import create_app

    other = create_app({
        "NRRLAB_ENV": "testing",
        "SECRET_KEY": SECRET,  # one deployment: the workers share the secret
        "DATABASE_URL": database_url,
        "INSTANCE_PATH": str(tmp_path / "instance-2"),
    })
    yield other
    dispose_app(other)


def signed_in(app, email: str):
    client = app.test_client()
    response = Auth(client).login(email)
    assert response.status_code == 303, text(response)
    return client


# ---------------------------------------------------------------- two workers at once


def test_a_write_in_one_worker_shows_on_the_next_read_in_another(
        app, second_worker, factory, db_engine):
    """User A adds a node through worker 1; user B's page, kept by worker 2, shows it."""
    factory.user("a@example.com", "experimenter")
    factory.user("b@example.com", "viewer")
    writer = signed_in(app, "a@example.com")
    reader = signed_in(second_worker, "b@example.com")
    assert NODE_NAME not in text(reader.get("/tree/"))
    assert NODE_NAME not in text(reader.get("/tree/"))
    assert kept(second_worker).hits == 1  # worker 2 serves B from its own cache

    with Session(db_engine) as session:
        root = session.exec(select(DriverNode.id).where(DriverNode.parent_id.is_(None))).one()
    token = _CSRF_IN_PAGE.search(text(writer.get("/tree/"))).group(1)
    response = writer.post(f"/tree/{root}/children", data={
        "csrf_token": token, "name": NODE_NAME, "kind": "lever", "status": "active"})
    assert response.status_code == 303, text(response)

    assert NODE_NAME in text(reader.get("/tree/"))
    assert NODE_NAME in text(reader.get("/"))


def test_a_rolled_back_write_is_never_shown_and_keeps_the_page(app, login_as, db_engine):
    """A flush then a rollback (another worker's failed save) moves no generation: the kept
    page stays kept, and it never shows the row that was rolled back."""
    client = login_as("admin")
    client.get("/tree/")
    before = generation(db_engine)
    with Session(db_engine) as session:
        make_node(session, NODE_NAME)  # flushed inside the transaction
        session.rollback()
    assert generation(db_engine) == before
    hits = kept(app).hits
    assert NODE_NAME not in text(client.get("/tree/"))
    assert kept(app).hits == hits + 1


# ------------------------------------------------------- who may see what, changed


def test_a_deactivated_user_gets_no_kept_page(app, second_worker, factory, db_engine):
    user = factory.user("leaver@example.com", "viewer", teams={"growth": "viewer"})
    factory.experiment("growth-x", team="growth", name="Growth secret test")
    client = signed_in(app, "leaver@example.com")
    for _ in range(2):
        assert "Growth secret test" in text(client.get("/experiments/"))
    assert kept(app).hits == 1

    with Session(db_engine) as session:  # an admin, in another worker, disables them
        row = session.get(User, user.id)
        row.is_active = False
        session.add(row)
        session.commit()

    for path in ("/experiments/", "/experiments/growth-x", "/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert "/login" in response.headers["Location"]
        assert "Growth secret test" not in text(response)


def test_a_user_removed_from_a_team_stops_seeing_its_experiments_at_once(
        app, factory, db_engine):
    user = factory.user("mover@example.com", "viewer", teams={"growth": "viewer"})
    factory.experiment("growth-y", team="growth", name="Growth only test")
    client = signed_in(app, "mover@example.com")
    for _ in range(2):  # kept
        assert "Growth only test" in text(client.get("/experiments/"))
        assert client.get("/experiments/growth-y").status_code == 200
    assert kept(app).hits == 2

    with Session(db_engine) as session:
        team = session.exec(select(Team).where(Team.slug == "growth")).one()
        membership = session.exec(select(TeamMembership).where(
            TeamMembership.user_id == user.id, TeamMembership.team_id == team.id)).one()
        session.delete(membership)
        session.commit()

    assert "Growth only test" not in text(client.get("/experiments/"))
    assert client.get("/experiments/growth-y").status_code == 404


def test_a_role_change_shows_at_once(app, factory, db_engine):
    user = factory.user("riser@example.com", "viewer")
    client = signed_in(app, "riser@example.com")
    for _ in range(2):
        assert ">Admin</a>" not in text(client.get("/tree/"))
    with Session(db_engine) as session:
        row = session.get(User, user.id)
        row.role = "admin"
        session.add(row)
        session.commit()
    assert ">Admin</a>" in text(client.get("/tree/"))


def test_sign_out_then_in_as_another_user_in_the_same_browser(app, factory):
    factory.experiment("growth-z", team="growth", name="Growth only test")
    factory.experiment("success-z", team="success", name="Success only test")
    factory.user("first@example.com", "viewer", teams={"growth": "viewer"})
    factory.user("second@example.com", "viewer", teams={"success": "viewer"})
    browser = signed_in(app, "first@example.com")
    browser.get("/experiments/")
    first = browser.get("/experiments/")  # kept, with an ETag
    assert "Growth only test" in text(first) and kept(app).hits == 1
    etag = first.headers["ETag"]
    token = _CSRF_IN_PAGE.search(text(first)).group(1)
    assert browser.post("/logout", data={"csrf_token": token}).status_code == 303
    assert Auth(browser).login("second@example.com").status_code == 303
    # The first user signs in again elsewhere (the last write) and has the page kept at
    # the generation the browser's next read will see.
    elsewhere = signed_in(app, "first@example.com")
    assert "Growth only test" in text(elsewhere.get("/experiments/"))

    for _ in range(2):
        page = browser.get("/experiments/", headers={"If-None-Match": etag})
        assert page.status_code == 200  # never a 304 on the first user's ETag
        assert "Success only test" in text(page) and "Growth only test" not in text(page)
        assert token not in text(page)
    assert kept(app).hits == 2  # the browser's second read was the second user's own page


# ------------------------------------------------------------------ the key's parts


def test_the_mount_point_is_part_of_the_key(app, login_as):
    client = login_as("admin")
    for _ in range(2):
        first = text(client.get("/tree/", base_url="http://localhost/one"))
    second = text(client.get("/tree/", base_url="http://localhost/two"))
    assert 'href="/one/experiments/' in first
    assert 'href="/two/experiments/' in second and 'href="/one/' not in second


def test_host_and_scheme_are_part_of_the_key(app, login_as):
    """Pages with absolute URLs (none today) must not cross hosts or schemes."""
    client = login_as("admin")
    name = app.config["SESSION_COOKIE_NAME"]
    cookie = client.get_cookie(name)
    for domain in ("one.example", "two.example"):  # the browser's cookie on both names
        client.set_cookie(name, cookie.value, domain=domain)
    for _ in range(2):
        assert client.get("/tree/", base_url="http://one.example").status_code == 200
    hits = kept(app).hits
    assert hits == 1
    assert client.get("/tree/", base_url="http://two.example").status_code == 200
    assert client.get("/tree/", base_url="https://one.example").status_code == 200
    assert kept(app).hits == hits  # two misses: another host, another scheme


ODD = [
    "/experiments/?status=%00",
    "/experiments/?status=%0d%0aSet-Cookie:%20x=1",
    "/experiments/?q=%FF%FE",
    "/experiments/%00",
    "/experiments/%E2%80%AE%0d%0a",
    "/tree/?saved=%F0%9F%92%A5",
    "/review/2026-W48?page=%00",
]


@pytest.mark.parametrize("path", ODD)
def test_odd_bytes_in_the_key_are_a_clear_answer_and_stay_in_their_entry(app, login_as, path):
    """Control characters, invalid UTF-8 and header-splitting attempts in the path, the
    query and HX-Target: a clear answer (never a 500), and the fragment kept for the
    htmx request never answers the same URL without htmx."""
    client = login_as("admin")
    htmx = {"HX-Request": "true", "HX-Target": "x\u00ff\u0001" * 10}
    for _ in range(2):
        odd = client.get(path, headers=htmx)
        assert odd.status_code in (200, 404, 422), path
        assert "Traceback" not in text(odd) and "x=1" not in odd.headers.get("Set-Cookie", "")
    page = client.get(path)
    assert page.status_code == odd.status_code
    if page.status_code == 200:
        assert "<html" in text(page) and "<html" not in text(odd)


def test_query_string_order_and_spelling_only_miss(app, login_as, factory):
    factory.experiment("alpha", name="Alpha probe", status="running")
    factory.experiment("beta", name="Beta probe", status="draft")
    client = login_as("admin")
    pages = [text(client.get(q)) for q in (
        "/experiments/?status=running&page=1", "/experiments/?page=1&status=running",
        "/experiments/?status=%72unning&page=1")]
    assert all("Alpha probe" in p and "Beta probe" not in p for p in pages)
    draft = text(client.get("/experiments/?status=draft&page=1"))
    assert "Beta probe" in draft and "Alpha probe" not in draft


def test_head_then_get_gets_the_whole_page_with_this_sessions_token(app, login_as):
    client = login_as("admin")
    head = client.head("/tree/")
    assert head.status_code == 200 and head.get_data() == b""
    page = text(client.get("/tree/"))
    assert kept(app).hits == 1
    assert "nrrlabcsrfsentinel" not in page and "</html>" in page
    assert _CSRF_IN_PAGE.search(page)


# ---------------------------------------------------------------- threads and memory


def test_the_lru_stays_within_its_byte_bound_under_threads():
    from webapp.page_cache import PageCache

    cache = PageCache(max_bytes=64 * 1024, ttl_seconds=60)
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        rng = random.Random(seed)
        try:
            for _ in range(6000):
                key = ("e", rng.randrange(200))
                if rng.random() < 0.5:
                    cache.put(key, b"x" * rng.randrange(1, 20_000), ())
                else:
                    entry = cache.get(key)
                    assert entry is None or len(entry.body) < 20_000
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(8)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: races show
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert errors == []
    assert 0 < cache.size_bytes <= cache.max_bytes
    for key in list(cache._entries):  # whatever an entry is counted as, it all comes back
        cache._drop(key)
    assert cache.size_bytes == 0


def test_the_byte_bound_holds_for_long_keys_and_small_bodies():
    from webapp.page_cache import PageCache

    bound = 1024 * 1024
    cache = PageCache(max_bytes=bound, ttl_seconds=60)
    headers = (("Content-Type", "text/html; charset=utf-8"), ("Vary", "HX-Request"))
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for n in range(4000):
            key = ("experiments.index", "http", "localhost", "/experiments/",
                   b"q=" + str(n).encode() + b"x" * 4000, 1, 1, 1, "true", None,
                   "t" * 4000 + str(n))
            cache.put(key, b"<p>fragment</p>" * 20, headers)
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()
    assert held <= 2 * bound, f"{held / bound:.1f}× the bound"
