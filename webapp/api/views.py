"""The JSON API, version 1 (``/api/v1``): the same services as the pages, by token.

Every endpoint is declared with :func:`webapp.api.spec.operation` (route, least role,
models, error statuses); ``/api/v1/openapi.json`` is generated from those declarations and
``/api/v1/docs`` renders it. Views parse the request with the models of
``webapp.api.schemas``, call one service with the token's user as the actor, commit and
answer with an output model. Domain errors become problem documents: ``ValidationFailed``
→ 422 with ``errors`` per member, ``StaleVersion`` → 412, another ``Conflict`` → 409;
``NotFound``/``PermissionDenied`` go through the site's one denial path (404/403, audited).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, render_template, request, url_for

from experiments.access import require, team_roles
from experiments.accounts_csv import RowError
from experiments.documents import experiment_document, finite
from experiments.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from experiments.imports import ImportRefused
from experiments.ledger import DuplicateLedger, current_figures
from experiments.ledger import versions as ledger_versions
from experiments.ledger_csv import ImportValidationError as LedgerImportError
from experiments.ledger_import import store_ledger_upload
from experiments.models import Dataset, Experiment, UploadJob
from experiments.registry import (
    ExperimentFilters,
    amendments_of,
    decide_experiment,
    form_values,
    get_experiment,
    list_experiments,
    register_experiment,
    start_experiment,
    stop_experiment,
    update_experiment,
    variants_of,
)
from experiments.review import build_review
from experiments.tree import NODE_FIELDS, create_node, get_node, load_tree, update_node
from experiments.users import role_rank
from experiments.versioning import StaleVersion
from webapp.api import schemas as s
from webapp.api.auth import api_user, authenticate_request
from webapp.api.http import (
    ApiProblem,
    answer,
    as_form,
    if_match_version,
    json_body,
    page_of,
    parse_model,
    parse_query,
    validation_problem,
)
from webapp.api.spec import (
    CSV,
    MULTIPART,
    PROBLEM_TYPES,
    openapi_document,
    operation,
    type_text,
)
from webapp.audit_hooks import client_ip
from webapp.db import get_engine, get_session
from webapp.problems import problem
from webapp.results.uploads import queue_upload

PREFIX = "/api/v1"
TITLE = "NRR Lab API"
bp = Blueprint("api", __name__, url_prefix=PREFIX)
bp.before_request(authenticate_request)


# ------------------------------------------------------------------ errors


@bp.errorhandler(ApiProblem)
def _api_problem(exc: ApiProblem) -> Response:
    get_session().rollback()
    return exc.response


@bp.errorhandler(ValidationFailed)
def _validation_failed(exc: ValidationFailed) -> Response:
    get_session().rollback()
    return validation_problem(exc.errors)


@bp.errorhandler(Conflict)
def _conflict(exc: Conflict) -> Response:
    get_session().rollback()
    if isinstance(exc, StaleVersion):
        return problem(412, str(exc), kind="stale-version", current_version=exc.current)
    return problem(409, str(exc), kind="conflict")


# ------------------------------------------------------------------ the document and docs


def _document() -> dict[str, Any]:
    cached = current_app.extensions.get("nrrlab.openapi")
    if cached is None:
        cached = openapi_document(bp, PREFIX, title=TITLE)
        current_app.extensions["nrrlab.openapi"] = cached
    return cached


@operation(bp, "GET", "/openapi.json", summary="This API's OpenAPI 3.1 description",
           role=None, tag="meta")
def openapi():
    """Generated from the models the endpoints validate and answer with."""
    return jsonify(_document())


@operation(bp, "GET", "/docs", summary="This API's documentation page (HTML)", role=None,
           tag="meta")
def docs():
    """The OpenAPI description rendered as a page (no scripts)."""
    document = _document()
    schemas = document["components"]["schemas"]
    return render_template("api/docs.html", document=document, schemas=schemas,
                           problem_types=PROBLEM_TYPES, type_text=type_text)


@operation(bp, "GET", "/me", summary="The token's user, roles and the token itself",
           role="viewer", tag="meta", response=s.Me)
def me():
    """Who the token acts as: the global role and the role in each team."""
    user = api_user()
    token = g.api_token
    teams = {str(team): role for team, role in team_roles(get_session(), user).items()}
    return answer(s.Me(id=user.id, email=user.email, name=user.name, role=user.role,
                       teams=teams, token=s.TokenInfo(name=token.name, prefix=token.prefix,
                                                      scope=token.scope,
                                                      expires_at=token.expires_at)))


# ------------------------------------------------------------------ driver tree


def _node_out(node) -> s.NodeOut:
    return s.NodeOut.model_validate(node, from_attributes=True)


@operation(bp, "GET", "/nodes", summary="Driver-tree nodes visible to the token's user",
           role="viewer", tag="driver tree", query=s.PageQuery, response=s.NodePage)
def list_nodes():
    """Depth first from the root, each parent before its children."""
    query = parse_query(s.PageQuery)
    nodes = [t.node for root in load_tree(get_session(), api_user()) for t in root.walk()]
    chunk, total, following = page_of(nodes, query.page, query.per_page, "api.list_nodes", {})
    return answer(s.NodePage(items=[_node_out(n) for n in chunk], page=query.page,
                             per_page=query.per_page, total=total, next=following),
                  next_page=following)


@operation(bp, "POST", "/nodes", summary="Add a driver-tree node", role="experimenter",
           tag="driver tree", body=s.NodeCreate, response=s.NodeOut, status=201,
           errors=(404,))
def create_node_():
    """Under ``parent_id``, with the tree page's rules (team rights, owner in the team)."""
    data = as_form(json_body(s.NodeCreate))
    session = get_session()
    node = create_node(session, data, actor=api_user())
    session.commit()
    return answer(_node_out(node), 201, etag=node.version,
                  location=url_for("api.get_node_", node_id=node.id))


