"""Every PostgreSQL connection works in UTC, whatever the server's or database's zone.

The models' moments are ``timestamptz`` through SQLModel's ``UTCDateTime`` and do not
depend on it, but a ``text()`` statement's moments come back in the session's zone, and
a moment bound to a ``timestamp`` without zone is shifted by it: on a Europe/Berlin
database 17:14Z read back as 18:14 (:mod:`experiments.db` pins ``TimeZone=UTC``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import Session, select

from experiments.db import _postgres_connect, make_engine, session_time_zone_is_utc
from experiments.models import ReviewMeeting, utcnow
from tests.conftest import create_scratch_database, drop_scratch_database

MOMENT = datetime(2026, 11, 30, 17, 14, 5, tzinfo=UTC)


@pytest.fixture
def berlin_database(postgres_server_url):
    """A scratch database whose own time zone is Europe/Berlin (as initdb sets it from
    the system's zone on such a host)."""
    if postgres_server_url is None:
        pytest.skip("PostgreSQL only: SQLite has no session time zone")
    url = create_scratch_database(postgres_server_url)
    name = make_url(url).database
    admin = make_engine(postgres_server_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"ALTER DATABASE \"{name}\" SET timezone TO 'Europe/Berlin'"))
    admin.dispose()
    yield url
    drop_scratch_database(postgres_server_url, url)


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_the_database_really_is_in_berlin_for_a_plain_client(berlin_database):
    # The premise: a connection that does not ask for UTC gets Berlin (else the tests
    # below would pass for the wrong reason).
    with psycopg.connect(_libpq(berlin_database)) as connection:
        assert connection.execute("SHOW TimeZone").fetchone()[0] == "Europe/Berlin"


def test_a_moment_reads_back_as_written_on_a_berlin_database(berlin_database):
    engine = make_engine(berlin_database)
    try:
        with engine.begin() as connection:
            assert connection.execute(text("SHOW TimeZone")).scalar() == "UTC"
            connection.execute(text("CREATE TABLE moments (at timestamp without time zone)"))
            connection.execute(text("INSERT INTO moments VALUES (:at)"), {"at": MOMENT})
        with engine.connect() as connection:
            stored = connection.execute(text("SELECT at FROM moments")).scalar()
        assert stored == MOMENT.replace(tzinfo=None)  # 17:14, not 18:14
    finally:
        engine.dispose()


def test_a_row_saved_now_is_not_in_the_future_on_a_berlin_database(berlin_database):
    from sqlmodel import SQLModel

    engine = make_engine(berlin_database)
    try:
        SQLModel.metadata.create_all(engine)
        before = datetime.now(UTC)
        with Session(engine) as session:
            session.add(ReviewMeeting(iso_week="2026-W49", notes="", created_at=utcnow()))
            session.commit()
        with Session(engine) as session:
            created = session.exec(select(ReviewMeeting.created_at)).one()
        created = created.replace(tzinfo=UTC) if created.tzinfo is None else created
        assert before.replace(microsecond=0) <= created <= datetime.now(UTC)
    finally:
        engine.dispose()


def test_a_raw_statement_reads_moments_in_utc_on_a_berlin_database(berlin_database):
    from sqlmodel import SQLModel

    engine = make_engine(berlin_database)
    try:
        SQLModel.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(ReviewMeeting(iso_week="2026-W49", notes="", created_at=MOMENT))
            session.commit()
        with engine.connect() as connection:
            raw = connection.execute(text("SELECT created_at FROM review_meeting")).scalar()
        assert raw.isoformat() == "2026-11-30T17:14:05+00:00"  # not 18:14:05+01:00
    finally:
        engine.dispose()


def test_options_in_the_url_are_kept_beside_utc(berlin_database):
    url = make_url(berlin_database).update_query_dict(
        {"options": "-c search_path=pg_catalog,public"})
    engine = make_engine(url.render_as_string(hide_password=False))
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SHOW TimeZone")).scalar() == "UTC"
            assert connection.execute(text("SHOW search_path")).scalar() \
                == "pg_catalog,public"
    finally:
        engine.dispose()


def test_a_connection_whose_start_up_option_was_dropped_is_set_to_utc(berlin_database):
    # As behind a pooler that drops libpq start-up options: the connect hook sees the
    # reported zone and sets UTC for the session (it stays after a rolled-back transaction).
    with psycopg.connect(_libpq(berlin_database)) as connection:
        _postgres_connect(connection, None)
        connection.execute("SELECT 1")
        connection.rollback()
        assert connection.execute("SHOW TimeZone").fetchone()[0] == "UTC"


@pytest.mark.parametrize("name, utc", [("UTC", True), ("Etc/UTC", True), ("GMT", True),
                                       ("Europe/Berlin", False), ("Europe/London", False),
                                       (None, False), ("", False)])
def test_which_reported_zones_count_as_utc(name, utc):
    # Europe/London is GMT in winter only: not UTC.
    assert session_time_zone_is_utc(name) is utc
