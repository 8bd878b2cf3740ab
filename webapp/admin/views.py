"""Administration: users, teams and team roles, and the audit log (global admins only).

URL table (every route ``@allow("admin", scope="global")``):

=======  ===================================  ==============================================
GET      /admin/                              redirect to the users page
GET      /admin/users                         users and the invite form
POST     /admin/users                         invite: create with a temporary password
GET      /admin/users/<user_id>               one user: name, role, teams, status
POST     /admin/users/<user_id>               change name and global role
POST     /admin/users/<user_id>/disable       disable (ends their sessions)
POST     /admin/users/<user_id>/enable        enable again
POST     /admin/users/<user_id>/password      reset to a new temporary password
GET      /admin/teams                         teams and the create form
POST     /admin/teams                         create a team
GET      /admin/teams/<team_id>               one team: name, members
POST     /admin/teams/<team_id>               rename
POST     /admin/teams/<team_id>/members       add, change or remove a member's team role
GET      /admin/audit                         the audit log, filtered and paged
GET      /admin/audit.csv                     the filtered audit log as CSV
=======  ===================================  ==============================================

A temporary password is rendered once in the answer to the POST that made it (with
``Cache-Control: no-store``) rather than after a redirect: it must not travel in a
URL or sit in the signed-but-readable session cookie.
"""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from experiments.audit import (
    NO_ADDRESS_REASON,
    events_csv,
    parse_filter,
    record_audit_export,
    search_events,
)
from experiments.errors import Conflict, ValidationFailed
from experiments.input_rules import (
    NAME_MAX,
    FieldErrors,
    read_choice,
    read_email,
    read_id,
    read_slug,
    read_text,
)
from experiments.models import ROLES
from experiments.users import (
    create_team,
    disable_user,
    enable_user,
    get_team,
    get_user,
    invite_user,
    list_teams,
    list_users,
    reset_password,
    set_member_role,
    team_detail,
    update_team,
    update_user,
    user_detail,
)
from webapp.audit_hooks import client_ip
from webapp.db import get_session
from webapp.rendering import render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _kept(*names: str) -> dict[str, str]:
    """What was typed, to put back in a form answered with 422 (cut to a sane length)."""
    return {name: request.form.get(name, "")[:1000] for name in names}


def _users_page(form: dict[str, str], errors: dict[str, str], status: int = 200):
    return render_template("admin/users.html", users=list_users(get_session()), roles=ROLES,
                           form=form, errors=errors), status


@bp.route("/")
@allow("admin", scope="global")
def index():
    """Administration home: the users page."""
    return redirect(url_for("admin.users"))


@bp.route("/users", methods=["GET"])
@allow("admin", scope="global")
def users():
    """Users and the invite form."""
    return _users_page({"role": "viewer"}, {})


@bp.route("/users", methods=["POST"])
@allow("admin", scope="global")
def invite():
    """Invite a user: they get a temporary password, shown once, to change at first sign-in."""
    db = get_session()
    form, errors = _kept("email", "name", "role"), FieldErrors()
    email = read_email(request.form, "email", errors)
    name = read_text(request.form, "name", errors, max_length=NAME_MAX)
    role = read_choice(request.form, "role", errors, ROLES)
    try:
        errors.raise_if_any()
        user, password = invite_user(db, email=email, name=name, role=role, actor=acting_user())
    except ValidationFailed as exc:
        db.rollback()
        return _users_page(form, exc.errors, 422)
    db.commit()
    return render_template("admin/temporary_password.html", user=user, password=password,
                           invited=True), 201


def _user_page(user_id: int, form: dict[str, str] | None, errors: dict[str, str],
               status: int = 200):
    detail = user_detail(get_session(), user_id)
    form = form or {"name": detail.user.name, "role": detail.user.role}
    return render_template("admin/user.html", detail=detail, roles=ROLES, form=form,
                           errors=errors), status


@bp.route("/users/<int:user_id>", methods=["GET"])
@allow("admin", scope="global")
def user(user_id: int):
    """One user."""
    return _user_page(user_id, None, {})


@bp.route("/users/<int:user_id>", methods=["POST"])
@allow("admin", scope="global")
def update(user_id: int):
    """Change a user's name and global role."""
    db = get_session()
    target = get_user(db, user_id)
    form, errors = _kept("name", "role"), FieldErrors()
    name = read_text(request.form, "name", errors, max_length=NAME_MAX)
    role = read_choice(request.form, "role", errors, ROLES)
    try:
        errors.raise_if_any()
        update_user(db, target, name=name, role=role, actor=acting_user())
    except ValidationFailed as exc:
        db.rollback()
        return _user_page(user_id, form, exc.errors, 422)
    except Conflict as exc:
        db.rollback()
        return _user_page(user_id, form, {"role": str(exc)}, 422)
    db.commit()
    flash(f"Saved {target.email}.", "success")
    return redirect(url_for("admin.user", user_id=user_id), code=303)


def _status_change(user_id: int, change, done: str):
    db = get_session()
    target = get_user(db, user_id)
    try:
        change(db, target, actor=acting_user())
    except Conflict as exc:
        db.rollback()
        return _user_page(user_id, None, {"status": str(exc)}, 422)
    db.commit()
    flash(f"{target.email} {done}.", "success")
    return redirect(url_for("admin.user", user_id=user_id), code=303)


@bp.route("/users/<int:user_id>/disable", methods=["POST"])
@allow("admin", scope="global")
def disable(user_id: int):
    """Disable a user and end their sessions."""
    return _status_change(user_id, disable_user, "is disabled and signed out everywhere")


