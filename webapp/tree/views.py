"""The NRR driver tree."""

from __future__ import annotations

from flask import Blueprint, render_template

from experiments.tree import load_tree
from webapp.db import get_session
from webapp.security import acting_user, allow

bp = Blueprint("tree", __name__, url_prefix="/tree")


@bp.route("/")
@allow("viewer")
def index():
    """The whole tree."""
    return render_template("tree/index.html", roots=load_tree(get_session(), acting_user()))
