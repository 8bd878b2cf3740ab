"""Central error pages: full pages normally, small fragments for htmx; never a traceback."""

from __future__ import annotations

import logging

from flask import Flask, g, render_template
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

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
    500: "Something went wrong on our side. Nothing you entered was half-saved; please try again.",
}


def _render(code: int, message: str):
    template = "errors/_error.html" if is_htmx() else "errors/error.html"
    return render_template(template, code=code, message=message), code


def _rollback() -> None:
    session = g.get("db_session")
    if session is not None:
        session.rollback()


def init_errors(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        _rollback()
        return _render(400, "The form expired or was sent from elsewhere (CSRF check failed). Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        _rollback()
        code = exc.code or 500
        if code == 413:
            limit_mb = app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
            return _render(413, f"The file is larger than the upload limit of {limit_mb} MB.")
        message = exc.description if code in (403, 422, 429) and exc.description and not exc.description.startswith(("You don't", "The server")) else MESSAGES.get(code, exc.name)
        return _render(code, message)

    @app.errorhandler(Exception)
    def unexpected_error(exc: Exception):
        _rollback()
        log.exception("unhandled error")
        return _render(500, MESSAGES[500])

    @app.errorhandler(InternalServerError)
    def internal_error(exc: InternalServerError):
        _rollback()
        return _render(500, MESSAGES[500])
