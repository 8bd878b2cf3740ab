"""Account ids and segments of up to 255 characters are stored whole, on both backends.

The upload contract (DESIGN §3) allows text values of up to ``MAX_TEXT_LENGTH`` (255)
characters. ``account_row`` held only 200 until migration e20a1b2c3d45: on PostgreSQL a
201–255-character id or segment failed inside COPY, and the background upload ended as
"unexpected error" instead of storing the file (SQLite, which checks no length, stored it).
A 256-character value is refused by line and field before anything is written.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from experiments.accounts_csv.contract import MAX_TEXT_LENGTH, ImportValidationError
from experiments.imports import import_accounts
from experiments.models import AccountRow
from tests import factories

VARIANTS = ("control", "treatment")


def _csv(rows: list[tuple[str, str, str]]) -> bytes:
    lines = ["account_id,variant,start_mrr,segment"]
    lines += [f"{account},{variant},10,{segment}" for account, variant, segment in rows]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("filler", ["x", "é", "日"], ids=["ascii", "two-byte", "three-byte"])
@pytest.mark.parametrize("many", [False, True], ids=["two-rows", "5000-rows"])
def test_ids_and_segments_of_255_characters_are_stored_whole(session: Session, filler, many):
    long_id = (filler * MAX_TEXT_LENGTH)[:-3] + "-01"
    long_segment = filler * MAX_TEXT_LENGTH
    rows = [(long_id, "control", long_segment), ("b", "treatment", "SMB")]
    if many:
        rows += [(f"acct-{index}", VARIANTS[index % 2], long_segment) for index in range(5000)]
    experiment = factories.make_experiment(session, f"long-{len(rows)}", variants=VARIANTS)
    dataset = import_accounts(session, experiment, _csv(rows), filename="long.csv",
                              actor=None).dataset
    session.commit()

    stored = session.exec(select(AccountRow.account_id, AccountRow.segment)
                          .where(AccountRow.dataset_id == dataset.id)
                          .where(AccountRow.account_id == long_id)).one()
    assert stored == (long_id, long_segment)
    assert len(stored[0]) == len(stored[1]) == MAX_TEXT_LENGTH
    count = session.exec(select(func.count()).select_from(AccountRow)
                         .where(AccountRow.dataset_id == dataset.id)).one()[0]
    assert count == len(rows)


@pytest.mark.parametrize("column", ["account_id", "segment"])
def test_a_256_character_value_is_refused_by_line_and_field(session: Session, column):
    cells = {"account_id": "a", "segment": "s", column: "x" * (MAX_TEXT_LENGTH + 1)}
    data = _csv([(cells["account_id"], "control", cells["segment"]), ("b", "treatment", "x")])
    experiment = factories.make_experiment(session, "too-long", variants=VARIANTS)
    with pytest.raises(ImportValidationError) as refused:
        import_accounts(session, experiment, data, filename="long.csv", actor=None)
    assert f"line 2, {column}" in str(refused.value)
    assert "at most 255" in str(refused.value)
    session.rollback()
    assert session.exec(select(func.count()).select_from(AccountRow)).one()[0] == 0
