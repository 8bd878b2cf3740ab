"""The sample-size planner."""

from __future__ import annotations

from flask import Blueprint, render_template

from webapp.security import allow

bp = Blueprint("planner", __name__, url_prefix="/planner")


@bp.route("/")
@allow("viewer")
def index():
    """Planner form."""
    return render_template("planner/index.html")
