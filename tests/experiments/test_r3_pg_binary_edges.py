"""R3 review of the PostgreSQL binary COPY (experiments.rows_postgres): the edges the
review was asked about, each stored a second time through psycopg's own row writer
(:func:`tests.experiments.test_upload_pg_binary.reference_copy`) and compared.

- a file of the required columns only (no optional field is sent);
- more than 1,024 distinct segments (the real ``_FEW_PAIRS``: sent as text);
- every row NULL in an optional column (one NULL length word per row);
- a dataset id at 2**31 - 1, INTEGER's largest: row ids ``id << 32`` plus the line stay
  below 2**63 and in file order;
- a NUL byte or invalid UTF-8 in a segment is refused by the reader, before any COPY.

Ids and segments of 201–255 characters, which failed here in COPY while the columns were
VARCHAR(200), are tested on both backends in ``test_account_text_255.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import text

from experiments import rows_postgres
from experiments.accounts_csv import read_accounts
from experiments.accounts_csv.contract import (
    ImportValidationError,
    account_table,
    object_array,
)
from tests.experiments.test_upload_pg_binary import reference_copy, stored

VARIANTS = ("control", "treatment")


@pytest.fixture(autouse=True)
def postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("binary COPY is PostgreSQL's")


def _scratch(session):
    """A temporary account_row (no checks, no key to dataset) and its raw connection."""
    connection = session.connection()
    connection.execute(text("CREATE TEMP TABLE account_row"
                            " (LIKE public.account_row INCLUDING DEFAULTS) ON COMMIT DROP"))
    return connection, connection.connection.driver_connection


def _table(count: int, **optional):
    return account_table(
        account_id=object_array([f"a{i}" for i in range(count)]),
        variant=object_array([VARIANTS[i % 2] for i in range(count)]),
        start_cents=np.arange(count, dtype=np.int64) + 100,
        expansion_cents=np.zeros(count, dtype=np.int64),
        contraction_cents=np.zeros(count, dtype=np.int64),
        churned_cents=np.zeros(count, dtype=np.int64),
        segment=optional.pop("segment", None),
        days_to_value=optional.pop("days_to_value", None),
        notes=(),
        **optional,
    )


def test_a_file_of_the_required_columns_only(session):
    table = read_accounts(b"account_id,variant,start_mrr\na,control,10.5\nb,treatment,0.01\n",
                          variants=VARIANTS)
    assert rows_postgres.copy_columns(table, ids_by_line=True) == (
        "id", "dataset_id", "start_cents", "expansion_cents", "contraction_cents",
        "churned_cents", "account_id", "variant")
    connection, raw = _scratch(session)

    rows_postgres.copy_rows(raw, 1, table, 0, len(table), ids_by_line=True)
    reference_copy(raw, 2, table)

    ours = stored(connection, 1)
    assert ours == stored(connection, 2)
    assert [row[:7] for row in ours] == [(0, "a", "control", 1050, 0, 0, 0),
                                         (1, "b", "treatment", 1, 0, 0, 0)]
    assert all(value is None for row in ours for value in row[7:])


def test_more_than_1024_segments_go_as_text(session):
    count = 2 * 1100  # 1,100 segments x 2 variants > _FEW_PAIRS, with blanks among them
    segments = [None if i % 50 == 0 else f"s-{i // 2}" for i in range(count)]
    table = _table(count, segment=object_array(segments))
    assert len(set(segments)) * len(VARIANTS) > rows_postgres._FEW_PAIRS
    connection, raw = _scratch(session)

    rows_postgres.copy_rows(raw, 1, table, 0, count, ids_by_line=True)
    reference_copy(raw, 2, table)

    ours = stored(connection, 1)
    assert ours == stored(connection, 2)
    assert [row[7] for row in ours] == segments


def test_a_column_null_in_every_row(session):
    count = 5
    table = _table(count, days_to_value=np.full(count, math.nan),
                   days_observed=np.full(count, math.nan),
                   pre_start_cents=np.full(count, math.nan), pre_end_cents=np.full(count, math.nan),
                   enrolled_on=np.full(count, np.datetime64("NaT"), dtype="datetime64[D]"),
                   segment=object_array([""] * count))
    connection, raw = _scratch(session)

    rows_postgres.copy_rows(raw, 1, table, 0, count, ids_by_line=True)
    reference_copy(raw, 2, table)

    ours = stored(connection, 1)
    assert ours == stored(connection, 2)
    assert all(value is None for row in ours for value in row[7:])


def test_row_ids_of_the_largest_dataset_id(session):
    count = 3
    largest = 2**31 - 1  # dataset.id is INTEGER
    table = _table(count)
    connection, raw = _scratch(session)

    rows_postgres.copy_rows(raw, largest, table, 0, count, ids_by_line=True)
    reference_copy(raw, largest - 1, table)

    ids = [row[0] for row in connection.execute(text(
        "SELECT id FROM account_row WHERE dataset_id = :d ORDER BY id"), {"d": largest})]
    assert ids == [(largest << 32) + i for i in range(count)]
    assert ids[-1] < 2**63
    assert [row[1:] for row in stored(connection, largest)] == [
        row[1:] for row in stored(connection, largest - 1)]


@pytest.mark.parametrize(("cell", "says"), [
    (b"s\x00x", "line 2, segment: contains a control character (U+0000)"),
    (b"s\xffx", "line 2: is not valid UTF-8 text (byte 0xFF)"),
])
def test_a_segment_copy_cannot_take_is_refused_by_the_reader(cell, says):
    data = b"account_id,variant,start_mrr,segment\na,control,10," + cell + b"\nb,treatment,10,x\n"
    with pytest.raises(ImportValidationError) as refused:
        read_accounts(data, variants=VARIANTS)
    assert says in str(refused.value)
