"""R1 review of 1636ad2 on PostgreSQL: the upload's last transaction takes the experiment's
row lock first, as a decision's compare-and-set does, so the two wait for each other and
never deadlock. A decision holding the lock when the upload reaches its last transaction:
the upload waits, then sees the decision and keeps nothing. An upload holding it: the
decision waits, then is saved after the new version. (Edge tests: pass before and after.)"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, update
from sqlmodel import Session, select

from experiments import imports
from experiments.imports import create_upload_job, run_upload_job, upload_file_path
from experiments.models import AccountRow, Dataset, Experiment, UploadJob
from tests.experiments.test_upload_jobs import make_experiment, plain_csv

pytestmark = pytest.mark.db


@pytest.fixture
def postgres_only(db_engine):
    if db_engine.dialect.name != "postgresql":
        pytest.skip("row locks (SQLite has one lock for the whole database)")


def _decision(experiment_id: int):
    return (update(Experiment).where(Experiment.id == experiment_id)
            .values(status="decided", decision="kill", decision_rationale="Flat.",
                    version=Experiment.version + 1))


def _job(session, db_engine, tmp_path) -> tuple[int, int]:
    experiment = make_experiment(session, "locks")
    job = create_upload_job(session, experiment, filename="a.csv", actor=None)
    session.commit()
    upload_file_path(tmp_path, job.id).write_bytes(plain_csv(200))
    return job.id, experiment.id


def test_an_upload_waits_for_a_decision_holding_the_lock_and_keeps_nothing(
        postgres_only, db_engine, session, tmp_path, monkeypatch):
    job_id, experiment_id = _job(session, db_engine, tmp_path)
    real_save, real_lock = imports._save, imports.lock_experiment
    committer: list[threading.Thread] = []
    waited: list[float] = []

    def save(job_session, job, **changes):
        real_save(job_session, job, **changes)
        if changes == {"phase": "analysing"}:  # the rows are stored; the last step is next
            deciding = Session(db_engine)
            deciding.execute(_decision(experiment_id))  # holds the row lock, not committed

            def commit_later() -> None:
                time.sleep(0.5)
                deciding.commit()
                deciding.close()

            committer.append(threading.Thread(target=commit_later))
            committer[0].start()

    def timed_lock(job_session, wanted):
        began = time.perf_counter()
        real_lock(job_session, wanted)
        waited.append(time.perf_counter() - began)

    monkeypatch.setattr(imports, "_save", save)
    monkeypatch.setattr(imports, "lock_experiment", timed_lock)
    run_upload_job(db_engine, job_id, tmp_path)
    committer[0].join(30)
    assert len(waited) == 1 and waited[0] >= 0.3  # it waited for the decision's commit
    with Session(db_engine) as fresh:
        job = fresh.get(UploadJob, job_id)
        assert job.state == "refused" and "was decided" in job.message
        assert fresh.exec(select(func.count()).select_from(Dataset)).one() == 0
        assert fresh.exec(select(func.count()).select_from(AccountRow)).one() == 0


def test_a_decision_waits_for_the_uploads_last_transaction_then_is_saved(
        postgres_only, db_engine, session, tmp_path, monkeypatch):
    job_id, experiment_id = _job(session, db_engine, tmp_path)
    real_record = imports._analyse_and_record
    decided: list[float] = []
    errors: list[BaseException] = []

    def decide() -> None:
        began = time.perf_counter()
        try:
            with Session(db_engine) as other:
                other.execute(_decision(experiment_id))
                other.commit()
            decided.append(time.perf_counter() - began)
        except BaseException as exc:  # noqa: BLE001  (shown below)
            errors.append(exc)

    decider = threading.Thread(target=decide)

    def record_then_hold(*args, **kwargs):
        snapshot = real_record(*args, **kwargs)
        decider.start()  # the upload holds the experiment's lock until its commit
        time.sleep(0.5)
        assert not decided
        return snapshot

    monkeypatch.setattr(imports, "_analyse_and_record", record_then_hold)
    run_upload_job(db_engine, job_id, tmp_path)
    decider.join(30)
    assert not errors, errors
    assert decided and decided[0] >= 0.3
    with Session(db_engine) as fresh:
        assert fresh.get(UploadJob, job_id).state == "done"
        assert fresh.exec(select(Dataset.status, Dataset.version)).all() == [("ready", 1)]
        assert fresh.get(Experiment, experiment_id).status == "decided"