@operation(bp, "GET", "/nodes/<int:node_id>", summary="One driver-tree node", role="viewer",
           tag="driver tree", response=s.NodeOut, errors=(404,), etag=True)
def get_node_(node_id: int):
    """Its ETag is its version, for If-Match on PATCH."""
    node = get_node(get_session(), api_user(), node_id)
    return answer(_node_out(node), etag=node.version)


@operation(bp, "PATCH", "/nodes/<int:node_id>", summary="Change a driver-tree node",
           role="experimenter", tag="driver tree", body=s.NodeUpdate, response=s.NodeOut,
           errors=(404,), etag=True, if_match=True)
def update_node_(node_id: int):
    """Members left out keep their value; If-Match is the version the change was made on."""
    session = get_session()
    user = api_user()
    node = get_node(session, user, node_id, "experimenter")
    version = if_match_version()
    patch = as_form(json_body(s.NodeUpdate), exclude_unset=True)
    data: dict[str, Any] = {name: getattr(node, name) for name in NODE_FIELDS}
    data.update(patch)
    if version is not None:
        data["version"] = version
    node = update_node(session, node_id, data, actor=user)
    session.commit()
    return answer(_node_out(node), etag=node.version)


# ------------------------------------------------------------------ experiments


def _experiment_out(experiment: Experiment) -> s.ExperimentOut:
    session = get_session()
    variants = [s.VariantOut(key=v.key, name=v.name, weight=v.weight, is_control=v.is_control,
                             required_n=v.required_n) for v in variants_of(session, experiment)]
    key = experiment.key
    return s.ExperimentOut(
        key=key, name=experiment.name, status=experiment.status, node_id=experiment.node_id,
        stage_id=experiment.stage_id, team_id=experiment.team_id, owner_id=experiment.owner_id,
        hypothesis=experiment.hypothesis, primary_metric=experiment.primary_metric,
        mde=experiment.mde, alpha=experiment.alpha, power=experiment.power,
        analysis="sequential" if experiment.sequential else "fixed",
        guardrails=[s.GuardrailOut(metric=g["metric"], margin=g["margin"])
                    for g in experiment.guardrails or ()],
        ttv_target_days=experiment.ttv_target_days, planned_start=experiment.planned_start,
        planned_end=experiment.planned_end, started_at=experiment.started_at,
        stopped_at=experiment.stopped_at, decided_at=experiment.decided_at,
        decision=experiment.decision, decision_rationale=experiment.decision_rationale,
        variants=variants, version=experiment.version,
        amendments=[s.AmendmentOut.model_validate(a, from_attributes=True)
                    for a in amendments_of(session, experiment)],
        links={"self": url_for("api.get_experiment_", key=key),
               "results": url_for("api.results", key=key),
               "datasets": url_for("api.upload_dataset", key=key),
               "page": url_for("experiments.detail", key=key)})


