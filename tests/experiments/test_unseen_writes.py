"""Writes no cached page shows leave the data generation alone, and only they
(``experiments.generation.unseen_write``): the commit hook checks with the database that
the transaction wrote nothing else. Runs on SQLite and, in the PostgreSQL pass, there."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlmodel import Session, func, select

from experiments.audit import record_event
from experiments.denials import DENIAL_ACTION, record_denial
from experiments.generation import unseen_write
from experiments.models import AuditEvent, Team
from tests.experiments.test_generation import generation
from tests.factories import make_team

pytestmark = pytest.mark.db
AUDIT = AuditEvent.__tablename__


def _deny(session: Session, path: str = "/experiments/other-team") -> None:
    assert record_denial(session, actor=None, ip="192.0.2.7", path=path,
                         endpoint="experiments.detail", reason="not visible") is not None


def _audit_rows(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(AuditEvent)).one()


def test_a_denial_alone_is_stored_and_leaves_the_generation(db_engine):
    before = generation(db_engine)
    with Session(db_engine) as session:
        _deny(session)
        session.commit()
        _deny(session, "/experiments/another")
        session.commit()
    assert generation(db_engine) == before
    with Session(db_engine) as session:
        actions = session.exec(select(AuditEvent.action)).all()
    assert actions == [DENIAL_ACTION, DENIAL_ACTION]


@pytest.mark.parametrize("order", ["visible first", "visible after"])
def test_a_denial_and_a_visible_write_in_one_transaction_move_it(db_engine, order):
    before = generation(db_engine)
    with Session(db_engine) as session:
        if order == "visible first":
            make_team(session, "growth")
        _deny(session)
        if order == "visible after":
            make_team(session, "growth")
        session.commit()
    assert generation(db_engine) != before


def test_a_visible_write_inside_the_block_moves_it(db_engine):
    """The mark is checked, not trusted: a team written inside an unseen block."""
    before = generation(db_engine)
    with Session(db_engine) as session:
        with unseen_write(session, AUDIT):
            record_event(session, "probe.denied", actor=None, entity_type="route")
            session.add(Team(slug="inside", name="Inside"))
        session.commit()
    assert generation(db_engine) != before


def test_changing_a_marked_table_beyond_appending_moves_it(db_engine):
    with Session(db_engine) as session:
        _deny(session)
        session.commit()
    before = generation(db_engine)
    with Session(db_engine) as session:
        with unseen_write(session, AUDIT):
            session.exec(text("UPDATE audit_event SET ip = '198.51.100.1'"))
        session.commit()
    assert generation(db_engine) != before


def test_a_core_write_after_the_block_moves_it(db_engine):
    with Session(db_engine) as session:
        make_team(session, "growth")
        session.commit()
    before = generation(db_engine)
    with Session(db_engine) as session:
        _deny(session)
        session.exec(text("UPDATE team SET name = name || '!'"))
        session.commit()
    assert generation(db_engine) != before


def test_a_mark_does_not_outlive_its_transaction(db_engine):
    """A rolled-back denial's mark must not spare the next transaction of the connection,
    whose write (unmarked) must move the generation."""
    before = generation(db_engine)
    with Session(db_engine) as session:
        _deny(session)
        session.rollback()
        record_event(session, "probe.visible", actor=None, entity_type="route")
        session.commit()
    assert generation(db_engine) != before
    assert _audit_rows(db_engine) == 1


# ------------------------------------------------------------------ sign-in counters


def test_counting_sign_in_attempts_and_failures_leaves_it(db_engine):
    from experiments.signin import SignInLimits, admit_sign_in, record_login_failure

    limits = SignInLimits(pair_limit=1)
    before = generation(db_engine)
    with Session(db_engine) as session:
        for _ in range(3):  # a new counter, a bumped one, a refusal (audited once)
            admit_sign_in(session, email="a@example.com", ip="192.0.2.7", limits=limits)
            session.commit()
            record_login_failure(session, email="a@example.com", ip="192.0.2.7")
            session.commit()
    assert generation(db_engine) == before
    with Session(db_engine) as session:
        actions = session.exec(select(AuditEvent.action)).all()
    assert "auth.login_throttled" in actions and "auth.login_failed" in actions


def test_a_sign_in_failure_beside_a_visible_write_moves_it(db_engine):
    from experiments.signin import record_login_failure

    before = generation(db_engine)
    with Session(db_engine) as session:
        record_login_failure(session, email="a@example.com", ip="192.0.2.7")
        make_team(session, "growth")
        session.commit()
    assert generation(db_engine) != before


def test_a_visible_write_inside_a_rewriting_block_moves_it_on_postgresql(db_engine):
    """PostgreSQL counts per table; SQLite cannot (``unseen_write``: rewriting blocks are
    checked there only for writes outside them)."""
    if db_engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no per-table change count")
    before = generation(db_engine)
    with Session(db_engine) as session:
        with unseen_write(session, "login_throttle", rewrites=True):
            session.add(Team(slug="inside", name="Inside"))
        session.commit()
    assert generation(db_engine) != before


# ------------------------------------------------------------------ the check's blind spots


def test_a_visible_write_in_the_block_moves_it_while_another_connection_appends(db_engine):
    """Another connection's append to the named table after the block's first count must
    not pass for one of the block's own rows. (SQLite took its write lock only at the
    block's first write, and the largest rowid is the database's: the other denial got
    in, and the team below went unnoticed.) Now the other writer waits for this
    transaction on SQLite; on PostgreSQL it is another backend, whose rows are not counted
    here."""
    with Session(db_engine) as session:
        _deny(session, "/first")
        session.commit()
    before = generation(db_engine)
    failures: list[Exception] = []

    def deny_elsewhere() -> None:
        try:
            with Session(db_engine) as other:
                _deny(other, "/meanwhile")
                other.commit()
        except Exception as exc:  # noqa: BLE001 - reported by the test thread below
            failures.append(exc)

    with Session(db_engine) as session:
        with unseen_write(session, AUDIT):
            elsewhere = threading.Thread(target=deny_elsewhere)
            elsewhere.start()
            elsewhere.join(timeout=2.0)  # done by now, unless it waits for the write lock
            record_event(session, "probe.denied", actor=None, entity_type="route")
            session.add(Team(slug="inside", name="Inside"))
        session.commit()
    elsewhere.join()
    assert not failures
    assert generation(db_engine) != before
    assert _audit_rows(db_engine) == 3


def test_a_write_after_the_block_moves_it_when_the_server_counts_nothing(db_engine):
    """With ``track_counts = off`` PostgreSQL counts no rows at all: the block then
    proves nothing, and a team renamed after it must still move the generation."""
    if db_engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's statistics switch")
    with Session(db_engine) as session:
        make_team(session, "growth")
        session.commit()
    before = generation(db_engine)
    with Session(db_engine) as session:
        session.exec(text("SET LOCAL track_counts = off"))  # the test role is a superuser
        _deny(session)
        session.exec(text("UPDATE team SET name = name || '!'"))
        session.commit()
    assert generation(db_engine) != before


def test_a_denial_rolled_back_to_a_savepoint_then_a_visible_write_moves_it(db_engine):
    """Rows undone by ``ROLLBACK TO SAVEPOINT`` stay counted (SQLite's total_changes;
    PostgreSQL adds an aborted subtransaction's counts to the transaction's), so the
    write after it is still seen; a HOT update of a team counts as an update."""
    with Session(db_engine) as session:
        make_team(session, "growth")
        session.commit()
    before = generation(db_engine)
    with Session(db_engine) as session:
        savepoint = session.begin_nested()
        _deny(session)
        savepoint.rollback()
        session.exec(text("UPDATE team SET name = name || '!'"))
        session.commit()
    assert generation(db_engine) != before
    assert _audit_rows(db_engine) == 0
