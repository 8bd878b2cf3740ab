"""Authentication, the per-route permission declaration, CSRF and security headers.

Every endpoint declares who may call it with :func:`allow` (a minimum role) or
:func:`public`; ``create_app`` refuses to start when one does not, so a new route
can never be born unprotected. ``allow`` checks the highest role the user holds
anywhere; the object's own team is checked by the service that loads it (or by
:func:`visible_or_404`), whose ``NotFound``/``PermissionDenied`` reach the one denial
path in ``webapp.errors`` (the rule is documented in ``experiments/access.py``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Literal, TypeVar

from flask import Flask, Response, abort, current_app, flash, redirect, request, session, url_for
from flask_login import LoginManager, current_user, login_user, logout_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import bindparam
from sqlmodel import select
from werkzeug.middleware.proxy_fix import ProxyFix

from experiments import access
from experiments.errors import NotFound
from experiments.models import ROLES, User
from experiments.users import must_change_password, role_rank
from webapp.db import get_session
from webapp.errors import record_denied

F = TypeVar("F", bound=Callable)
PERMISSION_ATTR = "nrrlab_permission"
SCOPE_ATTR = "nrrlab_permission_scope"
PUBLIC = "public"
#: Prefix of the permission of a JSON API route (``api:<role>``): it authenticates by
#: API token in ``webapp.api``, never by the session cookie.
API_ROUTE = "api:"
Scope = Literal["any", "global"]

csrf = CSRFProtect()
login_manager = LoginManager()

# Exactly the policy of issue #4: no inline script or style, no eval, no framing, no
# plugins, forms post only here. style-src and img-src fall back to default-src 'self'.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
HSTS_VALUE = "max-age=31536000; includeSubDomains"
#: Seconds between two refreshes of the session's last-seen time (the idle timeout's clock).
SEEN_AT_RESOLUTION = 60
# A user holding a temporary password may only reach these until they choose their own.
TEMPORARY_PASSWORD_ENDPOINTS = frozenset({"auth.password", "auth.change_password", "auth.logout"})


def allow(role: str, *, scope: Scope = "any") -> Callable[[F], F]:
    """Declare the least role a signed-in user needs for this view.

    ``scope="any"`` accepts the role held globally or in any team (the view then checks
    the object's team with :func:`visible_or_404`); ``scope="global"`` needs it as the
    user's global role (administration of users, teams and the audit log).
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")
    if scope not in ("any", "global"):
        raise ValueError(f"unknown scope {scope!r}; expected 'any' or 'global'")

    def mark(view: F) -> F:
        setattr(view, PERMISSION_ATTR, role)
        setattr(view, SCOPE_ATTR, scope)
        return view

    return mark


def public(view: F) -> F:
    """Declare a view that needs no sign-in (login page, health check)."""
    setattr(view, PERMISSION_ATTR, PUBLIC)
    return view


def declared_permission(app: Flask, endpoint: str) -> str | None:
    """The role (or ``"public"``) the endpoint declared; ``None`` when it declared nothing."""
    view = app.view_functions.get(endpoint)
    return getattr(view, PERMISSION_ATTR, None)


def declared_scope(app: Flask, endpoint: str) -> Scope:
    return getattr(app.view_functions.get(endpoint), SCOPE_ATTR, "any")


def check_route_declarations(app: Flask) -> None:
    """Raises ``RuntimeError`` naming every endpoint without ``@allow``/``@public``."""
    missing = [e for e in app.view_functions
               if e != "static" and declared_permission(app, e) is None]
    if missing:
        raise RuntimeError(f"routes without a declared permission: {', '.join(sorted(missing))}")


class SessionUser:
    """The Flask-Login wrapper of a :class:`User`; its id carries the session version."""

    def __init__(self, user: User):
        self.user = user

    is_authenticated = True
    is_anonymous = False

    @property
    def is_active(self) -> bool:
        return self.user.is_active

    def get_id(self) -> str:
        return f"{self.user.id}:{self.user.session_version}"


#: The signed-in user's row, built once: every request asks, and a prebuilt statement costs
#: less than ``Session.get``'s (which builds one per call on an empty identity map).
_USER_BY_ID = select(User).where(User.id == bindparam("id"))


def _load_user(token: str) -> SessionUser | None:
    user_id, _, version = token.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = get_session().exec(_USER_BY_ID, params={"id": int(user_id)}).first()
    # A bumped session_version (logout, password change, disabling) kills every old cookie.
    if user is None or not user.is_active or user.session_version != int(version):
        return None
    return SessionUser(user)


def acting_user() -> User | None:
    """The signed-in :class:`User` of this request, or ``None``."""
    if current_user and current_user.is_authenticated:
        return current_user.user
    return None


def highest_role(user: User) -> str:
    """The highest role the user holds anywhere: global or in any team."""
    return access.highest_role(get_session(), user)


def _now() -> float:
    return datetime.now(UTC).timestamp()


def start_session(user: User, *, login_at: float | None = None) -> None:
    """Sign ``user`` in on a brand-new session (rotation: nothing set before survives).

    ``login_at`` keeps the absolute timeout of a session being re-issued (password
    change) instead of restarting it.
    """
    session.clear()
    login_user(SessionUser(user))
    now = _now()
    session["login_at"] = now if login_at is None else login_at
    session["seen_at"] = now
    session["sid"] = secrets.token_urlsafe(16)


def _session_expired() -> bool:
    now = _now()
    started = session.get("login_at", 0)
    seen = session.get("seen_at", 0)
    return (now - started > current_app.config["ABSOLUTE_TIMEOUT"].total_seconds()
            or now - seen > current_app.config["IDLE_TIMEOUT"].total_seconds())


def _send_to(target: str) -> Response:
    # htmx would swap a followed redirect into the page; HX-Redirect makes it navigate.
    if request.headers.get("HX-Request"):
        response = Response(status=401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def _to_login() -> Response:
    # request.full_path always ends in "?" (even without a query string); the home page
    # is where signing in leads anyway, so it needs no next at all.
    next_page = None
    if request.method == "GET" and request.path != "/":
        query = request.query_string.decode("latin-1")
        next_page = f"{request.path}?{query}" if query else request.path
    return _send_to(url_for("auth.login", next=next_page))


def _enforce_permissions() -> Response | None:
    endpoint = request.endpoint
    if endpoint is None or endpoint == "static":
        return None
    needed = declared_permission(current_app, endpoint)
    if needed == PUBLIC or needed.startswith(API_ROUTE):
        return None
    user = acting_user()
    if user is not None:
        if _session_expired():
            logout_user()
            session.clear()
            flash("Your session timed out. Sign in again.", "warning")
            user = None
        elif _now() - session.get("seen_at", 0) >= SEEN_AT_RESOLUTION:
            # Re-signing the cookie on every read cost each page a cookie write and a
            # Set-Cookie header; a minute's resolution is plenty for a 30-minute idle limit.
            session["seen_at"] = _now()
    if user is None:
        return _to_login()
    if must_change_password(user) and endpoint not in TEMPORARY_PASSWORD_ENDPOINTS:
        return _send_to(url_for("auth.password"))
    held = user.role if declared_scope(current_app, endpoint) == "global" else highest_role(user)
    if role_rank(held) < role_rank(needed):
        record_denied(f"needs {needed}", user=user)
        abort(403, f"This page needs the {needed} role.")
    return None


def visible_or_404(team_id: int | None, needed: str = "viewer") -> str:
    """The signed-in user's role on an object of ``team_id``.

    Raises the domain's ``NotFound`` (another team's object must look absent) or
    ``PermissionDenied`` (a role below ``needed``); the handlers in ``webapp.errors``
    answer 404/403 and record ``authz.denied``. Returns the role.
    """
    user = acting_user()
    if user is None:
        raise NotFound("nobody is signed in")
    try:
        return access.require(get_session(), user, team_id, needed)
    except NotFound as exc:  # the same answer, with the team named for the audit row
        raise NotFound(f"object of team {team_id} is not visible") from exc


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    # HSTS only means something over TLS; on plain http browsers ignore it anyway.
    if current_app.config.get("HSTS") or request.is_secure:
        response.headers.setdefault("Strict-Transport-Security", HSTS_VALUE)
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_security(app: Flask) -> None:
    hops = int(app.config.get("PROXY_HOPS", 0))
    if hops:
        # Behind a proxy the client address and scheme come from its X-Forwarded-*
        # headers, trusted for exactly that many hops (rate limits and HSTS need them).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.user_loader(_load_user)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = None  # rotation is done at login; see start_session
    app.before_request(_enforce_permissions)
    app.after_request(_security_headers)