def _control_index(variants: list[Mapping[str, Any]], control: Any) -> Any:
    """The form's control (a row index) for a control given as a variant key."""
    keys = [v.get("key") for v in variants]
    return str(keys.index(control)) if control in keys else control


@operation(bp, "GET", "/experiments", summary="Experiments visible to the token's user",
           role="viewer", tag="experiments", query=s.ExperimentQuery,
           response=s.ExperimentPage)
def list_experiments_():
    """Newest first, with the registry page's filters."""
    query = parse_query(s.ExperimentQuery)
    # the registry page's reader of its filters (e.g. ``q`` with its spaces collapsed)
    filters = ExperimentFilters.from_args(
        query.model_dump(exclude={"page", "per_page"}, exclude_none=True)).as_args()
    rows = list_experiments(get_session(), api_user(), **filters)
    chunk, total, following = page_of(rows, query.page, query.per_page,
                                      "api.list_experiments_", filters)
    return answer(s.ExperimentPage(items=[_experiment_out(e) for e in chunk], page=query.page,
                                   per_page=query.per_page, total=total, next=following),
                  next_page=following)


@operation(bp, "POST", "/experiments", summary="Register a draft experiment",
           role="experimenter", tag="experiments", body=s.ExperimentCreate,
           response=s.ExperimentOut, status=201)
def create_experiment():
    """The registration form's rules; ``control`` names the control's variant key."""
    user = api_user()
    data = as_form(json_body(s.ExperimentCreate))
    data["control"] = _control_index(data["variants"],
                                     data["control"] or (data["variants"] or [{}])[0].get("key"))
    if data["owner_id"] is None:
        data["owner_id"] = user.id
    if data["ttv_target_days"] is None:
        del data["ttv_target_days"]
    session = get_session()
    experiment = register_experiment(session, data, actor=user)
    session.commit()
    return answer(_experiment_out(experiment), 201, etag=experiment.version,
                  location=url_for("api.get_experiment_", key=experiment.key))


@operation(bp, "GET", "/experiments/<key>", summary="One experiment", role="viewer",
           tag="experiments", response=s.ExperimentOut, errors=(404,), etag=True)
def get_experiment_(key: str):
    """Its plan, variants and lifecycle; the ETag is its version."""
    experiment = get_experiment(get_session(), api_user(), key)
    return answer(_experiment_out(experiment), etag=experiment.version)


@operation(bp, "PATCH", "/experiments/<key>", summary="Change an experiment",
           role="experimenter", tag="experiments", body=s.ExperimentUpdate,
           response=s.ExperimentOut, errors=(404, 409), etag=True, if_match=True)
