"""The sample-size planner: a GET form that answers as you type.

| method | URL        | role   | view  |
|--------|------------|--------|-------|
| GET    | /planner/  | viewer | index |
"""

from __future__ import annotations

from flask import Blueprint, request

from experiments.planning import DEFAULT_SIGMA, experiments_with_history, plan
from webapp.db import get_session
from webapp.rendering import render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("planner", __name__, url_prefix="/planner")


@bp.route("/")
@allow("viewer")
def index():
    """Planner form and its answer (the answer alone for htmx); 422 while an input is invalid."""
    session = get_session()
    user = acting_user()
    result = plan(session, user, request.args)
    return render_page_or_partial(
        "planner/index.html", "planner/_result.html", status=422 if result.errors else 200,
        result=result, sources=experiments_with_history(session, user), default_sigma=DEFAULT_SIGMA,
    )
