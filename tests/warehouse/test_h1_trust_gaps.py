"""H1: four gaps in the warehouse refresh a user would trust it with (DESIGN §3, §6).

- PostgreSQL: after a conversion error the refresh probes column by column; each
  statement had its own timeout, so one error could take ~12 timeouts. The timeout now
  bounds the whole refresh.
- A PostgreSQL ``money`` column is refused with the column named and the fix said.
- A ``timestamptz`` enrolled_on counts on its date in UTC, whatever the warehouse
  session's time zone; a plain ``timestamp`` keeps its own date.
- account_id and variant values follow the upload's rules of text (at most 255
  characters, no control character), with the upload's words.
"""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest
from sqlmodel import select

from experiments.accounts_csv.contract import ImportValidationError
from experiments.datasets import ENROLMENT_WINDOW_DAYS
from experiments.models import AnalysisSnapshot, Dataset
from experiments.warehouse_models import WarehouseResult
from tests.factories import make_experiment
from tests.warehouse.conftest import account_frame
from tests.warehouse.test_warehouse import _query, _refresh, _source
from tests.warehouse.test_warehouse import warehouse as warehouse  # the fixture
from tests.warehouse.test_warehouse_contract import _strings, _upload

BASE = "account_id, variant, start_mrr"
ONE, TWO = "a-000003", "a-000005"


def _stored(session) -> tuple[int, int, int]:
    return (len(session.exec(select(Dataset)).all()),
            len(session.exec(select(WarehouseResult)).all()),
            len(session.exec(select(AnalysisSnapshot)).all()))


def _ready(session, dialect, url, name="read"):
    """A query on ``accounts`` refreshed once (a stored version to keep untouched)."""
    experiment = make_experiment(session, name)
    query = _query(session, _source(session, dialect), experiment)
    assert _refresh(session, query, url).status == "ok"
    return query


# ------------------------------------------------------------ 1. one deadline in all

#: Every number column as text, start_mrr of one account not a number, each statement
#: pausing 1 s (an InitPlan: once per statement): the check fails after 1 s, then the
#: query and each of the 10 cast columns are probed alone, 1 s each.
SLOW_AND_BROKEN = (
    "SELECT account_id, variant, "
    f"CASE WHEN account_id = '{ONE}' THEN 'x' ELSE start_mrr::text END AS start_mrr, "
    "expansion_mrr::text AS expansion_mrr, contraction_mrr::text AS contraction_mrr, "
    "churned_mrr::text AS churned_mrr, days_to_value::text AS days_to_value, "
    "days_observed::text AS days_observed, pre_start_mrr::text AS pre_start_mrr, "
    "pre_end_mrr::text AS pre_end_mrr, '2026-01-05' AS enrolled_on FROM accounts "
    "WHERE (SELECT count(*) FROM pg_sleep(1)) = 1")


def test_the_timeout_bounds_the_whole_postgresql_refresh(session, pg_warehouse):
    url, _schema = pg_warehouse
    query = _ready(session, "postgresql", url)
    before = _stored(session)
    query.sql_text = SLOW_AND_BROKEN

    started = time.monotonic()
    outcome = _refresh(session, query, url, timeout=3)
    took = time.monotonic() - started

    assert outcome.status == "failed"
    # the limit, its 1 s of grace, and a little (without the deadline: ~12 s)
    assert took < 3 + 2, f"{took:.1f} s for a 3 s limit: {outcome.message}"
    assert outcome.message.startswith(
        "The warehouse refused the query: the query ran longer than 3 s and was stopped "
        "(the time limit of the whole refresh"), outcome.message
    assert _stored(session) == before
    assert query.last_message == outcome.message


def test_within_the_time_limit_the_slow_column_is_still_named(session, pg_warehouse):
    """The deadline only stops a refresh that runs out of time: with room, the probes
    name start_mrr as before."""
    url, _schema = pg_warehouse
    query = _ready(session, "postgresql", url)
    before = _stored(session)
    query.sql_text = SLOW_AND_BROKEN.replace("pg_sleep(1)", "pg_sleep(0.05)")

    outcome = _refresh(session, query, url, timeout=30)

    assert outcome.status == "failed"
    assert "start_mrr holds a value that is not a number" in outcome.message
    assert "expansion_mrr holds" not in outcome.message
    assert _stored(session) == before


