"""H9: a ledger query's date or timestamp that no file can hold, refused by line and column.

A ledger query on PostgreSQL returning ``infinity``, ``-infinity``, a BC date or a year
past 9999 in a DATE, TIMESTAMP or TIMESTAMPTZ column (``period``, ``customer_since``, a
dimension) failed in the driver ("date too large (after year 10K)"), naming neither the
row nor the column. DuckDB's driver gave ``infinity`` as 9999-12-31 (a period 9999-12)
and ``-infinity`` as 0001-01-01, stored as dates; a BC date or a year past 9999 came back
as text, which a dimension stored as it was.

Now each is refused as the ledger upload refuses a bad period or date in a file: by line
(line n = the query's row n - 1) and column, in the upload's words, nothing stored. The
app's database is SQLite or PostgreSQL (the PostgreSQL pass); the warehouse is a DuckDB
file or a scratch schema on the PostgreSQL server.
"""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlmodel import Session

from experiments import warehouse as wh
from experiments.accounts_csv.contract import ImportValidationError
from experiments.ledger import versions
from experiments.ledger_csv import read_ledger
from experiments.warehouse_models import DataSource, WarehouseQuery
from tests.warehouse.test_h1_trust_gaps import _zoned
from tests.warehouse.test_ledger_and_jobs import ENV

PREFIX = "The query's rows break the ledger contract (line n = the query's row n − 1): "
#: The ledger upload's words for a bad period and a bad date (experiments/ledger_csv.py).
MONTH = "is not a month written YYYY-MM (e.g. 2025-01)"
DAY = "is not a date written YYYY-MM-DD (e.g. 2024-03-01)"

#: (id, SQL type, the odd value as each warehouse takes it, as each writes it back).
CASES = [
    ("infinity-date", "DATE", {"postgresql": "infinity", "duckdb": "infinity"},
     {"postgresql": "infinity", "duckdb": "infinity"}),
    ("-infinity-timestamp", "TIMESTAMP", {"postgresql": "-infinity", "duckdb": "-infinity"},
     {"postgresql": "-infinity", "duckdb": "-infinity"}),
    ("infinity-timestamptz", "TIMESTAMPTZ", {"postgresql": "infinity", "duckdb": "infinity"},
     {"postgresql": "infinity", "duckdb": "infinity"}),
    ("bc-date", "DATE", {"postgresql": "0044-03-15 BC", "duckdb": "0044-03-15 (BC)"},
     {"postgresql": "0044-03-15 BC", "duckdb": "0044-03-15 (BC)"}),
    ("year-12000-date", "DATE", {"postgresql": "12000-01-01", "duckdb": "12000-01-01"},
     {"postgresql": "12000-01-01", "duckdb": "12000-01-01"}),
    ("year-12000-timestamp", "TIMESTAMP",
     {"postgresql": "12000-01-01 00:00:00", "duckdb": "12000-01-01 00:00:00"},
     {"postgresql": "12000-01-01 00:00:00", "duckdb": "12000-01-01 00:00:00"}),
]

#: Each column's plain value on every other row (period, customer_since, the dimension).
PLAIN = {"period": "2025-06-01", "customer_since": "2024-03-01", "signed": "2024-02-01"}


def _ledger_sql(sql_type: str, odd: dict[str, str] | None = None, rows: int = 3) -> str:
    """CREATE TABLE ledger: ``rows`` accounts, one row each; ``odd`` ({column: value})
    replaces the plain values on the second row (line 3)."""
    values = []
    for i in range(rows):
        cells = dict(PLAIN)
        if i == 1 and odd:
            cells.update(odd)
        cast = {name: f"CAST('{value}' AS {sql_type})" for name, value in cells.items()}
        values.append(f"('a{i + 1}', {cast['period']}, {100 + i}.00, "
                      f"{cast['customer_since']}, {cast['signed']})")
    return ("CREATE TABLE ledger AS SELECT * FROM (VALUES " + ", ".join(values)
            + ") AS t(account_id, period, start_mrr, customer_since, signed)")


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse(request, tmp_path):
    """``(dialect, make)``: ``make(create_sql)`` runs it in an empty warehouse, returns its
    URL."""
    dialect = request.param
    if dialect == "duckdb":
        url = f"duckdb:///{tmp_path / 'ledger.duckdb'}"
    else:
        url, _schema = request.getfixturevalue("pg_warehouse")

    def make(create_sql: str) -> str:
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text(create_sql))
        engine.dispose()
        return url

    return dialect, make


