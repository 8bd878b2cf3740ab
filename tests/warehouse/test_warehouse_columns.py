"""A warehouse query keeps the upload's column rules (DESIGN §3), on DuckDB and PostgreSQL.

Only ``account_id``, ``variant`` and ``start_mrr`` are required; a query without the
lever columns (or with NULL in them, or with the names in another case, or with the
money as text) analyses exactly as the upload of the same file. A result that breaks the
contract — text that is not a number, a blank required value, a repeated or blank id, no
rows, a doubled column, NaN or Infinity — fails the refresh with the problem
named, and the stored data stays as it was.
"""

from __future__ import annotations

import pytest
from sqlmodel import select

from experiments.analysis import active_dataset, refresh_snapshot
from experiments.models import AnalysisSnapshot, Dataset
from experiments.warehouse_models import WarehouseResult
from tests.factories import make_experiment, store_accounts
from tests.warehouse.conftest import account_frame, frame_csv
from tests.warehouse.test_warehouse import _close, _latest, _query, _refresh, _source
from tests.warehouse.test_warehouse import warehouse as warehouse  # the fixture

#: (header in the upload and the query, the query's expression, the frame's column)
REQUIRED = [("account_id", "account_id", "account_id"), ("variant", "variant", "variant"),
            ("start_mrr", "start_mrr", "start_mrr")]
