"""PostgreSQL upload job under a tight connection pool (review of issue 18's writers).

The job's rows are written on :data:`experiments.rows_postgres.WRITERS` more connections
of the app's pool. When several uploads run at once the pool may have no connection to
spare for every writer: the upload must still be stored, by the writers that did get
one, rather than fail after the pool's timeout (one writer was enough before).
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine
from sqlmodel import Session, select

from experiments import rows_postgres
from experiments.imports import create_upload_job, run_upload_job, upload_file_path
from experiments.models import AccountRow, UploadJob
from tests import factories

VARIANTS = ("control", "treatment")


@pytest.fixture(autouse=True)
def postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the parallel writers are PostgreSQL's")


def accounts(rows: int) -> bytes:
    lines = ["account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr"]
    lines += [f"a{i:06d},{VARIANTS[i % 2]},{100 + i % 7},{i % 3},0,0" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.parametrize("slow_analysis", [False, True])
def test_an_upload_is_stored_when_the_pool_has_no_connection_for_its_writers(
        db_engine, session, tmp_path, monkeypatch, slow_analysis):
    import experiments.analysis as analysis
    import experiments.imports as imports

    if slow_analysis:  # holds the one connection longer than the writers wait for it
        analyse = analysis.analyse_dataset

        def slow(*args, **kwargs):
            time.sleep(1.5)
            return analyse(*args, **kwargs)

        monkeypatch.setattr(analysis, "analyse_dataset", slow)

    monkeypatch.setattr(imports, "STORE_CHUNK", 250)  # 40 chunks of ~50 ms each
    real = imports.bulk_insert_rows

    def slow_insert(*args, **kwargs):
        time.sleep(0.05)
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "bulk_insert_rows", slow_insert)
    monkeypatch.setattr(rows_postgres, "WRITERS", 2)
    experiment = factories.make_experiment(session, "pool", variants=VARIANTS)
    job = create_upload_job(session, experiment, filename="rows.csv", actor=None)
    session.commit()
    upload_file_path(tmp_path, job.id).write_bytes(accounts(10_000))
    # One connection for the job and both writers, given up after 1 s: they take turns,
    # a transaction each (the writing as a whole lasts ~2 s).
    tight = create_engine(db_engine.url, pool_size=1, max_overflow=0, pool_timeout=1)
    try:
        run_upload_job(tight, job.id, tmp_path)
    finally:
        tight.dispose()
    session.expire_all()
    stored = session.get(UploadJob, job.id)
    assert (stored.state, stored.rows_stored) == ("done", 10_000), stored.message
    assert session.exec(select(AccountRow.account_id)
                        .where(AccountRow.dataset_id == stored.dataset_id)
                        .order_by(AccountRow.id)).all() == [f"a{i:06d}" for i in range(10_000)]
    with Session(db_engine) as check:
        assert check.exec(select(UploadJob.state)).all() == ["done"]
