"""Customer journeys and their ordered stages.

Every form posts back and answers 303 to the list (htmx follows it and swaps the
``#journeys`` fragment); a refused change re-renders the list with the message
beside the failing form, 422.

| method | URL                              | role         | view         |
|--------|----------------------------------|--------------|--------------|
| GET    | /journeys/                       | viewer       | index        |
| POST   | /journeys/                       | experimenter | create       |
| POST   | /journeys/<id>                   | experimenter | update       |
| POST   | /journeys/<id>/stages            | experimenter | add_stage    |
| POST   | /journeys/stages/<id>            | experimenter | rename_stage |
| POST   | /journeys/stages/<id>/move       | experimenter | move_stage   |
| POST   | /journeys/stages/<id>/delete     | experimenter | delete_stage |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, redirect, request, url_for

from experiments import journeys as service
from experiments.errors import ValidationFailed
from experiments.versioning import StaleVersion
from webapp.db import get_session
from webapp.experiments.forms import conflict_response, shown_errors
from webapp.page_cache import cached_page
from webapp.rendering import render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("journeys", __name__, url_prefix="/journeys")


def _page(failed: dict[str, Any] | None = None, status: int = 200):
    page = service.journeys_page(get_session(), acting_user())
    return render_page_or_partial(
        "journeys/index.html",
        "journeys/_journeys.html",
        status=status,
        journeys=page.journeys,
        can_edit=page.can_edit,
        failed=failed or {"form": None, "values": {}, "errors": {}},
    )


def _form() -> dict[str, Any]:
    """The posted form; a form without a version is refused (422), never taken as "the latest"."""
    return {**request.form.to_dict(), "version": request.form.get("version", "")}


def _save(form_id: str, change: Callable[[], Any], anchor: str | None = None):
    """Run one service change; commit and 303 back, or re-render with its messages (422/409)."""
    session = get_session()
    try:
        change()
    except ValidationFailed as exc:
        session.rollback()
        return _page(
            {"form": form_id, "values": request.form.to_dict(), "errors": shown_errors(exc.errors)},
            422,
        )
    except StaleVersion as exc:
        # 409 with the input kept, now on the current version (saving again overwrites).
        session.rollback()
        if exc.current is None:
            return conflict_response(exc)
        values = {**request.form.to_dict(), "version": exc.current}
        return _page({"form": form_id, "values": values, "errors": {"": str(exc)}}, 409)
    session.commit()
    return redirect(url_for("journeys.index", _anchor=anchor), code=303)


@bp.route("/")
@allow("viewer")
@cached_page
def index():
    """Every journey with its stages."""
    return _page()


@bp.route("/", methods=["POST"])
@allow("experimenter")
def create():
    """Add a journey."""
    return _save(
        "journey-new",
        lambda: service.create_journey(get_session(), request.form, actor=acting_user()),
    )


@bp.route("/<int:journey_id>", methods=["POST"])
@allow("experimenter")
def update(journey_id: int):
    """Rename a journey or edit its description."""
    return _save(
        f"journey-{journey_id}",
        lambda: service.update_journey(get_session(), journey_id, _form(), actor=acting_user()),
        f"journey-{journey_id}",
    )


@bp.route("/<int:journey_id>/stages", methods=["POST"])
@allow("experimenter")
def add_stage(journey_id: int):
    """Append a stage."""
    return _save(
        f"stage-new-{journey_id}",
        lambda: service.add_stage(get_session(), journey_id, request.form, actor=acting_user()),
        f"journey-{journey_id}",
    )


@bp.route("/stages/<int:stage_id>", methods=["POST"])
@allow("experimenter")
def rename_stage(stage_id: int):
    """Rename a stage."""
    return _save(
        f"stage-{stage_id}",
        lambda: service.rename_stage(get_session(), stage_id, _form(), actor=acting_user()),
        f"stage-{stage_id}",
    )


@bp.route("/stages/<int:stage_id>/move", methods=["POST"])
@allow("experimenter")
def move_stage(stage_id: int):
    """Move a stage one place up or down."""
    return _save(
        f"stage-{stage_id}",
        lambda: service.move_stage(
            get_session(),
            stage_id,
            request.form.get("direction"),
            actor=acting_user(),
            expected_version=request.form.get("version", ""),
        ),
        f"stage-{stage_id}",
    )


@bp.route("/stages/<int:stage_id>/delete", methods=["POST"])
@allow("experimenter")
def delete_stage(stage_id: int):
    """Delete a stage no experiment targets."""
    return _save(
        f"stage-{stage_id}",
        lambda: service.delete_stage(
            get_session(),
            stage_id,
            actor=acting_user(),
            expected_version=request.form.get("version", ""),
        ),
    )
