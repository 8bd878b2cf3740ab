"""The account's personal API tokens: make one (shown once), list them, revoke one.

| method | URL                                   | role   | view   |
|--------|---------------------------------------|--------|--------|
| GET    | /account/tokens                       | viewer | index  |
| POST   | /account/tokens                       | viewer | create |
| POST   | /account/tokens/<int:token_id>/revoke | viewer | revoke |
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, request, url_for

from experiments.api_models import TOKEN_SCOPES
from experiments.api_tokens import (
    DEFAULT_EXPIRY_DAYS,
    MAX_EXPIRY_DAYS,
    NAME_MAX,
    IssuedToken,
    create_token,
    list_tokens,
    revoke_token,
    token_state,
)
from experiments.errors import ValidationFailed
from webapp.db import get_session
from webapp.rendering import render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("tokens", __name__, url_prefix="/account/tokens")


def _page(*, issued: IssuedToken | None = None, errors: dict[str, str] | None = None,
          values: dict[str, str] | None = None, status: int = 200):
    return render_page_or_partial(
        "account/tokens.html", "account/_tokens.html", status=status,
        tokens=list_tokens(get_session(), acting_user()), token_state=token_state,
        issued=issued, errors=errors or {}, values=values or {}, scopes=TOKEN_SCOPES,
        default_days=DEFAULT_EXPIRY_DAYS, max_days=MAX_EXPIRY_DAYS, name_max=NAME_MAX)


@bp.get("")
@allow("viewer")
def index():
    """The user's tokens and the form for a new one."""
    return _page()


@bp.post("")
@allow("viewer")
def create():
    """Make a token; its secret is on this answer only (never stored, never redirected)."""
    session = get_session()
    values = {name: request.form.get(name, "") for name in ("name", "scope", "expires_in_days")}
    try:
        issued = create_token(session, values, actor=acting_user())
    except ValidationFailed as exc:
        session.rollback()
        return _page(errors=exc.errors, values=values, status=422)
    session.commit()
    return _page(issued=issued, status=201)


@bp.post("/<int:token_id>/revoke")
@allow("viewer")
def revoke(token_id: int):
    """Revoke one of the user's tokens (another user's is 404)."""
    session = get_session()
    token = revoke_token(session, token_id, actor=acting_user())
    session.commit()
    flash(f"Token “{token.name}” ({token.prefix}…) is revoked; it no longer works.", "success")
    return redirect(url_for("tokens.index"), code=303)
