"""One engine per app, one session per request, and a request repeated when it lost a race.

A request that may write (any method but GET, HEAD and OPTIONS) gets a session whose
SQLite transactions begin ``IMMEDIATE``: its reads and writes are one serialised unit.
A reading request's session takes no lock until (unusually) it writes; see
``experiments.db`` for the three SQLite transaction kinds.

On PostgreSQL a transaction aborted by a serialization failure or a deadlock
(SQLSTATE 40001/40P01) is repeated: the whole view runs again on a fresh session, up to
``experiments.db.TRANSACTION_ATTEMPTS`` times; then the client gets a 503 with
``Retry-After`` that says the database was busy. This is safe because a view's only
side effects are its database transaction and its response. Requests carrying files are
not repeated (their stream has been read); they answer the 503 at once.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, current_app, g, has_request_context, render_template, request
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from experiments.db import (
    TRANSACTION_ATTEMPTS,
    check_connection,
    is_retryable,
    make_engine,
    retry_pause,
    write_engine,
)
from webapp.problems import problem, wants_problem
from webapp.rendering import is_htmx

_KEY = "nrrlab.engine"
_READING_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BUSY_MESSAGE = ("The database was busy with a conflicting change and this one could not be "
                "saved. Nothing was half-saved; please try again.")
BUSY_RETRY_AFTER_SECONDS = 2
log = logging.getLogger("nrrlab.db")


def init_db(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    if app.config.get("CHECK_DATABASE_AT_START", True):
        check_connection(engine)
    app.extensions[_KEY] = engine

    @app.teardown_appcontext
    def close_session(exc: BaseException | None) -> None:
        _discard_session(rollback=exc is not None)

    dispatch = app.dispatch_request

    def dispatch_repeating_lost_races():
        for attempt in range(1, TRANSACTION_ATTEMPTS + 1):
            try:
                return dispatch()
            except DBAPIError as exc:
                if not is_retryable(exc):
                    raise
                _discard_session(rollback=True)
                if attempt == TRANSACTION_ATTEMPTS or request.files:
                    log.warning("transaction lost a race %d times: %s", attempt,
                                getattr(exc.orig, "sqlstate", ""))
                    return _busy()
                time.sleep(retry_pause(attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    # Flask calls self.dispatch_request(); an instance attribute wraps every view.
    app.dispatch_request = dispatch_repeating_lost_races


def _busy():
    if wants_problem():
        return problem(503, BUSY_MESSAGE, headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)})
    # htmx swaps a 503 into its target: give it the fragment, not the whole layout.
    template = "errors/_error.html" if is_htmx() else "errors/error.html"
    page = render_template(template, code=503, message=BUSY_MESSAGE)
    return page, 503, {"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)}


def _discard_session(*, rollback: bool) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        if rollback:
            session.rollback()
        session.close()


def get_engine() -> Engine:
    return current_app.extensions[_KEY]


def get_session() -> Session:
    """The request's session, opened on first use (a writer's on a writing request)."""
    if "db_session" not in g:
        engine = get_engine()
        if has_request_context() and request.method not in _READING_METHODS:
            engine = write_engine(engine)
        g.db_session = Session(engine, expire_on_commit=False)
    return g.db_session
