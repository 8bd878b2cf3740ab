"""Importing an account CSV as a new dataset version of an experiment.

Two ways in, the same rules:

* :func:`import_accounts` does everything in the caller's transaction (the CLI, the
  demo data, tests): the dataset, its rows, its snapshot and the audit event are
  committed together, or nothing is.
* :func:`run_upload_job` is the web upload's background job (``experiments.jobs``). It
  reads and validates the spooled file without holding any lock, reserves the next
  version in one short transaction, writes the rows of the still *importing* (invisible)
  dataset in short transactions (on SQLite each holds the write lock about
  :data:`~experiments.rows_sqlite.SQLITE_HOLD_SECONDS`), and makes it ready together
  with its snapshot and audit event in one last short transaction, so other writers
  never wait long on an import. A failure at any step deletes what it wrote. Until that
  last transaction the job's commits (its state and progress, rows of the invisible
  dataset) change nothing a cached page shows, and leave the data generation as it was
  (``unseen_write``, :mod:`experiments.generation`).

The same bytes are one dataset per experiment (``content_sha256`` is unique per
experiment): an identical file, even uploaded at the same moment, is recognised.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from experiments import notify, rows_postgres, rows_sqlite
from experiments.accounts_csv import ImportValidationError, RowError, read_accounts
from experiments.accounts_csv.duck import read_upload
from experiments.analysis import refresh_snapshot
from experiments.audit import record_event
from experiments.datasets import (
    AccountRatios,
    activate_dataset,
    bulk_insert_rows,
    dataset_with_content,
    discard_dataset,
    lock_experiment,
    reserve_dataset,
)
from experiments.decisions import upload_refusal
from experiments.errors import Conflict, DomainError
from experiments.generation import unseen_write
from experiments.models import (
    AnalysisSnapshot,
    Dataset,
    Experiment,
    UploadJob,
    User,
    Variant,
    utcnow,
)

__all__ = [
    "ImportRefused", "ImportReport", "ImportValidationError", "RowError", "create_upload_job",
    "import_accounts", "run_upload_job", "sweep_stale_uploads", "variant_keys",
]

log = logging.getLogger("nrrlab.imports")

#: Experiments in these states accept data; a draft has no locked plan to analyse under, and
#: a decided one is closed until its decision is reopened (experiments.decisions).
UPLOAD_STATUSES: tuple[str, ...] = ("running", "stopped")
MAX_REPORTED_ERRORS = 50
#: Rows written per insert by the background job; its progress is saved between them.
STORE_CHUNK = 25_000
#: A queued or running job untouched this long was interrupted (the process died).
STALE_AFTER = timedelta(minutes=15)
FINISHED_STATES: tuple[str, ...] = ("done", "duplicate", "failed", "refused")
_HASH_BLOCK = 1 << 20


class ImportRefused(DomainError):
    """The experiment cannot take data now (a draft, or decided); the message says why and
    what to do."""


@dataclass(frozen=True)
class ImportReport:
    """What an upload did: a new dataset version, or recognised a stored one again."""

    dataset: Dataset
    duplicate: bool
    rows: int
    notes: tuple[str, ...] = ()
    snapshot: AnalysisSnapshot | None = None


def _sha256(source: str | os.PathLike[str] | bytes) -> str:
    if isinstance(source, bytes | bytearray | memoryview):
        return hashlib.sha256(source).hexdigest()
    digest = hashlib.sha256()
    with open(source, "rb") as file:
        while block := file.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _file_state(source: Path | bytes) -> tuple[int, ...] | None:
    """A file's identity, size and modification time (``None`` for bytes): equal before the
    hash and after the read means the rows are of the hashed bytes."""
    if isinstance(source, bytes):
        return None
    found = os.stat(source)
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _read_upload(source: Path | bytes, keys: list[str], sha256: str):
    """The file's validated table, as ``read_accounts`` makes it (``sha256``: its hash).

    A file on disk is read by :func:`~experiments.accounts_csv.duck.read_upload`: the
    same table and errors, without hashing the file again, and a bad file's errors in
    ~2 s of CPU rather than ~8 s for a million rows.
    """
    if isinstance(source, Path):
        return read_upload(source, keys, MAX_REPORTED_ERRORS, sha256)
    return read_accounts(source, variants=keys, max_errors=MAX_REPORTED_ERRORS)


def clean_filename(filename: str | None) -> str:
    """The file's own name, without any client-side folder, at most 255 characters."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:255] or "upload.csv"


