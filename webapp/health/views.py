"""Liveness and readiness for load balancers.

| method | URL      | role   | view  |
|--------|----------|--------|-------|
| GET    | /healthz | public | index |
| GET    | /readyz  | public | ready |
"""

from __future__ import annotations

from flask import Blueprint, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from experiments.migrate import schema_revision_state
from webapp.db import get_engine, get_session
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


@bp.route("/readyz")
@public
def ready():
    """200 when the database answers and its schema is at the migrations' head, else 503."""
    try:
        state = schema_revision_state(get_engine())
    except SQLAlchemyError:
        return jsonify(status="unavailable", database="unreachable",
                       reason="the database does not answer"), 503
    if not state.at_head:
        return jsonify(status="unavailable", database="ok", reason=state.reason,
                       current=list(state.current), head=list(state.head)), 503
    return jsonify(status="ok", database="ok", migrations="at head", head=list(state.head))
