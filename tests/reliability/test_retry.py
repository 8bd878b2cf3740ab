"""PostgreSQL serialization failures and deadlocks (SQLSTATE 40001/40P01) are repeated a
bounded number of times, then answered with a clear 503 (issue 12, "Also deliver")."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from experiments.db import TRANSACTION_ATTEMPTS, make_engine, run_transaction
from tests.helpers import dispose_app


class _DriverError(Exception):
    def __init__(self, sqlstate: str):
        super().__init__(f"driver error {sqlstate}")
        self.sqlstate = sqlstate


def _lost_race(sqlstate: str = "40001") -> OperationalError:
    return OperationalError("UPDATE …", {}, _DriverError(sqlstate))


def test_run_transaction_repeats_a_lost_race_and_then_gives_up(engine):
    calls = []

    def flaky(session):
        calls.append(1)
        if len(calls) < 3:
            raise _lost_race("40P01" if len(calls) == 1 else "40001")
        return session.execute(text("SELECT 41 + 1")).scalar_one()

    assert run_transaction(engine, flaky) == 42
    assert len(calls) == 3

    calls.clear()

    def always(_session):
        calls.append(1)
        raise _lost_race()

    with pytest.raises(OperationalError):
        run_transaction(engine, always)
    assert len(calls) == TRANSACTION_ATTEMPTS == 3

    calls.clear()

    def other_error(_session):
        calls.append(1)
        raise _lost_race("23505")  # a unique violation is not retried

    with pytest.raises(OperationalError):
        run_transaction(engine, other_error)
    assert len(calls) == 1


@pytest.fixture
def racing_app(db_engine, database_url, tmp_path):
    from webapp import create_app
    from webapp.security import public

    app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "r" * 48, "DATABASE_URL": database_url,
                      "INSTANCE_PATH": str(tmp_path / "instance"), "WTF_CSRF_ENABLED": False})
    app.races_to_lose = 0
    app.calls = 0

    @public
    def racing():
        from webapp.db import get_session

        app.calls += 1
        get_session().execute(text("SELECT 1"))
        if app.calls <= app.races_to_lose:
            raise _lost_race()
        return "saved"

    app.add_url_rule("/_test/racing", "racing", racing, methods=["GET"])

    @public
    def locking():
        from webapp.db import get_session

        connection = get_session().connection()
        connection.execute(text("SELECT 1"))
        return "locked" if connection.connection.dbapi_connection.in_transaction else "free"

    app.add_url_rule("/_test/locking", "locking", locking, methods=["GET", "POST"])
    yield app
    dispose_app(app)


def test_a_view_that_loses_a_race_is_repeated(racing_app):
    racing_app.races_to_lose = 2
    response = racing_app.test_client().get("/_test/racing")
    assert (response.status_code, response.get_data(as_text=True)) == (200, "saved")
    assert racing_app.calls == 3


def test_a_view_that_keeps_losing_answers_503_busy(racing_app):
    racing_app.races_to_lose = 99
    response = racing_app.test_client().get("/_test/racing")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert "database was busy with a conflicting change" in response.get_data(as_text=True)
    assert racing_app.calls == 3


def test_serializable_conflicts_on_postgresql_are_retried_to_the_exact_total(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("serialization failures are PostgreSQL's")
    engine = make_engine(database_url).execution_options(isolation_level="SERIALIZABLE")
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS race_counter"))
        connection.execute(text("CREATE TABLE race_counter (id int PRIMARY KEY, n int)"))
        connection.execute(text("INSERT INTO race_counter VALUES (1, 0)"))
    barrier, attempts = threading.Barrier(2), []

    def increment(session):
        attempts.append(1)
        n = session.execute(text("SELECT n FROM race_counter WHERE id = 1")).scalar_one()
        if len(attempts) <= 2:
            barrier.wait(timeout=10)  # both read before either writes: one must fail
        session.execute(text("UPDATE race_counter SET n = :n WHERE id = 1"), {"n": n + 1})

    threads = [threading.Thread(target=run_transaction, args=(engine, increment)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT n FROM race_counter")).scalar_one() == 2
        connection.execute(text("DROP TABLE race_counter"))
        connection.commit()
    assert len(attempts) == 3  # the loser ran again
    engine.dispose()


def test_on_sqlite_a_writing_request_holds_the_write_lock_and_a_reading_one_none(
        racing_app, database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's transaction kinds")
    client = racing_app.test_client()
    assert client.get("/_test/locking").get_data(as_text=True) == "free"
    assert client.post("/_test/locking").get_data(as_text=True) == "locked"
