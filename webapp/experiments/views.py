"""The experiment registry and experiment pages.

| method | URL                                 | role         | view             |
|--------|-------------------------------------|--------------|------------------|
| GET    | /experiments/                       | viewer       | index            |
| GET    | /experiments/new                    | experimenter | new              |
| POST   | /experiments/new                    | experimenter | create           |
| GET    | /experiments/sample-size-hint       | viewer       | sample_size_hint |
| GET    | /experiments/<key>                  | viewer       | detail           |
| GET    | /experiments/<key>.json             | viewer       | export_json      |
| GET    | /experiments/<key>/edit             | experimenter | edit             |
| POST   | /experiments/<key>/edit             | experimenter | update           |
| POST   | /experiments/<key>/start            | experimenter | start            |
| POST   | /experiments/<key>/stop             | experimenter | stop             |
| POST   | /experiments/<key>/decide           | experimenter | decide           |
| POST   | /experiments/<key>/reopen           | experimenter | reopen           |

The new/edit forms post ``variant_action`` (``add`` / ``remove:<row>``) from their
variant buttons: htmx gets the variants fieldset back, a browser without
JavaScript the whole form again; nothing is stored either way.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, redirect, request, url_for

from experiments.access import require
from experiments.analysis import load_results
from experiments.decisions import DECISION_FIELDS, decision_panel
from experiments.decisions import reopen as reopen_decision
from experiments.documents import experiment_document
from experiments.errors import Conflict, NotFound, ValidationFailed
from experiments.input_rules import parse_id
from experiments.models import DECISIONS
from experiments.plan_input import LOCKED_FIELDS
from experiments.planning import sample_size_hint as compute_hint
from experiments.registry import (
    ExperimentFilters,
    decide_experiment,
    experiment_page,
    form_values,
    get_experiment,
    register_experiment,
    start_experiment,
    stop_experiment,
    update_experiment,
)
from experiments.registry_pages import (
    experiment_form_page,
    experiment_list_page,
    new_experiment_values,
    page_number,
)
from experiments.versioning import StaleVersion
from webapp.audit_hooks import client_ip
from webapp.db import get_session
from webapp.experiments.forms import (
    apply_variant_action,
    conflict_response,
    experiment_form_data,
    shown_errors,
    variant_rows,
)
from webapp.page_cache import cached_page
from webapp.rendering import render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("experiments", __name__, url_prefix="/experiments")


# ---------------------------------------------------------------- the list


@bp.route("/")
@allow("viewer")
@cached_page
def index():
    """Experiment list, filtered by the query string, one page (``?page=``) at a time."""
    session = get_session()
    user = acting_user()
    page = experiment_list_page(session, user, ExperimentFilters.from_args(request.args),
                                page_number(request.args.get("page")))
    return render_page_or_partial("experiments/index.html", "experiments/_list.html", **vars(page))


# ---------------------------------------------------------------- new / edit


def _form(
    values: dict[str, Any],
    errors: dict[str, str] | None = None,
    *,
    experiment=None,
    status: int = 200,
    partial: str = "experiments/_form.html",
    oob_hint: bool = False,
):
    """The new or edit form (page, or ``partial`` for htmx) with its choices and live hint."""
    session = get_session()
    user = acting_user()
    action = (
        url_for("experiments.update", key=experiment.key)
        if experiment is not None
        else url_for("experiments.create")
    )
    page = experiment_form_page(session, user, values)
    return render_page_or_partial(
        "experiments/form.html",
        partial,
        status=status,
        values=values,
        errors=errors or {},
        experiment=experiment,
        action=action,
        locked=experiment is not None and experiment.status != "draft",
        locked_fields=LOCKED_FIELDS,
        oob_hint=oob_hint,
        **vars(page),
    )


def _variant_action_response(data: dict[str, Any], experiment=None):
    values = apply_variant_action(data, request.form.get("variant_action", ""))
    return _form(values, experiment=experiment, partial="experiments/_variants.html", oob_hint=True)


@bp.route("/new")
@allow("experimenter")
def new():
    """The registration form; ``?node_id=&stage_id=`` preselect the branch (with its team
    and owner) and the stage, e.g. from the tree."""
    values = new_experiment_values(
        get_session(),
        acting_user(),
        node_id=parse_id(request.args.get("node_id")),
        stage_id=parse_id(request.args.get("stage_id")),
    )
    return _form(values)


@bp.route("/new", methods=["POST"])
@allow("experimenter")
def create():
    """Register a draft experiment."""
    data = experiment_form_data(request.form)
    if "variant_action" in request.form:
        return _variant_action_response(data)
    session = get_session()
    try:
        experiment = register_experiment(session, data, actor=acting_user())
    except ValidationFailed as exc:
        session.rollback()
        return _form(data, exc.errors, status=422)
    session.commit()
    return redirect(url_for("experiments.detail", key=experiment.key), code=303)


@bp.route("/<key>/edit")
@allow("experimenter")
def edit(key: str):
    """The edit form (a draft freely; after the start, locked fields need a reason)."""
    session = get_session()
    user = acting_user()
    experiment = get_experiment(session, user, key)
    require(session, user, experiment.team_id, "experimenter")
    if experiment.status == "decided":
        return conflict_response(
            Conflict(f"'{key}' is decided and closed; its plan can no longer change.")
        )
    return _form(form_values(session, experiment), experiment=experiment)


@bp.route("/<key>/edit", methods=["POST"])
@allow("experimenter")
def update(key: str):
    """Save the edit form."""
    session = get_session()
    # A form without a version is refused (422), never taken as "the latest".
    data = {**experiment_form_data(request.form), "version": request.form.get("version", "")}
    if "variant_action" in request.form:
        return _variant_action_response(data, get_experiment(session, acting_user(), key))
    try:
        update_experiment(session, key, data, actor=acting_user())
    except ValidationFailed as exc:
        session.rollback()
        experiment = get_experiment(session, acting_user(), key)
        return _form({**data, "key": experiment.key}, exc.errors, experiment=experiment, status=422)
    except StaleVersion as exc:
        # The loser keeps their input, now on the current version: saving again is
        # a deliberate overwrite made after reading who changed it.
        session.rollback()
        experiment = get_experiment(session, acting_user(), key)
        if experiment.status == "decided":
            return conflict_response(exc)
        return _form(
            {**data, "key": experiment.key, "version": experiment.version},
            {"": str(exc)},
            experiment=experiment,
            status=409,
        )
    except Conflict as exc:
        session.rollback()
        return conflict_response(exc)
    session.commit()
    return redirect(url_for("experiments.detail", key=key), code=303)


@bp.route("/sample-size-hint")
@allow("viewer")
def sample_size_hint():
    """The live sample-size hint of the experiment form."""
    args = request.args
    data = {name: args.get(name, "") for name in ("mde", "alpha", "power", "node_id", "stage_id",
                                                "control")}
    data["variants"] = variant_rows(args)
    hint = compute_hint(get_session(), acting_user(), data)
    return render_page_or_partial("experiments/hint.html", "experiments/_hint.html", hint=hint)


# ---------------------------------------------------------------- one experiment


def _detail(
    key: str,
    *,
    decide_values: dict[str, Any] | None = None,
    decide_errors: dict[str, str] | None = None,
    reopen_values: dict[str, Any] | None = None,
    reopen_errors: dict[str, str] | None = None,
    status: int = 200,
):
    session = get_session()
    user = acting_user()
    page = experiment_page(session, user, key)
    version = parse_id(request.args.get("dataset")) if request.method == "GET" else None
    segment = (request.args.get("segment") or None) if request.method == "GET" else None
    try:
        results = load_results(session, page.experiment, dataset_version=version, segment=segment)
    except NotFound:
        if version is None and segment is None:
            raise
        results = load_results(session, page.experiment)
    return render_page_or_partial(
        "experiments/detail.html",
        "experiments/_detail.html",
        status=status,
        details=page,
        experiment=page.experiment,
        results=results,
        decisions=DECISIONS,
        controls=page.controls,
        decide_values=decide_values or {},
        decide_errors=decide_errors or {},
        decision_panel=decision_panel(session, page.experiment),
        reopen_values=reopen_values or {},
        reopen_errors=reopen_errors or {},
    )


@bp.route("/<key>")
@allow("viewer")
@cached_page
def detail(key: str):
    """One experiment: plan, variants, lifecycle, amendments, decision and results."""
    return _detail(key)


@bp.route("/<key>.json")
@allow("viewer")
def export_json(key: str):
    """The experiment (plan, amendments, decision) as JSON."""
    return jsonify(experiment_document(get_session(), acting_user(), key).to_json())


def _lifecycle(key: str, move) -> Any:
    session = get_session()
    try:
        move(session, key, actor=acting_user(), expected_version=request.form.get("version", ""))
    except ValidationFailed as exc:
        session.rollback()
        return render_page_or_partial(
            "errors/error.html",
            "errors/_error.html",
            status=422,
            code=422,
            message=exc.errors.get("version") or str(exc),
        )
    except Conflict as exc:
        session.rollback()
        return conflict_response(exc)
    session.commit()
    return redirect(url_for("experiments.detail", key=key), code=303)


@bp.route("/<key>/start", methods=["POST"])
@allow("experimenter")
def start(key: str):
    """Start a draft (locks the plan)."""
    return _lifecycle(key, start_experiment)


@bp.route("/<key>/stop", methods=["POST"])
@allow("experimenter")
def stop(key: str):
    """Stop a running experiment."""
    return _lifecycle(key, stop_experiment)


@bp.route("/<key>/decide", methods=["POST"])
@allow("experimenter")
def decide(key: str):
    """Record the decision on a stopped experiment."""
    session = get_session()
    data = {name: request.form.get(name, "") for name in (*DECISION_FIELDS, "version")}
    try:
        decide_experiment(session, key, data, actor=acting_user(), ip=client_ip())
    except ValidationFailed as exc:
        session.rollback()
        return _detail(key, decide_values=data, decide_errors=shown_errors(exc.errors), status=422)
    except Conflict as exc:
        session.rollback()
        if get_experiment(session, acting_user(), key).status == "stopped":
            # Still undecided (someone amended it): the form comes back with the input.
            return _detail(key, decide_values=data, decide_errors={"": str(exc)}, status=409)
        return conflict_response(exc)
    session.commit()
    return redirect(url_for("experiments.detail", key=key), code=303)


@bp.route("/<key>/reopen", methods=["POST"])
@allow("experimenter")
def reopen(key: str):
    """Reopen a decided experiment with a reason (it takes data and can be decided again)."""
    session = get_session()
    data = {name: request.form.get(name, "") for name in ("reason", "version")}
    experiment = get_experiment(session, acting_user(), key)
    try:
        reopen_decision(session, experiment, data, actor=acting_user(),
                        expected=data["version"], ip=client_ip())
    except ValidationFailed as exc:
        session.rollback()
        return _detail(key, reopen_values=data, reopen_errors=shown_errors(exc.errors),
                       status=422)
    except Conflict as exc:
        session.rollback()
        return conflict_response(exc)
    session.commit()
    return redirect(url_for("experiments.detail", key=key, _anchor="decision-section"), code=303)