SHAPES = {
    "required columns only": REQUIRED,
    "one lever and segments": [*REQUIRED, ("churned_mrr", "churned_mrr", "churned_mrr"),
                               ("segment", "segment", "segment")],
    "names in another case": [("Account_ID", "account_id", "account_id"),
                              ("VARIANT", "variant", "variant"),
                              ("Start_MRR", "start_mrr", "start_mrr"),
                              ("Expansion_Mrr", "expansion_mrr", "expansion_mrr")],
    "money as text, blank levers": [
        *REQUIRED[:2], ("start_mrr", "CAST(start_mrr AS VARCHAR)", "start_mrr"),
        ("expansion_mrr", "NULLIF(expansion_mrr, 0)", "expansion_mrr"),
        ("contraction_mrr", "NULLIF(contraction_mrr, 0)", "contraction_mrr"),
        ("churned_mrr", "NULLIF(churned_mrr, 0)", "churned_mrr")],
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_a_query_with_fewer_columns_analyses_as_the_upload_of_the_same_file(
        session, warehouse, shape):
    dialect, url = warehouse
    columns = SHAPES[shape]
    frame = account_frame()
    upload = frame[[c for _h, _e, c in columns]].copy()
    upload.columns = [h for h, _e, _c in columns]
    for header in upload.columns:  # NULLIF(…, 0) is a blank cell in the file
        if "NULLIF" in {h: e for h, e, _c in columns}[header]:
            upload[header] = upload[header].where(upload[header] != 0)
    uploaded = make_experiment(session, "uploaded", mde=0.02)
    store_accounts(session, uploaded, frame_csv(upload))
    refresh_snapshot(session, uploaded, active_dataset(session, uploaded))
    read = make_experiment(session, "read", mde=0.02)
    select_list = ", ".join(f'{expression} AS "{header}"' for header, expression, _c in columns)
    query = _query(session, _source(session, dialect), read,
                   f"SELECT {select_list} FROM accounts")

    outcome = _refresh(session, query, url)

    assert outcome.status == "ok", outcome.message
    expected, got = _latest(session, uploaded), _latest(session, read)
    for key in ("arms", "comparisons", "srm", "required_n", "velocity_curves"):
        _close(expected.result[key], got.result[key], key)
    _close(expected.segments, got.segments, "segments")
    assert got.verdict == expected.verdict
    # The levers the query left out are 0: NRR is Σend / Σstart of what it gave.
    end = frame.start_mrr.copy()
    for name, sign in (("expansion_mrr", 1), ("contraction_mrr", -1), ("churned_mrr", -1)):
        if name in [c for _h, _e, c in columns]:
            end += sign * frame[name]
    arms = {arm["variant"]: arm["nrr"] for arm in got.result["arms"]}
    for variant in ("control", "treatment"):
        chosen = frame.variant == variant
        assert arms[variant] == pytest.approx(end[chosen].sum() / frame.start_mrr[chosen].sum(),
                                              rel=1e-12)


def _one(text: str) -> str:
    """``text`` on the row of account a-000003 only (the frame's other rows as they are)."""
    return f"CASE WHEN account_id = 'a-000003' THEN {text}"


BROKEN = [
    ("SELECT account_id, variant, " + _one("'abc'") + " ELSE CAST(start_mrr AS VARCHAR) END "
     "AS start_mrr FROM accounts", "start_mrr holds a value that is not a number"),
    ("SELECT account_id, variant, start_mrr, days_observed, " + _one("'soon'")
     + " ELSE CAST(days_to_value AS VARCHAR) END AS days_to_value FROM accounts",
     "days_to_value holds a value that is not a number"),
    ("SELECT account_id, variant, start_mrr, " + _one("'2026-02-30'")
     + " ELSE '2026-01-05' END AS enrolled_on FROM accounts",
     "enrolled_on holds a value that is not a date (YYYY-MM-DD)"),
    ("SELECT account_id, variant, " + _one("NULL") + " ELSE start_mrr END AS start_mrr "
     "FROM accounts", "1 row: start_mrr is blank (e.g. account_id a-000003)"),
    ("SELECT account_id, " + _one("NULL") + " ELSE variant END AS variant, start_mrr "
     "FROM accounts", "1 row: variant is blank (e.g. account_id a-000003)"),
    ("SELECT " + _one("NULL") + " ELSE account_id END AS account_id, variant, start_mrr "
     "FROM accounts", "1 row: account_id is blank"),
    ("SELECT account_id, variant, start_mrr FROM accounts UNION ALL "
     "SELECT account_id, variant, start_mrr FROM accounts WHERE account_id < 'a-000002'",
     "2 repeated account_id values: one row per account"),
    ("SELECT account_id, variant, start_mrr FROM accounts WHERE start_mrr < 0",
     "The query returned no rows."),
    ('SELECT account_id, variant, start_mrr, start_mrr AS "START_MRR" FROM accounts',
     # PostgreSQL keeps both names; DuckDB renames the second in the subquery
     {"postgresql": "the column start_mrr appears twice",
      "duckdb": "the column start_mrr appears twice (the second was renamed START_MRR_1)"}),
    ("SELECT account_id, variant, " + _one("'NaN'") + " ELSE CAST(start_mrr AS VARCHAR) END "
     "AS start_mrr FROM accounts",
     "1 row: start_mrr must be a number of at most 99,999,999,999.99 "
     "(e.g. account_id a-000003)"),
    ("SELECT account_id, variant, start_mrr, " + _one("'Infinity'")
     + " ELSE CAST(expansion_mrr AS VARCHAR) END AS expansion_mrr FROM accounts",
     "1 row: expansion_mrr must be a number of at most 99,999,999,999.99"),
    ("SELECT account_id, variant, start_mrr * 1e9 AS start_mrr FROM accounts",
     "start_mrr must be a number of at most 99,999,999,999.99"),
]


@pytest.mark.parametrize(("sql", "expected"), BROKEN)
def test_a_result_breaking_the_contract_is_named_and_the_stored_data_stays(
        session, warehouse, sql, expected):
    dialect, url = warehouse
    experiment = make_experiment(session, "shapes")
    query = _query(session, _source(session, dialect), experiment)
    assert _refresh(session, query, url).status == "ok"
    before = (_latest(session, experiment).id, query.last_dataset_id)
    query.sql_text = sql

    outcome = _refresh(session, query, url)

    assert outcome.status == "failed"
    expected = expected if isinstance(expected, str) else expected[dialect]
    assert expected in outcome.message, outcome.message
    assert "repeated" not in outcome.message or "repeated" in expected
    assert query.last_status == "failed" and query.last_message == outcome.message
    assert len(session.exec(select(Dataset)).all()) == 1
    assert len(session.exec(select(WarehouseResult)).all()) == 1
    assert (_latest(session, experiment).id, query.last_dataset_id) == before
    assert len(session.exec(select(AnalysisSnapshot)).all()) == 1


def test_a_conversion_failing_in_the_query_itself_is_the_warehouses_message(session, warehouse):
    """Not blamed on the contract's columns: every one of them would fail with it."""
    dialect, url = warehouse
    experiment = make_experiment(session, "own-cast")
    query = _query(session, _source(session, dialect), experiment,
                   "SELECT account_id, variant, start_mrr, churned_mrr FROM accounts WHERE "
                   "CAST(" + _one("'abc'") + " ELSE '5' END AS DOUBLE PRECISION) > 0")

    outcome = _refresh(session, query, url)

    assert outcome.status == "failed"
    assert outcome.message.startswith("The warehouse refused the query:"), outcome.message
    assert "abc" in outcome.message and "holds a value" not in outcome.message
    assert session.exec(select(Dataset)).all() == []
