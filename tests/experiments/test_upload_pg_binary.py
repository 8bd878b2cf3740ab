"""PostgreSQL stores an upload's rows through binary COPY (experiments.rows_postgres, issue 18).

The blocks are laid out by numpy and pyarrow, not by the driver, so each test stores the
same rows a second time through psycopg's own row writer (its text format, one Python
value per field: an independent encoding) and expects identical stored rows: NULLs
beside values in one block, blocks whose rows are all NULL or all set, non-ASCII text,
blank segments, large, negative and extreme numbers, dates before and after 2000 — and
an upload with every optional column, read back as the file says.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date
from decimal import Decimal

import numpy as np
import pytest
from sqlalchemy import text
from sqlmodel import select

from experiments import rows_postgres
from experiments.accounts_csv import read_accounts
from experiments.accounts_csv.contract import account_table, object_array
from experiments.datasets import ROW_COLUMNS, reserve_dataset
from experiments.imports import create_upload_job, run_upload_job, upload_file_path
from experiments.models import AccountRow, UploadJob
from tests import factories

VARIANTS = ("control", "treatment")
READ_BACK = ", ".join(("id", *ROW_COLUMNS[1:]))


@pytest.fixture(autouse=True)
def postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("binary COPY is PostgreSQL's")


def _python(value):
    """A table's value as psycopg's row writer takes it (NULL for NaN, NaT and blank)."""
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else date.fromisoformat(str(value))
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value or None


def reference_copy(raw, dataset_id: int, table, *, whole_cents=("pre_start_cents",
                                                                "pre_end_cents")) -> None:
    """The rows of ``table`` through psycopg's ``write_row``, ids as the job gives them."""
    columns = ("id", *ROW_COLUMNS)
    with raw.cursor() as cursor, cursor.copy(
            f"COPY account_row ({', '.join(columns)}) FROM STDIN") as copy:
        for index in range(len(table)):
            row = [(dataset_id << rows_postgres.ROW_ID_BITS) + index, dataset_id]
            for column in ROW_COLUMNS[1:]:
                values = getattr(table, column)
                value = None if values is None else _python(values[index])
                if column in whole_cents and value is not None:
                    value = int(value)
                row.append(value)
            copy.write_row(row)


def stored(connection, dataset_id: int) -> list[tuple]:
    """The dataset's rows, ids relative to the dataset, in id order: (id, account_id,
    variant, 4 x money, segment, days_to_value, days_observed, 2 x pre, enrolled_on)."""
    rows = connection.execute(
        text(f"SELECT {READ_BACK} FROM account_row WHERE dataset_id = :d ORDER BY id"),
        {"d": dataset_id}).all()
    return [(row[0] - (dataset_id << rows_postgres.ROW_ID_BITS), *row[1:]) for row in rows]


def every_column_csv() -> bytes:
    """Rows that put NULLs beside values, non-ASCII text and odd numbers in every block."""
    lines = ["account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment,"
             "days_to_value,days_observed,pre_start_mrr,pre_end_mrr,enrolled_on"]
    segments = ["SMB", "", "Mid-Market", "Ünïcødé — 日本", "", "Enterprise"]
    dates = ["2026-03-01", "", "1999-12-31", "2000-01-01", "1970-01-01", "1900-02-28",
             "2199-12-31", "2000-02-29"]
    for i in range(60):
        lines.append(",".join([
            f"acct-{i:03d}" if i % 5 else f"kunde-ä{i}-日本",
            VARIANTS[i % 2],
            "99999999999.99" if i == 7 else f"{100 + i}.{i % 100:02d}",
            "0" if i % 3 else f"{i}.5",
            "0.01" if i % 4 == 1 else "0",
            "99999999999.98" if i == 7 else "0",
            segments[i % len(segments)],
            "" if i % 3 == 0 else f"{i % 40}.{i}",
            "" if 20 <= i < 30 else f"{40 + i}",  # a block of blanks, then values again
            "" if i % 7 == 0 else f"{1000 + i}.{i % 100:02d}",
            "" if i % 7 == 0 else "0" if i % 2 else f"{98765432101 - i}.00",
            dates[i % len(dates)],
        ]))
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("ids_by_line", [True, False])
def test_binary_copy_stores_what_the_drivers_row_writer_stores(db_engine, session,
                                                               monkeypatch, ids_by_line):
    # Blocks of 7 rows: some all NULL in a column, some without a NULL, most mixed.
    monkeypatch.setattr(rows_postgres, "COPY_CHUNK", 7)
    table = read_accounts(every_column_csv(), variants=VARIANTS)
    experiment = factories.make_experiment(session, "binary", variants=VARIANTS)
    ours = reserve_dataset(session, experiment, table, filename="a.csv", actor=None).dataset
    theirs = reserve_dataset(session, experiment, replace(table, sha256="other"),
                             filename="b.csv", actor=None).dataset
    raw = session.connection().connection.driver_connection

    rows_postgres.copy_rows(raw, ours.id, table, 0, len(table), ids_by_line=ids_by_line)
    reference_copy(raw, theirs.id, table)

    connection = session.connection()
    if ids_by_line:
        assert stored(connection, ours.id) == stored(connection, theirs.id)
    else:  # the server's sequence gives the ids: compare the values, in file order
        assert ([row[1:] for row in stored(connection, ours.id)]
                == [row[1:] for row in stored(connection, theirs.id)])
    rows = stored(connection, ours.id)
    assert len(rows) == 60
    assert {row[7] for row in rows} >= {"Ünïcødé — 日本", None}
    assert {row[12] for row in rows} >= {date(1999, 12, 31), date(1900, 2, 28),
                                         date(2199, 12, 31), None}