# ------------------------------------------------------------ 2. money


@pytest.mark.parametrize("name", ["start_mrr", "churned_mrr"])
def test_a_postgresql_money_column_is_named_with_the_fix(session, pg_warehouse, name):
    url, _schema = pg_warehouse
    query = _ready(session, "postgresql", url)
    before = _stored(session)
    others = [c for c in ("start_mrr", "churned_mrr") if c != name]
    query.sql_text = (f"SELECT account_id, variant, {others[0]}, {name}::numeric::money AS "
                      f"{name} FROM accounts")

    outcome = _refresh(session, query, url)

    assert outcome.status == "failed"
    assert (f"{name} is of PostgreSQL's money type, which the refresh does not read: cast "
            f"it to numeric in the query ({name}::numeric AS {name})") in outcome.message, (
        outcome.message)
    assert _stored(session) == before
    # and the fix it names works
    query.sql_text = (f"SELECT account_id, variant, {others[0]}, {name}::numeric::money"
                      f"::numeric AS {name} FROM accounts")
    assert _refresh(session, query, url).status == "ok"


# ------------------------------------------------------------ 3. timestamptz enrolled_on

#: Account i enrolled on 2026-01-01 + (i mod 40) days in UTC: at 23:30 UTC when i is
#: even (the next day in Berlin), at 00:30 UTC when odd (the day before in Los Angeles).
#: Either zone moves accounts across the window's cut (2026-01-12): i mod 40 = 10 out of
#: it in Berlin, 11 into it in Los Angeles.
_HOURS = ("(CAST(substr(account_id, 3) AS INTEGER) % 40) * 24 + CASE WHEN "
          "CAST(substr(account_id, 3) AS INTEGER) % 2 = 0 THEN 23 ELSE 0 END")
ENROLLED = {
    "timestamptz": f"TIMESTAMPTZ '2026-01-01 00:30:00+00' + ({_HOURS}) * INTERVAL '1 hour'",
    # a plain timestamp is its own date, in any zone
    "timestamp": f"TIMESTAMP '2026-01-01 00:30:00' + ({_HOURS}) * INTERVAL '1 hour'",
}


def _expected_enrolment() -> dict:
    """:func:`experiments.datasets.dated_enrolment`'s inputs from the UTC dates, here."""
    frame = account_frame()
    number = frame.account_id.str[2:].astype(int)
    day = [date(2026, 1, 1) + timedelta(days=int(i % 40)) for i in number]
    first, last = min(day), max(day)
    cut = max(first, last - timedelta(days=ENROLMENT_WINDOW_DAYS))
    now, before = {}, {}
    for variant, d in zip(frame.variant, day, strict=True):
        now[variant] = now.get(variant, 0) + 1
        before[variant] = before.get(variant, 0) + (d < cut)
    return {"cut": cut.isoformat(), "last": last.isoformat(), "now": now, "before": before}


def _zoned(url: str, zone: str) -> str:
    return url + "%20-ctimezone%3D" + zone.replace("/", "%2F")


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Los_Angeles", "UTC"])
@pytest.mark.parametrize("kind", list(ENROLLED))
def test_an_enrolment_instant_counts_on_its_utc_date_in_any_session_zone(
        session, pg_warehouse, zone, kind):
    url, _schema = pg_warehouse
    experiment = make_experiment(session, "dated")
    sql = f"SELECT {BASE}, {ENROLLED[kind]} AS enrolled_on FROM accounts"
    query = _query(session, _source(session, "postgresql"), experiment, sql)

    outcome = _refresh(session, query, _zoned(url, zone))

    assert outcome.status == "ok", outcome.message
    stored = session.exec(select(WarehouseResult).where(
        WarehouseResult.dataset_id == outcome.dataset_id)).one()
    assert stored.inputs["enrolment"] == _expected_enrolment()