@bp.route("/users/<int:user_id>/enable", methods=["POST"])
@allow("admin", scope="global")
def enable(user_id: int):
    """Enable a disabled user."""
    return _status_change(user_id, enable_user, "can sign in again")


@bp.route("/users/<int:user_id>/password", methods=["POST"])
@allow("admin", scope="global")
def reset(user_id: int):
    """Give a user a new temporary password (shown once) and end their sessions."""
    db = get_session()
    target = get_user(db, user_id)
    password = reset_password(db, target, actor=acting_user())
    db.commit()
    return render_template("admin/temporary_password.html", user=target, password=password,
                           invited=False)


def _teams_page(form: dict[str, str], errors: dict[str, str], status: int = 200):
    return render_template("admin/teams.html", teams=list_teams(get_session()), form=form,
                           errors=errors), status


@bp.route("/teams", methods=["GET"])
@allow("admin", scope="global")
def teams():
    """Teams and the create form."""
    return _teams_page({}, {})


@bp.route("/teams", methods=["POST"], endpoint="create_team")
@allow("admin", scope="global")
def create_team_view():
    """Create a team."""
    db = get_session()
    form, errors = _kept("slug", "name"), FieldErrors()
    slug = read_slug(request.form, "slug", errors)
    name = read_text(request.form, "name", errors, max_length=NAME_MAX, required=True)
    try:
        errors.raise_if_any()
        team = create_team(db, slug=slug, name=name, actor=acting_user())
    except ValidationFailed as exc:
        db.rollback()
        return _teams_page(form, exc.errors, 422)
    db.commit()
    flash(f"Team {team.name} created. Add its members below.", "success")
    return redirect(url_for("admin.team", team_id=team.id), code=303)


def _team_page(team_id: int, form: dict[str, str] | None, errors: dict[str, str],
               status: int = 200):
    detail = team_detail(get_session(), team_id)
    form = form or {"name": detail.team.name, "role": "viewer"}
    return render_template("admin/team.html", detail=detail, roles=ROLES, form=form,
                           errors=errors), status


@bp.route("/teams/<int:team_id>", methods=["GET"])
@allow("admin", scope="global")
def team(team_id: int):
    """One team and its members."""
    return _team_page(team_id, None, {})


@bp.route("/teams/<int:team_id>", methods=["POST"], endpoint="update_team")
@allow("admin", scope="global")
def update_team_view(team_id: int):
    """Rename a team."""
    db = get_session()
    target = get_team(db, team_id)
    form, errors = _kept("name"), FieldErrors()
    name = read_text(request.form, "name", errors, max_length=NAME_MAX, required=True)
    try:
        errors.raise_if_any()
        update_team(db, target, name=name, actor=acting_user())
    except ValidationFailed as exc:
        db.rollback()
        return _team_page(team_id, {**form, "role": "viewer"}, exc.errors, 422)
    db.commit()
    flash("Team renamed.", "success")
    return redirect(url_for("admin.team", team_id=team_id), code=303)


@bp.route("/teams/<int:team_id>/members", methods=["POST"])
@allow("admin", scope="global")
def member(team_id: int):
    """Add a member to a team, change their team role, or remove them (empty role)."""
    db = get_session()
    target = get_team(db, team_id)
    errors = FieldErrors()
    member_id = read_id(request.form, "user_id", errors, required=True, what="user")
    if "user_id" in errors:
        errors["user_id"] = "choose a user from the list"
    role = read_choice(request.form, "role", errors, ROLES, default="")
    return_to = read_choice(request.form, "return_to", errors, ("user", "team"), default="team")
    try:
        errors.raise_if_any()
        changed = set_member_role(db, target, user_id=str(member_id), role=role or "",
                                  actor=acting_user())
    except ValidationFailed as exc:
        db.rollback()
        return _team_page(team_id, None, exc.errors, 422)
    db.commit()
    flash(f"Team role of {changed.email} in {target.name} saved.", "success")
    if return_to == "user":
        return redirect(url_for("admin.user", user_id=changed.id), code=303)
    return redirect(url_for("admin.team", team_id=team_id), code=303)


@bp.route("/audit")
@allow("admin", scope="global")
def audit():
    """Browse the audit log: filters in the query string, so every view is bookmarkable."""
    try:
        filters, page = parse_filter(request.args)
    except ValidationFailed as exc:
        kept = {k: v[:254] for k, v in request.args.items() if k != "page"}
        return render_page_or_partial("admin/audit.html", "admin/_audit_results.html", status=422,
                                      result=None, errors=exc.errors, params=kept)
    result = search_events(get_session(), filters, page=page)
    return render_page_or_partial("admin/audit.html", "admin/_audit_results.html", result=result,
                                  params=filters.as_params(), errors={},
                                  no_address_reason=NO_ADDRESS_REASON)


@bp.route("/audit.csv")
@allow("admin", scope="global")
def audit_csv():
    """The filtered audit log as CSV (spreadsheet formulas neutralised); the export is audited."""
    try:
        filters, _ = parse_filter(request.args)
    except ValidationFailed as exc:
        abort(422, "; ".join(f"{k}: {v}" for k, v in exc.errors.items()))
    db = get_session()
    record_audit_export(db, filters, actor=acting_user(), ip=client_ip())
    db.commit()

    def lines():
        # The request's own session is closed when the view returns; the stream gets a
        # new one (from get_session inside the re-pushed context), closed when it ends.
        yield from events_csv(get_session(), filters)

    response = Response(stream_with_context(lines()), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="nrrlab-audit.csv"'
    return response