def _refresh(db_engine, dialect: str, url: str, sql: str = "SELECT * FROM ledger"):
    with Session(db_engine) as session:
        query = wh.ledger_query(session)
        if query is None:  # the first refresh of the test
            source = DataSource(name="w", url_env=ENV, dialect=dialect)
            session.add(source)
            session.flush()
            query = WarehouseQuery(source_id=source.id, target="ledger", sql_text=sql)
            session.add(query)
            session.commit()
        query_id = query.id
    return wh.refresh_ledger(db_engine, query_id, actor_id=None, environ={ENV: url})


def _stored(db_engine) -> int:
    with Session(db_engine) as session:
        return len(versions(session))


@pytest.mark.parametrize("column", ["period", "customer_since", "signed"])
@pytest.mark.parametrize(("sql_type", "taken", "written"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_date_no_file_can_hold_is_refused_by_line_and_column(
        db_engine, warehouse, column, sql_type, taken, written):
    dialect, make = warehouse
    url = make(_ledger_sql(sql_type, {column: taken[dialect]}))

    outcome = _refresh(db_engine, dialect, url)

    # Before: PostgreSQL "date too large (after year 10K): 'infinity'" (no line, no
    # column); DuckDB stored infinity as 9999-12(-31), -infinity as 0001-01(-01), and
    # a dimension kept a BC date or year 12000 as its text.
    words = MONTH if column == "period" else DAY
    assert (outcome.status, outcome.message) == (
        "failed", f'{PREFIX}line 3, {column}: "{written[dialect]}" {words}')
    assert _stored(db_engine) == 0


def test_the_words_are_the_uploads_for_the_same_text_in_a_file():
    """The refusal above is worded as a file with the same text is (independently:
    the ledger upload's own reader)."""
    csv = (b"account_id,period,start_mrr,customer_since\n"
           b"a1,2025-06,100.00,2024-03-01\n"
           b"a2,infinity,101.00,infinity\n")
    with pytest.raises(ImportValidationError) as refused:
        read_ledger(csv)
    assert str(refused.value).splitlines() == [f'line 3, period: "infinity" {MONTH}',
                                               f'line 3, customer_since: "infinity" {DAY}']


def test_every_such_row_is_counted_grouped_as_the_upload_groups_them(db_engine, warehouse):
    dialect, make = warehouse
    make(_ledger_sql("DATE", rows=5))
    url = make("UPDATE ledger SET signed = CAST('infinity' AS DATE) "
               "WHERE account_id IN ('a2', 'a3', 'a4')")

    outcome = _refresh(db_engine, dialect, url, "SELECT * FROM ledger ORDER BY account_id")

    assert (outcome.status, outcome.message) == (
        "failed", f'{PREFIX}lines 3–5, signed: "infinity" {DAY}')
    assert _stored(db_engine) == 0


def test_the_first_and_last_days_a_file_can_hold_are_taken(db_engine, warehouse):
    """0001-01-01 and 9999-12-31 are dates a file holds (on DuckDB: not infinity). (A
    period of 9999-12 beside 2025-06 spans more months than a ledger may.)"""
    dialect, make = warehouse
    url = make(_ledger_sql("DATE", {"customer_since": "0001-01-01", "signed": "9999-12-31"}))

    outcome = _refresh(db_engine, dialect, url)

    assert outcome.status == "ok", outcome.message
    assert _stored(db_engine) == 1


def test_a_plain_ledger_of_dates_and_instants_is_stored(db_engine, warehouse):
    """The loaders that keep such values as text leave every other value a date."""
    dialect, make = warehouse
    url = make(_ledger_sql("TIMESTAMPTZ"))

    outcome = _refresh(db_engine, dialect, url)

    assert outcome.status == "ok", outcome.message
    assert outcome.message.endswith("(3 rows).")


def test_a_period_of_9999_12_is_taken_and_infinity_is_not(db_engine, warehouse):
    """On DuckDB infinity came back as 9999-12-31, the last day a file holds: a period
    of December 9999 on every row is a ledger, one of infinity is not."""
    dialect, make = warehouse
    url = make(_ledger_sql("DATE").replace("'2025-06-01'", "'9999-12-31'"))

    ordered = "SELECT * FROM ledger ORDER BY account_id"
    outcome = _refresh(db_engine, dialect, url, ordered)

    assert outcome.status == "ok", outcome.message
    url = make("UPDATE ledger SET period = CAST('infinity' AS DATE) WHERE account_id = 'a1'")
    outcome = _refresh(db_engine, dialect, url, ordered)
    assert (outcome.status, outcome.message) == (
        "failed", f'{PREFIX}line 2, period: "infinity" {MONTH}')
    assert _stored(db_engine) == 1


# --------------------------------------------- instants at the edges, in any session zone

#: Instants whose UTC date a file holds, written in Berlin (UTC+1 in winter) on
#: 10000-01-01 and in Los Angeles (LMT, UTC-7:52:58 then) in 1 BC: the driver failed on
#: them there ("timestamp too large (after year 10K)") though their UTC dates are the
#: first and last days a file holds.
EDGES = ("CREATE TABLE ledger AS SELECT * FROM (VALUES "
         "('a1', DATE '2025-06-01', 100.00, TIMESTAMPTZ '9999-12-31 23:30:00+00', "
         "TIMESTAMPTZ '0001-01-01 03:00:00+00'), "
         "('a2', DATE '2025-06-01', 101.00, TIMESTAMPTZ '0001-01-01 03:00:00+00', "
         "TIMESTAMPTZ '9999-12-31 23:59:59.5+00')"
         ") AS t(account_id, period, start_mrr, customer_since, signed)")
#: Their UTC dates (by hand).
EDGES_CSV = (b"account_id,period,start_mrr,customer_since,signed\n"
             b"a1,2025-06,100.00,9999-12-31,0001-01-01\n"
             b"a2,2025-06,101.00,0001-01-01,9999-12-31\n")


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Los_Angeles"])
def test_an_instant_is_read_by_its_utc_date_at_the_edges_in_any_session_zone(
        pg_warehouse, zone):
    url, _schema = pg_warehouse
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(EDGES))
    engine.dispose()
    source = DataSource(name="w", url_env=ENV, dialect="postgresql")

    data, dimensions = wh.pull_ledger(source, "SELECT * FROM ledger ORDER BY account_id",
                                      environ={ENV: _zoned(url, zone)})

    # Before: Berlin "timestamp too large (after year 10K): '10000-01-01 00:30:00+01'",
    # Los Angeles "timestamp too small (before year 1): '0001-12-31 19:07:02-07:52:58 BC'".
    assert (data, dimensions) == (EDGES_CSV, ("signed",))


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/Los_Angeles"])
def test_an_instant_past_9999_in_utc_is_refused_in_any_session_zone(pg_warehouse, zone):
    """10000-01-01 00:30 UTC is 9999-12-31 16:30 in Los Angeles: a date Python holds,
    whose UTC date (what the ledger writes) no file holds."""
    url, _schema = pg_warehouse
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text(
            "CREATE TABLE ledger AS SELECT 'a1' AS account_id, DATE '2025-06-01' AS period, "
            "100.00 AS start_mrr, TIMESTAMPTZ '10000-01-01 00:30:00+00' AS signed"))
    engine.dispose()
    source = DataSource(name="w", url_env=ENV, dialect="postgresql")

    with pytest.raises(ImportValidationError) as refused:
        wh.pull_ledger(source, "SELECT * FROM ledger", environ={ENV: _zoned(url, zone)})

    written = {"UTC": "10000-01-01 00:30:00+00", "Europe/Berlin": "10000-01-01 01:30:00+01",
               "America/Los_Angeles": "9999-12-31 16:30:00-08:00"}[zone]
    assert str(refused.value) == f'line 2, signed: "{written}" {DAY}'
