"""Alembic is the only author of the schema: it must reach head, go back, and agree with the
models."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlmodel import SQLModel

import experiments.models  # noqa: F401
from experiments import account_row_link, migrate
from experiments.db import make_engine

pytestmark = pytest.mark.db


@pytest.fixture
def empty_url(scratch_database):
    return scratch_database()


def test_upgrade_to_head_then_down_to_base_and_up_again(empty_url):
    engine = make_engine(empty_url)
    migrate.upgrade(empty_url)
    tables = set(inspect(engine).get_table_names())
    assert set(SQLModel.metadata.tables) <= tables
    migrate.downgrade(empty_url, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(empty_url)
    assert set(SQLModel.metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


def test_models_and_migrations_agree(empty_url):
    migrate.upgrade(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, SQLModel.metadata)
    engine.dispose()
    if engine.dialect.name == "postgresql":
        # The one key PostgreSQL keeps by triggers instead (the model's key is created on
        # SQLite only; tests/migrations/test_account_row_key.py checks the triggers).
        differences = [d for d in differences
                       if not (d[0] == "add_fk" and d[1].name == account_row_link.CONSTRAINT)]
    assert differences == [], f"models and migrations differ: {differences}"


def test_every_revision_steps_down_and_up(empty_url):
    config = migrate.alembic_config(empty_url)
    revisions = list(ScriptDirectory.from_config(config).walk_revisions())
    assert revisions, "no migrations found"
    command.upgrade(config, "head")
    for _ in revisions:
        command.downgrade(config, "-1")
    command.upgrade(config, "head")


def test_single_head():
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()
    assert len(heads) == 1, f"migration history forked: {heads}"