def update_experiment_(key: str):
    """Members left out keep their value. After the start, a change to the locked plan
    needs ``reason`` and is kept as an amendment (the edit page's rule)."""
    session = get_session()
    user = api_user()
    experiment = get_experiment(session, user, key)
    version = if_match_version()
    patch = as_form(json_body(s.ExperimentUpdate), exclude_unset=True)
    data = form_values(session, experiment)
    current_control = data["variants"][int(data["control"])]["key"] \
        if str(data.get("control", "")).isdigit() else None
    data = {name: (value.isoformat() if hasattr(value, "isoformat") else value)
            for name, value in data.items()}
    data.update(patch)
    data["control"] = _control_index(data["variants"], patch.get("control") or current_control)
    data.pop("version", None)
    if version is not None:
        data["version"] = version
    experiment = update_experiment(session, key, data, actor=user)
    session.commit()
    return answer(_experiment_out(experiment), etag=experiment.version)


def _lifecycle(key: str, move) -> Response:
    session = get_session()
    version = if_match_version()
    experiment = move(session, key, actor=api_user(), expected_version=version)
    session.commit()
    return answer(_experiment_out(experiment), etag=experiment.version)


@operation(bp, "POST", "/experiments/<key>/start", summary="Start a draft (locks the plan)",
           role="experimenter", tag="experiments", response=s.ExperimentOut,
           errors=(404, 409), etag=True, if_match=True)
def start(key: str):
    """Sizes every arm on the newest planning sigma and locks the analysis plan."""
    return _lifecycle(key, start_experiment)


@operation(bp, "POST", "/experiments/<key>/stop", summary="Stop a running experiment",
           role="experimenter", tag="experiments", response=s.ExperimentOut,
           errors=(404, 409), etag=True, if_match=True)
def stop(key: str):
    """Enrolment ends; the decision comes next."""
    return _lifecycle(key, stop_experiment)


@operation(bp, "POST", "/experiments/<key>/decide", summary="Decide a stopped experiment",
           role="experimenter", tag="experiments", body=s.DecisionIn, response=s.ExperimentOut,
           errors=(404, 409), etag=True, if_match=True)
def decide(key: str):
    """Ship, iterate or kill with a rationale; a ship names the variant, the rollout share
    and the eligible base (default: the revenue ledger's latest start MRR)."""
    session = get_session()
    version = if_match_version()
    body = as_form(json_body(s.DecisionIn))
    data = {name: ("" if value is None else str(value)) for name, value in body.items()}
    if version is not None:
        data["version"] = version
    decide_experiment(session, key, data, actor=api_user(), ip=client_ip())
    session.commit()
    experiment = get_experiment(session, api_user(), key)
    return answer(_experiment_out(experiment), etag=experiment.version)


@operation(bp, "GET", "/experiments/<key>/results", summary="The experiment's report",
           role="viewer", tag="results", response=s.Results, errors=(404,))
def results(key: str):
    """DESIGN §4/§4b at the top level with the experiment document (plan, amendments,
    dataset version); an experiment without data has empty arms and a warning."""
    document = experiment_document(get_session(), api_user(), key).to_json()
    return answer(s.Results.model_validate(document))


# ------------------------------------------------------------------ datasets


def _job_out(experiment: Experiment, job: UploadJob) -> s.UploadJobOut:
    dataset = get_session().get(Dataset, job.dataset_id) if job.dataset_id else None
    errors = [RowError.from_list(entry) for entry in job.errors or ()]
    return s.UploadJobOut(
        id=job.id, experiment=experiment.key, state=job.state, phase=job.phase,
        filename=job.filename, rows_read=job.rows_read, rows_stored=job.rows_stored,
        message=job.message, error_total=job.error_total,
        errors=[_row_problem(e) for e in errors], notes=list(job.notes or ()),
        dataset_version=dataset.version if dataset is not None else None,
        links={"self": url_for("api.upload_job", key=experiment.key, job_id=job.id),
               "results": url_for("api.results", key=experiment.key)})


def _row_problem(error: RowError) -> s.RowProblem:
    return s.RowProblem(line=error.line, last_line=error.last_line, count=error.count,
                        column=error.column, message=error.message)


