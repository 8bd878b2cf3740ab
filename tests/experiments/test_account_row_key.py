"""account_row.dataset_id → dataset.id holds on both backends (issue 18).

SQLite keeps a real foreign key; PostgreSQL keeps it by statement-level triggers
(``experiments.account_row_link``), which must give everything the key gave: rows of a
missing dataset refused, a dataset's rows deleted with it, a referenced dataset's id
kept, and the key's locking against a dataset deleted at the same moment.
"""

from __future__ import annotations

import sqlite3
import threading

import psycopg
import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session, func, select

from experiments import datasets
from experiments.accounts_csv import read_accounts
from experiments.models import AccountRow, Dataset, Experiment
from tests.factories import make_experiment

CSV = (b"account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"
       b"a1,control,100,0,0,0\na2,treatment,100,5,0,0\na3,control,80,0,10,0\n")
KEYS = ["control", "treatment"]


def rows_of(session, dataset_id: int | None = None) -> int:
    query = select(func.count()).select_from(AccountRow)
    if dataset_id is not None:
        query = query.where(AccountRow.dataset_id == dataset_id)
    return session.exec(query).one()


@pytest.fixture
def stored(session):
    experiment = make_experiment(session)
    dataset = datasets.store_dataset(session, experiment, read_accounts(CSV, variants=KEYS),
                                     filename="a.csv", actor=None)
    session.commit()
    return dataset


#: What a refused row raises: SQLAlchemy's error (ORM, Core), or the driver's own from the
#: bulk writers, which use the driver connection directly.
REFUSED = (IntegrityError, sqlite3.IntegrityError, psycopg.IntegrityError)


@pytest.mark.parametrize("way", ["copy", "orm"])
def test_rows_of_a_missing_dataset_are_refused_and_nothing_is_kept(session, stored, way):
    missing = stored.id + 1000
    with pytest.raises(REFUSED) as refused:
        if way == "copy":
            datasets.bulk_insert_rows(session, missing, read_accounts(CSV, variants=KEYS))
        else:
            session.add(AccountRow(dataset_id=missing, account_id="x", variant="control",
                                   start_cents=100))
        session.flush()
    session.rollback()
    assert "foreign key" in str(refused.value).lower()
    if session.get_bind().dialect.name == "postgresql":
        error = getattr(refused.value, "orig", refused.value)
        assert error.diag.constraint_name == "fk_account_row_dataset_id_dataset"
        assert f"Key (dataset_id)=({missing})" in str(refused.value)
    assert rows_of(session) == 3


def test_moving_rows_to_a_missing_dataset_is_refused(session, stored):
    with pytest.raises(IntegrityError):
        session.execute(update(AccountRow).where(AccountRow.dataset_id == stored.id)
                        .values(dataset_id=stored.id + 1000))
        session.flush()
    session.rollback()
    assert rows_of(session, stored.id) == 3


def test_deleting_a_dataset_deletes_its_rows_only(session, stored):
    other = datasets.store_dataset(
        session, session.get(Experiment, stored.experiment_id),
        read_accounts(CSV.replace(b"\na", b"\nb"), variants=KEYS), filename="b.csv", actor=None)
    session.commit()
    session.execute(delete(Dataset).where(Dataset.id == stored.id))
    session.commit()
    assert rows_of(session, stored.id) == 0
    assert rows_of(session, other.id) == 3


def test_a_referenced_dataset_keeps_its_id(session, stored):
    dataset_id = stored.id
    with pytest.raises(IntegrityError):
        session.execute(text("UPDATE dataset SET id = :new WHERE id = :id"),
                        {"new": dataset_id + 1000, "id": dataset_id})
    session.rollback()
    session.expire_all()
    assert session.get(Dataset, dataset_id) is not None and rows_of(session, dataset_id) == 3


def test_an_unreferenced_dataset_may_change_its_id(session, stored):
    dataset_id = stored.id
    session.execute(delete(AccountRow).where(AccountRow.dataset_id == dataset_id))
    session.execute(text("UPDATE dataset SET id = :new WHERE id = :id"),
                    {"new": dataset_id + 1000, "id": dataset_id})
    session.commit()
    session.expire_all()
    assert session.get(Dataset, dataset_id + 1000) is not None


def test_truncating_datasets_truncates_their_rows(session, stored, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no TRUNCATE")
    session.execute(text("TRUNCATE dataset CASCADE"))
    session.commit()
    assert rows_of(session) == 0


# --- the key's locking (PostgreSQL: the triggers take the key's locks) ---------------------


def _postgres(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers with its database lock")


def test_a_delete_waits_for_rows_being_inserted_then_takes_them(db_engine, stored,
                                                                 database_url):
    _postgres(database_url)
    more = read_accounts(CSV.replace(b"\na", b"\nc"), variants=KEYS)
    with Session(db_engine) as inserter, Session(db_engine) as deleter:
        datasets.bulk_insert_rows(inserter, stored.id, more)  # not committed yet
        deleter.execute(text("SET LOCAL lock_timeout = '300ms'"))
        with pytest.raises(OperationalError, match="lock timeout"):
            deleter.execute(delete(Dataset).where(Dataset.id == stored.id))
        deleter.rollback()
        inserter.commit()
        deleter.execute(delete(Dataset).where(Dataset.id == stored.id))
        deleter.commit()
        assert rows_of(deleter) == 0, "rows left behind by a deleted dataset"


def test_an_insert_after_a_concurrent_delete_is_refused(db_engine, stored, database_url):
    _postgres(database_url)
    more = read_accounts(CSV.replace(b"\na", b"\nc"), variants=KEYS)
    outcome: list[BaseException | None] = []
    with Session(db_engine) as deleter:
        deleter.execute(delete(Dataset).where(Dataset.id == stored.id))  # not committed yet

        def insert() -> None:
            with Session(db_engine) as inserter:
                try:
                    datasets.bulk_insert_rows(inserter, stored.id, more)
                    inserter.commit()
                    outcome.append(None)
                except REFUSED as exc:
                    outcome.append(exc)

        thread = threading.Thread(target=insert)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive(), "the insert did not wait for the delete"
        deleter.commit()
        thread.join(10)
    assert outcome and isinstance(outcome[0], REFUSED)
    with Session(db_engine) as check:
        assert rows_of(check) == 0
