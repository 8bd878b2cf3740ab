"""The landing page: the tree at a glance, running experiments, alerts."""

from __future__ import annotations

from flask import Blueprint, render_template

from experiments.registry import list_experiments
from experiments.tree import load_tree
from webapp.db import get_session
from webapp.security import acting_user, allow

bp = Blueprint("dashboard", __name__)


@bp.route("/")
@allow("viewer")
def index():
    """Dashboard."""
    db = get_session()
    user = acting_user()
    return render_template("dashboard/index.html", roots=load_tree(db, user),
                           experiments=list_experiments(db, user))
