"""The transaction's copies of the small tables across a write of other tables
(``experiments.reference_rows.kept_across``, H4): kept when the block writes only the
tables it names, never when it could have changed what they hold."""

from __future__ import annotations

import pytest
from sqlalchemy import event, update
from sqlmodel import Session

from experiments.models import ReviewMeeting, User, utcnow
from experiments.reference_rows import all_rows, by_id, kept_across
from experiments.review_rows import insert_ignoring_duplicates
from tests.factories import make_user


def _selects(session: Session) -> tuple[list[str], callable]:
    seen: list[str] = []
    engine = session.get_bind()

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(engine, "before_cursor_execute", record)


def _write_a_meeting(session: Session) -> None:
    insert_ignoring_duplicates(session, ReviewMeeting, [
        {"iso_week": "2026-W01", "notes": "", "created_at": utcnow()}])
    session.exec(update(ReviewMeeting).where(ReviewMeeting.iso_week == "2026-W01")
                 .values(notes="kept"))
    session.flush()


@pytest.fixture
def two_users(session):
    make_user(session, "amy@example.com")
    make_user(session, "bob@example.com")
    session.commit()


def test_a_write_of_another_table_keeps_the_copy(session, two_users):
    before = by_id(session, User)
    seen, stop = _selects(session)
    try:
        with kept_across(session, ReviewMeeting):
            _write_a_meeting(session)
        after = by_id(session, User)
    finally:
        stop()
    assert after == before
    assert not [s for s in seen if "FROM user_account" in s], seen


def test_without_the_block_the_write_drops_the_copy(session, two_users):
    by_id(session, User)
    seen, stop = _selects(session)
    try:
        _write_a_meeting(session)
        by_id(session, User)
    finally:
        stop()
    assert len([s for s in seen if "FROM user_account" in s]) == 1


def test_a_block_naming_a_copied_table_is_refused(session, two_users):
    all_rows(session, User, User.name, User.email)
    with pytest.raises(ValueError, match="User has a copy and is written"), \
            kept_across(session, User):
        pass


def test_a_block_that_raises_keeps_nothing(session, two_users):
    by_id(session, User)
    with pytest.raises(RuntimeError), kept_across(session, ReviewMeeting):
        _write_a_meeting(session)
        raise RuntimeError("the write failed")
    seen, stop = _selects(session)
    try:
        by_id(session, User)
    finally:
        stop()
    assert len([s for s in seen if "FROM user_account" in s]) == 1


def test_pending_changes_before_the_block_keep_nothing(session, two_users):
    """An unflushed change may be to any table: its flush inside the block drops the copy
    for good, and a renamed user is read renamed."""
    users = by_id(session, User)
    amy = next(u for u in users.values() if u.email == "amy@example.com")
    amy.name = "Amy Renamed"
    session.add(amy)
    with kept_across(session, ReviewMeeting):
        _write_a_meeting(session)
    seen, stop = _selects(session)
    try:
        names = {u.name for u in all_rows(session, User, User.name, User.email)}
    finally:
        stop()
    assert len([s for s in seen if "FROM user_account" in s]) == 1
    assert "Amy Renamed" in names
