"""``read_generation`` reads the row once per transaction (issue 18: the page cache and the
kept review rows both ask on a first view after a write) and again in the next one: a
write committed in between is seen by the next transaction, never hidden by the memo,
on a session's connection and a plain one, whether the transaction committed or rolled
back. Runs on SQLite and, with ``DATABASE_URL=postgresql://…``, on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import event, text
from sqlmodel import Session

from experiments.generation import read_generation


def _write(engine) -> None:
    with engine.begin() as connection:  # any committed write moves the number
        connection.execute(text("UPDATE data_generation SET n = n + 1"))


def _reads(engine) -> tuple[list[str], callable]:
    sent: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "data_generation" in statement:
            sent.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return sent, lambda: event.remove(engine, "before_cursor_execute", record)


def test_one_read_per_transaction_and_a_fresh_one_in_the_next(db_engine):
    _write(db_engine)
    with Session(db_engine) as session:
        sent, stop = _reads(db_engine)
        try:
            first = read_generation(session.connection())
            assert read_generation(session.connection()) == first
            assert len(sent) == 1, sent
        finally:
            stop()
        session.commit()
        _write(db_engine)
        after_commit = read_generation(session.connection())
        assert after_commit > first
        session.rollback()
        _write(db_engine)
        assert read_generation(session.connection()) > after_commit


def test_a_plain_connection_reads_again_in_each_transaction(db_engine):
    _write(db_engine)
    with db_engine.connect() as connection:
        first = read_generation(connection)
        connection.commit()
        _write(db_engine)
        second = read_generation(connection)
        assert second > first
        connection.rollback()
    _write(db_engine)
    with db_engine.connect() as connection:  # the pooled connection again, a new transaction
        assert read_generation(connection) > second
