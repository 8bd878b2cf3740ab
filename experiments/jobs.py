"""Background jobs on Huey (https://huey.readthedocs.io): the queue and its tasks.

The backend comes from ``NRRLAB_JOBS`` (or the app's ``JOBS_BACKEND``):

=====================  ================================================================
``sqlite`` (default)   ``SqliteHuey`` in ``instance/jobs.sqlite3``: nothing else to run;
                       ``nrrlab serve`` consumes it in background threads.
``sqlite:///PATH``     ``SqliteHuey`` on a path every web and worker process can reach.
``redis://…``          ``RedisHuey`` (production; needs the ``redis`` package).
``immediate``          tasks run at once in the caller (tests).
=====================  ================================================================

With gunicorn, run ``nrrlab worker`` beside the web processes (see README). There is
no module-level queue: :func:`make_jobs` builds one per app or worker process and
registers the tasks under fixed names, so a web process and a worker agree on them.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from huey import Huey, MemoryHuey, RedisHuey, SqliteHuey, crontab
from huey.consumer import Consumer
from sqlalchemy.engine import Engine

from experiments import notify
from experiments.imports import run_upload_job, sweep_stale_uploads, warm_up

log = logging.getLogger("nrrlab.jobs")

JOBS_ENV = "NRRLAB_JOBS"
JOBS_FILE = "jobs.sqlite3"
UPLOADS_FOLDER = "uploads"
IMPORT_TASK = "nrrlab.import_upload"
DELIVER_TASK = "nrrlab.notify_deliver"
SWEEP_TASK = "nrrlab.notify_sweep"
DIGEST_TASK = "nrrlab.notify_digest"
TIME_ALERTS_TASK = "nrrlab.notify_time_alerts"
WAREHOUSE_TASK = "nrrlab.warehouse_refresh"
WAREHOUSE_SCHEDULE_TASK = "nrrlab.warehouse_schedule"


class JobsConfigError(RuntimeError):
    """``NRRLAB_JOBS`` names no usable backend; the message says what is accepted."""


def make_queue(backend: str | None, instance_path: Path) -> Huey:
    """The Huey instance for ``backend`` (see the module docstring).

    Raises
    ------
    JobsConfigError
        An unknown backend, or ``redis://`` without the ``redis`` package.
    """
    backend = (backend or "sqlite").strip()
    if backend == "immediate":
        return MemoryHuey("nrrlab", immediate=True, results=False)
    if backend == "sqlite":
        Path(instance_path).mkdir(parents=True, exist_ok=True)
        return SqliteHuey("nrrlab", filename=str(Path(instance_path) / JOBS_FILE), results=False)
    if backend.startswith("sqlite:///"):
        path = Path(backend.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteHuey("nrrlab", filename=str(path), results=False)
    if backend.startswith(("redis://", "rediss://", "unix://")):
        try:
            import redis  # noqa: F401
        except ImportError:
            raise JobsConfigError(f"{JOBS_ENV}={backend} needs the redis package "
                                  "(pip install redis)") from None
        return RedisHuey("nrrlab", url=backend, results=False)
    raise JobsConfigError(f"{JOBS_ENV} must be sqlite, sqlite:///PATH, redis://… or immediate, "
                          f"not {backend!r}")


@dataclass
class Jobs:
    """One queue with the app's tasks bound to a database engine and an uploads folder."""

    queue: Huey
    engine: Engine
    uploads: Path
    #: First retry delay of a failed notification, in seconds (then doubling).
    retry_base: float = notify.RETRY_BASE_SECONDS
    _import: object = field(init=False, repr=False)
    _deliver: object = field(init=False, repr=False)
    _warehouse: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.uploads = Path(self.uploads)
        self.uploads.mkdir(parents=True, exist_ok=True)
        self._import = self.queue.task(name=IMPORT_TASK)(self._run_import)
        # Notifications (experiments.notify): one task per delivery, a sweep for lost or
        # due retries, the pre-meeting digest when its time comes, hourly time alerts.
        self._deliver = self.queue.task(name=DELIVER_TASK)(self._run_delivery)
        self.queue.periodic_task(crontab(minute="*"), name=SWEEP_TASK)(self.sweep_deliveries)
        self.queue.periodic_task(crontab(minute="*/15"), name=DIGEST_TASK)(self._run_digest)
        self.queue.periodic_task(crontab(minute="5"), name=TIME_ALERTS_TASK)(
            self._run_time_alerts)
        # Warehouse queries (experiments.warehouse): one task per refresh; every ten
        # minutes the queries whose schedule is due are queued.
        self._warehouse = self.queue.task(name=WAREHOUSE_TASK)(self._run_warehouse)
        self.queue.periodic_task(crontab(minute="*/10"), name=WAREHOUSE_SCHEDULE_TASK)(
            self.queue_due_warehouse_refreshes)
        notify.register_dispatcher(self.engine, self.enqueue_deliveries)

    def _run_import(self, job_id: int) -> None:
        run_upload_job(self.engine, job_id, self.uploads)
        sweep_stale_uploads(self.engine, self.uploads)

    def enqueue_import(self, job_id: int) -> None:
        """Queue upload job ``job_id`` (run at once in immediate mode)."""
        self._import(job_id)

    def _run_delivery(self, delivery_id: int) -> None:
        outcome = notify.deliver(self.engine, delivery_id, retry_base=self.retry_base)
        if outcome is not None and outcome.retry_in is not None:
            self._deliver.schedule((delivery_id,), delay=outcome.retry_in)

    def enqueue_deliveries(self, delivery_ids: list[int]) -> None:
        """Queue notification deliveries (sent at once in immediate mode)."""
        for delivery_id in delivery_ids:
            self._deliver(delivery_id)

    def sweep_deliveries(self) -> None:
        """Queue deliveries that are due (retries) or whose queue entry was lost."""
        from sqlmodel import Session

        with Session(self.engine) as session:
            ids = notify.due_deliveries(session)
            session.commit()
        self.enqueue_deliveries(ids)

    def _run_digest(self) -> None:
        from experiments.digest import send_digest_if_due

        send_digest_if_due(self.engine)

    def _run_time_alerts(self) -> None:
        from experiments.digest import send_time_alerts

        send_time_alerts(self.engine)

    def _run_warehouse(self, query_id: int, actor_id: int | None = None) -> None:
        from experiments.warehouse import run_refresh

        run_refresh(self.engine, query_id, actor_id=actor_id)

    def enqueue_warehouse_refresh(self, query_id: int, actor_id: int | None = None) -> None:
        """Queue a refresh of warehouse query ``query_id`` (run at once in immediate mode)."""
        self._warehouse(query_id, actor_id)

    def queue_due_warehouse_refreshes(self) -> list[int]:
        """Mark the scheduled warehouse queries that are due as queued, then queue them."""
        from sqlmodel import Session

        from experiments.warehouse import due_queries, mark_queued
        from experiments.warehouse_models import WarehouseQuery

        with Session(self.engine) as session:
            ids = due_queries(session)
            for query_id in ids:
                mark_queued(session, session.get(WarehouseQuery, query_id))
            session.commit()
        for query_id in ids:
            self._warehouse(query_id, None)
        return ids

    def consumer(self, workers: int = 2) -> Consumer:
        """A thread consumer of this queue (``nrrlab worker`` runs it in the foreground),
        with its scheduler running the periodic notification tasks."""
        # The first upload after a start should not wait for the readers' imports.
        threading.Thread(target=warm_up, name="nrrlab-warm-up", daemon=True).start()
        return self.queue.create_consumer(workers=workers, worker_type="thread", periodic=True,
                                          check_worker_health=False)

    def start_in_background(self, workers: int = 2) -> Consumer:
        """Sweep leftovers of a killed process, then consume in daemon threads.

        This is the only consumer (``nrrlab serve``), so a job left running was killed.
        Not :meth:`Consumer.start`: that installs signal handlers, which belong to the
        web server that runs in the foreground.
        """
        sweep_stale_uploads(self.engine, self.uploads, only_worker=True)
        consumer = self.consumer(workers)
        consumer.scheduler.start()
        for _, worker in consumer.worker_threads:
            worker.start()
        return consumer


def make_jobs(engine: Engine, instance_path: Path, backend: str | None = None) -> Jobs:
    """The app's jobs: backend from ``backend``, else ``NRRLAB_JOBS``, else SQLite."""
    chosen = backend if backend is not None else os.environ.get(JOBS_ENV)
    return Jobs(make_queue(chosen, instance_path), engine, Path(instance_path) / UPLOADS_FOLDER)
