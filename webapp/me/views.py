"""My week: one person's branches, experiments, open actions and owed decisions.

| method | URL  | role   | view  |
|--------|------|--------|-------|
| GET    | /me  | viewer | index |
"""

from __future__ import annotations

from flask import Blueprint, render_template

from experiments.my_week import my_week
from webapp.db import get_session
from webapp.page_cache import cached_page
from webapp.security import acting_user, allow

bp = Blueprint("me", __name__, url_prefix="/me")


@bp.route("")
@allow("viewer")
@cached_page
def index():
    """My week (the landing page after sign-in for everyone but admins)."""
    return render_template("me/index.html", mine=my_week(get_session(), acting_user()))
