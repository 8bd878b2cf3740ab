"""Links built once (issue 18, ``webapp.templating``: ``fixed_url`` and ``key_url``) and
the data generation read once per first view after a write (``experiments.generation``).

Every frame link (stylesheets, scripts, navigation, account links) and every experiment
link on the dashboard and the review must be the one ``url_for`` gives under the request's
own mount prefix, also when one app answers under two prefixes and without one; a key
``url_for`` escapes is escaped the same. A first view after a write reads the generation
once, though both the page cache and the kept review rows key on it."""

from __future__ import annotations

import re

import pytest
from flask import url_for
from sqlalchemy import event, text
from sqlmodel import Session, select

from benchmarks.workspace import ADMIN_EMAIL, PASSWORD, build_workspace
from experiments.models import Experiment
from experiments.review_weeks import current_week
from tests.helpers import Auth

NAV = ("me.index", "dashboard.index", "tree.index", "nrr.index", "experiments.index",
       "review.current", "quarterly.current", "journeys.index", "planner.index",
       "admin.users", "auth.logout", "auth.password", "tokens.index",
       "notify.preferences", "notify.calendar")
STATIC = ("favicon.svg", "app.css", "tree.css", "review.css", "vendor/htmx.min.js")


@pytest.fixture
def signed_in(app, db_engine):
    with Session(db_engine, expire_on_commit=False) as session:
        build_workspace(session, experiments=4, nodes=6, weeks=2, accounts=20)
    client = app.test_client()
    assert Auth(client).login(ADMIN_EMAIL, PASSWORD).status_code == 303
    return client


def _keys(db_engine) -> list[str]:
    with Session(db_engine) as session:
        return list(session.exec(select(Experiment.key)).all())


def _links(html: str) -> set[str]:
    return set(re.findall(r'(?:href|src|action)="([^"#]*)', html))


@pytest.mark.parametrize("prefixes", [("/lab", "", "/other/lab"), ("", "/lab")])
def test_frame_and_experiment_links_are_url_for_s_under_each_prefix(app, db_engine, signed_in,
                                                                     prefixes):
    app.config["PAGE_CACHE"] = False  # rendered each time, not kept per prefix
    keys = _keys(db_engine)
    for prefix in prefixes:
        for path in ("/", f"/review/{current_week().label}"):
            response = signed_in.get(path, environ_overrides={"SCRIPT_NAME": prefix})
            assert response.status_code == 200, (prefix, path)
            html = response.get_data(as_text=True)
            links = _links(html)
            with app.test_request_context(path, environ_overrides={"SCRIPT_NAME": prefix}):
                expected = {url_for(e) for e in NAV}
                expected |= {url_for("static", filename=f) for f in STATIC}
                shown = {url_for("experiments.detail", key=k) for k in keys}
            assert expected <= links, (prefix, path, sorted(expected - links))
            assert shown <= links, (prefix, path, sorted(shown - links))
            # nothing of another mount: every link of the app starts with this prefix
            for link in links:
                if link.startswith("/"):
                    assert link.startswith(f"{prefix}/"), (prefix, path, link)


def test_key_url_is_url_for_for_any_key_and_anchor(app):
    from webapp.templating import fixed_url, key_url

    with app.test_request_context("/", environ_overrides={"SCRIPT_NAME": "/lab"}):
        for key in ("exp-0001", "a.b_c~d", "with space", "naïve", "a/b", "50%", "x?y#z"):
            assert key_url("experiments.detail", key) == url_for("experiments.detail", key=key)
            for anchor in ("decision-reopen", "a b"):
                assert key_url("experiments.detail", key, _anchor=anchor) \
                    == url_for("experiments.detail", key=key, _anchor=anchor)
        assert fixed_url("static", filename="app.css") == url_for("static", filename="app.css")
    with app.test_request_context("/"):
        assert key_url("experiments.detail", "exp-0001") == "/experiments/exp-0001"
        assert fixed_url("review.current") == url_for("review.current")


def test_a_first_view_after_a_write_reads_the_generation_once(app, db_engine, signed_in):
    app.config["PAGE_CACHE"] = True
    engine = app.extensions["nrrlab.engine"]
    reads: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "data_generation" in statement and statement.lstrip().upper().startswith("SELECT"):
            reads.append(statement)

    for path in ("/", f"/review/{current_week().label}"):
        signed_in.get(path)  # the review's first GET freezes its week (a write)
        with db_engine.begin() as connection:  # a write: the next view is a miss
            connection.execute(text("UPDATE data_generation SET n = n + 1"))
        event.listen(engine, "before_cursor_execute", record)
        try:
            reads.clear()
            assert signed_in.get(path).status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", record)
        # the page cache's key and the kept review rows' key: one read for both
        assert len(reads) == 1, (path, reads)