def _spool_body(path: Path) -> None:
    with open(path, "wb") as out:
        shutil.copyfileobj(request.stream, out, 1024 * 1024)


@operation(bp, "POST", "/experiments/<key>/datasets", summary="Upload account results (CSV)",
           role="analyst", tag="results", query=s.UploadQuery, body_media=(CSV, MULTIPART),
           response=s.UploadJobOut, status=202, errors=(404, 409, 413),
           extra_statuses={200: "The same file was uploaded before: nothing new was stored.",
                           201: "Imported and analysed (a queue that runs jobs at once)."})
def upload_dataset(key: str):
    """The CSV of DESIGN §3 as the body (``text/csv``) or as the ``file`` part of a form;
    it is checked and imported by the background job of the upload page. 202 with the
    job (poll its ``self`` link); a file that breaks the contract is a 422 listing the
    problems by line once the job has read it."""
    session = get_session()
    user = api_user()
    experiment = get_experiment(session, user, key)
    require(session, user, experiment.team_id, "analyst")
    query = parse_query(s.UploadQuery)
    if request.mimetype == CSV:
        if not request.content_length and not request.headers.get("Transfer-Encoding"):
            raise ApiProblem(validation_problem({"": "the body is empty: send the CSV file"}))
        filename, save = query.filename or "upload.csv", _spool_body
    elif request.mimetype == MULTIPART:
        file = request.files.get("file")
        if file is None or not file.filename:
            raise ApiProblem(validation_problem({"file": "send the CSV as the 'file' part"}))
        filename, save = file.filename, file.save
    else:
        raise ApiProblem(problem(415, "Send the CSV as text/csv, or as the 'file' part of "
                                      "multipart/form-data.", kind="unsupported-media-type"))
    try:
        job = queue_upload(session, experiment, filename=filename, actor=user, save=save)
    except ImportRefused as exc:
        session.rollback()
        raise ApiProblem(problem(409, str(exc), kind="conflict")) from None
    out = _job_out(experiment, job)
    location = out.links["self"]
    if job.state == "failed":
        kind = "upload-invalid" if job.errors else "validation"
        details = [{**e.model_dump(), "field": e.column} for e in out.errors]
        detail = (f"The file was not stored: {job.error_total} problem(s) in it."
                  if job.errors else job.message or "The file was not stored.")
        return problem(422, detail, kind=kind, errors=details, total=job.error_total,
                       job=location, headers={"Location": location})
    if job.state == "refused":
        return problem(409, job.message, kind="conflict", job=location)
    status = {"done": 201, "duplicate": 200}.get(job.state, 202)
    return answer(out, status, location=location)


@operation(bp, "GET", "/experiments/<key>/uploads/<int:job_id>", summary="An upload job",
           role="analyst", tag="results", response=s.UploadJobOut, errors=(404,))
def upload_job(key: str, job_id: int):
    """Its state (queued, running, done, duplicate, failed, refused), progress and, when the
    file broke the contract, the problems by line."""
    session = get_session()
    user = api_user()
    experiment = get_experiment(session, user, key)
    require(session, user, experiment.team_id, "analyst")
    job = session.get(UploadJob, job_id)
    if job is None or job.experiment_id != experiment.id:
        raise NotFound(f"upload job {job_id} is not one of {key}'s")
    return answer(_job_out(experiment, job))


# ------------------------------------------------------------------ review and ledger


@operation(bp, "GET", "/review-weeks/<week>", summary="One week's review (e.g. 2026-W48)",
           role="viewer", tag="review", query=s.ReviewQuery, response=s.ReviewWeek,
           errors=(404,))
def review_week(week: str):
    """As the review page and its JSON export; opening a week freezes what it saw."""
    query = parse_query(s.ReviewQuery)
    session = get_session()
    review = build_review(
        session, api_user(), week, branch_id=query.branch,
        date_from=query.date_from.isoformat() if query.date_from else None,
        date_to=query.date_to.isoformat() if query.date_to else None)
    session.commit()
    return answer(parse_model(s.ReviewWeek, finite(review.to_dict())))


