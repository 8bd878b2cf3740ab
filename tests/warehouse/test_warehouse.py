"""Warehouse-native datasets (issue 18 item 1) against real warehouses: DuckDB through
duckdb-engine and PostgreSQL in a scratch schema.

The figures of a warehouse refresh are checked against the upload of the same rows (the
path every other figure is tested on) and, for the headline numbers, against pandas by
hand; errors are checked for the warehouse's own message and for nothing stored.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from sqlmodel import select

from experiments import warehouse as wh
from experiments.analysis import recompute
from experiments.models import AnalysisSnapshot, Dataset
from experiments.warehouse_models import DataSource, WarehouseQuery, WarehouseResult
from tests.factories import make_experiment, store_accounts
from tests.warehouse.conftest import account_frame, frame_csv

ENV = "NRRLAB_TEST_WAREHOUSE_URL"


@pytest.fixture(params=["duckdb", "postgresql"])
def warehouse(request, tmp_path):
    """``(dialect, url)`` of a warehouse holding ``accounts`` (the generated frame)."""
    if request.param == "duckdb":
        return "duckdb", request.getfixturevalue("duckdb_url")
    url, _schema = request.getfixturevalue("pg_warehouse")
    return "postgresql", url


def _source(session, dialect: str) -> DataSource:
    source = DataSource(name=f"{dialect} warehouse", url_env=ENV, dialect=dialect)
    session.add(source)
    session.flush()
    return source


def _query(session, source, experiment, sql="SELECT * FROM accounts") -> WarehouseQuery:
    query = WarehouseQuery(source_id=source.id, experiment_id=experiment.id, sql_text=sql)
    session.add(query)
    session.flush()
    return query


def _refresh(session, query, url, **options):
    return wh.refresh_experiment(session, query, actor=None, environ={ENV: url}, **options)


def _latest(session, experiment) -> AnalysisSnapshot:
    return session.exec(
        select(AnalysisSnapshot).where(AnalysisSnapshot.experiment_id == experiment.id)
        .order_by(AnalysisSnapshot.id.desc())
    ).first()


def _close(a, b, path="") -> None:
    """Recursive comparison of two JSON documents, numbers to 1e-9 relative."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float | int):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def test_refresh_gives_the_uploads_figures_and_only_sums_come_back(session, warehouse):
    dialect, url = warehouse
    uploaded = make_experiment(session, "uploaded", mde=0.02, guardrails=[
        {"metric": "grr", "margin": 0.01}])
    read = make_experiment(session, "read", mde=0.02, guardrails=[
        {"metric": "grr", "margin": 0.01}])
    store_accounts(session, uploaded, frame_csv(account_frame()))
    from experiments.analysis import active_dataset, refresh_snapshot

    refresh_snapshot(session, uploaded, active_dataset(session, uploaded))
    query = _query(session, _source(session, dialect), read)

    outcome = _refresh(session, query, url)

    assert outcome.status == "ok", outcome.message
    dataset = session.get(Dataset, outcome.dataset_id)
    assert (dataset.source, dataset.version, dataset.row_count) == ("warehouse", 1, 800)
    assert (dataset.has_segment, dataset.has_pre_period, dataset.has_days_observed) == (
        True, True, True)
    expected, got = _latest(session, uploaded), _latest(session, read)
    for key in ("arms", "comparisons", "srm", "required_n", "velocity_curves",
                "velocity_cohorts"):
        _close(expected.result[key], got.result[key], key)
    _close(expected.segments, got.segments, "segments")
    assert got.verdict == expected.verdict
    # Independently, by hand with pandas: each arm's NRR and the delta-method p-value.
    frame = account_frame()
    frame["end"] = (frame.start_mrr + frame.expansion_mrr - frame.contraction_mrr
                    - frame.churned_mrr)
    arms = {arm["variant"]: arm for arm in got.result["arms"]}

    def ratio_var(part):
        x, y = part.end.to_numpy(), part.start_mrr.to_numpy()
        mx, my, n = x.mean(), y.mean(), len(x)
        cov = np.cov(x, y, ddof=1)
        return (cov[0, 0] / my**2 - 2 * mx * cov[0, 1] / my**3 + mx**2 * cov[1, 1] / my**4) / n

    groups = dict(iter(frame.groupby("variant")))
    for variant, part in groups.items():
        assert arms[variant]["nrr"] == pytest.approx(part.end.sum() / part.start_mrr.sum(),
                                                     rel=1e-12)
    var_t, var_c = ratio_var(groups["treatment"]), ratio_var(groups["control"])
    df = (var_t + var_c) ** 2 / (var_t**2 / 399 + var_c**2 / 399)
    uplift = (groups["treatment"].end.sum() / groups["treatment"].start_mrr.sum()
              - groups["control"].end.sum() / groups["control"].start_mrr.sum())
    comparison = got.result["comparisons"][0]
    assert comparison["uplift_abs"] == pytest.approx(uplift, rel=1e-10)
    assert comparison["inference"]["welch_p_value"] == pytest.approx(
        2 * sps.t.sf(abs(uplift) / math.sqrt(var_t + var_c), df), rel=1e-8)
    # 800 accounts fit in the sample bound: every account was read, no sample label.
    stored = session.exec(select(WarehouseResult)).one()
    assert (stored.total_rows, stored.sample_rows) == (800, 800)
    assert not any(wh_note in w for w in comparison["warnings"]
                   for wh_note in ("random sample",))