def variant_keys(session: Session, experiment: Experiment) -> list[str]:
    """The experiment's variant keys in plan order: the values a ``variant`` cell may hold."""
    return list(session.exec(
        select(Variant.key).where(Variant.experiment_id == experiment.id)
        .order_by(Variant.position, Variant.id)
    ).all())


def _refuse_draft(experiment: Experiment) -> None:
    closed = upload_refusal(experiment)
    if closed is not None:
        raise ImportRefused(closed)
    if experiment.status not in UPLOAD_STATUSES:
        raise ImportRefused(
            "This experiment is still a draft. Start it first: results are analysed under the "
            "plan that is locked at start, and a draft has none yet."
        )


_VARIANTS_CHANGED = ("The experiment's variants changed while this file was being stored, so "
                     "its rows may not match them; nothing from it was kept. Upload it again.")


def _changed_while_storing(session: Session, experiment: Experiment,
                           keys: list[str]) -> str | None:
    """Why a file read and stored for ``experiment`` (variant ``keys``) cannot be made
    visible after all: the experiment was decided, or its variants changed, meanwhile.
    Read under the experiment's lock, so that no decision can slip in before the commit."""
    closed = upload_refusal(experiment)
    if closed is not None:
        return ("The experiment was decided while this file was being stored; nothing from "
                f"it was kept. {closed}")
    return _VARIANTS_CHANGED if _variants_changed(session, experiment, keys) else None


def _variants_changed(session: Session, experiment: Experiment, keys: list[str]) -> bool:
    """Whether the experiment's variant keys are no longer ``keys``, those the file's rows
    were checked against (their order does not matter: the plan's control is read anew)."""
    return set(variant_keys(session, experiment)) != set(keys)


def _keys_or_refuse(session: Session, experiment: Experiment) -> list[str]:
    keys = variant_keys(session, experiment)
    if not keys:
        raise ImportRefused("This experiment has no variants, so no file can match it. "
                            "Add its variants first.")
    return keys


def _analyse_and_record(session: Session, experiment: Experiment, dataset: Dataset, table, *,
                        actor: User | None,
                        analysed: AnalysisSnapshot | None = None) -> AnalysisSnapshot:
    # The rows were just written from ``table``: the analysis takes its inputs from the
    # arrays instead of reading a million rows back. ``analysed``: computed already.
    if analysed is None:
        snapshot = refresh_snapshot(session, experiment, dataset,
                                    ratios=AccountRatios.of_table(table))
    else:
        snapshot = analysed
        session.add(snapshot)
        session.flush()
    record_event(
        session, "dataset.upload", actor=actor, entity_type="dataset", entity_id=dataset.id,
        team_id=experiment.team_id,
        diff={
            "experiment": [None, experiment.key],
            "version": [None, dataset.version],
            "filename": [None, dataset.filename],
            "sha256": [None, dataset.sha256],
            "rows": [None, dataset.row_count],
            "verdict": [None, snapshot.verdict],
        },
    )
    # Sent after the commit that makes this version visible (experiments.notify).
    notify.emit(session, notify.upload_event(
        session, experiment, version=dataset.version, rows=dataset.row_count,
        filename=dataset.filename, verdict=snapshot.verdict, actor=actor))
    alerts = notify.analysis_alerts(snapshot.result)
    if alerts:
        notify.emit(session, notify.alert_event(session, experiment, alerts))
    return snapshot