@operation(bp, "GET", "/ledger/figures", summary="The revenue ledger's figures",
           role="viewer", tag="ledger", response=s.LedgerFigures, errors=(404,))
def ledger_figures():
    """Company NRR, GRR and logo churn by period and dimension, as stored with the current
    ledger version (the NRR page's numbers)."""
    figures = current_figures(get_session())
    if not figures:
        raise ApiProblem(problem(404, "No revenue ledger has been uploaded yet."))
    return answer(s.LedgerFigures.model_validate(finite(figures)))


def _version_out(info) -> s.LedgerVersionOut:
    return s.LedgerVersionOut(
        version=info.version, filename=info.filename, uploaded_by=info.uploaded_by,
        uploaded_at=info.uploaded_at, activated_at=info.activated_at,
        periods=list(info.periods), current_periods=list(info.current_periods),
        rows=info.rows, accounts=info.accounts, dimensions=list(info.dimensions),
        notes=list(info.notes), status=info.status)


def _upload_body(filename: str | None) -> tuple[bytes, str]:
    """The CSV of an upload request: a ``text/csv`` body or the ``file`` part of a form."""
    if request.mimetype == CSV:
        data = request.get_data(cache=False)
        if not data:
            raise ApiProblem(validation_problem({"": "the body is empty: send the CSV file"}))
        return data, filename or "upload.csv"
    if request.mimetype == MULTIPART:
        file = request.files.get("file")
        if file is None or not file.filename:
            raise ApiProblem(validation_problem({"file": "send the CSV as the 'file' part"}))
        return file.read(), file.filename
    raise ApiProblem(problem(415, "Send the CSV as text/csv, or as the 'file' part of "
                                  "multipart/form-data.", kind="unsupported-media-type"))


@operation(bp, "POST", "/ledger/versions", summary="Upload a revenue ledger version (CSV)",
           role="analyst", tag="ledger", query=s.LedgerUploadQuery, body_media=(CSV, MULTIPART),
           response=s.LedgerVersionOut, status=201, errors=(409, 413))
def upload_ledger():
    """The CSV of DESIGN §3b; it becomes the current ledger of the periods it covers, as
    the ledger upload page does (the analyst role held *globally*: the ledger is the
    company's). A file that breaks the contract is a 422 listing the problems by line;
    the latest version uploaded again is a 409. Nothing is stored on either."""
    user = api_user()
    if role_rank(user.role) < role_rank("analyst"):
        raise PermissionDenied("replacing the revenue ledger needs the analyst role globally")
    query = parse_query(s.LedgerUploadQuery)
    data, filename = _upload_body(query.filename)
    get_session().commit()  # the import writes in short transactions of its own
    try:
        version = store_ledger_upload(get_engine(), data, dimensions=query.dimensions or "",
                                      actor_id=user.id, filename=filename)
    except LedgerImportError as exc:
        details = [{"line": e.line, "last_line": e.last_line, "count": e.count,
                    "column": e.column, "field": e.column, "message": e.message}
                   for e in exc.errors]
        raise ApiProblem(problem(422, f"The file was not stored: {exc.total} problem(s) in it.",
                                 kind="upload-invalid", errors=details, total=exc.total)) from None
    except DuplicateLedger as exc:
        raise ApiProblem(problem(409, str(exc), kind="conflict")) from None
    info = next(v for v in ledger_versions(get_session()) if v.id == version.id)
    return answer(_version_out(info), 201, location=url_for("api.ledger_versions_"))


@operation(bp, "GET", "/ledger/versions", summary="The revenue ledger's versions",
           role="viewer", tag="ledger", response=s.LedgerVersionList)
def ledger_versions_():
    """Newest first, with the periods each is still current for."""
    items = [_version_out(v) for v in ledger_versions(get_session())]
    return answer(s.LedgerVersionList(items=items))