def test_large_query_reads_a_bounded_sample_and_says_so(session, duckdb_url):
    experiment = make_experiment(session, "big")
    query = _query(session, _source(session, "duckdb"), experiment)

    outcome = _refresh(session, query, duckdb_url, sample_limit=150)

    assert outcome.status == "ok" and "random sample of 150" in outcome.message
    stored = session.exec(select(WarehouseResult)).one()
    assert (stored.total_rows, stored.sample_rows) == (800, 150)
    comparison = _latest(session, experiment).result["comparisons"][0]
    assert comparison["mann_whitney"]["sample"] == {"accounts": 150, "of": 800}
    assert 0 <= comparison["p_value_mwu"] <= 1
    assert any("p_value_mwu from a random sample: 150 of 800 accounts" in w
               for w in comparison["warnings"])
    # The p-value is scipy's Mann-Whitney U on exactly the stored sample.
    sample = stored.inputs["sample"]
    ratio = np.array(sample["end"]) / np.array(sample["start"])
    variant = np.array(sample["variant"])
    expected = sps.mannwhitneyu(ratio[variant == "treatment"], ratio[variant == "control"],
                                alternative="two-sided").pvalue
    assert comparison["p_value_mwu"] == pytest.approx(expected, rel=1e-9)
    # The sums still cover every account: the uplift is the whole frame's.
    frame = account_frame()
    end = frame.start_mrr + frame.expansion_mrr - frame.contraction_mrr - frame.churned_mrr
    nrr = {v: end[frame.variant == v].sum() / frame.start_mrr[frame.variant == v].sum()
           for v in ("control", "treatment")}
    assert comparison["uplift_abs"] == pytest.approx(nrr["treatment"] - nrr["control"],
                                                     rel=1e-10)


def test_same_sums_again_store_nothing_and_recompute_needs_no_warehouse(session, duckdb_url):
    experiment = make_experiment(session, "again")
    query = _query(session, _source(session, "duckdb"), experiment)
    first = _refresh(session, query, duckdb_url)

    second = _refresh(session, query, duckdb_url)

    assert second.status == "unchanged" and "version 1" in second.message
    assert len(session.exec(select(Dataset)).all()) == 1
    before = _latest(session, experiment)
    # An amendment's recompute reads the stored sums (no URL in the environment now).
    snapshot = recompute(session, experiment, actor=None)
    assert snapshot.id != before.id and snapshot.dataset_id == first.dataset_id
    _close(before.result["comparisons"], snapshot.result["comparisons"])


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT account_id, variant, segment, start_mrr AS mrr, 1 AS colour FROM accounts",
         "missing column: start_mrr; extra columns mrr, colour: not part of the contract"),
        ("SELECT account_id, variant, start_mrr, pre_start_mrr FROM accounts",
         "pre_start_mrr and pre_end_mrr come together or not at all"),
        ("SELECT account_id, variant, start_mrr FROM accounts; DROP TABLE accounts",
         "one SELECT statement only"),
    ],
)
def test_query_columns_are_checked_against_the_contract(session, duckdb_url, sql, expected):
    experiment = make_experiment(session, "cols")
    query = _query(session, _source(session, "duckdb"), experiment, sql)

    outcome = _refresh(session, query, duckdb_url)

    assert outcome.status == "failed"
    assert expected in outcome.message
    assert query.last_status == "failed" and expected in query.last_message
    assert session.exec(select(Dataset)).all() == []


