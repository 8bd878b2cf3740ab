"""Administration: the audit log."""

from __future__ import annotations

from flask import Blueprint, render_template

from experiments.audit import list_events
from webapp.db import get_session
from webapp.security import allow

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.route("/audit")
@allow("admin")
def audit():
    """Browse the audit log."""
    return render_template("admin/audit.html", events=list_events(get_session()))
