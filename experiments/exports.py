"""Uplift reports to take away: one experiment or one review week as JSON, CSV,
Markdown, a self-contained printable HTML page, or a "reproduce" ZIP bundle.

:func:`export_experiment` and :func:`export_review` are the services the web page and
the CLI call: they check access, build the document (one
:class:`~experiments.documents.ExperimentDocument` per experiment), format it, name
the file and write the ``export.<format>`` audit event (an
:func:`~experiments.generation.unseen_write`: a download leaves the data generation, and
so every kept page, as it was). The formats live beside this
module: text in :mod:`experiments.export_formats`, HTML in
:mod:`experiments.export_html`, the reproduce bundle in :mod:`experiments.export_bundle`.

PDF is not produced: no PDF library is a dependency. The HTML report prints to PDF
from any browser (one page per experiment).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from experiments.audit import record_event
from experiments.documents import ExperimentDocument, experiment_document, finite
from experiments.errors import NotFound
from experiments.export_bundle import add_experiment, cents_text
from experiments.export_formats import (
    detail_documents,
    experiment_csv,
    experiment_json,
    experiment_markdown,
    review_csv,
    review_json,
    review_markdown,
    safe_name,
    when,
)
from experiments.export_html import experiment_html, review_html
from experiments.formatting import EXPORT_FORMATS
from experiments.generation import unseen_write
from experiments.models import AuditEvent, User, utcnow
from experiments.review import build_review

__all__ = ["CONTENT_TYPES", "FORMATS", "ExportFile", "cents_text", "export_experiment",
           "export_review", "when"]

FORMATS: tuple[str, ...] = EXPORT_FORMATS
CONTENT_TYPES: Mapping[str, str] = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "html": "text/html; charset=utf-8",
    "zip": "application/zip",
}


@dataclass(frozen=True)
class ExportFile:
    """A finished download: its file name, MIME type and bytes."""

    filename: str
    content_type: str
    body: bytes


def _audit(session: Session, user: User | None, fmt: str, *, entity_type: str, entity_id: str,
           team_id: int | None, details: Mapping[str, Any], ip: str) -> None:
    actor = user if user is not None and user.id is not None else None
    # Read only by the admin audit pages (not cached): an export leaves every kept page
    # kept (experiments.generation, "Writes no cached page shows").
    with unseen_write(session, AuditEvent.__tablename__):
        record_event(session, f"export.{fmt}", actor=actor, entity_type=entity_type,
                     entity_id=entity_id, team_id=team_id,
                     diff={k: [None, v] for k, v in details.items()}, ip=ip)


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise NotFound(f"no export format {fmt[:20]!r}; use one of {', '.join(FORMATS)}")
    return fmt


def export_experiment(session: Session, user: User, key: str, fmt: str, *,
                      now: datetime | None = None, ip: str = "", via: str = "web") -> ExportFile:
    """One experiment's report as ``fmt``, named ``nrr-<key>-<date>.<fmt>``, audited as
    ``export.<fmt>``.

    Raises
    ------
    NotFound
        Unknown format, no such experiment, or another team's.
    """
    _check_format(fmt)
    now = now or utcnow()
    document = experiment_document(session, user, key, now=now)
    name = f"nrr-{safe_name(key)}-{now.date().isoformat()}.{fmt}"
    if fmt == "json":
        body = experiment_json(document, exported_at=now).encode()
    elif fmt == "csv":
        body = experiment_csv(document).encode()
    elif fmt == "md":
        body = experiment_markdown(document, exported_at=now).encode()
    elif fmt == "html":
        body = experiment_html(document, exported_at=now).encode()
    else:
        body = _experiment_zip(session, document, folder=name.removesuffix(".zip"), now=now)
    version = document.dataset.version if document.dataset else None
    _audit(session, user, fmt, entity_type="experiment", entity_id=key,
           team_id=document.experiment.team_id,
           details={"format": fmt, "file": name, "dataset_version": version, "via": via}, ip=ip)
    return ExportFile(name, CONTENT_TYPES[fmt], body)


def _experiment_zip(session: Session, document: ExperimentDocument, *, folder: str,
                    now: datetime) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        add_experiment(session, archive, folder, document)
        archive.writestr(f"{folder}/report.json", experiment_json(document, exported_at=now))
        archive.writestr(f"{folder}/report.html", experiment_html(document, exported_at=now))
    return buffer.getvalue()


def export_review(session: Session, user: User, week: str, fmt: str, *,
                  branch_id: int | str | None = None, date_from: Any = None, date_to: Any = None,
                  now: datetime | None = None, ip: str = "", via: str = "web") -> ExportFile:
    """A week's (or a date range's) review as ``fmt``, named after the week and the date,
    audited.

    Raises
    ------
    NotFound
        Unknown format, bad week or branch.
    ValidationFailed
        Malformed date range or branch.
    """
    _check_format(fmt)
    now = now or utcnow()
    review = build_review(session, user, week, branch_id=branch_id, date_from=date_from,
                          date_to=date_to, now=now)
    document = finite({**review.to_dict(), "exported_at": now.isoformat()})
    scope = review.week.label if review.mode == "week" \
        else f"{review.date_from}-to-{review.date_to}"
    if review.branch:
        scope += f"-branch-{review.branch['id']}"
    name = f"nrr-review-{safe_name(scope)}-{now.date().isoformat()}.{fmt}"
    if fmt == "json":
        body = review_json(document).encode()
    elif fmt == "csv":
        body = review_csv(document).encode()
    elif fmt == "md":
        body = review_markdown(document).encode()
    elif fmt == "html":
        body = review_html(document).encode()
    else:
        buffer = io.BytesIO()
        folder = name.removesuffix(".zip")
        with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{folder}/review.json", review_json(document))
            archive.writestr(f"{folder}/review.csv", review_csv(document))
            archive.writestr(f"{folder}/review.md", review_markdown(document))
            archive.writestr(f"{folder}/review.html", review_html(document))
            for detail in detail_documents(document):
                add_experiment(session, archive, f"{folder}/{safe_name(detail.key)}", detail)
        body = buffer.getvalue()
    _audit(session, user, fmt, entity_type="review", entity_id=scope, team_id=None,
           details={"format": fmt, "file": name, "week": review.week.label, "via": via}, ip=ip)
    return ExportFile(name, CONTENT_TYPES[fmt], body)
