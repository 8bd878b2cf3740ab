"""A closed session forgets its copy of the small tables (experiments.reference_rows):
``Session.close`` ends the transaction without firing the rollback events, and the
session may be used again afterwards."""

from __future__ import annotations

from sqlmodel import Session

from experiments.models import Team
from experiments.reference_rows import all_rows


def test_a_session_used_again_after_close_reads_the_table_afresh(db_engine):
    session = Session(db_engine)
    try:
        before = len(all_rows(session, Team))
        session.close()
        with Session(db_engine) as other:
            other.add(Team(slug="after-close", name="After close"))
            other.commit()
        assert len(all_rows(session, Team)) == before + 1
    finally:
        session.close()
