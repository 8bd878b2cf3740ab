"""Liveness and readiness for load balancers."""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from webapp.db import get_session
from webapp.security import public

bp = Blueprint("health", __name__)


@bp.route("/healthz")
@public
def index():
    """200 when the database answers, 503 when it does not."""
    try:
        get_session().exec(text("SELECT 1"))
    except SQLAlchemyError:
        return jsonify(status="unavailable", database="unreachable"), 503
    return jsonify(status="ok", database="ok")
