"""Read pages do bounded work per request (issue 18): the session cookie is not
re-signed on every read, and the dashboard and the experiment list render a bounded
number of rows whatever the number of experiments."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from benchmarks.workspace import ADMIN_EMAIL, PASSWORD, build_workspace
from experiments.dashboard import SHOWN
from experiments.models import DriverNode, Experiment, User
from experiments.registry_pages import PAGE_SIZE
from tests.helpers import Auth, dispose_app

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


# ---------------------------------------------------- bounded as experiments grow


@pytest.fixture
def uncached_app(db_engine, database_url, tmp_path):
    """The app without the rendered-page cache: every GET does the page's real work."""
    from tests.conftest import SECRET
    from webapp import create_app

    app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": SECRET,
                      "DATABASE_URL": database_url, "INSTANCE_PATH": str(tmp_path / "i"),
                      "PAGE_CACHE": False})
    yield app
    dispose_app(app)


def _measure(client, engine, path: str) -> tuple[int, str]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    assert client.get(path).status_code == 200
    event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.get(path)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200, (path, response.status_code)
    return len(statements), response.get_data(as_text=True)


def _measure_first(client, engine, path: str) -> tuple[int, str]:
    """Statements of a GET right after a committed write (nothing kept can serve)."""
    with engine.begin() as connection:  # any committed write moves the data generation
        connection.exec_driver_sql("UPDATE team SET name = name")
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.get(path)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return len(statements), response.get_data(as_text=True)


def _table_rows(html: str, section_id: str) -> int:
    start = html.index(f'id="{section_id}"')
    body = html[start:html.index("</section>", start)]
    return body.count("<tr>") - 1 if "<tbody>" in body else 0  # minus the header row


def test_dashboard_and_list_stay_bounded_from_10_to_60_experiments(uncached_app, db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=10, nodes=12, weeks=4, accounts=20)
    client = uncached_app.test_client()
    assert Auth(client).login(ADMIN_EMAIL, PASSWORD).status_code == 303
    engine = uncached_app.extensions["nrrlab.engine"]

    def look() -> dict[str, tuple[int, int]]:
        dash_n, dash = _measure(client, engine, "/")
        list_n, listing = _measure(client, engine, "/experiments/")
        return {"dashboard": (dash_n, _table_rows(dash, "experiments-heading")),
                "list": (list_n, _table_rows(listing, "experiment-list"))}

    at_10 = look()
    assert at_10["dashboard"][1] == 10 and at_10["list"][1] == 10  # every one shown
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=60, weeks=4, accounts=20, first=10)
    at_60 = look()
    assert at_60["dashboard"][0] == at_10["dashboard"][0], (at_10, at_60)
    assert at_60["list"][0] == at_10["list"][0], (at_10, at_60)
    assert at_60["dashboard"][1] == SHOWN == 10  # the rest are counted and linked
    assert at_60["list"][1] == PAGE_SIZE == 50


def test_the_dashboard_counts_what_it_does_not_list(uncached_app, db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=20, nodes=12, weeks=4, accounts=20)
    client = uncached_app.test_client()
    assert Auth(client).login(ADMIN_EMAIL, PASSWORD).status_code == 303
    html = client.get("/").get_data(as_text=True)
    table = html[html.index('id="experiments-heading"'):]
    table = table[:table.index("</section>")]
    # build_workspace: of every ten, seven running, one each stopped / decided / draft.
    for text in ("14 running", "2 stopped", "2 draft", "2 decided", "10 of 20 shown",
                 'href="/experiments/?status=running"', 'href="/experiments/"'):
        assert text in table, text
    shown = re.findall(r'<span class="badge status-(\w+)">', table)
    assert shown == ["running"] * 10  # live ones first


def _keys(html: str) -> list[str]:
    return re.findall(r'<td><a href="/experiments/([\w-]+)">', html)


