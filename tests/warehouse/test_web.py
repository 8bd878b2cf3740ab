"""The warehouse pages: an admin registers a data source, an analyst saves an experiment's
query and refreshes it (a job, run at once in tests); failures show the warehouse's
message on the page, never a 500."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from experiments.models import AnalysisSnapshot, Dataset
from experiments.warehouse_models import DataSource, WarehouseQuery

ENV = "NRRLAB_TEST_WAREHOUSE_URL"


def _post(client, url, **data):
    return client.post(url, data={"csrf_token": client.csrf, **data})


@pytest.fixture
def source_id(db_engine, monkeypatch, duckdb_url) -> int:
    monkeypatch.setenv(ENV, duckdb_url)
    with Session(db_engine) as session:
        source = DataSource(name="Analytics DuckDB", url_env=ENV, dialect="duckdb")
        session.add(source)
        session.commit()
        return source.id


def test_admin_registers_a_source_by_its_environment_variable(login_as, monkeypatch):
    admin = login_as("admin")
    monkeypatch.delenv("NRRLAB_TEST_NOT_SET", raising=False)

    bad = _post(admin, "/admin/data-sources", name="prod", url_env="prod-url",
                dialect="oracle")
    assert bad.status_code == 422
    page = bad.get_data(as_text=True)
    assert "the name of an environment variable" in page
    assert "one of postgresql, duckdb, bigquery, snowflake, trino" in page

    good = _post(admin, "/admin/data-sources", name="prod", url_env="NRRLAB_TEST_NOT_SET",
                 dialect="postgresql")
    assert good.status_code == 303
    listing = admin.get("/admin/data-sources").get_data(as_text=True)
    assert "$NRRLAB_TEST_NOT_SET" in listing
    assert "The environment variable NRRLAB_TEST_NOT_SET is not set on the server" in listing

    again = _post(admin, "/admin/data-sources", name="prod", url_env="OTHER", dialect="trino")
    assert again.status_code == 422 and "a data source named" in again.get_data(as_text=True)


def test_analyst_reads_an_experiment_from_the_warehouse(login_as, factory, db_engine,
                                                       source_id):
    factory.experiment("wh-exp")
    analyst = login_as("analyst")
    url = "/experiments/wh-exp/warehouse"

    assert analyst.get(url).status_code == 200
    saved = _post(analyst, url, source_id=str(source_id), sql_text="SELECT * FROM accounts;",
                  schedule="daily", version="")
    assert saved.status_code == 303
    refreshed = _post(analyst, url + "/refresh")
    assert refreshed.status_code == 303

    page = analyst.get(url).get_data(as_text=True)
    assert "Dataset version 1: 800 accounts summed in the warehouse" in page
    with Session(db_engine) as session:
        dataset = session.exec(select(Dataset)).one()
        assert dataset.source == "warehouse"
        assert session.exec(select(AnalysisSnapshot)).one().dataset_id == dataset.id
        query = session.exec(select(WarehouseQuery)).one()
        assert (query.schedule, query.sql_text) == ("daily", "SELECT * FROM accounts")
    results = analyst.get("/experiments/wh-exp").get_data(as_text=True)
    assert "Analytics DuckDB (warehouse query)" in results


def test_a_failing_query_shows_the_warehouses_message(login_as, factory, source_id):
    factory.experiment("wh-bad")
    analyst = login_as("analyst")
    url = "/experiments/wh-bad/warehouse"
    _post(analyst, url, source_id=str(source_id),
          sql_text="SELECT account_id, variant, start_mrr FROM missing_table", schedule="manual")

    answer = _post(analyst, url + "/refresh", )
    assert answer.status_code == 303
    page = analyst.get(url)
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "The last refresh failed" in text and "missing_table" in text
    # htmx: the refresh answers with the status component only.
    partial = analyst.post(url + "/refresh", data={"csrf_token": analyst.csrf},
                           headers={"HX-Request": "true"})
    assert partial.status_code == 200
    assert partial.get_data(as_text=True).lstrip().startswith('<div class="warehouse-status"')


def test_bad_query_text_is_a_field_error_and_stale_edits_conflict(login_as, factory,
                                                                  source_id):
    factory.experiment("wh-form")
    analyst = login_as("analyst")
    url = "/experiments/wh-form/warehouse"

    bad = _post(analyst, url, source_id="999", sql_text="SELECT 1; DELETE FROM x",
                schedule="weekly")
    assert bad.status_code == 422
    text = bad.get_data(as_text=True)
    assert "one SELECT statement only" in text and "choose a registered data source" in text
    assert "one of manual, hourly, daily" in text

    assert _post(analyst, url, source_id=str(source_id), sql_text="SELECT * FROM accounts",
                 schedule="manual", version="").status_code == 303
    assert _post(analyst, url, source_id=str(source_id), sql_text="SELECT 2",
                 schedule="manual", version="1").status_code == 303
    stale = _post(analyst, url, source_id=str(source_id), sql_text="SELECT 3",
                  schedule="manual", version="1")
    assert stale.status_code == 409
    assert "changed by someone else" in stale.get_data(as_text=True)


def test_a_viewer_cannot_save_or_refresh(login_as, factory, source_id):
    factory.experiment("wh-view")
    viewer = login_as("viewer")
    url = "/experiments/wh-view/warehouse"
    assert viewer.get(url).status_code == 403
    assert _post(viewer, url + "/refresh").status_code == 403


def test_the_results_page_labels_rank_checks_on_a_sample(login_as, factory, source_id,
                                                         monkeypatch):
    from experiments import warehouse

    monkeypatch.setattr(warehouse, "SAMPLE_LIMIT", 120)
    factory.experiment("wh-sample")
    analyst = login_as("analyst")
    url = "/experiments/wh-sample/warehouse"
    _post(analyst, url, source_id=str(source_id), sql_text="SELECT * FROM accounts",
          schedule="manual")
    _post(analyst, url + "/refresh")

    assert "random sample of 120" in analyst.get(url).get_data(as_text=True)
    page = analyst.get("/experiments/wh-sample").get_data(as_text=True)
    assert "p_value_mwu from a random sample: 120 of 800 accounts read from the warehouse" in page


def test_a_refused_source_name_comes_back_as_typed(login_as):
    """Over its 100-character limit, the name is put back whole, as typed (it was cut to
    200 characters, so the page showed less than the user had sent)."""
    admin = login_as("admin")
    name = "Analytics warehouse, EMEA revenue (read-only replica) " * 5  # 270 characters
    refused = _post(admin, "/admin/data-sources", name=name, url_env="NRRLAB_TEST_NOT_SET",
                    dialect="postgresql")
    assert refused.status_code == 422
    assert name.strip() in refused.get_data(as_text=True)