def test_rows_breaking_the_contract_are_counted_with_an_example(session, warehouse):
    dialect, url = warehouse
    experiment = make_experiment(session, "rows")
    sql = """
        SELECT account_id, variant, start_mrr, churned_mrr FROM accounts
        UNION ALL SELECT 'zz-neg', 'control', -5, 0
        UNION ALL SELECT 'zz-neg2', 'control', 0, 0
        UNION ALL SELECT 'zz-over', 'treatment', 10, 11
        UNION ALL SELECT 'a-000001', 'control', 10, 0
    """
    query = _query(session, _source(session, dialect), experiment, sql)

    outcome = _refresh(session, query, url)

    assert outcome.status == "failed"
    assert "1 repeated account_id values" in outcome.message
    assert "2 rows: start_mrr must be greater than 0 (e.g. account_id zz-neg)" in outcome.message
    # zz-neg breaks it too (0 > -5); the example is the smallest account_id.
    assert ("2 rows: contraction_mrr + churned_mrr must not exceed start_mrr "
            "(e.g. account_id zz-neg)") in outcome.message
    assert session.exec(select(Dataset)).all() == []


def test_unknown_variants_are_named(session, duckdb_url):
    experiment = make_experiment(session, "variants", variants=("control", "b"))
    query = _query(session, _source(session, "duckdb"), experiment)

    outcome = _refresh(session, query, duckdb_url)

    assert outcome.status == "failed"
    assert ("400 rows: variant 'treatment' is not one of the experiment's variants "
            "(control, b)") in outcome.message


def test_query_errors_show_the_warehouses_message(session, warehouse):
    dialect, url = warehouse
    experiment = make_experiment(session, "broken")
    query = _query(session, _source(session, dialect), experiment,
                   "SELECT account_id, variant, start_mrr FROM no_such_table")

    outcome = _refresh(session, query, url)

    assert outcome.status == "failed"
    assert outcome.message.startswith("The warehouse refused the query:")
    assert "no_such_table" in outcome.message
    assert session.exec(select(Dataset)).all() == []


def test_a_long_postgresql_query_is_stopped_by_the_statement_timeout(session, pg_warehouse):
    url, _schema = pg_warehouse
    experiment = make_experiment(session, "slow")
    query = _query(session, _source(session, "postgresql"), experiment,
                   "SELECT a.* FROM accounts a, (SELECT pg_sleep(3)) AS s")

    outcome = _refresh(session, query, url, timeout=1)

    assert outcome.status == "failed"
    assert "canceling statement due to statement timeout" in outcome.message
    assert outcome.message.endswith("If the query is right but the warehouse needs longer, "
                                    "raise NRRLAB_WAREHOUSE_TIMEOUT (seconds; now 1) where "
                                    "the refresh jobs run.")


def _spilled(duckdb_url: str) -> Path:
    """Where DuckDB spills for the warehouse file (its default: ``<file>.tmp`` beside it)."""
    return Path(duckdb_url.removeprefix("duckdb:///").split("?")[0] + ".tmp")


class _SpillWatch:
    """The largest size the spill directory reached while the block ran (polled)."""

    def __init__(self, folder: Path):
        self.folder, self.peak, self._done = folder, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _size(self) -> int:
        try:
            return sum(f.stat().st_size for f in self.folder.iterdir() if f.is_file())
        except OSError:  # not there (yet), or a file deleted while listed
            return 0

    def _poll(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._size())
            self._done.wait(0.01)

    def __enter__(self) -> _SpillWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def test_a_long_duckdb_query_is_interrupted(session, duckdb_url):
    """64 billion rows: the timer stops it. Its state (640,000 distinct ids) fits in the
    memory limit, so it does not spill; were it to, at most the bound set here."""
    experiment = make_experiment(session, "slow")
    sql = ("SELECT a.account_id || b.account_id AS account_id, a.variant, a.start_mrr "
           "FROM accounts a, accounts b, range(100000) r")
    query = _query(session, _source(session, "duckdb"), experiment, sql)

    with _SpillWatch(_spilled(duckdb_url)) as spill:
        outcome = wh.refresh_experiment(session, query, actor=None, timeout=0.5, environ={
            ENV: duckdb_url, "NRRLAB_WAREHOUSE_DUCKDB_SPILL": "64MB"})

    assert outcome.status == "failed"
    assert "ran longer than 0.5 s and was stopped" in outcome.message
    assert "raise NRRLAB_WAREHOUSE_TIMEOUT (seconds; now 0.5)" in outcome.message
    assert spill.peak <= 64 * 2**20
    assert not _spilled(duckdb_url).exists()


