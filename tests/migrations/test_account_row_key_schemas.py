"""PostgreSQL: account_row's key triggers act on their own schema's tables, whoever fires them.

An install may live in a schema of its own (``DATABASE_URL=…?options=-csearch_path%3Dnrr``),
beside another install in ``public``, and its tables are also written by sessions with
another ``search_path``: an administrator's ``psql``, ``pg_restore --data-only`` (which runs
with an empty one). The foreign key the triggers replace always named its tables exactly;
the triggers must too, or a delete in one install deletes the other install's rows and
leaves its own behind.
"""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from experiments import migrate
from experiments.accounts_csv import read_accounts
from experiments.datasets import store_dataset
from experiments.db import make_engine
from experiments.setup import ensure_defaults
from tests.factories import make_experiment

CSV = (b"account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"
       b"a1,control,100,0,0,0\na2,treatment,100,5,0,0\na3,control,80,0,10,0\n")
KEYS = ["control", "treatment"]


@pytest.fixture
def two_installs(scratch_database):
    """One database holding two migrated installs, in ``public`` and in ``nrr``, each
    with dataset 1 of three rows. Yields the database's URL (``public`` by default)."""
    url = scratch_database()
    if not url.startswith("postgresql"):
        pytest.skip("SQLite keeps a real foreign key and has no schemas")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE SCHEMA nrr"))
    engine.dispose()
    in_nrr = make_url(url).update_query_dict({"options": "-csearch_path=nrr"})
    for target in (url, in_nrr.render_as_string(hide_password=False)):
        migrate.upgrade(target)
        engine = make_engine(target)
        with Session(engine) as session:
            ensure_defaults(session)
            experiment = make_experiment(session)
            dataset = store_dataset(session, experiment, read_accounts(CSV, variants=KEYS),
                                    filename="a.csv", actor=None)
            assert dataset.id == 1
            session.commit()
        engine.dispose()
    yield url


def _rows(connection, schema: str) -> int:
    return connection.execute(text(f"SELECT count(*) FROM {schema}.account_row")).scalar()


@pytest.mark.parametrize("search_path", ["public", "''"])
def test_a_delete_from_another_search_path_cascades_in_its_own_schema(two_installs,
                                                                       search_path):
    engine = make_engine(two_installs)
    try:
        with engine.begin() as connection:
            connection.execute(text(f"SET LOCAL search_path = {search_path}"))
            connection.execute(text("DELETE FROM nrr.dataset WHERE id = 1"))
            assert _rows(connection, "nrr") == 0, "the deleted dataset's rows were left"
            assert _rows(connection, "public") == 3, "the other install's rows were deleted"
    finally:
        engine.dispose()


def test_rows_checked_against_their_own_schemas_datasets(two_installs):
    engine = make_engine(two_installs)
    try:
        with engine.connect() as connection:
            connection.execute(text("SET search_path = public"))
            # dataset 1 exists in both; dataset 2 only in public
            connection.execute(text("INSERT INTO public.dataset (experiment_id, version,"
                                    " source, filename, sha256, row_count, has_segment,"
                                    " has_days_to_value, uploaded_at) SELECT experiment_id,"
                                    " 2, source, 'b.csv', 'b', 0, false, false, uploaded_at"
                                    " FROM public.dataset WHERE id = 1"))
            connection.commit()
            with pytest.raises(IntegrityError) as refused:
                connection.execute(text(
                    "INSERT INTO nrr.account_row (dataset_id, account_id, variant,"
                    " start_cents, expansion_cents, contraction_cents, churned_cents)"
                    " VALUES (2, 'x', 'control', 100, 0, 0, 0)"))
            connection.rollback()
            assert isinstance(refused.value.orig, psycopg.errors.ForeignKeyViolation)
            assert "Key (dataset_id)=(2)" in str(refused.value)
            connection.execute(text("SET search_path = ''"))  # as pg_restore --data-only
            connection.execute(text(
                "INSERT INTO nrr.account_row (dataset_id, account_id, variant,"
                " start_cents, expansion_cents, contraction_cents, churned_cents)"
                " VALUES (1, 'x', 'control', 100, 0, 0, 0)"))
            connection.execute(text("TRUNCATE nrr.dataset CASCADE"))
            assert _rows(connection, "nrr") == 0
            assert _rows(connection, "public") == 3
            connection.rollback()
    finally:
        engine.dispose()