def test_extreme_values_keep_their_bits(db_engine, session):
    """Values the contract refuses (negative money, infinities) still encode exactly: a
    shadowing temporary table without the checks takes them."""
    count = 9
    big = 2**62 + 12345
    table = account_table(
        account_id=object_array([f"x{i}" if i else "ü" * 200 for i in range(count)]),
        variant=object_array(["a", "é" * 64, "a", "b", "a", "b", "a", "b", "a"]),
        start_cents=np.array([1, -1, big, -big, 0, 2**63 - 1, -(2**63), 7, 8]),
        expansion_cents=np.arange(count) - 4,
        contraction_cents=np.zeros(count, dtype=np.int64),
        churned_cents=np.full(count, -5),
        segment=object_array(["", None, "s", "", "日本", None, "s", "t", ""]),
        days_to_value=np.array([0.0, -0.0, math.inf, -math.inf, math.nan, 1e-300, 1e300,
                                -2.5, 5e-324]),
        notes=(),
        days_observed=np.full(count, math.nan),
        pre_start_cents=np.array([-3.0, 2.0**53, math.nan, 0, -(2.0**53), 1, 2, 3, 4]),
        pre_end_cents=np.full(count, 6.0),
        enrolled_on=np.array(["1969-12-31", "2000-01-01", "NaT", "1-01-01", "9999-12-31",
                              "1999-12-31", "2000-01-02", "NaT", "1582-10-04"],
                             dtype="datetime64[D]"),
    )
    connection = session.connection()
    connection.execute(text("CREATE TEMP TABLE account_row"
                            " (LIKE public.account_row INCLUDING DEFAULTS) ON COMMIT DROP"))
    raw = connection.connection.driver_connection

    rows_postgres.copy_rows(raw, 1, table, 0, count, ids_by_line=True)
    reference_copy(raw, 2, table)

    ours, theirs = stored(connection, 1), stored(connection, 2)
    assert ours == theirs
    assert [row[8] for row in ours][:2] == [0.0, -0.0]
    assert math.copysign(1, ours[1][8]) == -1.0  # the sign of zero too
    assert ours[0][7] is None and ours[4][7] == "日本"  # a blank segment is NULL
    assert ours[3][12] == date(1, 1, 1) and ours[0][12] == date(1969, 12, 31)


def test_an_upload_with_every_optional_column_stores_the_files_values(db_engine, session,
                                                                      tmp_path, monkeypatch):
    import experiments.imports as imports

    monkeypatch.setattr(imports, "STORE_CHUNK", 11)
    monkeypatch.setattr(rows_postgres, "WRITERS", 2)
    experiment = factories.make_experiment(session, "every", variants=VARIANTS)
    data = every_column_csv()
    job = create_upload_job(session, experiment, filename="every.csv", actor=None)
    session.commit()
    upload_file_path(tmp_path, job.id).write_bytes(data)

    run_upload_job(db_engine, job.id, tmp_path)

    session.expire_all()
    job = session.get(UploadJob, job.id)
    assert job.state == "done", job.message
    got = session.exec(select(*(getattr(AccountRow, c) for c in ROW_COLUMNS[1:]))
                       .where(AccountRow.dataset_id == job.dataset_id)
                       .order_by(AccountRow.id)).all()

    def cents(cell: str):
        return int(Decimal(cell) * 100) if cell else None

    expected = []
    for line in data.decode().splitlines()[1:]:
        (account, variant, start, expansion, contraction, churned, segment, days, observed,
         pre_start, pre_end, enrolled) = line.split(",")
        expected.append((account, variant, cents(start), cents(expansion),
                         cents(contraction), cents(churned), segment or None,
                         float(days) if days else None, float(observed) if observed else None,
                         cents(pre_start), cents(pre_end),
                         date.fromisoformat(enrolled) if enrolled else None))
    assert [tuple(row) for row in got] == expected


def test_a_segment_per_account_is_sent_as_text(db_engine, session, monkeypatch):
    """More (variant, segment) pairs in a block than are encoded once each: the segments
    go as text, blanks still NULL."""
    monkeypatch.setattr(rows_postgres, "_FEW_PAIRS", 8)
    count = 40
    segments = [None if i % 9 == 0 else "" if i % 9 == 1 else f"seg-{i}-ü" for i in range(count)]
    table = account_table(
        account_id=object_array([f"a{i}" for i in range(count)]),
        variant=object_array([VARIANTS[i % 2] for i in range(count)]),
        start_cents=np.full(count, 100),
        expansion_cents=np.zeros(count, dtype=np.int64),
        contraction_cents=np.zeros(count, dtype=np.int64),
        churned_cents=np.zeros(count, dtype=np.int64),
        segment=object_array(segments),
        days_to_value=None,
        notes=(),
    )
    connection = session.connection()
    connection.execute(text("CREATE TEMP TABLE account_row"
                            " (LIKE public.account_row INCLUDING DEFAULTS) ON COMMIT DROP"))
    raw = connection.connection.driver_connection

    rows_postgres.copy_rows(raw, 1, table, 0, count, ids_by_line=True)
    reference_copy(raw, 2, table)

    ours = stored(connection, 1)
    assert ours == stored(connection, 2)
    assert [row[7] for row in ours] == [value or None for value in segments]
    assert [row[2] for row in ours] == [VARIANTS[i % 2] for i in range(count)]
