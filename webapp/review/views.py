"""The weekly review meeting.

| method | URL                                   | role                     | view         |
|--------|---------------------------------------|--------------------------|--------------|
| GET    | /review/                              | viewer                   | current      |
| GET    | /review/<week>?from=&to=&branch=&page=&all= | viewer             | week         |
| GET    | /review/<week>/items/<int:item_id>    | viewer in the team       | item         |
| POST   | /review/<week>/items/<int:item_id>    | experimenter in the team | update_item  |
"""

from __future__ import annotations

from flask import Blueprint, redirect, request, url_for

from experiments.errors import Conflict, ValidationFailed
from experiments.exports import when
from experiments.review import build_review, current_week, get_item
from experiments.review import update_item as save_item
from experiments.versioning import StaleVersion
from webapp.audit_hooks import client_ip
from webapp.db import get_session
from webapp.page_cache import cached_page
from webapp.rendering import is_htmx, render_page_or_partial
from webapp.security import acting_user, allow

#: Rows each section of the review lists before its "Show all" link (``?all=1``).
SECTION_ROWS = 25

bp = Blueprint("review", __name__, url_prefix="/review")
bp.add_app_template_filter(when, "utc_when")


@bp.route("/")
@allow("viewer")
def current():
    """Redirect to this ISO week's review."""
    return redirect(url_for("review.week", week=current_week().label))


@bp.route("/<week>")
@allow("viewer")
@cached_page
def week(week: str):
    """One week's review (or a date range's, or one branch's)."""
    session = get_session()
    status, errors = 200, {}
    try:
        review = build_review(
            session,
            acting_user(),
            week,
            branch_id=request.args.get("branch"),
            date_from=request.args.get("from"),
            date_to=request.args.get("to"),
            agenda_page=request.args.get("page") or 1,
            keep_rows=True,  # nothing written yet in this request
        )
    except ValidationFailed as exc:
        # Bad filters: the plain week, with the messages beside the filter fields.
        session.rollback()
        status, errors = 422, exc.errors
        review = build_review(session, acting_user(), week, agenda_page=1, keep_rows=True)
    session.commit()  # opening a week freezes what the meeting saw
    return render_page_or_partial(
        "review/week.html",
        "review/_review.html",
        status=status,
        review=review,
        show_all=request.args.get("all") == "1",
        section_rows=SECTION_ROWS,
        filter_errors=errors,
        filter_values=request.args,
    )


@bp.route("/<week>/items/<int:item_id>")
@allow("viewer")
def item(week: str, item_id: int):
    """One agenda item on a page of its own (its form when the user may edit it)."""
    view = get_item(get_session(), acting_user(), week, item_id)
    return render_page_or_partial("review/item.html", "review/_item.html", view=view, week=week)


@bp.route("/<week>/items/<int:item_id>", methods=["POST"])
@allow("experimenter")
def update_item(week: str, item_id: int):
    """Save one item's note, action and decision."""
    session = get_session()
    user = acting_user()
    try:
        view = save_item(session, user, week, item_id, request.form, ip=client_ip())
    except StaleVersion as exc:
        # The experiment changed (decided or reopened elsewhere): the input is kept, on the
        # current versions, as the message says.
        session.rollback()
        kept = {k: v for k, v in request.form.items()
                if k not in ("version", "experiment_version", "csrf_token")}
        return _item_response(week, item_id, status=409, message=str(exc), values=kept)
    except Conflict as exc:
        session.rollback()
        return _item_response(week, item_id, status=409, message=str(exc))
    except ValidationFailed as exc:
        session.rollback()
        return _item_response(
            week, item_id, status=422, errors=exc.errors, values=request.form.to_dict()
        )
    session.commit()
    if not is_htmx():
        return redirect(url_for("review.week", week=week, _anchor=f"item-{view.key}"), code=303)
    view.message = "Saved."
    return render_page_or_partial("review/item.html", "review/_item.html", view=view, week=week)


def _item_response(
    week: str,
    item_id: int,
    *,
    status: int,
    message: str | None = None,
    errors: dict | None = None,
    values: dict | None = None,
):
    view = get_item(get_session(), acting_user(), week, item_id)
    view.message = message
    view.message_kind = "error"
    view.errors = errors or {}
    view.values = values
    return render_page_or_partial(
        "review/item.html", "review/_item.html", status=status, view=view, week=week
    )