@pytest.mark.parametrize("kind", list(ENROLLED))
def test_an_enrolment_instant_counts_on_its_utc_date_on_duckdb(session, duckdb_url, kind):
    experiment = make_experiment(session, "dated")
    sql = f"SELECT {BASE}, {ENROLLED[kind]} AS enrolled_on FROM accounts"
    query = _query(session, _source(session, "duckdb"), experiment, sql)

    outcome = _refresh(session, query, duckdb_url)

    assert outcome.status == "ok", outcome.message
    stored = session.exec(select(WarehouseResult).where(
        WarehouseResult.dataset_id == outcome.dataset_id)).one()
    assert stored.inputs["enrolment"] == _expected_enrolment()


# ------------------------------------------------------------ 4. id and variant text

#: (column, the SQL of the broken value, the file's cell, the refresh's words)
TEXT = {
    "account_id control": (
        "account_id", "account_id || chr(1)", lambda v: v + "\x01",
        f'2 rows: account_id contains a control character (U+0001) (e.g. account_id '
        f'"{ONE}\\x01")'),
    "account_id too long": (
        "account_id", "account_id || repeat('x', 250)", lambda v: v + "x" * 250,
        f'2 rows: account_id is too long (258 characters; at most 255) (e.g. account_id '
        f'"{ONE}xxxx'),
    "variant control": (
        "variant", "variant || chr(127)", lambda v: v + "\x7f",
        "variant contains a control character (U+007F) (variant "),
    "variant too long": (
        "variant", "variant || repeat('v', 256)", lambda v: v + "v" * 256,
        "characters; at most 255) (variant "),
}


@pytest.mark.parametrize("case", list(TEXT))
def test_an_id_or_variant_the_upload_refuses_is_refused(session, warehouse, case):
    dialect, url = warehouse
    name, expression, cell, says = TEXT[case]
    frame = account_frame()
    cells = _strings(frame)
    broken = cells.account_id.isin([ONE, TWO])
    cells.loc[broken, name] = [cell(v) for v in cells.loc[broken, name]]
    uploaded = make_experiment(session, "uploaded")
    with pytest.raises(ImportValidationError) as refused:
        _upload(session, uploaded, cells)
    upload_words = {e.message for e in refused.value.errors if e.column == name}
    assert upload_words, refused.value.errors
    query = _ready(session, dialect, url)
    before = _stored(session)
    query.sql_text = (f"SELECT account_id, variant, start_mrr FROM (SELECT CASE WHEN "
                      f"account_id IN ('{ONE}', '{TWO}') THEN {expression} ELSE {name} END "
                      f"AS {name}, {'variant' if name == 'account_id' else 'account_id'}, "
                      "start_mrr FROM accounts) AS t")

    outcome = _refresh(session, query, url)

    assert outcome.status == "failed"
    assert says in outcome.message, outcome.message
    # the upload's words, for the same rows
    assert any(f"{name} {words}" in outcome.message for words in upload_words), (
        upload_words, outcome.message)
    assert "is not one of the experiment's variants" not in outcome.message
    assert _stored(session) == before


def test_an_id_rule_counts_only_its_rows_and_a_long_id_is_not_also_a_control_character(
        session, duckdb_url):
    query = _ready(session, "duckdb", duckdb_url)
    query.sql_text = (
        f"SELECT CASE WHEN account_id = '{ONE}' THEN account_id || chr(1) || "
        f"repeat('x', 300) WHEN account_id = '{TWO}' THEN account_id || chr(2) "
        "ELSE account_id END AS account_id, variant, start_mrr FROM accounts")

    outcome = _refresh(session, query, duckdb_url)

    assert outcome.status == "failed"
    assert "1 row: account_id is too long (309 characters; at most 255)" in outcome.message
    assert ('1 row: account_id contains a control character (U+0002) (e.g. account_id '
            f'"{TWO}\\x02")') in outcome.message, outcome.message
