"""The landing page: the tree at a glance, live experiments, alerts and pending decisions."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, render_template

from experiments.dashboard import dashboard
from webapp.db import get_session
from webapp.page_cache import cached_page
from webapp.security import acting_user, allow

bp = Blueprint("dashboard", __name__)


@bp.route("/")
@allow("viewer")
@cached_page
def index():
    """Dashboard."""
    # Nothing is written before the rows are read: the rows kept per process may serve.
    view = dashboard(get_session(), acting_user(), today=datetime.now(UTC).date(),
                     keep_rows=True)
    return render_template("dashboard/index.html", view=view)
