"""The data generation moves with every committed write and only then (the page cache's
key; ``experiments.generation``). Runs on SQLite and, in the PostgreSQL pass, there."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from experiments.db import make_engine, run_transaction, session_scope
from experiments.generation import read_generation
from experiments.models import Team
from tests.factories import make_team


def generation(engine) -> int | None:
    with engine.connect() as connection:
        return read_generation(connection)


@pytest.fixture
def counting(monkeypatch):
    """The clock at 0: the generation then moves by exactly one a commit (it is the larger
    of ``n + 1`` and the clock in microseconds), so increments can be counted."""
    import experiments.generation

    monkeypatch.setattr(experiments.generation.time, "time_ns", lambda: 0)


def test_a_committed_orm_write_moves_it_by_one(db_engine, counting):
    before = generation(db_engine)
    with Session(db_engine) as session:
        make_team(session, "growth")
        session.commit()
    assert generation(db_engine) == before + 1


def test_reads_rollbacks_and_empty_commits_leave_it(db_engine):
    before = generation(db_engine)
    with Session(db_engine) as session:
        session.exec(select(Team)).all()
        session.commit()  # read, then commit: nothing written
    with Session(db_engine) as session:
        make_team(session, "growth")
        session.flush()
        session.rollback()
    with Session(db_engine) as session:
        session.exec(text("UPDATE team SET name = name WHERE id = -1"))  # touches no row
        session.commit()
    assert generation(db_engine) == before


def test_core_and_text_writes_move_it(db_engine, counting):
    with Session(db_engine) as session:
        make_team(session, "growth")
        session.commit()
    before = generation(db_engine)
    with db_engine.begin() as connection:
        connection.execute(text("UPDATE team SET name = 'Growth 2' WHERE slug = 'growth'"))
    with session_scope(db_engine) as session:
        session.exec(text("UPDATE team SET name = 'Growth 3' WHERE slug = 'growth'"))
    run_transaction(db_engine, lambda s: s.exec(text("DELETE FROM team WHERE slug = 'growth'")))
    assert generation(db_engine) == before + 3


def test_a_raw_driver_cursor_write_moves_it(db_engine, counting):
    """The uploads' own paths: SQLite ``executemany``, PostgreSQL ``COPY``, both on the
    driver's cursor, invisible to SQLAlchemy's statement events."""
    with Session(db_engine) as session:
        make_team(session, "growth")
        session.commit()
    before = generation(db_engine)
    with Session(db_engine) as session:
        connection = session.connection()
        raw = connection.connection.driver_connection
        if connection.dialect.name == "postgresql":
            cursor = raw.cursor()
            with cursor.copy("COPY team (slug, name, created_at) FROM STDIN") as copy:
                copy.write("copied\tCopied\t2026-01-01 00:00:00+00\n")
        else:
            if not raw.in_transaction:
                raw.execute("BEGIN IMMEDIATE")
            raw.executemany("UPDATE team SET name = ? WHERE slug = ?", [("G", "growth")])
        session.commit()
    assert generation(db_engine) == before + 1


def test_another_engine_sees_the_write_at_once(db_engine, database_url, counting):
    other = make_engine(database_url)
    try:
        before = generation(other)
        with Session(db_engine) as session:
            make_team(session, "growth")
            session.commit()
        assert generation(other) == before + 1
    finally:
        other.dispose()


def test_the_number_never_goes_back_after_a_restore(db_engine):
    """``nrrlab restore`` puts an older number back; the next write jumps past every
    number used before, so no page kept under one of them can be taken for the new data."""
    with Session(db_engine) as session:
        make_team(session, "growth")
        session.commit()
    held = generation(db_engine)
    with db_engine.begin() as connection:
        connection.execute(text("UPDATE data_generation SET n = 5"))  # as a restore would
    assert generation(db_engine) > held


def test_a_deleted_row_comes_back_above_every_number_it_held(db_engine):
    with Session(db_engine) as session:
        make_team(session, "growth")
        session.commit()
    held = generation(db_engine)
    with db_engine.begin() as connection:  # the tests' own clean-up does this
        connection.execute(text("DELETE FROM data_generation"))
    assert generation(db_engine) > held  # the delete's commit wrote it again, higher


def test_no_row_reads_as_none(db_engine):
    with db_engine.connect() as connection:  # no commit: the row is gone only in here
        connection.execute(text("DELETE FROM data_generation"))
        assert read_generation(connection) is None  # the page cache keeps nothing then
        connection.rollback()


def test_two_writers_at_once_on_postgresql_lose_no_increment(db_engine, counting):
    """Both transactions have written before either commits; each commit adds one (the
    second upsert waits for the first's row lock, then adds to the committed value)."""
    if db_engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers (BEGIN IMMEDIATE); PostgreSQL pass only")
    before = generation(db_engine)
    writers, rounds = 4, 5
    both_wrote = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            for step in range(rounds):
                with Session(db_engine) as session:
                    make_team(session, f"team-{index}-{step}")
                    session.flush()
                    both_wrote.wait(timeout=30)
                    session.commit()
        except BaseException as exc:  # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert generation(db_engine) == before + writers * rounds
