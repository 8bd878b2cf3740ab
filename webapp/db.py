"""One engine per app, one session per request."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.engine import Engine
from sqlmodel import Session

from experiments.db import check_connection, make_engine

_KEY = "nrrlab.engine"


def init_db(app: Flask) -> None:
    engine = make_engine(app.config["DATABASE_URL"])
    if app.config.get("CHECK_DATABASE_AT_START", True):
        check_connection(engine)
    app.extensions[_KEY] = engine

    @app.teardown_appcontext
    def close_session(exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            if exc is not None:
                session.rollback()
            session.close()


def get_engine() -> Engine:
    return current_app.extensions[_KEY]


def get_session() -> Session:
    """The request's session, opened on first use."""
    if "db_session" not in g:
        g.db_session = Session(get_engine(), expire_on_commit=False)
    return g.db_session