@pytest.mark.parametrize("where", ["environment", "url"])
def test_a_duckdb_query_needing_more_disk_than_the_bound_stops_and_leaves_no_spill(
        session, duckdb_url, where):
    """12.8 million distinct ids under count(DISTINCT …): with 32 MB of memory DuckDB
    spills, and 16 MB of temporary disk is not enough. The refresh fails with the limit
    named, stores nothing, and DuckDB's spill is gone (it never grew past the bound)."""
    experiment = make_experiment(session, "wide")
    sql = ("SELECT a.account_id || b.account_id || r.range AS account_id, a.variant, "
           "a.start_mrr FROM accounts a, accounts b, range(20) r")
    query = _query(session, _source(session, "duckdb"), experiment, sql)
    limits = {"memory_limit": "32MB", "max_temp_directory_size": "16MB"}
    url = f"{duckdb_url}?threads=2"  # as on this machine, whatever the CI runner has
    if where == "url":  # the source's own URL wins over the server's defaults
        environ = {ENV: f"{url}&memory_limit=32MB&max_temp_directory_size=16MB"}
    else:
        environ = {ENV: url, "NRRLAB_WAREHOUSE_DUCKDB_MEMORY": limits["memory_limit"],
                   "NRRLAB_WAREHOUSE_DUCKDB_SPILL": limits["max_temp_directory_size"]}

    with _SpillWatch(_spilled(duckdb_url)) as spill:
        outcome = wh.refresh_experiment(session, query, actor=None, environ=environ)

    assert outcome.status == "failed"
    assert outcome.message.startswith(
        "The warehouse refused the query: the query needed more than 16MB of temporary disk "
        "space and was stopped (Out of Memory Error: ")
    assert ("raise the limit: NRRLAB_WAREHOUSE_DUCKDB_SPILL on the server, or "
            "max_temp_directory_size on the source's URL") in outcome.message
    assert "PRAGMA" not in outcome.message  # DuckDB's advice on its own settings is left out
    assert 0 < spill.peak <= 16 * 2**20
    assert not _spilled(duckdb_url).exists()
    assert session.exec(select(Dataset)).all() == []


def test_a_duckdb_query_needing_more_memory_than_the_bound_names_it(session, duckdb_url):
    """One string of 640,000 joined ids is held whole (it cannot spill): over 16 MB."""
    experiment = make_experiment(session, "long-string")
    sql = ("SELECT a.account_id, a.variant, a.start_mrr + 0 * length(t.s) AS start_mrr "
           "FROM accounts a, (SELECT string_agg(x.account_id || y.account_id, ',') AS s "
           "FROM accounts x, accounts y) t")
    query = _query(session, _source(session, "duckdb"), experiment, sql)

    outcome = wh.refresh_experiment(session, query, actor=None, environ={
        ENV: f"{duckdb_url}?threads=2", "NRRLAB_WAREHOUSE_DUCKDB_MEMORY": "16MB"})

    assert outcome.status == "failed"
    assert outcome.message.startswith(
        "The warehouse refused the query: the query needed more than 16MB of memory and was "
        "stopped (Out of Memory Error: ")
    assert ("raise the limit: NRRLAB_WAREHOUSE_DUCKDB_MEMORY on the server, or memory_limit "
            "on the source's URL") in outcome.message
    assert session.exec(select(Dataset)).all() == []


def test_duckdb_reads_open_with_bounded_memory_and_spill(duckdb_url):
    source = DataSource(name="w", url_env=ENV, dialect="duckdb")
    setting = ("SELECT current_setting('memory_limit'), "
               "current_setting('max_temp_directory_size')")
    with wh.reading(source, environ={ENV: duckdb_url}) as connection:
        memory, spill = connection.exec_driver_sql(setting).one()
    # The defaults (1GB, 4GB), not DuckDB's 80% of memory and 90% of the disk.
    assert (memory, spill) == ("953.6 MiB", "3.7 GiB")
    environ = {ENV: duckdb_url, "NRRLAB_WAREHOUSE_DUCKDB_MEMORY": "256MB",
               "NRRLAB_WAREHOUSE_DUCKDB_SPILL": "2GiB"}
    with wh.reading(source, environ=environ) as connection:
        assert connection.exec_driver_sql(setting).one() == ("244.1 MiB", "2.0 GiB")


