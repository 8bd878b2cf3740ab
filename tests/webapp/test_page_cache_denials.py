"""Refused requests do not empty the page cache (issue 18): each writes an ``authz.denied``
audit row (a wrong password: sign-in counters and ``auth.login_failed``), which no cached
page shows, so one user probing other teams' URLs, an anonymous client probing the API or
guessing passwords must leave everyone's kept pages kept
(``experiments.generation.unseen_write``). Runs on SQLite and in the PostgreSQL pass."""

from __future__ import annotations

import pytest
from sqlalchemy import event
from sqlmodel import Session, select

from experiments.denials import DENIAL_ACTION
from experiments.models import AuditEvent
from experiments.signin import THROTTLED_ACTION
from tests.helpers import Auth
from tests.webapp.test_results import make_experiment
from tests.webapp.test_results_body_cache import without_tokens

pytestmark = pytest.mark.db


def page_cache(app):
    return app.extensions["nrrlab.page_cache"]


def statements_of(app, read) -> list[str]:
    seen: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        seen.append(statement)

    engine = app.extensions["nrrlab.engine"]
    event.listen(engine, "before_cursor_execute", record)
    try:
        read()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    return seen


def recorded(engine) -> list[str]:
    """Audit rows of refusals: denials and failed or throttled sign-ins."""
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent.action).where(AuditEvent.action.in_(
            (DENIAL_ACTION, "auth.login_failed", THROTTLED_ACTION)))).all())


def _probe_another_teams_experiment(app, prober):
    assert prober.get("/experiments/seat-nudge").status_code == 404
    assert prober.get("/experiments/seat-nudge/results").status_code == 404
    assert prober.post("/experiments/seat-nudge/recompute",
                       data={"csrf_token": prober.csrf}).status_code == 404


def _probe_the_api_without_a_token(app, prober):
    anonymous = app.test_client()
    for path in ("/api/v1/experiments", "/api/v1/experiments/seat-nudge"):
        assert anonymous.get(path).status_code == 401


def _guess_passwords(app, prober):
    """An anonymous client guessing passwords (counted, throttled and audited) and a
    signed-in user getting their current password wrong."""
    guesser = Auth(app.test_client())
    for attempt in range(12):  # past the pair limit (10): refusals, throttle audit rows
        assert guesser.login(prober.user.email, f"wrong-{attempt}").status_code in (401, 429)
    assert guesser.login("nobody@example.com", "wrong").status_code == 401


def _post_without_a_csrf_token(app, prober):
    assert prober.post("/experiments/seat-nudge/recompute").status_code == 400


@pytest.mark.parametrize("probe", [_probe_another_teams_experiment,
                                   _probe_the_api_without_a_token, _post_without_a_csrf_token,
                                   _guess_passwords],
                         ids=lambda p: p.__name__.strip("_"))
@pytest.mark.parametrize("path", ["/", "/experiments/seat-nudge", "/tree/"])
def test_a_denial_leaves_kept_pages_kept(app, login_as, factory, db_engine, probe, path):
    factory.team("growth")
    factory.team("other")
    make_experiment(db_engine)
    # Signing in writes (it is not a probe): both sign in before the page is kept.
    prober = login_as("viewer", teams={"other": "analyst"})
    reader = login_as("viewer", teams={"growth": "viewer"})
    first = reader.get(path)
    assert first.status_code == 200
    cache = page_cache(app)
    hit = statements_of(app, lambda: reader.get(path))  # a hit: the user and the generation
    before = len(recorded(db_engine))

    probe(app, prober)

    assert len(recorded(db_engine)) > before  # the refusals were recorded
    hits, misses = cache.hits, cache.misses
    again: list = []
    after = statements_of(app, lambda: again.append(reader.get(path)))
    assert without_tokens(again[0].get_data(as_text=True)) == \
        without_tokens(first.get_data(as_text=True))
    assert (cache.hits, cache.misses) == (hits + 1, misses), "the denial emptied the cache"
    assert len(after) == len(hit)
