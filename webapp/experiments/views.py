"""The experiment registry and experiment pages."""

from __future__ import annotations

from flask import Blueprint, abort, render_template

from experiments.errors import NotFound
from experiments.registry import get_experiment, list_experiments
from webapp.db import get_session
from webapp.security import acting_user, allow

bp = Blueprint("experiments", __name__, url_prefix="/experiments")


@bp.route("/")
@allow("viewer")
def index():
    """Experiment list."""
    return render_template("experiments/index.html", experiments=list_experiments(get_session(), acting_user()))


@bp.route("/<key>")
@allow("viewer")
def detail(key: str):
    """One experiment."""
    try:
        experiment = get_experiment(get_session(), acting_user(), key)
    except NotFound:
        abort(404)
    return render_template("experiments/detail.html", experiment=experiment)
