"""Actions raised in the weekly review, carried until closed (on the review blueprint).

| method | URL                                           | role            | view          |
|--------|-----------------------------------------------|-----------------|---------------|
| POST   | /review/<week>/actions                        | experimenter    | create_action |
| POST   | /review/<week>/actions/<int:action_id>        | experimenter    | update_action |
| POST   | /review/<week>/actions/<int:action_id>/status | experimenter    | action_status |

The role is checked again in the action's team (its experiment's).
"""

from __future__ import annotations

from flask import redirect, request, url_for

from experiments.actions import (
    action_form_choices,
    get_action,
    raise_action,
    set_action_status,
    week_actions,
    week_experiment_names,
)
from experiments.actions import update_action as save_action
from experiments.errors import Conflict, ValidationFailed
from webapp.audit_hooks import client_ip
from webapp.db import get_session
from webapp.rendering import is_htmx, render_page_or_partial
from webapp.review.views import bp
from webapp.security import acting_user, allow


@bp.route("/<week>/actions", methods=["POST"])
@allow("experimenter")
def create_action(week: str):
    """Raise an action in this week's meeting."""
    session = get_session()
    user = acting_user()
    try:
        raise_action(session, user, week, request.form, ip=client_ip())
    except ValidationFailed as exc:
        session.rollback()
        return _actions_response(week, status=422, errors=exc.errors,
                                 values=request.form.to_dict())
    session.commit()
    if not is_htmx():
        return redirect(url_for("review.week", week=week, _anchor="actions"), code=303)
    return _actions_response(week, status=200, message="Action added.")


@bp.route("/<week>/actions/<int:action_id>", methods=["POST"])
@allow("experimenter")
def update_action(week: str, action_id: int):
    """Change an action's title, owner or due date."""
    return _save(week, action_id, save_action)


@bp.route("/<week>/actions/<int:action_id>/status", methods=["POST"])
@allow("experimenter")
def action_status(week: str, action_id: int):
    """Close (done or dropped) or reopen an action."""
    return _save(week, action_id, set_action_status)


def _save(week: str, action_id: int, service):
    session = get_session()
    user = acting_user()
    try:
        view = service(session, user, week, action_id, request.form, ip=client_ip())
    except Conflict as exc:
        session.rollback()
        return _action_response(week, action_id, status=409, message=str(exc),
                                values=request.form.to_dict())
    except ValidationFailed as exc:
        session.rollback()
        return _action_response(week, action_id, status=422, errors=exc.errors,
                                values=request.form.to_dict())
    session.commit()
    if not is_htmx():
        return redirect(url_for("review.week", week=week, _anchor=f"action-{action_id}"),
                        code=303)
    view.message = {"open": "Reopened.", "done": "Closed as done.",
                    "dropped": "Dropped."}.get(view.state, "Saved.") \
        if request.endpoint == "review.action_status" else "Saved."
    shown = [v for v in week_actions(session, user, week) if v.state == "open"]
    return render_page_or_partial("review/action.html", "review/_action.html", view=view,
                                  week=week,
                                  counts=(len(shown), sum(v.overdue for v in shown)))


def _action_response(week: str, action_id: int, *, status: int, message: str | None = None,
                     errors: dict | None = None, values: dict | None = None):
    view = get_action(get_session(), acting_user(), action_id, week)
    view.message = message
    view.message_kind = "error"
    view.errors = errors or {}
    # After a conflict the stored action is shown (the newer version), with the message.
    view.values = None if status == 409 else values
    return render_page_or_partial("review/action.html", "review/_action.html", status=status,
                                  view=view, week=week)


def _actions_response(week: str, *, status: int, message: str | None = None,
                      errors: dict | None = None, values: dict | None = None):
    session = get_session()
    user = acting_user()
    return render_page_or_partial(
        "review/actions.html", "review/_actions.html", status=status, week=week,
        actions=week_actions(session, user, week),
        choices=action_form_choices(session, user, week_experiment_names(session, week)),
        new_errors=errors or {}, new_values=values or {}, new_message=message, editable=True)
