"""``nrrlab backup``/``restore`` of stored account rows keeps account_row's key to dataset.

On PostgreSQL the key is kept by triggers (``experiments.account_row_link``): pg_dump
puts them after the data, so a restore loads the rows without firing them, and they
must be back, and working, once it is done — into an empty database and over one that
holds the same data (``--force``: ``pg_restore --clean`` drops and recreates them).
On SQLite the file is copied whole, the real key with it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from experiments import migrate
from experiments.accounts_csv import read_accounts
from experiments.cli import main
from experiments.datasets import store_dataset
from experiments.db import make_engine
from experiments.setup import ensure_defaults
from tests.factories import make_experiment

pytestmark = pytest.mark.db

CSV = (b"account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"
       b"a1,control,100,0,0,0\na2,treatment,100,5,0,0\na3,control,80,0,10,0\n")
KEYS = ["control", "treatment"]


def _cli(url: str, *args: str):
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": url})


def _key_holds(url: str, dataset_id: int) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM account_row WHERE"
                                           " dataset_id = :d"), {"d": dataset_id}).scalar() == 3
            with pytest.raises(IntegrityError, match=r"(?i)foreign key"):
                connection.execute(text(
                    "INSERT INTO account_row (dataset_id, account_id, variant, start_cents,"
                    " expansion_cents, contraction_cents, churned_cents)"
                    " VALUES (:d, 'x', 'control', 100, 0, 0, 0)"), {"d": dataset_id + 1000})
            connection.rollback()
            connection.execute(text("DELETE FROM dataset WHERE id = :d"), {"d": dataset_id})
            assert connection.execute(text("SELECT count(*) FROM account_row")).scalar() == 0
            connection.rollback()
    finally:
        engine.dispose()


def test_a_restore_brings_the_rows_back_with_their_key(scratch_database, tmp_path: Path):
    source = scratch_database()
    migrate.upgrade(source)
    engine = make_engine(source)
    with Session(engine) as session:
        ensure_defaults(session)
        dataset = store_dataset(session, make_experiment(session),
                                read_accounts(CSV, variants=KEYS), filename="a.csv", actor=None)
        session.commit()
        dataset_id = dataset.id
    engine.dispose()
    backup = tmp_path / "rows.backup"
    assert _cli(source, "backup", str(backup)).exit_code == 0

    fresh = scratch_database()
    restored = _cli(fresh, "restore", str(backup))
    assert restored.exit_code == 0, restored.output
    _key_holds(fresh, dataset_id)

    over = _cli(source, "restore", str(backup), "--force")
    assert over.exit_code == 0, over.output
    _key_holds(source, dataset_id)
