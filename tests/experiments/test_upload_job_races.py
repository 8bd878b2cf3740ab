"""What happens to an upload when the experiment changes while its rows are being stored.

The background job reads the file, reserves a version, writes the rows over several
commits, then makes the version visible in one last transaction. A decision, a plan
amendment or a change of variants can be committed by someone else in between. The last
transaction takes the experiment's lock and looks again:

- decided meanwhile: the version is not made visible (a decision closes the results; new
  data after it would move the goalposts), the job says why, nothing is kept;
- variants changed: the rows were checked against the old keys, so the file is refused;
- plan amended (alpha here): the analysis is made under the plan in force at the commit.

The web upload of a small file (one transaction) re-reads the experiment under the same
lock, so an experiment loaded before someone decided it is refused too.
Runs on SQLite and in the PostgreSQL pass."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func
from sqlmodel import Session, select

from experiments import imports, notify
from experiments.imports import (
    ImportRefused,
    create_upload_job,
    import_accounts,
    run_upload_job,
    upload_file_path,
)
from experiments.models import (
    AccountRow,
    AnalysisSnapshot,
    Dataset,
    Experiment,
    JourneyStage,
    UploadJob,
    Variant,
)
from experiments.notify_models import Delivery, WebhookEndpoint
from experiments.registry import amend_experiment
from tests.experiments.test_upload_jobs import make_experiment, plain_csv
from tests.factories import make_user

pytestmark = pytest.mark.db


def _decide(session: Session, experiment_id: int) -> None:
    experiment = session.get(Experiment, experiment_id)
    experiment.status = "decided"
    experiment.decision = "kill"
    experiment.decision_rationale = "Flat."
    experiment.decided_at = datetime(2026, 11, 30, tzinfo=UTC)
    experiment.version += 1
    session.commit()


def _run_with(db_engine, session, tmp_path, monkeypatch, meanwhile, *, rows=400):
    """Run an upload job of ``rows`` accounts; ``meanwhile(other_session)`` is committed
    after the version is reserved, while the rows are still to be written."""
    notify._dispatchers.pop(db_engine.pool, None)  # deliveries recorded, not sent
    experiment = make_experiment(session, "split")
    session.add(WebhookEndpoint(name="All", url="https://hooks.example.com/x",
                                events=["upload"], secret="s"))
    job = create_upload_job(session, experiment, filename="big.csv", actor=None)
    session.commit()
    job_id, experiment_id = job.id, experiment.id
    upload_file_path(tmp_path, job_id).write_bytes(plain_csv(rows))
    monkeypatch.setattr(imports, "STORE_CHUNK", 100)
    real_save = imports._save

    def save(job_session, saved_job, **changes):
        real_save(job_session, saved_job, **changes)
        if "dataset_id" in changes and changes["dataset_id"] is not None:
            with Session(db_engine) as other:
                meanwhile(other, experiment_id)

    monkeypatch.setattr(imports, "_save", save)
    run_upload_job(db_engine, job_id, tmp_path)
    return job_id, experiment_id


def _nothing_kept(fresh: Session) -> None:
    assert fresh.exec(select(func.count()).select_from(Dataset)).one() == 0
    assert fresh.exec(select(func.count()).select_from(AccountRow)).one() == 0
    assert fresh.exec(select(func.count()).select_from(AnalysisSnapshot)).one() == 0
    assert fresh.exec(select(func.count()).select_from(Delivery)).one() == 0


def test_an_experiment_decided_during_the_upload_gets_no_new_version(
        db_engine, session, tmp_path, monkeypatch):
    job_id, _ = _run_with(db_engine, session, tmp_path, monkeypatch, _decide)
    with Session(db_engine) as fresh:
        job = fresh.get(UploadJob, job_id)
        assert job.state == "refused"
        assert job.message.startswith("The experiment was decided while this file was being "
                                      "stored; nothing from it was kept.")
        assert "reopen the decision" in job.message
        assert job.dataset_id is None
        _nothing_kept(fresh)


def test_variants_changed_during_the_upload_refuse_the_file(
        db_engine, session, tmp_path, monkeypatch):
    def rename_treatment(other: Session, experiment_id: int) -> None:
        variant = other.exec(select(Variant).where(Variant.experiment_id == experiment_id,
                                                   Variant.key == "treatment")).one()
        variant.key = "annual"
        other.get(Experiment, experiment_id).version += 1
        other.commit()

    job_id, _ = _run_with(db_engine, session, tmp_path, monkeypatch, rename_treatment)
    with Session(db_engine) as fresh:
        job = fresh.get(UploadJob, job_id)
        assert job.state == "refused"
        assert "variants changed while this file was being stored" in job.message
        _nothing_kept(fresh)


def test_a_plan_amended_during_the_upload_is_the_plan_its_analysis_uses(
        db_engine, session, tmp_path, monkeypatch):
    admin = make_user(session, "admin@races.test", "admin")
    session.commit()
    admin_id = admin.id

    def amend_alpha(other: Session, experiment_id: int) -> None:
        experiment = other.get(Experiment, experiment_id)
        # What a registered plan has and make_experiment leaves out.
        experiment.hypothesis = "If we split pricing, then NRR rises because seats grow."
        experiment.stage_id = other.exec(select(JourneyStage.id)).first()
        experiment.owner_id = admin_id
        other.commit()
        amend_experiment(other, experiment.key, {"alpha": "0.10"},
                         reason="Finance asked for 90 %.",
                         actor=other.get(type(admin), admin_id))
        other.commit()

    job_id, experiment_id = _run_with(db_engine, session, tmp_path, monkeypatch, amend_alpha)
    with Session(db_engine) as fresh:
        assert fresh.get(UploadJob, job_id).state == "done"
        assert fresh.get(Experiment, experiment_id).alpha == pytest.approx(0.10)
        [snapshot] = fresh.exec(select(AnalysisSnapshot)).all()
        assert float(snapshot.result["alpha"]) == pytest.approx(0.10)
        assert fresh.exec(select(func.count()).select_from(AccountRow)).one() == 400


def test_an_upload_with_an_experiment_loaded_before_it_was_decided_is_refused(
        db_engine, session):
    experiment = make_experiment(session, "late")
    stale = session.get(Experiment, experiment.id)
    with Session(db_engine) as other:
        _decide(other, experiment.id)
    assert stale.status == "running"  # what the request loaded
    with pytest.raises(ImportRefused) as refused:
        import_accounts(session, stale, plain_csv(10), filename="late.csv", actor=None)
    assert "was decided" in str(refused.value)
    session.rollback()
    assert session.exec(select(func.count()).select_from(Dataset)).one() == 0
