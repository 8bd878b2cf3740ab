"""R2 review of the warehouse refresh (H1 513e2c7, H7 709c6d8, 9ebd74d).

1. An experiment's variants changed while the warehouse was read: the sums are keyed by
   the old variants. Before, the refresh stored them and analysed them under the new
   plan: a renamed arm showed 0 accounts, the old key's 400 accounts sat beside it, and
   the verdict was "srm". Now refused, as an upload is (imports._changed_while_storing).
2. The query (an experiment's or the ledger's) saved with another text while the
   warehouse was read: before, the old text's sums or rows were stored and the query
   showed "ok" under its new text.
3. A ledger pull on PostgreSQL past its time limit: the cancel reaches a session that is
   idle almost all the time (each FETCH takes milliseconds, this process's work on the
   rows takes seconds) and PostgreSQL ignores it there, so the pull ran on to its end.
   Now the loop stops at the first chunk after the limit.
4. A data source's name with a control character was refused with the bare "U+0000";
   one with a direction override (U+202E) was taken. Worded as a team's name now.
5. An enrolled_on no file can hold (infinity, BC, year 12000; text year 0000 on DuckDB)
   is refused with its column named, on PostgreSQL and DuckDB alike.
6. A segment of timestamptz is its UTC moment's text in any session zone.

The app's database is SQLite or PostgreSQL (the PostgreSQL pass); the warehouse is a
DuckDB file or a scratch schema on the PostgreSQL server.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from experiments import warehouse as wh
from experiments.errors import ValidationFailed
from experiments.ledger import versions
from experiments.models import AnalysisSnapshot, Dataset, Experiment, User, Variant
from experiments.warehouse_models import DataSource, WarehouseQuery, WarehouseResult
from tests.factories import make_user
from tests.warehouse.test_h7_ledger_refresh import duck_experiment_query, pg_ledger_query
from tests.warehouse.test_h7_ledger_refresh import experiment_query as experiment_query
from tests.warehouse.test_ledger_and_jobs import ENV, _ledger_query
from tests.warehouse.test_ledger_and_jobs import ledger_warehouse as ledger_warehouse

pytestmark = pytest.mark.db



def _during_pull(monkeypatch, db_engine, meanwhile) -> None:
    """Commit ``meanwhile(other_session)`` after the warehouse is read, before the sums
    are stored."""
    real_pull = wh.pull_experiment

    def pull(*args, **kwargs):
        pulled = real_pull(*args, **kwargs)
        with Session(db_engine) as other:
            meanwhile(other)
            other.commit()
        return pulled

    monkeypatch.setattr(wh, "pull_experiment", pull)


def _nothing_stored(db_engine) -> None:
    with Session(db_engine) as session:
        for table in (Dataset, AnalysisSnapshot, WarehouseResult):
            assert session.exec(select(func.count()).select_from(table)).one() == 0


def _rename_treatment(experiment_id: int):
    def rename(other: Session) -> None:
        variant = other.exec(select(Variant).where(Variant.experiment_id == experiment_id,
                                                   Variant.key == "treatment")).one()
        variant.key = "annual"
        other.get(Experiment, experiment_id).version += 1
    return rename


def test_variants_renamed_during_the_job_pull_store_nothing(db_engine, experiment_query,
                                                            monkeypatch):
    query_id, experiment_id, _source_id, url = experiment_query
    _during_pull(monkeypatch, db_engine, _rename_treatment(experiment_id))

    outcome = wh.run_refresh(db_engine, query_id, environ={ENV: url})

    # Without the check: "ok", version 1, annual 0 accounts beside treatment's 400, srm.
    assert outcome.status == "failed", outcome.message
    assert outcome.message == wh.VARIANTS_CHANGED
    assert outcome.message.startswith("The experiment's variants changed while the "
                                      "warehouse was read")
    _nothing_stored(db_engine)
    with Session(db_engine) as session:
        query = session.get(WarehouseQuery, query_id)
        assert (query.last_status, query.last_message) == ("failed", wh.VARIANTS_CHANGED)


def test_variants_renamed_during_a_caller_session_pull_store_nothing(
        db_engine, experiment_query, monkeypatch):
    query_id, experiment_id, _source_id, url = experiment_query
    _during_pull(monkeypatch, db_engine, _rename_treatment(experiment_id))

    with Session(db_engine, expire_on_commit=False) as session:
        query = session.get(WarehouseQuery, query_id)
        outcome = wh.refresh_experiment(session, query, actor=None, environ={ENV: url})
        session.commit()

    assert (outcome.status, outcome.message) == ("failed", wh.VARIANTS_CHANGED)
    _nothing_stored(db_engine)


def test_a_variant_added_during_the_pull_stores_nothing(db_engine, experiment_query,
                                                        monkeypatch):
    query_id, experiment_id, _source_id, url = experiment_query

    def add_variant(other: Session) -> None:
        other.add(Variant(experiment_id=experiment_id, key="annual", weight=1.0, position=2))

    _during_pull(monkeypatch, db_engine, add_variant)
    outcome = wh.run_refresh(db_engine, query_id, environ={ENV: url})

    assert (outcome.status, outcome.message) == ("failed", wh.VARIANTS_CHANGED)
    _nothing_stored(db_engine)


def test_the_query_saved_during_the_pull_stores_nothing(db_engine, experiment_query,
                                                        monkeypatch):
    query_id, _experiment_id, _source_id, url = experiment_query
    new_text = "SELECT * FROM accounts WHERE segment = 'SMB'"

    def save(other: Session) -> None:
        admin = make_user(other, "ana@r2.test", "admin")
        source_id = other.get(WarehouseQuery, query_id).source_id
        wh.save_query(other, {"sql_text": new_text, "source_id": str(source_id)},
                      actor=admin, experiment=other.get(Experiment,
                                                        other.get(WarehouseQuery,
                                                                  query_id).experiment_id))

    _during_pull(monkeypatch, db_engine, save)
    outcome = wh.run_refresh(db_engine, query_id, environ={ENV: url})

    # Without the check: "ok", a version of every segment under the SMB-only query.
    assert (outcome.status, outcome.message) == ("failed", wh.QUERY_CHANGED)
    _nothing_stored(db_engine)
    with Session(db_engine) as session:
        query = session.get(WarehouseQuery, query_id)
        assert query.sql_text == new_text
        assert query.last_status == "failed"


def test_a_query_saved_with_the_same_text_and_a_rename_still_store(
        db_engine, experiment_query, monkeypatch):
    """Only what changes the sums refuses them: the schedule or the experiment's name
    changed meanwhile leave the refresh as it was."""
    query_id, experiment_id, _source_id, url = experiment_query

    def edit(other: Session) -> None:
        other.get(WarehouseQuery, query_id).schedule = "daily"
        other.get(Experiment, experiment_id).name = "Split pricing"

    _during_pull(monkeypatch, db_engine, edit)
    outcome = wh.run_refresh(db_engine, query_id, environ={ENV: url})

    assert outcome.status == "ok", outcome.message
    with Session(db_engine) as session:
        assert session.get(Dataset, outcome.dataset_id).row_count == 800


def test_the_ledger_query_saved_during_the_pull_stores_no_version(db_engine, ledger_warehouse,
                                                                 monkeypatch):
    url, _data = ledger_warehouse
    query_id = _ledger_query(db_engine, "SELECT * FROM ledger")
    real_pull = wh.pull_ledger
    new_text = "SELECT * FROM ledger WHERE region = 'EU'"

    def pull(*args, **kwargs):
        pulled = real_pull(*args, **kwargs)
        with Session(db_engine) as other:
            other.get(WarehouseQuery, query_id).sql_text = new_text
            other.commit()
        return pulled

    monkeypatch.setattr(wh, "pull_ledger", pull)
    outcome = wh.refresh_ledger(db_engine, query_id, actor_id=None, environ={ENV: url})

    # Without the check: "ok", a version of every region under the EU-only query.
    assert (outcome.status, outcome.message) == ("failed", wh.QUERY_CHANGED)
    with Session(db_engine) as session:
        assert versions(session) == []
        query = session.get(WarehouseQuery, query_id)
        assert (query.sql_text, query.last_status) == (new_text, "failed")


# ----------------------------------------------------- 3. a ledger pull's limit, PostgreSQL

#: 60,000 ledger rows: fetched 1,000 at a time, each FETCH a millisecond or two.
QUICK_LEDGER = ("SELECT 'a' || g AS account_id, '2025-01' AS period, 1.00 AS start_mrr "
                "FROM generate_series(1, 60000) AS g")


def test_a_ledger_pull_slow_on_this_side_stops_at_the_limit_on_postgresql(
        pg_warehouse, monkeypatch):
    url, _schema = pg_warehouse
    monkeypatch.setattr(wh, "LEDGER_CHUNK", 1_000)
    real_cell = wh._cell

    def slow_cell(value, name):  # 0.1 s of this process's work per chunk: ~6 s in all
        if name == "account_id" and value.endswith("000"):
            time.sleep(0.1)
        return real_cell(value, name)

    monkeypatch.setattr(wh, "_cell", slow_cell)
    source = DataSource(name="pg", url_env=ENV, dialect="postgresql")
    started = time.monotonic()
    with pytest.raises(wh.TimedOut) as stopped:
        wh.pull_ledger(source, QUICK_LEDGER, environ={ENV: url}, timeout=1)
    elapsed = time.monotonic() - started

    # 1 s + PostgreSQL's 1 s grace + at most a chunk; without the check: ~6 s, all rows.
    assert elapsed < 3.5, elapsed
    message = str(stopped.value)
    assert message.startswith("The warehouse refused the query: the query ran longer than "
                              "1 s and was stopped (the time limit of the whole refresh"), message
    assert "Raise NRRLAB_WAREHOUSE_LEDGER_TIMEOUT (seconds; now 1)" in message


def test_a_ledger_refresh_stopped_on_this_side_stores_no_version(db_engine, pg_warehouse,
                                                                 monkeypatch):
    url, _schema = pg_warehouse
    query_id = pg_ledger_query(db_engine, QUICK_LEDGER)
    monkeypatch.setattr(wh, "LEDGER_CHUNK", 1_000)
    real_cell = wh._cell
    monkeypatch.setattr(wh, "_cell", lambda value, name: (
        time.sleep(0.1) if name == "account_id" and value.endswith("000") else None,
        real_cell(value, name))[1])

    outcome = wh.refresh_ledger(db_engine, query_id, actor_id=None,
                                environ={ENV: url, wh.LEDGER_TIMEOUT_VARIABLE: "1"})

    assert outcome.status == "failed", outcome.message
    assert "ran longer than 1 s and was stopped" in outcome.message
    with Session(db_engine) as session:
        assert versions(session) == []


# ------------------------------------------------------------- 4. a data source's name


@pytest.mark.parametrize(("name", "message"), [
    ("prod\x00eu", "must not contain control characters"),
    ("prod\teu", "must not contain control characters"),
    ("prod \u202eue", "must not contain an invisible direction-changing character (U+202E): "
                      "it would reorder the text around it"),
    ("prod \u2066eu\u2069", "must not contain an invisible direction-changing character "
                            "(U+2066): it would reorder the text around it"),
])
def test_a_source_name_with_a_control_character_is_refused_as_a_team_name(
        db_engine, name, message):
    with Session(db_engine) as session:
        admin = make_user(session, "ana@r2-source.test", "admin")
        session.commit()
        with pytest.raises(ValidationFailed) as refused:
            wh.register_source(session, {"name": name, "url_env": "WAREHOUSE_URL",
                                         "dialect": "duckdb"}, actor=admin)
        assert refused.value.errors == {"name": message}
        session.rollback()
        assert session.exec(select(func.count()).select_from(DataSource)).one() == 0
        # Right-to-left text itself is a name like any other.
        source = wh.register_source(session, {"name": "מחסן", "url_env": "WAREHOUSE_URL",
                                              "dialect": "duckdb"},
                                    actor=session.get(User, admin.id))
        assert source.name == "מחסן"


# ---------------------------------------------- 5. enrolled_on beyond what a file can hold

_ENROLLED = ("SELECT account_id, variant, start_mrr, expansion_mrr, contraction_mrr, "
             "churned_mrr, CASE WHEN account_id = 'a-000003' THEN {odd} ELSE {plain} "
             "END AS enrolled_on FROM accounts")


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
@pytest.mark.parametrize(("odd", "plain"), [
    ("CAST('infinity' AS DATE)", "DATE '2026-01-05'"),
    ("CAST('-infinity' AS DATE)", "DATE '2026-01-05'"),
    ("DATE '12000-01-01'", "DATE '2026-01-05'"),
    ("CAST('infinity' AS TIMESTAMPTZ)", "TIMESTAMPTZ '2026-01-05 10:00:00+00'"),
    ("CAST('infinity' AS TIMESTAMP)", "TIMESTAMP '2026-01-05 10:00:00'"),
], ids=["infinity", "-infinity", "year-12000", "infinity-tz", "infinity-ts"])
def test_an_enrolled_on_no_file_can_hold_is_refused_with_its_column(
        request, dialect, odd, plain):
    if dialect == "duckdb":
        url = request.getfixturevalue("duckdb_url")
    else:
        url, _schema = request.getfixturevalue("pg_warehouse")
    source = DataSource(name="w", url_env=ENV, dialect=dialect)
    sql = _ENROLLED.format(odd=odd, plain=plain)

    with pytest.raises(wh.RowsRejected) as refused:
        wh.pull_experiment(source, sql, ("control", "treatment"), environ={ENV: url})

    # Before: PostgreSQL "date too large (after year 10K): 'infinity'" (no column);
    # DuckDB took infinity as 9999-12-31 and -infinity as 0001-01-01 (the enrolment
    # window's last day in the year 9999), and failed on year 12000 ("Invalid isoformat").
    assert refused.value.problems == [
        "1 row: enrolled_on must be a date from 0001-01-01 to 9999-12-31 "
        "(e.g. account_id a-000003)"]


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
def test_a_bc_enrolled_on_is_refused(request, dialect):
    """A BC date came back from DuckDB as text, read as the same year AD."""
    if dialect == "duckdb":
        url = request.getfixturevalue("duckdb_url")
        odd = "DATE '0044-03-15 (BC)'"
    else:
        url, _schema = request.getfixturevalue("pg_warehouse")
        odd = "DATE '0044-03-15 BC'"
    source = DataSource(name="w", url_env=ENV, dialect=dialect)
    sql = _ENROLLED.format(odd=odd, plain="DATE '2026-01-05'")

    with pytest.raises(wh.RowsRejected) as refused:
        wh.pull_experiment(source, sql, ("control", "treatment"), environ={ENV: url})

    assert refused.value.problems == [
        "1 row: enrolled_on must be a date from 0001-01-01 to 9999-12-31 "
        "(e.g. account_id a-000003)"]


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
def test_the_first_and_last_dates_a_file_can_hold_are_taken(request, dialect):
    if dialect == "duckdb":
        url = request.getfixturevalue("duckdb_url")
    else:
        url, _schema = request.getfixturevalue("pg_warehouse")
    source = DataSource(name="w", url_env=ENV, dialect=dialect)
    sql = ("SELECT account_id, variant, start_mrr, CASE WHEN account_id = 'a-000003' "
           "THEN DATE '0001-01-01' WHEN account_id = 'a-000004' THEN DATE '9999-12-31' "
           "ELSE DATE '2026-01-05' END AS enrolled_on FROM accounts")

    pulled = wh.pull_experiment(source, sql, ("control", "treatment"), environ={ENV: url})

    assert pulled.inputs.enrolment["last"] == "9999-12-31"


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
def test_a_text_enrolled_on_of_year_0000_is_refused_as_uploaded(request, dialect):
    """DuckDB reads '0000-01-01' as a date (1 BC); the upload refuses it, PostgreSQL's
    cast too."""
    if dialect == "duckdb":
        url = request.getfixturevalue("duckdb_url")
    else:
        url, _schema = request.getfixturevalue("pg_warehouse")
    source = DataSource(name="w", url_env=ENV, dialect=dialect)
    sql = _ENROLLED.format(odd="'0000-01-01'", plain="'2026-01-05'")

    with pytest.raises(wh.RowsRejected) as refused:
        wh.pull_experiment(source, sql, ("control", "treatment"), environ={ENV: url})

    assert refused.value.problems[0] in (
        "1 row: enrolled_on is not a date such as 2026-12-01 (YYYY-MM-DD) "
        "(e.g. account_id a-000003)",
        "enrolled_on holds a value that is not a date (YYYY-MM-DD)")  # PostgreSQL's cast


# ------------------------------------------- 6. a segment of timestamptz, any session zone

#: Accounts segmented by a signing moment 30 minutes before midnight UTC.
_SIGNED_SEGMENT = ("SELECT account_id, variant, start_mrr, CASE WHEN account_id < 'a-000400' "
                   "THEN TIMESTAMPTZ '2025-06-30 23:30:00+00' ELSE "
                   "TIMESTAMPTZ '2025-07-31 23:30:00+00' END AS segment FROM accounts")


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/Los_Angeles"])
def test_a_timestamptz_segment_is_the_same_in_any_session_zone(pg_warehouse, zone):
    from tests.warehouse.test_h1_trust_gaps import _zoned

    url, _schema = pg_warehouse
    source = DataSource(name="pg", url_env=ENV, dialect="postgresql")

    in_utc = wh.pull_experiment(source, _SIGNED_SEGMENT, ("control", "treatment"),
                                environ={ENV: _zoned(url, "UTC")})
    zoned = wh.pull_experiment(source, _SIGNED_SEGMENT, ("control", "treatment"),
                               environ={ENV: _zoned(url, zone)})

    # Before: "2025-07-01 01:30:00+02" in Berlin, "2025-06-30 16:30:00-07" in LA.
    segments = {segment for segment, _variant in zoned.inputs.extras}
    assert segments == {"2025-06-30 23:30:00", "2025-07-31 23:30:00"}
    assert zoned.sha256 == in_utc.sha256



# ------------------------------------------------------- 7. an experiment with no variants


def test_an_experiment_without_variants_fails_in_words(db_engine, duckdb_url, caplog):
    """H7 moved the plan's read outside the refresh's handler: the job logged a
    traceback and said "The refresh failed and stored nothing: experiment 'bare' has no
    variants"; refresh_experiment raised ValueError. Worded as the upload's refusal."""
    query_id, _experiment_id, _source_id = duck_experiment_query(db_engine, "bare",
                                                                 variants=())
    words = ("This experiment has no variants, so no query can match it. Add its variants "
             "first.")

    outcome = wh.run_refresh(db_engine, query_id, environ={ENV: duckdb_url})
    with Session(db_engine) as session:
        direct = wh.refresh_experiment(session, session.get(WarehouseQuery, query_id),
                                       actor=None, environ={ENV: duckdb_url})
        session.commit()

    assert (outcome.status, outcome.message) == ("failed", words)
    assert (direct.status, direct.message) == ("failed", words)
    assert "warehouse refresh" not in caplog.text  # no traceback logged
    _nothing_stored(db_engine)
