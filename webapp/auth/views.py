"""Sign in and out, and change one's own password."""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)

from experiments.errors import ValidationFailed
from experiments.input_rules import EMAIL_MAX, FieldErrors, read_password, read_text
from experiments.users import (
    PASSWORD_MAX_LENGTH,
    PASSWORD_MIN_LENGTH,
    SignInGate,
    SignInLimits,
    admit_sign_in,
    authenticate,
    change_password,
    give_back_attempt,
    must_change_password,
    record_login,
    record_login_failure,
    sign_out,
)
from webapp.audit_hooks import client_ip
from webapp.db import get_session
from webapp.security import acting_user, allow, public, start_session

bp = Blueprint("auth", __name__)
log = logging.getLogger("nrrlab.auth")

LOGIN_FAILED = "That email and password do not match an active account."
TOO_MANY = "Too many failed sign-ins. Wait 15 minutes and try again."


def _safe_next(target: str | None, default: str | None = None) -> str:
    # Only same-site paths: an absolute, scheme-relative or backslash URL (browsers
    # read "/\evil.example" as "//evil.example") would be an open redirect.
    if (target and target.startswith("/") and not target.startswith("//") and "\\" not in target
            and not any(ord(c) < 32 for c in target) and not urlsplit(target).netloc):
        # "/?" (an empty query, as older links carry) leaves a stray "?" in the address
        return target.rstrip("?") or "/"
    return default or url_for("dashboard.index")


def _limits() -> SignInLimits:
    config, defaults = current_app.config, SignInLimits()
    return SignInLimits(
        window=config["LOGIN_FAILURE_WINDOW"],
        pair_limit=config["LOGIN_FAILURE_LIMIT"],
        account_limit=config.get("LOGIN_ACCOUNT_FAILURE_LIMIT", defaults.account_limit),
        address_slow_after=config.get("LOGIN_ADDRESS_SLOW_AFTER", defaults.address_slow_after),
        address_delay_max=config.get("LOGIN_ADDRESS_DELAY_MAX", defaults.address_delay_max),
    )


def _admit(email: str) -> SignInGate:
    """Count this attempt (committed at once, before the slow hash) and slow a noisy address."""
    db = get_session()
    gate = admit_sign_in(db, email=email, ip=client_ip(), limits=_limits())
    db.commit()
    if gate.allowed and gate.delay:
        time.sleep(gate.delay)
    elif not gate.allowed:
        log.warning("sign-in refused (429) from %s", client_ip())
    return gate


def _login_page(error: str | None, status: int, next_path: str):
    page = render_template("auth/login.html", next=next_path, error=error)
    response = make_response(page, status)
    if status == 429:
        window = current_app.config["LOGIN_FAILURE_WINDOW"]
        response.headers["Retry-After"] = str(int(window.total_seconds()))
    return response


def _next_path(data) -> str:
    """The page to return to after signing in ('' when unusable; ``_safe_next`` decides)."""
    scratch = FieldErrors()
    value = read_text(data, "next", scratch, max_length=500)
    return "" if scratch else value


@bp.route("/login", methods=["GET", "POST"])
@public
def login():
    """The sign-in form."""
    if request.method == "GET":
        return _login_page(None, 200, _next_path(request.args))
    db = get_session()
    errors = FieldErrors()
    # Read as text, not as an email: whatever was typed is what the failure is counted on.
    email = read_text(request.form, "email", errors, max_length=EMAIL_MAX)
    password = read_password(request.form, "password", errors)
    next_path = _next_path(request.form)
    if errors:
        # Nothing that could match an account (a control character, an overlong
        # address): the usual answer, without touching the database.
        return _login_page(LOGIN_FAILED, 422, next_path)
    if not _admit(email).allowed:
        return _login_page(TOO_MANY, 429, next_path)
    user = authenticate(db, email, password)
    if user is None:
        record_login_failure(db, email=email, ip=client_ip(), limits=_limits())
        db.commit()
        log.warning("sign-in failed from %s", client_ip())
        # One answer for an unknown email, a wrong password and a disabled account.
        return _login_page(LOGIN_FAILED, 401, next_path)
    give_back_attempt(db, email=email, ip=client_ip())
    record_login(db, user, ip=client_ip())
    db.commit()
    start_session(user)
    log.info("user %s signed in from %s", user.id, client_ip())
    if must_change_password(user):
        flash("You signed in with a temporary password. Choose your own to continue.", "warning")
        return redirect(url_for("auth.password"), code=303)
    # Everyone but admins lands on their own week (issue 17 item 3), also instead of an
    # unusable next.
    landing = url_for("dashboard.index") if user.role == "admin" else url_for("me.index")
    return redirect(_safe_next(next_path, landing), code=303)


@bp.route("/logout", methods=["POST"])
@allow("viewer")
def logout():
    """Sign out everywhere this session's version was valid."""
    db = get_session()
    sign_out(db, acting_user(), ip=client_ip())
    db.commit()
    session.clear()
    return redirect(url_for("auth.login"), code=303)


def _password_page(errors: dict[str, str], status: int):
    return render_template("auth/password.html", errors=errors, min_length=PASSWORD_MIN_LENGTH,
                           max_length=PASSWORD_MAX_LENGTH,
                           forced=must_change_password(acting_user())), status


@bp.route("/account/password", methods=["GET"])
@allow("viewer")
def password():
    """The change-password form."""
    return _password_page({}, 200)


@bp.route("/account/password", methods=["POST"], endpoint="change_password")
@allow("viewer")
def change_password_view():
    """Change one's own password: needs the current one; other sessions end, this one stays."""
    db = get_session()
    user = acting_user()
    errors = FieldErrors()
    typed = {name: read_password(request.form, name, errors)
             for name in ("current_password", "new_password", "confirmation")}
    if errors:
        return _password_page(errors, 422)
    if not _admit(user.email).allowed:
        return _password_page({"current_password": TOO_MANY}, 429)
    try:
        change_password(db, user, **typed)
    except ValidationFailed as exc:
        db.rollback()
        if "current_password" in exc.errors:
            # A wrong current password counts as a failed sign-in: a stolen session
            # must not become an unlimited password oracle.
            record_login_failure(db, email=user.email, ip=client_ip(), limits=_limits())
        else:
            give_back_attempt(db, email=user.email, ip=client_ip())
        db.commit()
        return _password_page(exc.errors, 422)
    give_back_attempt(db, email=user.email, ip=client_ip())
    db.commit()
    start_session(user, login_at=session.get("login_at"))
    flash("Your password was changed. Other sessions were signed out.", "success")
    return redirect(url_for("dashboard.index"), code=303)
