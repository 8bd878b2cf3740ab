"""The JSON API (``/api/v1``, token-authenticated) and the account's API tokens page."""

from __future__ import annotations

from flask import Flask

from webapp.api.tokens_views import bp as tokens_bp
from webapp.api.views import bp
from webapp.security import csrf


def init_app(app: Flask) -> None:
    """Register the API and the tokens page. The API is exempt from CSRF: it is
    authenticated only by the ``Authorization`` header, never by the session cookie, so a
    foreign page has no credential to ride on (see ``webapp.api.auth``)."""
    csrf.exempt(bp)
    app.register_blueprint(bp)
    app.register_blueprint(tokens_bp)
