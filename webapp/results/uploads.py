"""The upload component's state, read from an upload job, and the app's job queue."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flask import current_app
from sqlmodel import Session

from experiments.accounts_csv import RowError
from experiments.analysis import active_dataset
from experiments.imports import create_upload_job, upload_file_path
from experiments.jobs import Jobs, make_jobs
from experiments.models import Dataset, Experiment, UploadJob
from webapp.db import get_engine

_JOBS_KEY = "nrrlab.jobs"
_jobs_lock = threading.Lock()


def get_jobs() -> Jobs:
    """The app's job queue, made on first use (``JOBS_BACKEND``, else ``NRRLAB_JOBS``).

    Tests run jobs at once (``immediate``) unless they configure a backend.
    """
    app = current_app
    with _jobs_lock:
        jobs = app.extensions.get(_JOBS_KEY)
        if jobs is None:
            backend = app.config.get("JOBS_BACKEND") or ("immediate" if app.testing else None)
            jobs = make_jobs(get_engine(), Path(app.instance_path), backend)
            app.extensions[_JOBS_KEY] = jobs
        return jobs


@dataclass(frozen=True)
class UploadState:
    """What the upload component shows: idle, queued/running, done, duplicate, failed, refused."""

    state: str = "idle"
    message: str = ""
    errors: tuple[RowError, ...] = ()
    total: int = 0
    filename: str = ""
    notes: tuple[str, ...] = field(default=())
    dataset: Dataset | None = None
    active_version: int | None = None
    job_id: int | None = None
    phase: str = ""
    rows_read: int = 0
    rows_stored: int = 0

    @property
    def in_progress(self) -> bool:
        return self.state in ("queued", "running")

    @property
    def identical_to(self) -> str:
        """Which stored version a duplicate matches, in words."""
        if self.dataset is None:  # its twin was being imported at the same moment and failed
            return ("a file another upload was importing at the same moment, which did not "
                    "finish; upload it again")
        version = self.dataset.version
        if version == self.active_version:
            return f"the active dataset (version {version})"
        return f"dataset version {version}, an earlier upload"

    @property
    def rows(self) -> int:
        return self.dataset.row_count if self.dataset is not None else self.rows_read


def upload_state(session: Session, experiment: Experiment, job: UploadJob) -> UploadState:
    """The component's state for ``job`` (an upload job of ``experiment``)."""
    dataset = session.get(Dataset, job.dataset_id) if job.dataset_id else None
    active = active_dataset(session, experiment) if job.state == "duplicate" else None
    errors = tuple(RowError.from_list(entry) for entry in (job.errors or []))
    return UploadState(
        state=job.state, message=job.message, errors=errors, total=job.error_total,
        filename=job.filename, notes=tuple(job.notes or ()), dataset=dataset,
        active_version=active.version if active is not None else None, job_id=job.id,
        phase=job.phase, rows_read=job.rows_read, rows_stored=job.rows_stored,
    )


def queue_upload(session: Session, experiment: Experiment, *, filename: str, actor,
                 save: Callable[[Path], object]) -> UploadJob:
    """Create the upload job, commit it, spool the file with ``save(path)`` and queue it.

    The one path of the upload page and the API. The job is committed before the file is
    written (no lock is held while it is copied); if spooling fails the file is removed and
    the job marked failed. An immediate queue has run the job when this returns.

    Raises
    ------
    experiments.imports.ImportRefused
        The experiment takes no data (a draft, no variants); nothing is kept.
    """
    job = create_upload_job(session, experiment, filename=filename, actor=actor)
    session.commit()
    jobs = get_jobs()
    path = upload_file_path(jobs.uploads, job.id)
    try:
        save(path)
        jobs.enqueue_import(job.id)
    except BaseException:
        path.unlink(missing_ok=True)
        job.state, job.message = "failed", "The upload was interrupted; please try again."
        session.commit()
        raise
    session.refresh(job)
    return job


def start_embedded_worker(app) -> None:
    """Consume the app's job queue in background threads of this process (``nrrlab serve``).

    Nothing to do with an immediate queue; gunicorn deployments run ``nrrlab worker``.
    """
    with app.app_context():
        jobs = get_jobs()
        if not jobs.queue.immediate:
            jobs.start_in_background()