@pytest.mark.parametrize("variable, value", [
    ("NRRLAB_WAREHOUSE_DUCKDB_MEMORY", "lots"), ("NRRLAB_WAREHOUSE_DUCKDB_MEMORY", "0GB"),
    ("NRRLAB_WAREHOUSE_DUCKDB_SPILL", "4 GB; DROP"), ("NRRLAB_WAREHOUSE_DUCKDB_SPILL", "-1GB"),
])
def test_a_malformed_duckdb_limit_is_named(session, duckdb_url, variable, value):
    experiment = make_experiment(session, "limits")
    query = _query(session, _source(session, "duckdb"), experiment)

    outcome = wh.refresh_experiment(session, query, actor=None,
                                    environ={ENV: duckdb_url, variable: value})

    message = (
        f"The environment variable {variable} must be a size such as 512MB or 4GB (DuckDB's "
        f"{'memory_limit' if variable.endswith('MEMORY') else 'max_temp_directory_size'} for "
        f"warehouse reads), not {value!r}.")
    assert outcome.status == "failed" and outcome.message == message
    assert session.exec(select(Dataset)).all() == []
    # The data sources page (and `nrrlab warehouse sources`) says so before any refresh.
    source = session.get(DataSource, query.source_id)
    assert wh.source_status(source, {ENV: duckdb_url, variable: value}) == message
    assert wh.source_status(source, {ENV: duckdb_url}) == f"{ENV} is set (duckdb)"


def test_reads_are_read_only(warehouse):
    dialect, url = warehouse
    source = DataSource(name="w", url_env=ENV, dialect=dialect)
    with pytest.raises(wh.WarehouseError) as caught, wh.reading(source, environ={ENV: url}) as c:
        c.exec_driver_sql("CREATE TABLE written (a integer)")
    assert "read" in str(caught.value).lower()  # "read-only transaction" / "read-only mode"


def test_url_problems_are_explained_without_showing_the_url(session):
    source = DataSource(name="prod", url_env="PROD_URL", dialect="postgresql")
    with pytest.raises(wh.WarehouseError, match="PROD_URL is not set on the server"):
        wh.source_url(source, {})
    with pytest.raises(wh.WarehouseError, match="holds a duckdb URL, but 'prod' is registered"):
        wh.source_url(source, {"PROD_URL": "duckdb:///x.db"})
    with pytest.raises(wh.WarehouseError, match="does not hold a SQLAlchemy URL") as caught:
        wh.source_url(source, {"PROD_URL": "not a url s3cret"})
    assert "s3cret" not in str(caught.value)
    # A refused connection names the problem, never the password.
    bad = "postgresql+psycopg://root:hunter2@127.0.0.1:1/none?connect_timeout=2"
    with pytest.raises(wh.WarehouseError) as caught, wh.reading(source,
                                                                environ={"PROD_URL": bad}):
        pass
    assert "hunter2" not in str(caught.value)


def test_a_decided_experiment_is_not_read(session, duckdb_url):
    experiment = make_experiment(session, "decided", status="decided")
    query = _query(session, _source(session, "duckdb"), experiment)

    outcome = _refresh(session, query, duckdb_url)

    assert outcome.status == "failed" and "The experiment is decided" in outcome.message
    assert session.exec(select(Dataset)).all() == []


def test_enrolment_dates_are_counted_in_the_warehouse(session, tmp_path):
    from datetime import date, timedelta

    from sqlalchemy import create_engine

    from experiments.analysis import active_dataset, refresh_snapshot

    frame = account_frame(seed=11, n=150, pre=False)
    rng = np.random.default_rng(11)
    frame["enrolled_on"] = [date(2026, 9, 1) + timedelta(days=int(d))
                            for d in rng.integers(0, 60, len(frame))]
    url = f"duckdb:///{tmp_path / 'dated.duckdb'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        raw = connection.connection.driver_connection
        raw.register("frame", frame)
        raw.execute("CREATE TABLE accounts AS SELECT * FROM frame")
    engine.dispose()
    uploaded = make_experiment(session, "dated-upload")
    store_accounts(session, uploaded, frame_csv(frame))
    refresh_snapshot(session, uploaded, active_dataset(session, uploaded))
    read = make_experiment(session, "dated-read")
    query = _query(session, _source(session, "duckdb"), read)

    outcome = _refresh(session, query, url)

    assert outcome.status == "ok", outcome.message
    assert session.get(Dataset, outcome.dataset_id).has_enrolled_on
    expected = _latest(session, uploaded).result["enrolment"]
    got = _latest(session, read).result["enrolment"]
    assert got["source"] == "enrolled_on" and got == expected
    # By hand: the smallest arm on the last day and 28 days before it.
    last = frame.enrolled_on.max()
    cut = last - timedelta(days=28)
    sizes = frame.variant.value_counts()
    smallest = sizes.idxmin() if sizes.min() != sizes.max() else "control"
    assert got["observed_smallest"] == sizes[smallest]
    assert got["earlier_smallest"] == int(((frame.variant == smallest)
                                           & (frame.enrolled_on < cut)).sum())
