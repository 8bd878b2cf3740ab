"""Token authentication of the JSON API (``Authorization: Bearer <token>``).

Runs before every API view that is not public. The session cookie is never read: an API
request without a token is a 401 even from a signed-in browser, which is also why CSRF
protection does not apply to the API (there is no ambient credential a foreign page could
ride on; the blueprint is exempted in ``webapp.api.init_app``). The token's user acts with
their roles and teams as they are now; a ``read`` token may only read.

The token is looked up, stamped and audited in a short transaction of its own, committed
before the view opens the request's session, so a view's write lock (SQLite) is never
waited on by the bookkeeping; it leaves the data generation, and so every kept page, as
it was (``experiments.api_tokens.record_use``).

References
----------
RFC 6750, The OAuth 2.0 Authorization Framework: Bearer Token Usage, §2.1 (the header),
§3 (``WWW-Authenticate``, ``invalid_token``, ``insufficient_scope``).
"""

from __future__ import annotations

import logging
import sqlite3

import psycopg
from flask import Response, current_app, g, request
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from experiments.access import highest_role
from experiments.api_tokens import TokenRefused, authenticate, record_use
from experiments.db import write_engine
from experiments.models import User
from experiments.users import role_rank
from webapp.db import get_engine, get_session
from webapp.errors import record_denied
from webapp.problems import problem
from webapp.security import API_ROUTE, PERMISSION_ATTR

log = logging.getLogger("nrrlab.api")
REALM = 'Bearer realm="nrrlab"'


def _needed_role() -> str | None:
    view = current_app.view_functions.get(request.endpoint or "")
    permission = getattr(view, PERMISSION_ATTR, "")
    return permission[len(API_ROUTE):] if permission.startswith(API_ROUTE) else None


def _unauthenticated(detail: str, error: str | None = None) -> Response:
    # Audited as a refusal (bounded per client, like every denial); never the cookie's user.
    record_denied(f"API: {detail}"[:200], user=None)
    challenge = REALM if error is None else f'{REALM}, error="{error}"'
    return problem(401, detail, kind="unauthenticated", headers={"WWW-Authenticate": challenge})


def _forbidden(detail: str, user: User, *, scope: bool) -> Response:
    g.api_user = user
    record_denied(detail[:200], user=user)
    headers = {"WWW-Authenticate": f'{REALM}, error="insufficient_scope"'} if scope else {}
    return problem(403, detail, kind="insufficient-scope", headers=headers)


def _presented_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def authenticate_request() -> Response | None:
    """``before_request`` of the API blueprint: sets ``g.api_user`` and ``g.api_token``."""
    needed = _needed_role()
    if needed is None:  # public (the OpenAPI document, the docs page) or no such route
        return None
    presented = _presented_token()
    if presented is None:
        return _unauthenticated("This API needs a personal API token: send "
                                "'Authorization: Bearer <token>' (make one under your account, "
                                "API tokens). The site's session cookie does not work here.")
    writes = request.method not in ("GET", "HEAD", "OPTIONS")
    engine = get_engine()
    try:
        with Session(engine, expire_on_commit=False) as lookup:
            token, user = authenticate(lookup, presented)
            role = highest_role(lookup, user)
    except TokenRefused as exc:
        return _unauthenticated(f"The API token was refused: {exc.reason}.", "invalid_token")
    try:
        with Session(write_engine(engine), expire_on_commit=False) as stamp:
            record_use(stamp, stamp.get(type(token), token.id), user, method=request.method,
                       path=request.path, ip=request.remote_addr or "", writes=writes)
            stamp.commit()
    # The stamp's unseen_write check runs on the driver's cursor: its errors are the driver's.
    except (SQLAlchemyError, sqlite3.Error, psycopg.Error):
        if writes:  # a write is not done unaudited
            raise
        log.warning("could not stamp the use of API token %s", token.id, exc_info=True)
    if writes and token.scope != "write":
        return _forbidden("This token may only read (scope 'read'); make a token with scope "
                          "'write' to change things.", user, scope=True)
    if role_rank(role) < role_rank(needed):
        return _forbidden(f"This needs the {needed} role; your highest role is {role}.", user,
                          scope=False)
    # The request's own session holds the user the views act as.
    g.api_user = get_session().get(User, user.id)
    g.api_token = token
    return None


def api_user() -> User:
    """The user the API request acts as (set by :func:`authenticate_request`)."""
    return g.api_user
