"""The PostgreSQL upload job's parallel row writers (experiments.rows_postgres, issue 18).

Several connections COPY disjoint chunks at once. What a user relies on stays true: every
row stored once, in file order by id (the export bundle's order); the progress they watch
only grows and never counts a row that is not committed; a writer failing part-way stops
the others and leaves no rows and no dataset; the dataset stays invisible until the end.
"""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import text
from sqlmodel import Session, func, select

from experiments import rows_postgres
from experiments.analysis import active_dataset
from experiments.imports import create_upload_job, run_upload_job, upload_file_path
from experiments.models import AccountRow, Dataset, UploadJob
from tests import factories

VARIANTS = ("control", "treatment")


@pytest.fixture(autouse=True)
def postgres_only(database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the parallel writers are PostgreSQL's (SQLite has one writer at a time)")


def accounts(rows: int) -> bytes:
    lines = ["account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr"]
    lines += [f"a{i:06d},{VARIANTS[i % 2]},{100 + i % 7},{i % 3},0,0" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def spool(session, experiment, folder, data: bytes) -> int:
    job = create_upload_job(session, experiment, filename="rows.csv", actor=None)
    session.commit()
    upload_file_path(folder, job.id).write_bytes(data)
    return job.id


def test_two_writers_store_every_row_once_in_file_order(db_engine, session, tmp_path,
                                                        monkeypatch):
    import experiments.imports as imports

    monkeypatch.setattr(imports, "STORE_CHUNK", 300)  # 17 chunks shared by the writers
    monkeypatch.setattr(rows_postgres, "WRITERS", 2)
    experiment = factories.make_experiment(session, "writers", variants=VARIANTS)
    writers_seen: set[str] = set()
    real = imports.bulk_insert_rows

    def insert(*args, **kwargs):
        writers_seen.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "bulk_insert_rows", insert)
    job_id = spool(session, experiment, tmp_path, accounts(5000))

    run_upload_job(db_engine, job_id, tmp_path)

    session.expire_all()
    job = session.get(UploadJob, job_id)
    assert (job.state, job.rows_read, job.rows_stored) == ("done", 5000, 5000)
    assert len(writers_seen) == 2
    stored = session.exec(select(AccountRow.account_id).where(AccountRow.dataset_id
                                                              == job.dataset_id)
                          .order_by(AccountRow.id)).all()
    assert stored == [f"a{i:06d}" for i in range(5000)]
    assert active_dataset(session, experiment).id == job.dataset_id


def test_progress_only_grows_and_counts_committed_rows(db_engine, session, tmp_path,
                                                       monkeypatch):
    import experiments.imports as imports

    monkeypatch.setattr(imports, "STORE_CHUNK", 200)
    monkeypatch.setattr(rows_postgres, "WRITERS", 2)
    experiment = factories.make_experiment(session, "progress", variants=VARIANTS)
    job_id = spool(session, experiment, tmp_path, accounts(8000))
    samples: list[tuple[int, int, str]] = []
    worker = threading.Thread(target=run_upload_job, args=(db_engine, job_id, tmp_path))
    worker.start()
    # The job's progress and the committed rows of its dataset, read in one snapshot.
    read = text("SELECT j.rows_stored, (SELECT count(*) FROM account_row r"
                " WHERE r.dataset_id = j.dataset_id), coalesce(d.status, '')"
                " FROM upload_job j LEFT JOIN dataset d ON d.id = j.dataset_id"
                " WHERE j.id = :id")
    with Session(db_engine) as watcher:
        while worker.is_alive():
            samples.append(tuple(watcher.execute(read, {"id": job_id}).one()))
            watcher.rollback()
    worker.join()
    stored = [rows for rows, _, _ in samples]
    assert stored == sorted(stored), "progress went backwards"
    assert all(rows == committed for rows, committed, _ in samples)
    assert all(status != "ready" for rows, _, status in samples if rows < 8000)
    assert len({rows for rows in stored if 0 < rows < 8000}) > 1, "no progress seen mid-way"
    session.expire_all()
    assert session.get(UploadJob, job_id).rows_stored == 8000


def test_a_writer_failing_midway_stops_the_other_and_keeps_nothing(db_engine, session,
                                                                   tmp_path, monkeypatch):
    import experiments.imports as imports

    monkeypatch.setattr(imports, "STORE_CHUNK", 100)  # 60 chunks
    monkeypatch.setattr(rows_postgres, "WRITERS", 2)
    experiment = factories.make_experiment(session, "failing", variants=VARIANTS)
    earlier = spool(session, experiment, tmp_path, accounts(50))
    run_upload_job(db_engine, earlier, tmp_path)
    real, calls, lock = imports.bulk_insert_rows, [], threading.Lock()

    def insert(*args, **kwargs):
        with lock:
            calls.append(threading.current_thread().name)
            failing = len(calls) == 5
        if failing:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "bulk_insert_rows", insert)
    job_id = spool(session, experiment, tmp_path, accounts(6000))

    run_upload_job(db_engine, job_id, tmp_path)

    session.expire_all()
    job = session.get(UploadJob, job_id)
    assert job.state == "failed" and "nothing from it was kept" in job.message
    # the other writer finished at most the chunk it was in, then stopped
    assert len(calls) <= 5 + 1
    assert session.exec(select(Dataset.version).where(Dataset.experiment_id
                                                      == experiment.id)).all() == [1]
    assert session.exec(select(func.count()).select_from(AccountRow)).one() == 50
    assert active_dataset(session, experiment).filename == "rows.csv"
    assert not upload_file_path(tmp_path, job_id).exists()


def test_the_analysis_failing_stops_the_writers_and_keeps_nothing(db_engine, session,
                                                                 tmp_path, monkeypatch):
    import experiments.analysis as analysis
    import experiments.imports as imports

    monkeypatch.setattr(imports, "STORE_CHUNK", 100)
    experiment = factories.make_experiment(session, "analysis", variants=VARIANTS)

    def broken(*args, **kwargs):
        raise RuntimeError("analysis bug")

    monkeypatch.setattr(analysis, "analyse_dataset", broken)
    real, calls = imports.bulk_insert_rows, []

    def insert(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(imports, "bulk_insert_rows", insert)
    job_id = spool(session, experiment, tmp_path, accounts(20_000))  # 200 chunks

    run_upload_job(db_engine, job_id, tmp_path)

    session.expire_all()
    assert session.get(UploadJob, job_id).state == "failed"
    assert len(calls) < 50, "the writers went on after the analysis failed"
    assert session.exec(select(func.count()).select_from(Dataset)).one() == 0
    assert session.exec(select(func.count()).select_from(AccountRow)).one() == 0
