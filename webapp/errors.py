"""Central error pages: full pages normally, small fragments for htmx; never a traceback.

This is the one denial path: views let the domain's ``NotFound``/``PermissionDenied``
propagate and the handlers here answer 404/403 and record ``authz.denied`` (bounded, see
``experiments.denials``), as they do for a failed CSRF check. A database that does not
answer is a 503 with ``Retry-After``, not a 500.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, g, render_template, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, InternalServerError

from experiments.db import is_retryable
from experiments.denials import record_denial
from experiments.errors import NotFound, PermissionDenied
from webapp.db import BUSY_MESSAGE, BUSY_RETRY_AFTER_SECONDS, get_session
from webapp.problems import problem, wants_problem
from webapp.rendering import is_htmx

log = logging.getLogger("nrrlab")

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have permission to do that.",
    404: "There is nothing here.",
    405: "That action is not allowed here.",
    413: "The file is too large.",
    422: "Some of what you entered needs a second look.",
    429: "Too many attempts. Wait a few minutes and try again.",
    500: "Something went wrong on our side. Nothing you entered was half-saved; "
         "please try again.",
    503: "The database is unreachable right now, so nothing could be read or saved. "
         "Try again in a minute.",
}
CSRF_MESSAGE = ("The form expired or was sent from elsewhere (CSRF check failed). "
                "Reload the page and try again.")
#: Seconds a client is asked to wait when the database does not answer.
RETRY_AFTER_SECONDS = 30
_DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)


def _render(code: int, message: str):
    if wants_problem():  # the JSON API answers every error as application/problem+json
        return problem(code, message)
    template = "errors/_error.html" if is_htmx() else "errors/error.html"
    return render_template(template, code=code, message=message), code


def _rollback() -> None:
    session = g.get("db_session")
    if session is not None:
        try:
            session.rollback()
        except SQLAlchemyError:
            log.warning("rollback failed while answering an error", exc_info=True)


def _signed_in_user():
    if wants_problem():  # an API request: its token's user (if any), never the cookie's
        return g.get("api_user")
    try:
        return current_user.user if current_user and current_user.is_authenticated else None
    except SQLAlchemyError:
        return None


def record_denied(reason: str, *, user=None) -> None:
    """Record this refused request as ``authz.denied``, in its own transaction.

    The request's own work is rolled back first (it is being refused). At most one row
    per client and path a minute, and a bounded number per client, are written; an
    audit write that fails is logged and never turns the refusal into a 500.
    """
    session = get_session()
    try:
        session.rollback()
        record_denial(session, actor=user if user is not None else _signed_in_user(),
                      ip=request.remote_addr or "", path=request.path,
                      endpoint=request.endpoint or "", reason=reason)
        session.commit()
    except SQLAlchemyError:
        log.warning("could not record a denied request", exc_info=True)
        _rollback()


def _capitalised(exc: Exception) -> str:
    text = str(exc)
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else MESSAGES[403]


def _busy(exc: BaseException) -> bool:
    # A lost race (PostgreSQL) or a held write lock (SQLite): the database is there.
    return is_retryable(exc) or "database is locked" in str(getattr(exc, "orig", ""))


def _database_unavailable(exc: BaseException | None = None):
    """The 503 page, rendered without the signed-in user (loading them needs the database)."""
    busy = exc is not None and _busy(exc)
    message, retry_after = (BUSY_MESSAGE, BUSY_RETRY_AFTER_SECONDS) if busy else (
        MESSAGES[503], RETRY_AFTER_SECONDS)
    if wants_problem():
        return problem(503, message, headers={"Retry-After": str(retry_after)})
    template = "errors/_error.html" if is_htmx() else "errors/error.html"
    body = current_app.jinja_env.get_template(template).render(code=503, message=message)
    response = current_app.response_class(body, status=503, mimetype="text/html")
    response.headers["Retry-After"] = str(retry_after)
    response.headers["Vary"] = "HX-Request"
    return response


def init_errors(app: Flask) -> None:
    @app.errorhandler(NotFound)
    def not_found(exc: NotFound):
        # Another team's object answers exactly as a missing one; both are recorded.
        record_denied(str(exc)[:200] or "not found or not visible")
        return _render(404, MESSAGES[404])

    @app.errorhandler(PermissionDenied)
    def permission_denied(exc: PermissionDenied):
        record_denied(str(exc)[:200] or "permission denied")
        return _render(403, _capitalised(exc))

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        record_denied(f"CSRF check failed: {exc.description}"[:200])
        return _render(400, CSRF_MESSAGE)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        _rollback()
        code = exc.code or 500
        if code == 413:
            limit_mb = app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
            return _render(413, f"The file is larger than the upload limit of {limit_mb} MB.")
        own = exc.description and not exc.description.startswith(("You don't", "The server"))
        if code in (403, 422, 429) and own:
            return _render(code, exc.description)
        message = MESSAGES.get(code, exc.name)
        return _render(code, message)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def database_down(exc: SQLAlchemyError):
        _rollback()
        log.error("database unavailable: %s", type(exc).__name__)
        return _database_unavailable(exc)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        _rollback()
        log.exception("unhandled error")
        return _render(500, MESSAGES[500])

    @app.errorhandler(InternalServerError)
    def internal_error(exc: InternalServerError):
        _rollback()
        original = getattr(exc, "original_exception", None)
        if isinstance(original, _DATABASE_DOWN):
            return _database_unavailable(original)
        return _render(500, MESSAGES[500])
