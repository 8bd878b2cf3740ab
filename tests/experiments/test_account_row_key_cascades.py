"""account_row's rows go with their dataset however the dataset goes (both backends).

Beside ``test_account_row_key.py``: on PostgreSQL the key is kept by statement-level
triggers, so the paths where a dataset is deleted by another statement's cascade (its
experiment deleted or truncated) or several at once must take their rows too.
"""

from __future__ import annotations

import pytest
from sqlalchemy import delete, text
from sqlmodel import func, select

from experiments import datasets
from experiments.accounts_csv import read_accounts
from experiments.models import AccountRow, Dataset, Experiment
from tests.factories import make_experiment

CSV = (b"account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"
       b"a1,control,100,0,0,0\na2,treatment,100,5,0,0\na3,control,80,0,10,0\n")
KEYS = ["control", "treatment"]


def _store(session, experiment, prefix: bytes) -> Dataset:
    table = read_accounts(CSV.replace(b"\na", b"\n" + prefix), variants=KEYS)
    return datasets.store_dataset(session, experiment, table, filename=f"{prefix}.csv",
                                  actor=None)


def _rows(session) -> dict[int, int]:
    return dict(session.exec(select(AccountRow.dataset_id, func.count())
                             .group_by(AccountRow.dataset_id)).all())


@pytest.fixture
def three(session):
    """Experiments a (datasets 1, 2) and b (dataset 3), three rows each."""
    a, b = make_experiment(session, "a"), make_experiment(session, "b")
    stored = [_store(session, a, b"x"), _store(session, a, b"y"), _store(session, b, b"z")]
    session.commit()
    return a, b, [dataset.id for dataset in stored]


def test_deleting_several_datasets_in_one_statement_deletes_their_rows(session, three):
    _a, _b, (first, second, third) = three
    session.execute(delete(Dataset).where(Dataset.id.in_((first, third))))
    session.commit()
    assert _rows(session) == {second: 3}


def test_deleting_an_experiment_deletes_its_datasets_rows(session, three):
    a, _b, (_first, _second, third) = three
    session.execute(delete(Experiment).where(Experiment.id == a.id))
    session.commit()
    assert _rows(session) == {third: 3}


def test_truncating_experiments_truncates_the_rows(session, three, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no TRUNCATE")
    session.execute(text("TRUNCATE experiment CASCADE"))
    session.commit()
    assert _rows(session) == {}