def import_accounts(session: Session, experiment: Experiment,
                    source: str | os.PathLike[str] | bytes, *,
                    filename: str, actor: User | None) -> ImportReport:
    """Validate ``source`` (a path or the raw bytes) and store it as the next dataset.

    The file is checked against the data contract with the experiment's variant keys;
    if the experiment already holds the same bytes (same SHA-256, any version) nothing
    new is stored and the report says ``duplicate``. Otherwise the rows, a fresh
    analysis snapshot and a ``dataset.upload`` audit event are added, the version
    assigned under the experiment's lock. Flushed, not committed.

    Raises
    ------
    ImportRefused
        The experiment is a draft (its plan is not locked, so there is nothing to analyse
        under) or has no variants; or the file at ``source`` changed while it was read.
    ImportValidationError
        The file breaks the data contract; ``errors`` lists the first 50 problems by line
        and column and ``total`` counts them all. Nothing was stored.
    """
    _refuse_draft(experiment)
    if isinstance(source, bytearray | memoryview):
        source = bytes(source)
    elif not isinstance(source, bytes):
        source = Path(source)
    name = clean_filename(filename)

    before = _file_state(source)
    digest = _sha256(source)
    twin = dataset_with_content(session, experiment.id, digest)
    if twin is not None:
        return ImportReport(dataset=twin, duplicate=True, rows=twin.row_count)

    keys = _keys_or_refuse(session, experiment)
    table = _read_upload(source, keys, digest)
    if _file_state(source) != before:
        # The hash is of what was there before the read: the rows may be of other bytes.
        raise ImportRefused("The file changed while it was being imported; import it again "
                            "once nothing is writing to it.")
    # The experiment as it is now, under its lock (held to the commit): decided or its
    # variants changed since the request loaded it, the file is refused, not stored.
    lock_experiment(session, experiment.id)
    session.refresh(experiment)
    _refuse_draft(experiment)
    if _variants_changed(session, experiment, keys):
        raise ImportRefused(_VARIANTS_CHANGED)
    reservation = reserve_dataset(session, experiment, table, filename=name, actor=actor,
                                  status="ready")
    if not reservation.created:
        return ImportReport(dataset=reservation.dataset, duplicate=True,
                            rows=reservation.dataset.row_count)
    dataset = reservation.dataset
    bulk_insert_rows(session, dataset.id, table)
    snapshot = _analyse_and_record(session, experiment, dataset, table, actor=actor)
    return ImportReport(dataset=dataset, duplicate=False, rows=len(table), notes=table.notes,
                        snapshot=snapshot)


# --- the background upload -------------------------------------------------------------


def warm_up() -> None:
    """Import what an upload job reads and analyses with (pyarrow's CSV reader, DuckDB,
    ``scipy.stats``, the statistics), so that a worker's first upload after a start does
    not wait ~0.5 s for them. The job worker runs it in a daemon thread when it starts
    (:meth:`experiments.jobs.Jobs.consumer`); calling it again costs nothing."""
    import duckdb  # noqa: F401
    import pyarrow.compute
    import pyarrow.csv  # noqa: F401
    import scipy.stats  # noqa: F401

    import stats  # noqa: F401


def create_upload_job(session: Session, experiment: Experiment, *, filename: str | None,
                      actor: User | None) -> UploadJob:
    """A queued upload job for ``experiment`` (flushed, so it has an id; not committed).

    Raises
    ------
    ImportRefused
        The experiment is a draft or has no variants: refused before any file is kept.
    """
    _refuse_draft(experiment)
    _keys_or_refuse(session, experiment)
    job = UploadJob(experiment_id=experiment.id, filename=clean_filename(filename),
                    created_by_id=actor.id if actor else None)
    session.add(job)
    session.flush()
    return job


