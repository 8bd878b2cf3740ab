"""Account data upload, recompute and the results section of an experiment.

| method | URL                                   | role     | view      |
|--------|---------------------------------------|----------|-----------|
| GET    | /experiments/<key>/results            | viewer   | show      |
| POST   | /experiments/<key>/datasets           | analyst  | upload    |
| GET    | /experiments/<key>/uploads/<job_id>   | analyst  | upload_status |
| POST   | /experiments/<key>/recompute          | analyst  | recompute |
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, request, url_for
from werkzeug.wrappers import Response

from experiments import access
from experiments.analysis import load_results
from experiments.analysis import recompute as recompute_snapshot
from experiments.errors import NotFound
from experiments.forest import forest_plot
from experiments.imports import UPLOAD_STATUSES, ImportRefused
from experiments.input_rules import parse_id
from experiments.models import Experiment, UploadJob
from experiments.nrr_figures_view import nrr_figures
from experiments.registry import ResultsControls, get_experiment, results_controls
from webapp.db import get_session
from webapp.page_cache import cached_page
from webapp.rendering import is_htmx, render_page_or_partial
from webapp.results.body import results_body
from webapp.results.uploads import UploadState, queue_upload, upload_state
from webapp.security import acting_user, allow

bp = Blueprint("results", __name__, url_prefix="/experiments")


@bp.app_template_global("results_upload_open")
def results_upload_open(experiment: Experiment) -> bool:
    return experiment.status in UPLOAD_STATUSES


@bp.app_template_global("results_upload_limit_mb")
def results_upload_limit_mb() -> int:
    return int(current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024))


bp.add_app_template_global(forest_plot, "forest_plot")
bp.add_app_template_global(nrr_figures, "nrr_figures")
bp.add_app_template_global(results_body, "results_body")


def _controls(experiment: Experiment) -> ResultsControls:
    """What the results templates offer (upload, recompute, the variant keys): read here,
    so that templates never query."""
    return results_controls(get_session(), acting_user(), experiment)


def _experiment(key: str, needed: str) -> Experiment:
    session = get_session()
    user = acting_user()
    experiment = get_experiment(session, user, key)
    access.require(session, user, experiment.team_id, needed)
    return experiment


def _upload_response(experiment: Experiment, upload: UploadState, status: int) -> Response:
    return render_page_or_partial(
        "results/upload_page.html",
        "results/_upload.html",
        status=status,
        experiment=experiment,
        upload=upload,
        controls=_controls(experiment),
    )


@bp.get("/<key>/results")
@allow("viewer")
@cached_page
def show(key: str):
    """Results of one dataset version, optionally one segment."""
    experiment = _experiment(key, "viewer")
    segment = request.args.get("segment") or None
    results = load_results(
        get_session(),
        experiment,
        dataset_version=parse_id(request.args.get("dataset")),
        segment=segment,
    )
    return render_page_or_partial(
        "results/page.html",
        "results/_body_kept.html",
        experiment=experiment,
        results=results,
        controls=_controls(experiment),
    )


@bp.post("/<key>/datasets")
@allow("analyst")
def upload(key: str):
    """Take an account CSV and queue its import; answer at once with the job's state."""
    experiment = _experiment(key, "analyst")
    session = get_session()
    file = request.files.get("file")
    if file is None or not file.filename:
        return _upload_response(
            experiment, UploadState("failed", "Choose a CSV file to upload."), 422
        )
    try:
        job = queue_upload(session, experiment, filename=file.filename, actor=acting_user(),
                           save=file.save)
    except ImportRefused as exc:
        session.rollback()
        return _upload_response(
            experiment, UploadState("refused", str(exc), filename=file.filename), 409
        )
    return _job_response(experiment, job, posted=True)


@bp.get("/<key>/uploads/<int:job_id>")
@allow("analyst")
def upload_status(key: str, job_id: int):
    """The upload component for one job: polled by htmx, or a page with a refresh link."""
    experiment = _experiment(key, "analyst")
    job = get_session().get(UploadJob, job_id)
    if job is None or job.experiment_id != experiment.id:
        raise NotFound(f"upload job {job_id} is not one of {key}'s")
    return _job_response(experiment, job, posted=False)


def _job_response(experiment: Experiment, job: UploadJob, *, posted: bool) -> Response:
    state = upload_state(get_session(), experiment, job)
    if is_htmx() or (posted and state.state in ("failed", "refused")):
        status = {"failed": 422, "refused": 409}.get(state.state, 200) if posted else 200
        response = _upload_response(experiment, state, status)
        if state.state == "done":
            response.headers["HX-Trigger"] = "results-updated"
        return response
    if state.in_progress:
        if posted:
            return redirect(
                url_for("results.upload_status", key=experiment.key, job_id=job.id), 303
            )
        return _upload_response(experiment, state, 200)
    if state.state not in ("done", "duplicate"):
        return _upload_response(experiment, state, 200)
    # Finished: the experiment page with the outcome, as a synchronous upload ended.
    if state.state == "duplicate":
        flash(f"This file is identical to {state.identical_to}; nothing new was stored.", "info")
    else:
        flash(
            f"Uploaded {state.filename} as dataset version {state.dataset.version} "
            f"({state.rows:,} accounts) and analysed it.",
            "success",
        )
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
        return render_page_or_partial(
            "results/page.html",
            "results/_body_kept.html",
            experiment=experiment,
            results=load_results(session, experiment),
            controls=_controls(experiment),
        )
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
