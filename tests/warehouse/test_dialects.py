"""The generated SQL compiles for BigQuery, Snowflake and Trino (their SQLAlchemy dialects,
the optional ``warehouse`` extra), and the Snowflake/Trino text runs unchanged on DuckDB
with the same answer as DuckDB's own compilation."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from experiments import warehouse as wh

URLS = {
    "bigquery": "bigquery://project/dataset",
    "snowflake": "snowflake://user:pw@account/db/schema",
    "trino": "trino://user@host:8080/catalog",
}
NAMES = ["start", "expansion", "contraction", "churned", "pre_start", "pre_end"]


def _dialect(name: str):
    pytest.importorskip({"bigquery": "sqlalchemy_bigquery", "snowflake": "snowflake.sqlalchemy",
                         "trino": "trino.sqlalchemy"}[name])
    return make_url(URLS[name]).get_dialect()()


def _query() -> wh.AccountQuery:
    return wh.AccountQuery.of("SELECT * FROM analytics.accounts",
                              {name: name for name in wh.CONTRACT})


def _sql(statement, dialect) -> str:
    return str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _statements(q: wh.AccountQuery, dialect_name: str) -> dict[str, object]:
    check, _messages, _names = wh.check_query(q)
    return {
        "check": check,
        "extras": wh.extras_query(q, NAMES, [600.0, 10.0, 5.0, 40.0, 590.0, 610.0],
                                  by_segment=True),
        "times": wh.times_query(q, by_segment=True),
        "sample": wh.sample_query(q, dialect_name, limit=20_000, whole=False),
    }


@pytest.mark.parametrize("name", sorted(URLS))
def test_every_query_compiles_as_one_cte_under_group_by(name):
    dialect = _dialect(name)
    statements = _statements(_query(), name)
    compiled = {key: _sql(value, dialect) for key, value in statements.items()}
    quote = "`" if name == "bigquery" else ""
    for sql in compiled.values():
        assert sql.startswith(f"WITH {quote}warehouse_rows{quote} AS \n(SELECT * FROM "
                              "analytics.accounts)")
    assert "GROUP BY" in compiled["extras"] and "GROUP BY" in compiled["times"]
    assert "GROUP BY" not in compiled["check"]  # one row of rule counts
    double = "FLOAT64" if name == "bigquery" else "DOUBLE"
    assert f"AS {double})" in compiled["extras"]
    random = "rand()" if name == "bigquery" else "random()"
    assert f"ORDER BY {random}" in compiled["sample"] and "LIMIT 20000" in compiled["sample"]


def test_session_statements_set_a_timeout_where_the_dialect_has_one():
    assert wh.session_statements("postgresql", 30) == [
        "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
        "SET LOCAL statement_timeout = 30000"]
    assert wh.session_statements("snowflake", 30) == [
        "ALTER SESSION SET STATEMENT_TIMEOUT_IN_SECONDS = 30"]
    assert wh.session_statements("trino", 30) == ["SET SESSION query_max_run_time = '30s'"]
    assert wh.session_statements("bigquery", 30) == []
    assert wh.session_statements("duckdb", 30) == []


@pytest.mark.parametrize("name", ["snowflake", "trino"])
def test_snowflake_and_trino_text_gives_duckdbs_answer(name, duckdb_url):
    """Their compiled text is plain enough SQL to run on DuckDB: the same rows come back."""
    dialect = _dialect(name)
    q = wh.AccountQuery.of("SELECT * FROM accounts", {n: n for n in wh.CONTRACT})
    engine = create_engine(duckdb_url)
    try:
        with engine.connect() as connection:
            for key, statement in _statements(q, name).items():
                if key == "sample":
                    continue  # random
                theirs = sorted(connection.exec_driver_sql(_sql(statement, dialect)).all(),
                                key=repr)
                ours = sorted(connection.execute(statement).all(), key=repr)
                assert len(theirs) == len(ours) > 0
                for a, b in zip(theirs, ours, strict=True):
                    for x, y in zip(a, b, strict=True):
                        if isinstance(x, float):  # parallel sums: the last bits may move
                            assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-6), key
                        else:
                            assert x == y, key
    finally:
        engine.dispose()
