"""SQLite's row writer turns the table's columns into bound values cheaply (issue 18, H3).

Dates are stored as the file wrote them (ISO text, blanks NULL) over the whole range the
reader takes, each distinct day formatted once rather than once a row; every bound value
is a plain Python ``int``, ``float``, ``str`` or ``None`` (what the sqlite3 module binds
without an adapter look-up), whatever the path (ids ascending, many rows a statement and
a remainder; ids in random order, one row a statement).
"""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import text

from experiments import rows_sqlite
from experiments.accounts_csv import read_accounts
from experiments.imports import import_accounts
from tests.experiments.test_upload_jobs import make_experiment

pytestmark = pytest.mark.usefixtures("sqlite_only")

HEADER = ("account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment,"
          "days_to_value,days_observed,pre_start_mrr,pre_end_mrr,enrolled_on\n")
#: Days the reader takes, from the first to the last (leap days and the epoch among them).
DAYS = ("0001-01-01", "1900-02-28", "1969-12-31", "1970-01-01", "2000-02-29", "2026-11-30",
        "9999-12-31")


@pytest.fixture
def sqlite_only(database_url):
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's row writer")


def dated_csv(rows: int, *, shuffled: bool, blank_dates: bool = False) -> tuple[bytes, dict]:
    """Every optional column; the date each account should get back (None: blank)."""
    order = np.arange(rows)
    if shuffled:
        np.random.default_rng(11).shuffle(order)
    lines, expected = [], {}
    for i in order.tolist():
        day = "" if blank_dates or i % 4 == 0 else DAYS[i % len(DAYS)]
        lines.append(f"acct-{i:05d},{'control' if i % 2 else 'treatment'},{100 + i}.50,1.00,"
                     f"0.00,0.00,{'' if i % 3 == 0 else 'SMB'},{i % 30}.5,40,12.00,13.00,{day}")
        expected[f"acct-{i:05d}"] = day or None
    return (HEADER + "\n".join(lines) + "\n").encode(), expected


def stored_dates(session, dataset_id: int) -> dict:
    rows = session.execute(text(
        "SELECT account_id, typeof(enrolled_on), enrolled_on FROM account_row "
        "WHERE dataset_id = :d"), {"d": dataset_id}).all()
    assert {kind for _, kind, _ in rows} <= {"text", "null"}
    return {account: value for account, _, value in rows}


# 1,001 rows: two 500-row statements and a remainder of one when the ids ascend.
@pytest.mark.parametrize("shuffled", [False, True], ids=["ids ascending", "ids in random order"])
def test_dates_are_stored_as_the_file_wrote_them(session, shuffled):
    experiment = make_experiment(session)
    data, expected = dated_csv(1001, shuffled=shuffled)
    report = import_accounts(session, experiment, data, filename="d.csv", actor=None)
    assert stored_dates(session, report.dataset.id) == expected
    session.rollback()


def test_a_file_whose_dates_are_all_blank_stores_null(session):
    experiment = make_experiment(session)
    data, expected = dated_csv(600, shuffled=False, blank_dates=True)
    report = import_accounts(session, experiment, data, filename="d.csv", actor=None)
    assert set(stored_dates(session, report.dataset.id).values()) == {None}
    assert len(expected) == 600
    session.rollback()


def test_each_distinct_day_is_formatted_once(session, monkeypatch):
    formatted = []
    as_string = np.datetime_as_string

    def counting(values, *args, **kwargs):
        formatted.append(np.size(values))
        return as_string(values, *args, **kwargs)

    monkeypatch.setattr(rows_sqlite.np, "datetime_as_string", counting)
    experiment = make_experiment(session)
    data, expected = dated_csv(3000, shuffled=False)
    report = import_accounts(session, experiment, data, filename="d.csv", actor=None)
    assert stored_dates(session, report.dataset.id) == expected
    # 7 days and the blank, in one insert chunk: 8 values formatted, not 3,000.
    assert sum(formatted) <= len(DAYS) + 1
    session.rollback()


@pytest.mark.parametrize("optional", [(), ("segment", "days_to_value"), None],
                         ids=["required only", "segment and days", "every column"])
def test_every_bound_value_is_a_plain_python_value(optional):
    data, _ = dated_csv(50, shuffled=False)
    if optional is not None:
        keep = list(range(6)) + [HEADER.strip().split(",").index(c) for c in optional]
        data = "\n".join(",".join(line.split(",")[i] for i in keep)
                         for line in data.decode().splitlines()).encode() + b"\n"
    table = read_accounts(data, variants=["control", "treatment"])
    columns = rows_sqlite._columns(table)
    grid = rows_sqlite._grid(table, columns, 3, 50)
    assert grid.shape == (47, len(columns))
    assert {type(value) for value in grid.ravel().tolist()} <= {int, float, str, type(None)}
    # The rows in table order, column by column as the table holds them.
    for at, (_, attribute, _) in enumerate(columns):
        column = getattr(table, attribute)[3:50]
        if attribute == "enrolled_on":
            column = np.datetime_as_string(column, unit="D")
        assert [str(v) for v in grid[:, at].tolist()] == [str(v) for v in column.tolist()]