def upload_file_path(folder: Path, job_id: int) -> Path:
    """Where the web request spools job ``job_id``'s file (removed by the job)."""
    return Path(folder) / f"upload-{job_id}.csv"


def _save(session: Session, job: UploadJob, **changes) -> None:
    """Change the job and commit (with whatever the transaction wrote before)."""
    # The job's state and progress are shown only by its status component and the API
    # (neither cached): a commit of nothing else leaves the data generation as it was.
    with unseen_write(session, UploadJob.__tablename__, rewrites=True):
        for name, value in changes.items():
            setattr(job, name, value)
        job.updated_at = utcnow()
        session.add(job)
    session.commit()


def run_upload_job(engine: Engine, job_id: int, folder: Path) -> None:
    """Run upload job ``job_id`` on its spooled file, then delete the file whatever happens.

    Every outcome is written to the job (done, duplicate, failed with the line-numbered
    errors, refused); an unexpected error is logged, marks the job failed and leaves no
    dataset or rows behind.
    """
    path = upload_file_path(folder, job_id)
    try:
        with Session(engine, expire_on_commit=False) as session:
            job = session.get(UploadJob, job_id)
            if job is None or job.state != "queued":
                return
            _save(session, job, state="running", phase="reading")
            try:
                _run(session, job, path)
            except Exception:
                log.exception("upload job %s failed", job_id)
                session.rollback()
                _save(session, job, state="failed", phase="",
                      message="The file could not be stored because of an unexpected error; "
                              "nothing from it was kept. Please try again.")
    finally:
        path.unlink(missing_ok=True)


def _run(session: Session, job: UploadJob, path: Path) -> None:
    experiment = session.get(Experiment, job.experiment_id)
    version_at_start = experiment.version
    actor = session.get(User, job.created_by_id) if job.created_by_id else None
    if not path.exists():
        _save(session, job, state="failed", phase="",
              message="The uploaded file is no longer there (the server restarted before it "
                      "was read). Please upload it again.")
        return
    try:
        _refuse_draft(experiment)
        keys = _keys_or_refuse(session, experiment)
        digest = _sha256(path)
        twin = dataset_with_content(session, experiment.id, digest)
        if twin is not None:
            _save(session, job, state="duplicate", phase="", dataset_id=twin.id,
                  rows_read=twin.row_count)
            return
        table = _read_upload(path, keys, digest)
    except ImportRefused as exc:
        _save(session, job, state="refused", phase="", message=str(exc))
        return
    except ImportValidationError as exc:
        _save(session, job, state="failed", phase="", message="The file was not stored.",
              error_total=exc.total,
              errors=[e.to_list() for e in exc.errors])
        return

    total = len(table)
    _save(session, job, phase="storing", rows_read=total)
    try:
        reservation = reserve_dataset(session, experiment, table, filename=job.filename,
                                      actor=actor)
    except Conflict as exc:
        session.rollback()
        _save(session, job, state="failed", phase="", message=str(exc))
        return
    if not reservation.created:
        session.rollback()
        _save(session, job, state="duplicate", phase="", dataset_id=reservation.dataset.id)
        return
    dataset = reservation.dataset
    _save(session, job, dataset_id=dataset.id)  # commits the reservation: a short transaction
    try:
        analysed = None
        if session.get_bind().dialect.name == "sqlite":
            analysed = rows_sqlite.store_while_analysing(
                session, job, experiment, dataset, table, chunk=STORE_CHUNK,
                insert=bulk_insert_rows, save=_save)
        else:
            analysed = rows_postgres.store_while_analysing(
                session, job, experiment, dataset, table, chunk=STORE_CHUNK,
                insert=bulk_insert_rows)
        _save(session, job, phase="analysing")
        # The one transaction that makes the version visible, under the experiment's lock.
        # Loaded when the job started and kept across its commits (expire_on_commit=False):
        # read again, so that the audit event and the notification name the experiment
        # and the uploader as they are now (renamed during a long upload), and so that a
        # decision or a plan change made meanwhile is seen (below).
        lock_experiment(session, experiment.id)
        session.refresh(experiment)
        if actor is not None:
            session.expire(actor)
        refused = _changed_while_storing(session, experiment, keys)
        if refused is not None:
            session.rollback()
            discard_dataset(session, dataset.id)
            session.commit()
            _save(session, job, state="refused", phase="", dataset_id=None, message=refused)
            return
        if experiment.version != version_at_start:
            # The plan was amended (or the experiment edited) while the rows were written:
            # the analysis made meanwhile may be under the old plan; made again now.
            analysed = None
        # The one transaction that makes the version visible: snapshot, flip, audit, job.
        _analyse_and_record(session, experiment, dataset, table, actor=actor,
                            analysed=analysed)
        activate_dataset(session, dataset)
        _save(session, job, state="done", phase="", notes=list(table.notes))
    except BaseException:
        session.rollback()
        discard_dataset(session, dataset.id)
        session.commit()
        raise