def test_the_list_pages_keep_the_filters_and_work_without_javascript(uncached_app, db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=0, nodes=12)
        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        node = session.exec(select(DriverNode).order_by(DriverNode.id)).first()
        for i in range(120):  # seven in ten running, like build_workspace's
            session.add(Experiment(key=f"exp-{i:04d}", name=f"Experiment {i:04d}",
                                   node_id=node.id, created_by_id=admin.id, mde=0.04,
                                   status="running" if i % 10 < 7 else "draft"))
            session.flush()
        session.commit()
        expected = [e.key for e in session.exec(
            select(Experiment).order_by(Experiment.created_at.desc(), Experiment.id.desc()))]
        running = [e.key for e in session.exec(
            select(Experiment).where(Experiment.status == "running")
            .order_by(Experiment.created_at.desc(), Experiment.id.desc()))]
    client = uncached_app.test_client()
    assert Auth(client).login(ADMIN_EMAIL, PASSWORD).status_code == 303

    first = client.get("/experiments/").get_data(as_text=True)
    assert "120 experiments; showing 1–50, newest first." in first
    assert _keys(first) == expected[:50]
    assert 'rel="next" href="/experiments/?page=2"' in first and 'rel="prev"' not in first
    third = client.get("/experiments/?page=3").get_data(as_text=True)
    assert _keys(third) == expected[100:] and "Page 3 of 3" in third
    assert 'rel="prev" href="/experiments/?page=2"' in third and 'rel="next"' not in third
    # Every experiment is on exactly one page.
    seen = [k for n in (1, 2, 3)
            for k in _keys(client.get(f"/experiments/?page={n}").get_data(as_text=True))]
    assert seen == expected

    # Filters survive paging: 84 running → two pages, links carry status=running.
    filtered = client.get("/experiments/?status=running&page=2").get_data(as_text=True)
    assert "84 experiments match these filters; showing 51–84" in filtered
    assert _keys(filtered) == running[50:]
    assert 'href="/experiments/?page=1&amp;status=running"' in filtered

    # The htmx fragment is the list alone, with the same links.
    fragment = client.get("/experiments/?page=2", headers={"HX-Request": "true"})
    text = fragment.get_data(as_text=True)
    assert "<html" not in text and 'id="experiment-list"' in text
    assert _keys(text) == expected[50:100] and 'hx-get="/experiments/?page=3"' in text

    # A page past the end is the last page; an unreadable one is the first; never an error.
    for query, keys in (("page=99", expected[100:]), ("page=0", expected[:50]),
                        ("page=-1", expected[:50]), ("page=x", expected[:50]),
                        ("page=%C2%B2", expected[:50]), ("page=99999999999", expected[:50])):
        response = client.get(f"/experiments/?{query}")
        assert response.status_code == 200, query
        assert _keys(response.get_data(as_text=True)) == keys, query


def test_the_dashboard_shows_a_write_at_once_though_it_keeps_its_rows(uncached_app, db_engine):
    """The dashboard reuses the review rows kept per process: a committed write (here a
    stop, made through the service in another session) must show on the next view."""
    from experiments.registry import stop_experiment

    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=10, nodes=12, weeks=4, accounts=20)
    client = uncached_app.test_client()
    assert Auth(client).login(ADMIN_EMAIL, PASSWORD).status_code == 303

    def needs_decision() -> str:
        html = client.get("/").get_data(as_text=True)
        return html[html.index('id="decide-heading"'):html.index("</section>",
                                                                 html.index('id="decide-heading"'))]

    engine = uncached_app.extensions["nrrlab.engine"]
    first, _ = _measure(client, engine, "/")  # _measure's own first GET kept the rows
    computed, _ = _measure_first(client, engine, "/")
    assert first < computed  # the kept rows saved this view their reads
    assert "Experiment 0001" not in needs_decision()
    with Session(db_engine, expire_on_commit=False) as session:
        admin = session.exec(select(User).where(User.email == ADMIN_EMAIL)).one()
        stop_experiment(session, "exp-0001", actor=admin)
        session.commit()
    assert "Experiment 0001" in needs_decision()
