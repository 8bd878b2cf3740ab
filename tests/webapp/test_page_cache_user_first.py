"""A cached page's data generation is read before its signed-in user (R1, issue 18).

The page-cache key's number must be read before every piece of data the page shows, and
the signed-in user (shown in the frame: e-mail and role) is such data. Flask-Login loads
the user for the permission check, before the view; on PostgreSQL (READ COMMITTED) a
change to the user committed between that load and the key's read was kept under the
*new* number with the *old* user and served to them until the entry expired.
"""

from __future__ import annotations

import pytest
from sqlalchemy import event, update

from experiments.models import User
from tests.webapp.test_results import make_experiment

pytestmark = pytest.mark.db


def _app_engine(app):
    from webapp.db import get_engine

    with app.app_context():
        return get_engine()


def _is_user_read(statement: str) -> bool:
    return "FROM user_account" in statement and "WHERE" in statement


def _statements(db_engine):
    seen: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many):
        seen.append(statement)

    event.listen(db_engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(db_engine, "before_cursor_execute", record)


def test_a_cached_page_reads_the_generation_before_the_user(app, login_as, factory, db_engine):
    factory.team("growth")
    make_experiment(db_engine)
    reader = login_as("viewer", teams={"growth": "viewer"})
    seen, stop = _statements(_app_engine(app))
    try:
        assert reader.get("/").status_code == 200
    finally:
        stop()
    generation = next(i for i, s in enumerate(seen) if "data_generation" in s)
    user = next(i for i, s in enumerate(seen) if _is_user_read(s))
    assert generation < user, seen[:4]


def test_a_page_not_cached_reads_no_generation_first(app, login_as, factory, db_engine):
    reader = login_as("viewer")
    seen, stop = _statements(_app_engine(app))
    try:
        assert reader.get("/account/tokens").status_code == 200
    finally:
        stop()
    assert not any("data_generation" in s for s in seen)


def test_a_change_to_the_user_committed_while_the_page_loads_is_not_kept(
        app, login_as, factory, db_engine):
    factory.team("growth")
    make_experiment(db_engine)
    reader = login_as("viewer", teams={"growth": "viewer"})
    user_id = reader.user.id
    fired: list[bool] = []
    engine = _app_engine(app)

    def rename_after_the_user_is_read(_conn, _cursor, statement, _params, _context, _many):
        if not fired and _is_user_read(statement):
            fired.append(True)
            with engine.begin() as other:  # another request's commit, meanwhile
                other.execute(update(User).where(User.id == user_id)
                              .values(email="renamed@example.com"))

    event.listen(engine, "after_cursor_execute", rename_after_the_user_is_read)
    try:
        first = reader.get("/")
    finally:
        event.remove(engine, "after_cursor_execute", rename_after_the_user_is_read)
    assert fired and first.status_code == 200
    again = reader.get("/")
    assert again.status_code == 200
    assert "renamed@example.com" in again.get_data(as_text=True)
