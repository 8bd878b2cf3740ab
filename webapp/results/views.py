"""Account data upload, recompute and the results section of an experiment.

| method | URL                                   | role     | view      |
|--------|---------------------------------------|----------|-----------|
| GET    | /experiments/<key>/results            | viewer   | show      |
| POST   | /experiments/<key>/datasets           | analyst  | upload    |
| POST   | /experiments/<key>/recompute          | analyst  | recompute |
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from experiments import access
from experiments.accounts_csv import ImportValidationError, RowError
from experiments.analysis import load_results
from experiments.analysis import recompute as recompute_snapshot
from experiments.errors import NotFound, PermissionDenied
from experiments.imports import (
    UPLOAD_STATUSES,
    ImportRefused,
    ImportReport,
    import_accounts,
    variant_keys,
)
from experiments.models import Experiment
from experiments.registry import get_experiment
from webapp.db import get_session
from webapp.rendering import is_htmx, render_page_or_partial
from webapp.results.forest import forest_plot
from webapp.security import acting_user, allow

bp = Blueprint("results", __name__, url_prefix="/experiments")


@dataclass(frozen=True)
class UploadState:
    """What the upload component shows: idle, done, duplicate, failed or refused."""

    state: str = "idle"
    message: str = ""
    errors: tuple[RowError, ...] = ()
    total: int = 0
    report: ImportReport | None = None
    filename: str = ""
    notes: tuple[str, ...] = field(default=())


@bp.app_template_global("results_may")
def results_may(experiment: Experiment, role: str) -> bool:
    """Whether the signed-in user acts as at least ``role`` on ``experiment`` (for showing controls)."""
    user = acting_user()
    return user is not None and access.can(get_session(), user, experiment.team_id, role)


@bp.app_template_global("results_upload_open")
def results_upload_open(experiment: Experiment) -> bool:
    return experiment.status in UPLOAD_STATUSES


@bp.app_template_global("results_upload_limit_mb")
def results_upload_limit_mb() -> int:
    return int(current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024))


bp.add_app_template_global(forest_plot, "forest_plot")


@bp.app_template_global("experiment_variant_keys")
def experiment_variant_keys(experiment: Experiment) -> list[str]:
    return variant_keys(get_session(), experiment)


def _experiment(key: str, needed: str) -> Experiment:
    session = get_session()
    user = acting_user()
    try:
        experiment = get_experiment(session, user, key)
        access.require(session, user, experiment.team_id, needed)
    except NotFound:
        abort(404)
    except PermissionDenied as exc:
        abort(403, str(exc))
    return experiment


def _upload_response(experiment: Experiment, upload: UploadState, status: int) -> Response:
    return render_page_or_partial("results/upload_page.html", "results/_upload.html", status=status,
                                  experiment=experiment, upload=upload)


@bp.get("/<key>/results")
@allow("viewer")
def show(key: str):
    """Results of one dataset version, optionally one segment."""
    experiment = _experiment(key, "viewer")
    segment = request.args.get("segment") or None
    try:
        results = load_results(get_session(), experiment, dataset_version=request.args.get("dataset", type=int),
                               segment=segment)
    except NotFound:
        abort(404)
    return render_page_or_partial("results/page.html", "results/_body.html", experiment=experiment,
                                  results=results)


@bp.post("/<key>/datasets")
@allow("analyst")
def upload(key: str):
    """Upload an account CSV as a new dataset version and analyse it."""
    experiment = _experiment(key, "analyst")
    session = get_session()
    file = request.files.get("file")
    if file is None or not file.filename:
        return _upload_response(experiment, UploadState("failed", "Choose a CSV file to upload."), 422)
    # Spool to disk, then read from the path: the upload is never held twice in memory.
    with tempfile.NamedTemporaryFile(prefix="nrrlab-upload-", suffix=".csv") as spooled:
        file.save(spooled)
        spooled.flush()
        try:
            report = import_accounts(session, experiment, spooled.name, filename=file.filename,
                                     actor=acting_user())
        except ImportValidationError as exc:
            session.rollback()
            return _upload_response(experiment, UploadState("failed", "The file was not stored.", tuple(exc.errors),
                                                            exc.total, filename=file.filename), 422)
        except ImportRefused as exc:
            session.rollback()
            return _upload_response(experiment, UploadState("refused", str(exc), filename=file.filename), 409)
    session.commit()
    state = UploadState("duplicate" if report.duplicate else "done", report=report,
                        filename=report.dataset.filename, notes=report.notes)
    if is_htmx():
        response = _upload_response(experiment, state, 200)
        if not report.duplicate:
            response.headers["HX-Trigger"] = "results-updated"
        return response
    if report.duplicate:
        flash(f"This file is identical to the active dataset (version {report.dataset.version}); "
              "nothing new was stored.", "info")
    else:
        flash(f"Uploaded {report.dataset.filename} as dataset version {report.dataset.version} "
              f"({report.rows:,} accounts) and analysed it.", "success")
    return redirect(url_for("experiments.detail", key=experiment.key), 303)


@bp.post("/<key>/recompute")
@allow("analyst")
def recompute(key: str):
    """Re-analyse the active dataset under the current plan."""
    experiment = _experiment(key, "analyst")
    session = get_session()
    try:
        recompute_snapshot(session, experiment, actor=acting_user())
    except NotFound as exc:
        abort(422, str(exc))
    session.commit()
    if is_htmx():
        return render_page_or_partial("results/page.html", "results/_body.html", experiment=experiment,
                                      results=load_results(session, experiment))
    flash("Results recomputed under the current plan.", "success")
    return redirect(url_for("experiments.detail", key=experiment.key), 303)


@bp.app_template_filter("signed_pct")
def signed_pct(value: float | None, digits: int = 1) -> str:
    """A relative change as a signed percentage: 0.0213 → '+2.1%'."""
    if value is None:
        return "—"
    return f"{value * 100:+.{digits}f}%"


@bp.app_template_filter("points")
def points(value: float | None, digits: int = 1) -> str:
    """An NRR difference in signed points without the unit: 0.021 → '+2.1'."""
    if value is None:
        return "—"
    return f"{value * 100:+.{digits}f}"
