"""Report downloads: one experiment or one review week, in every export format.

| method | URL                                                   | role   | view       |
|--------|-------------------------------------------------------|--------|------------|
| GET    | /experiments/<key>/export.<fmt>                       | viewer | experiment |
| GET    | /review/<week>/export.<fmt>?from=&to=&branch=         | viewer | review     |

``fmt`` is one of json, csv, md, html, zip; another team's experiment answers 404.
"""

from __future__ import annotations

from flask import Blueprint, abort, request

from experiments.errors import ValidationFailed
from experiments.exports import export_experiment, export_review
from webapp.audit_hooks import client_ip
from webapp.db import get_session
from webapp.downloads import file_response
from webapp.security import acting_user, allow

bp = Blueprint("exports", __name__)


@bp.route("/experiments/<key>/export.<fmt>")
@allow("viewer")
def experiment(key: str, fmt: str):
    """Download one experiment's report."""
    session = get_session()
    export = export_experiment(session, acting_user(), key, fmt, ip=client_ip())
    session.commit()
    return file_response(export)


@bp.route("/review/<week>/export.<fmt>")
@allow("viewer")
def review(week: str, fmt: str):
    """Download one week's (or date range's, or branch's) review."""
    session = get_session()
    try:
        export = export_review(
            session,
            acting_user(),
            week,
            fmt,
            branch_id=request.args.get("branch"),
            date_from=request.args.get("from"),
            date_to=request.args.get("to"),
            ip=client_ip(),
        )
    except ValidationFailed as exc:
        session.rollback()
        abort(422, "; ".join(f"{k}: {v}" for k, v in exc.errors.items()))
    session.commit()
    return file_response(export)
