"""The upload job keeps one session across its commits (``expire_on_commit=False``): what
it writes at the end (the ``upload`` notification, the audit event) must show the
experiment and the uploader as they are then, not as they were when the job started.
A rename during a long upload is the case a user notices: "New data for <old name>".

Runs on SQLite and in the PostgreSQL pass."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, select

from experiments import imports, notify
from experiments.imports import create_upload_job, run_upload_job, upload_file_path
from experiments.models import AuditEvent, Experiment, UploadJob, User
from experiments.notify_models import Delivery, WebhookEndpoint
from tests.experiments.test_upload_jobs import make_experiment, plain_csv
from tests.factories import make_user

pytestmark = pytest.mark.db


def test_what_the_job_writes_at_the_end_uses_names_changed_during_the_upload(
        db_engine, session, tmp_path, monkeypatch):
    notify._dispatchers.pop(db_engine.pool, None)  # deliveries recorded, not sent
    uma = make_user(session, "uma@example.com", "analyst")
    uma.name = "Uma Old"
    session.add(uma)
    experiment = make_experiment(session, "split")  # named "Split"
    session.add(WebhookEndpoint(name="All", url="https://hooks.example.com/x",
                                events=["upload"], secret="s"))
    job = create_upload_job(session, experiment, filename="big.csv", actor=uma)
    session.commit()
    job_id, experiment_id, uma_id = job.id, experiment.id, uma.id
    upload_file_path(tmp_path, job_id).write_bytes(plain_csv(400))
    monkeypatch.setattr(imports, "STORE_CHUNK", 100)
    real_save = imports._save

    def save(job_session, saved_job, **changes):
        real_save(job_session, saved_job, **changes)
        if "dataset_id" in changes:
            # The reservation is committed, the rows are still to come: someone renames
            # the experiment and the uploader changes her name meanwhile.
            with Session(db_engine) as other:
                other.get(Experiment, experiment_id).name = "Split pricing test"
                other.get(User, uma_id).name = "Uma New"
                other.commit()

    monkeypatch.setattr(imports, "_save", save)
    run_upload_job(db_engine, job_id, tmp_path)

    with Session(db_engine) as fresh:
        assert fresh.get(UploadJob, job_id).state == "done"
        [delivery] = fresh.exec(select(Delivery)).all()
        assert delivery.subject.startswith("New data for Split pricing test (split): "
                                           "version 1, 400 accounts"), delivery.subject
        body = json.loads(delivery.body)
        assert body["experiment"]["name"] == "Split pricing test"
        assert body["data"]["uploaded_by"] == "Uma New"
        assert body["text"].endswith("Uploaded by: Uma New")
        event = fresh.exec(select(AuditEvent).where(AuditEvent.action == "dataset.upload")).one()
        assert event.actor_id == uma_id
