"""Migration e19b2d4f6a80: on PostgreSQL account_row's key to dataset becomes triggers.

The migration holds a frozen copy of ``experiments.account_row_link``'s SQL; the schema
the tests build from the models (``create_all``) uses the module. Both must install the
same triggers and functions, and no foreign key; the downgrade must give the key back.
SQLite keeps the real key throughout.
"""

from __future__ import annotations

from sqlalchemy import inspect, text
from sqlmodel import Session, SQLModel

import experiments.models  # noqa: F401
from experiments import account_row_link, migrate
from experiments.accounts_csv import read_accounts
from experiments.datasets import store_dataset
from experiments.db import make_engine
from experiments.setup import ensure_defaults
from tests.factories import make_experiment

BEFORE = "e18e5a6b7c85"
CSV = (b"account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"
       b"a1,control,100,0,0,0\na2,treatment,100,5,0,0\n")
KEYS = ["control", "treatment"]


def _keys(engine) -> list[str]:
    return [key["name"] for key in inspect(engine).get_foreign_keys("account_row")]


def _installed(engine) -> tuple[list, list]:
    with engine.connect() as connection:
        triggers = connection.execute(text(
            "SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger"
            " WHERE NOT tgisinternal ORDER BY 2")).all()
        functions = connection.execute(text(
            "SELECT proname, prosrc, proconfig FROM pg_proc"
            " WHERE pronamespace = 'public'::regnamespace ORDER BY 1")).all()
    return [tuple(t) for t in triggers], [tuple(f) for f in functions]


def test_migrated_and_model_schemas_keep_the_key_alike(scratch_database):
    migrated, modelled = make_engine(scratch_database()), make_engine(scratch_database())
    try:
        migrate.upgrade(migrated.url.render_as_string(hide_password=False))
        SQLModel.metadata.create_all(modelled)
        if migrated.dialect.name == "sqlite":
            assert _keys(migrated) == _keys(modelled) == [account_row_link.CONSTRAINT]
            return
        assert _keys(migrated) == _keys(modelled) == []
        triggers, functions = _installed(migrated)
        assert (triggers, functions) == _installed(modelled)
        assert {(table, name) for table, name, _ in triggers} == {
            (table, name) for table, names in account_row_link.TRIGGERS.items()
            for name in names}
        assert [name for name, _, _ in functions] == sorted(account_row_link.FUNCTIONS)
        # each runs on its own schema's tables, whatever the caller's search_path
        assert {tuple(config) for _, _, config in functions} == {
            ("search_path=public, pg_temp",)}
    finally:
        migrated.dispose()
        modelled.dispose()


def test_the_downgrade_restores_the_key_over_stored_rows(scratch_database):
    url = scratch_database()
    engine = make_engine(url)
    migrate.upgrade(url)
    with Session(engine, expire_on_commit=False) as session:
        ensure_defaults(session)
        experiment = make_experiment(session)
        dataset = store_dataset(session, experiment, read_accounts(CSV, variants=KEYS),
                                filename="a.csv", actor=None)
        session.commit()
    try:
        migrate.downgrade(url, BEFORE)
        assert _keys(engine) == [account_row_link.CONSTRAINT]
        if engine.dialect.name == "postgresql":
            assert _installed(engine) == ([], [])
            key = inspect(engine).get_foreign_keys("account_row")[0]
            assert (key["referred_table"], key["options"].get("ondelete")) == (
                "dataset", "CASCADE")
        migrate.upgrade(url)
        assert _keys(engine) == ([] if engine.dialect.name == "postgresql"
                                 else [account_row_link.CONSTRAINT])
        with engine.begin() as connection:  # the rows survived both ways, and still cascade
            assert connection.execute(text("SELECT count(*) FROM account_row")).scalar() == 2
            connection.execute(text("DELETE FROM dataset WHERE id = :id"), {"id": dataset.id})
            assert connection.execute(text("SELECT count(*) FROM account_row")).scalar() == 0
    finally:
        engine.dispose()