def sweep_stale_uploads(engine: Engine, folder: Path, *, now: datetime | None = None,
                        only_worker: bool = False) -> int:
    """Clean up after uploads whose process died; returns how many things were removed.

    Jobs queued or running but untouched for :data:`STALE_AFTER` are marked failed and
    their importing dataset deleted; importing datasets no live job owns, older than
    that, are deleted; spooled files of finished or unknown jobs are removed (unknown
    ones only once stale, so a request still writing its file is left alone).
    Importing ledger versions of uploads cut off mid-import are deleted too
    (:func:`experiments.ledger_import.sweep_stale_ledger_imports`).
    ``only_worker``: the caller is starting the one consumer there is (``nrrlab serve``),
    so a job still marked running was cut off whatever its age.
    """
    now = now or datetime.now(UTC)
    cutoff = now - STALE_AFTER
    removed = 0
    with Session(engine, expire_on_commit=False) as session:
        live: set[int] = set()
        owned: set[int] = set()
        cut_off: set[int] = set()
        for job in session.exec(select(UploadJob)
                                .where(UploadJob.state.in_(("queued", "running")))).all():
            if _aware(job.updated_at) < cutoff or (only_worker and job.state == "running"):
                if job.dataset_id is not None:
                    cut_off.add(job.dataset_id)
                _save(session, job, state="failed", phase="",
                      message="The upload was interrupted (the server stopped); nothing from it "
                              "was kept. Please upload the file again.")
                removed += 1
            else:
                live.add(job.id)
                if job.dataset_id is not None:
                    owned.add(job.dataset_id)
        for dataset in session.exec(select(Dataset).where(Dataset.status == "importing")).all():
            if dataset.id in cut_off or (dataset.id not in owned
                                         and _aware(dataset.uploaded_at) < cutoff):
                discard_dataset(session, dataset.id)
                session.commit()
                removed += 1
    folder = Path(folder)
    if folder.is_dir():
        for path in folder.glob("upload-*"):
            job_id = path.stem.removeprefix("upload-")
            stale = datetime.fromtimestamp(path.stat().st_mtime, UTC) < cutoff
            if job_id.isdigit() and int(job_id) in live:
                continue
            if not stale and _is_pending(engine, job_id):
                continue
            path.unlink(missing_ok=True)
            removed += 1
    from experiments.ledger_import import sweep_stale_ledger_imports

    return removed + sweep_stale_ledger_imports(engine, now=now)


def _is_pending(engine: Engine, job_id: str) -> bool:
    """Whether a recent spooled file may still belong to a job being created or queued."""
    if not job_id.isdigit():
        return True
    with Session(engine) as session:
        job = session.get(UploadJob, int(job_id))
        return job is None or job.state not in FINISHED_STATES


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite hands back naive
