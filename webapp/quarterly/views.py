"""The quarterly business review and its OKRs.

| method | URL                                                  | role         | view              |
|--------|------------------------------------------------------|--------------|-------------------|
| GET    | /quarterly/                                          | viewer       | current           |
| GET    | /quarterly/<quarter>                                 | viewer       | show              |
| GET    | /quarterly/<quarter>/export.<fmt>                    | viewer       | export            |
| POST   | /quarterly/<quarter>/objectives                      | experimenter | create_objective  |
| POST   | /quarterly/<quarter>/objectives/<id>/key-results     | experimenter | add_key_result    |
| POST   | /quarterly/<quarter>/key-results/<key_result_id>     | experimenter | update_key_result |

Edits check the role again in the objective's team; another team's objective is 404.
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from experiments.errors import Conflict, ValidationFailed
from experiments.quarterly import (
    add_key_result as save_new_key_result,
)
from experiments.quarterly import (
    build_quarterly,
    current_quarter,
    get_key_result,
)
from experiments.quarterly import (
    create_objective as save_objective,
)
from experiments.quarterly import (
    update_key_result as save_key_result,
)
from experiments.quarterly_export import export_quarterly
from webapp.audit_hooks import client_ip
from webapp.db import get_session
from webapp.downloads import file_response
from webapp.page_cache import cached_page
from webapp.security import acting_user, allow

bp = Blueprint("quarterly", __name__, url_prefix="/quarterly")


@bp.route("/")
@allow("viewer")
def current():
    """Redirect to this quarter's review."""
    return redirect(url_for("quarterly.show", quarter=current_quarter().label))


@bp.route("/<quarter>")
@allow("viewer")
@cached_page
def show(quarter: str):
    """One quarter's business review."""
    return _page(quarter)


@bp.route("/<quarter>/export.<fmt>")
@allow("viewer")
def export(quarter: str, fmt: str):
    """Download the quarter's review."""
    session = get_session()
    found = export_quarterly(session, acting_user(), quarter, fmt, ip=client_ip())
    session.commit()
    return file_response(found)


@bp.route("/<quarter>/objectives", methods=["POST"])
@allow("experimenter")
def create_objective(quarter: str):
    """Add an objective to the quarter."""
    session = get_session()
    try:
        objective = save_objective(session, acting_user(), quarter, request.form, ip=client_ip())
    except ValidationFailed as exc:
        session.rollback()
        return _page(quarter, status=422, form="objective", errors=exc.errors)
    session.commit()
    return redirect(url_for("quarterly.show", quarter=quarter,
                            _anchor=f"objective-{objective.id}"), code=303)


@bp.route("/<quarter>/objectives/<int:objective_id>/key-results", methods=["POST"])
@allow("experimenter")
def add_key_result(quarter: str, objective_id: int):
    """Add a key result to an objective."""
    session = get_session()
    try:
        save_new_key_result(session, acting_user(), objective_id, request.form, ip=client_ip(),
                            quarter=quarter)
    except ValidationFailed as exc:
        session.rollback()
        return _page(quarter, status=422, form=f"new-kr-{objective_id}", errors=exc.errors)
    session.commit()
    return redirect(url_for("quarterly.show", quarter=quarter,
                            _anchor=f"objective-{objective_id}"), code=303)


@bp.route("/<quarter>/key-results/<int:key_result_id>", methods=["POST"])
@allow("experimenter")
def update_key_result(quarter: str, key_result_id: int):
    """Change a key result's target, actual, node or owner."""
    session = get_session()
    user = acting_user()
    try:
        save_key_result(session, user, key_result_id, request.form, ip=client_ip(),
                        quarter=quarter)
    except Conflict as exc:
        session.rollback()
        get_key_result(session, user, key_result_id)
        return _page(quarter, status=409, form=f"kr-{key_result_id}", message=str(exc),
                     keep_values=False)
    except ValidationFailed as exc:
        session.rollback()
        return _page(quarter, status=422, form=f"kr-{key_result_id}", errors=exc.errors)
    session.commit()
    return redirect(url_for("quarterly.show", quarter=quarter, _anchor=f"kr-{key_result_id}"),
                    code=303)


def _page(quarter: str, *, status: int = 200, form: str | None = None,
          errors: dict | None = None, message: str | None = None, keep_values: bool = True):
    qbr = build_quarterly(get_session(), acting_user(), quarter)
    return render_template("quarterly/show.html", qbr=qbr, form=form, errors=errors or {},
                           message=message,
                           values=request.form.to_dict() if keep_values else {}), status
