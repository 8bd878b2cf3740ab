"""Sign in and out."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import Blueprint, abort, current_app, redirect, render_template, request, session, url_for
from flask_login import login_user, logout_user

from experiments.models import utcnow
from experiments.users import authenticate, end_all_sessions, recent_login_failures, record_login_failure
from webapp.audit_hooks import client_ip
from webapp.db import get_session
from webapp.security import SessionUser, acting_user, allow, public

bp = Blueprint("auth", __name__)


def _safe_next(target: str | None) -> str:
    # Only same-site paths: an absolute or scheme-relative URL would be an open redirect.
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    """The sign-in form."""
    if request.method == "GET":
        return render_template("auth/login.html", next=request.args.get("next", ""), error=None)
    db = get_session()
    email = request.form.get("email", "")[:254]
    password = request.form.get("password", "")[:1024]
    ip = client_ip()
    since = utcnow() - current_app.config["LOGIN_FAILURE_WINDOW"]
    by_email, by_ip = recent_login_failures(db, email=email, ip=ip, since=since)
    limit = current_app.config["LOGIN_FAILURE_LIMIT"]
    if by_email >= limit or by_ip >= limit:
        abort(429, "Too many failed sign-ins. Wait 15 minutes and try again.")
    user = authenticate(db, email, password)
    if user is None:
        record_login_failure(db, email=email, ip=ip)
        db.commit()
        # One answer for an unknown email and a wrong password.
        return render_template("auth/login.html", next=request.form.get("next", ""),
                               error="That email and password do not match an active account."), 401
    db.commit()
    session.clear()  # a fresh session at every sign-in: nothing set before it survives
    login_user(SessionUser(user))
    now = datetime.now(UTC).timestamp()
    session["login_at"] = now
    session["seen_at"] = now
    session["sid"] = secrets.token_urlsafe(16)
    return redirect(_safe_next(request.form.get("next")), code=303)


@bp.route("/logout", methods=["POST"])
@allow("viewer")
def logout():
    """Sign out everywhere this session's version was valid."""
    user = acting_user()
    db = get_session()
    if user is not None:
        end_all_sessions(db, user)
        db.commit()
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"), code=303)
