"""Importing an account CSV as a new dataset version of an experiment.

One operation, :func:`import_accounts`: validate the file with the same reader as
the CLI (:func:`experiments.accounts_csv.read_accounts`), store it, analyse it and
record the upload, all in the caller's transaction: either the dataset, its rows,
its snapshot and the audit event are committed together, or nothing is.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, select

from experiments.accounts_csv import ImportValidationError, RowError, read_accounts
from experiments.analysis import active_dataset, refresh_snapshot
from experiments.audit import record_event
from experiments.datasets import AccountRatios, store_dataset
from experiments.errors import DomainError
from experiments.models import AnalysisSnapshot, Dataset, Experiment, User, Variant

__all__ = ["ImportRefused", "ImportReport", "ImportValidationError", "RowError", "import_accounts", "variant_keys"]

#: Experiments in these states accept data; a draft has no locked plan to analyse under.
UPLOAD_STATUSES: tuple[str, ...] = ("running", "stopped", "decided")
MAX_REPORTED_ERRORS = 50
_HASH_BLOCK = 1 << 20


class ImportRefused(DomainError):
    """The experiment cannot take data now (a draft); the message says why and what to do."""


@dataclass(frozen=True)
class ImportReport:
    """What an upload did: a new dataset version, or recognised the active one again."""

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


def clean_filename(filename: str | None) -> str:
    """The file's own name, without any client-side folder, at most 255 characters."""
    name = (filename or "").replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:255] or "upload.csv"


def variant_keys(session: Session, experiment: Experiment) -> list[str]:
    """The experiment's variant keys in plan order: the values a file's ``variant`` column may hold."""
    return list(session.exec(
        select(Variant.key).where(Variant.experiment_id == experiment.id).order_by(Variant.position, Variant.id)
    ).all())


def import_accounts(session: Session, experiment: Experiment, source: str | os.PathLike[str] | bytes, *,
                    filename: str, actor: User | None) -> ImportReport:
    """Validate ``source`` (a path or the raw bytes) and store it as the experiment's next dataset.

    The file is checked against the data contract with the experiment's variant keys;
    if it is byte-for-byte the active dataset (same SHA-256) nothing new is stored and
    the report says ``duplicate``. Otherwise the rows, a fresh analysis snapshot and a
    ``dataset.upload`` audit event are added. Flushed, not committed.

    Raises
    ------
    ImportRefused
        The experiment is a draft (its plan is not locked, so there is nothing to analyse
        under) or has no variants.
    ImportValidationError
        The file breaks the data contract; ``errors`` lists the first 50 problems by line
        and column and ``total`` counts them all. Nothing was stored.
    """
    if experiment.status not in UPLOAD_STATUSES:
        raise ImportRefused(
            "This experiment is still a draft. Start it first: results are analysed under the plan "
            "that is locked at start, and a draft has none yet."
        )
    if isinstance(source, bytearray | memoryview):
        source = bytes(source)
    elif not isinstance(source, bytes):
        source = Path(source)
    name = clean_filename(filename)

    current = active_dataset(session, experiment)
    if current is not None and current.sha256 == _sha256(source):
        return ImportReport(dataset=current, duplicate=True, rows=current.row_count)

    keys = variant_keys(session, experiment)
    if not keys:
        raise ImportRefused("This experiment has no variants, so no file can match it. Add its variants first.")
    table = read_accounts(source, variants=keys, max_errors=MAX_REPORTED_ERRORS)
    dataset = store_dataset(session, experiment, table, filename=name, actor=actor)
    # The rows were just written from ``table``: hand their ratios to the Mann-Whitney
    # check instead of reading a million rows back (the sums still come from SQL).
    snapshot = refresh_snapshot(session, experiment, dataset, ratios=AccountRatios.of_table(table))
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
    return ImportReport(dataset=dataset, duplicate=False, rows=len(table), notes=table.notes, snapshot=snapshot)
