"""Warehouse data sources and the queries datasets and the ledger are read with.

| method | URL                                  | role           | view                 |
|--------|--------------------------------------|----------------|----------------------|
| GET    | /admin/data-sources                  | global admin   | sources              |
| POST   | /admin/data-sources                  | global admin   | create_source        |
| GET    | /experiments/<key>/warehouse         | analyst        | experiment_query     |
| POST   | /experiments/<key>/warehouse         | analyst        | save_experiment_query |
| POST   | /experiments/<key>/warehouse/refresh | analyst        | refresh_experiment   |
| GET    | /ledger/warehouse                    | global analyst | ledger_query         |
| POST   | /ledger/warehouse                    | global analyst | save_ledger_query    |
| POST   | /ledger/warehouse/refresh            | global analyst | refresh_ledger       |

A refresh runs as a job (``experiments.jobs``): the button queues it and the status
component polls until the job reports (without JavaScript: reload the page).
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for

from experiments import access
from experiments.errors import Conflict, ValidationFailed
from experiments.imports import UPLOAD_STATUSES
from experiments.input_rules import ECHO_MAX, parse_id
from experiments.models import Experiment
from experiments.registry import get_experiment
from experiments.warehouse import (
    experiment_query as query_of,
)
from experiments.warehouse import (
    ledger_query as the_ledger_query,
)
from experiments.warehouse import (
    list_sources,
    mark_queued,
    register_source,
    save_query,
    source_status,
)
from experiments.warehouse_models import DIALECTS, SCHEDULES
from webapp.db import get_session
from webapp.rendering import render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("warehouse", __name__)


# ------------------------------------------------------------------ data sources


def _sources_page(form: dict | None = None, errors: dict | None = None, status: int = 200):
    sources = list_sources(get_session())
    return render_page_or_partial(
        "warehouse/sources.html", "warehouse/sources.html", status=status,
        sources=[(s, source_status(s)) for s in sources], dialects=DIALECTS,
        form=form or {"dialect": "postgresql"}, errors=errors or {})


@bp.get("/admin/data-sources")
@allow("admin", scope="global")
def sources():
    """The registered warehouses and whether each one's URL variable is set."""
    return _sources_page()


@bp.post("/admin/data-sources")
@allow("admin", scope="global")
def create_source():
    """Register a data source (a name, the URL's environment variable, the dialect)."""
    session = get_session()
    # Put back whole (bounded): cut at the limit, a refused name would come back valid.
    form = {k: request.form.get(k, "")[:ECHO_MAX] for k in ("name", "url_env", "dialect")}
    try:
        source = register_source(session, request.form, actor=acting_user())
    except ValidationFailed as exc:
        session.rollback()
        return _sources_page(form, exc.errors, 422)
    session.commit()
    flash(f"Data source {source.name} registered.", "success")
    return redirect(url_for("warehouse.sources"), code=303)


# ------------------------------------------------------------- queries: shared


def _query_page(experiment: Experiment | None, *, form: dict | None = None,
                errors: dict | None = None, status: int = 200):
    session = get_session()
    query = query_of(session, experiment) if experiment else the_ledger_query(session)
    if form is None:
        form = {"source_id": str(query.source_id) if query else "",
                "sql_text": query.sql_text if query else "",
                "schedule": query.schedule if query else "manual",
                "version": str(query.version) if query else ""}
    elif status == 409:
        # The typed text stays and the current query is shown beside it; saving again
        # then replaces the query the actor has seen (the stale version would 409 forever).
        form = {**form, "version": str(query.version) if query else ""}
    return render_page_or_partial(
        "warehouse/query.html", "warehouse/_status.html", status=status,
        experiment=experiment, query=query, sources=list_sources(session),
        schedules=SCHEDULES, form=form, errors=errors or {}, conflict=status == 409,
        refresh_open=experiment is None or experiment.status in UPLOAD_STATUSES)


def _save(experiment: Experiment | None):
    session = get_session()
    form = {k: request.form.get(k, "") for k in ("source_id", "sql_text", "schedule", "version")}
    # A blank version: the form was opened when there was no query (0, see save_query).
    version = parse_id(form["version"]) if form["version"].strip() else 0
    if version is None:  # not "no check" (None): a garbled form must not overwrite blindly
        return _query_page(experiment, form=form, errors={
            "": "This form's version is not readable; reload the page and save again."},
            status=422)
    try:
        save_query(session, request.form, actor=acting_user(), experiment=experiment,
                   version=version)
    except ValidationFailed as exc:
        session.rollback()
        return _query_page(experiment, form=form, errors=exc.errors, status=422)
    except Conflict as exc:
        session.rollback()
        return _query_page(experiment, form=form, errors={"": str(exc)}, status=409)
    session.commit()
    flash("Query saved. Refresh to read the warehouse now.", "success")
    return redirect(_here(experiment), code=303)


def _refresh(experiment: Experiment | None):
    from webapp.results.uploads import get_jobs

    session = get_session()
    query = query_of(session, experiment) if experiment else the_ledger_query(session)
    if query is None:
        return _query_page(experiment, errors={"": "Save a query before refreshing."},
                           status=422)
    if experiment is not None and experiment.status not in UPLOAD_STATUSES:
        return _query_page(experiment, errors={
            "": f"This experiment is {experiment.status}: data can be read while it is "
                "running or stopped."}, status=422)
    mark_queued(session, query)
    session.commit()
    user = acting_user()
    get_jobs().enqueue_warehouse_refresh(query.id, user.id if user else None)
    session.expire_all()
    if request.headers.get("HX-Request"):
        return _query_page(experiment)
    flash("Refresh started; its outcome shows below.", "success")
    return redirect(_here(experiment), code=303)


def _here(experiment: Experiment | None) -> str:
    if experiment is None:
        return url_for("warehouse.ledger_query")
    return url_for("warehouse.experiment_query", key=experiment.key)


def _experiment(key: str, needed: str) -> Experiment:
    session = get_session()
    user = acting_user()
    experiment = get_experiment(session, user, key)
    access.require(session, user, experiment.team_id, needed)
    return experiment


# --------------------------------------------------------- an experiment's query


@bp.get("/experiments/<key>/warehouse")
@allow("analyst")
def experiment_query(key: str):
    """The experiment's warehouse query, its schedule and last refresh."""
    return _query_page(_experiment(key, "analyst"))


@bp.post("/experiments/<key>/warehouse")
@allow("analyst")
def save_experiment_query(key: str):
    """Save the experiment's query (compare-and-set on its version)."""
    return _save(_experiment(key, "analyst"))


@bp.post("/experiments/<key>/warehouse/refresh")
@allow("analyst")
def refresh_experiment(key: str):
    """Queue a refresh: the warehouse sums become a new dataset version."""
    return _refresh(_experiment(key, "analyst"))


# ----------------------------------------------------------------- the ledger's


@bp.get("/ledger/warehouse")
@allow("analyst", scope="global")
def ledger_query():
    """The revenue ledger's warehouse query."""
    return _query_page(None)


@bp.post("/ledger/warehouse")
@allow("analyst", scope="global")
def save_ledger_query():
    """Save the ledger's query."""
    return _save(None)


@bp.post("/ledger/warehouse/refresh")
@allow("analyst", scope="global")
def refresh_ledger():
    """Queue a refresh: the query's rows become the next ledger version."""
    return _refresh(None)
