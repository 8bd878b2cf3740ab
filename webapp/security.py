"""Authentication, the per-route permission declaration, CSRF and security headers.

Every endpoint declares who may call it with :func:`allow` (a minimum role) or
:func:`public`; ``create_app`` refuses to start when one does not, so a new route
can never be born unprotected.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from flask import Flask, Response, abort, current_app, redirect, request, session, url_for
from flask_login import LoginManager, current_user, logout_user
from flask_wtf.csrf import CSRFProtect
from sqlmodel import select

from experiments.models import ROLES, TeamMembership, User
from experiments.users import role_rank
from webapp.db import get_session

F = TypeVar("F", bound=Callable)
PERMISSION_ATTR = "nrrlab_permission"
PUBLIC = "public"

csrf = CSRFProtect()
login_manager = LoginManager()

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def allow(role: str) -> Callable[[F], F]:
    """Declare the least role (global or in any team) a signed-in user needs for this view."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; expected one of {ROLES}")

    def mark(view: F) -> F:
        setattr(view, PERMISSION_ATTR, role)
        return view

    return mark


def public(view: F) -> F:
    """Declare a view that needs no sign-in (login page, health check)."""
    setattr(view, PERMISSION_ATTR, PUBLIC)
    return view


def declared_permission(app: Flask, endpoint: str) -> str | None:
    view = app.view_functions.get(endpoint)
    return getattr(view, PERMISSION_ATTR, None)


def check_route_declarations(app: Flask) -> None:
    missing = [e for e in app.view_functions if e != "static" and declared_permission(app, e) is None]
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


def _load_user(token: str) -> SessionUser | None:
    user_id, _, version = token.partition(":")
    if not user_id.isdigit() or not version.isdigit():
        return None
    user = get_session().get(User, int(user_id))
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
    roles = [user.role]
    roles += list(get_session().exec(select(TeamMembership.role).where(TeamMembership.user_id == user.id)).all())
    return max(roles, key=role_rank)


def _now() -> float:
    return datetime.now(UTC).timestamp()


def _enforce_permissions() -> Response | None:
    endpoint = request.endpoint
    if endpoint is None or endpoint == "static":
        return None
    needed = declared_permission(current_app, endpoint)
    if needed == PUBLIC:
        return None
    user = acting_user()
    if user is not None:
        now = _now()
        started = session.get("login_at", 0)
        seen = session.get("seen_at", 0)
        if (now - started > current_app.config["ABSOLUTE_TIMEOUT"].total_seconds()
                or now - seen > current_app.config["IDLE_TIMEOUT"].total_seconds()):
            logout_user()
            session.clear()
            user = None
        else:
            session["seen_at"] = now
    if user is None:
        target = url_for("auth.login", next=request.full_path if request.method == "GET" else None)
        if request.headers.get("HX-Request"):
            response = Response(status=401)
            response.headers["HX-Redirect"] = target
            return response
        return redirect(target)
    if role_rank(highest_role(user)) < role_rank(needed):
        from webapp.audit_hooks import record_denied

        record_denied(user, f"needs {needed}")
        abort(403)
    return None


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if current_app.config.get("HSTS"):
        response.headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if request.endpoint != "static":
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def init_security(app: Flask) -> None:
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.user_loader(_load_user)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = None  # rotation is done at login; see auth.login
    app.before_request(_enforce_permissions)
    app.after_request(_security_headers)
