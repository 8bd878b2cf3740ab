"""The NRR driver tree, edited inline.

Every form opens inside the tree (a GET that renders the tree with that form
open) and posts back; success answers 303 to the tree, which htmx follows and
swaps as the ``#tree`` fragment, and a browser without JavaScript loads as a page.

| method | URL                          | role         | view        |
|--------|------------------------------|--------------|-------------|
| GET    | /tree/                       | viewer       | index       |
| GET    | /tree/<id>/edit              | experimenter | edit        |
| POST   | /tree/<id>                   | experimenter | update      |
| GET    | /tree/<id>/children/new      | experimenter | new_child   |
| POST   | /tree/<id>/children          | experimenter | create      |
| GET    | /tree/<id>/move              | experimenter | move_form   |
| POST   | /tree/<id>/move              | experimenter | move        |
| GET    | /tree/<id>/delete            | experimenter | delete_form |
| POST   | /tree/<id>/delete            | experimenter | delete      |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, redirect, request, url_for

from experiments.errors import ValidationFailed
from experiments.models import NODE_STATUSES
from experiments.tree import (
    EDITABLE_KINDS,
    NODE_FIELDS,
    create_node,
    delete_node,
    get_node,
    move_node,
    tree_page,
    update_node,
)
from experiments.versioning import StaleVersion
from webapp.db import get_session
from webapp.experiments.forms import conflict_response, shown_errors
from webapp.rendering import render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("tree", __name__, url_prefix="/tree")


def _tree(
    mode: str | None = None,
    node_id: int | None = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
):
    """The tree page (or its fragment) with at most one form open, at ``node_id``."""
    page = tree_page(get_session(), acting_user(), mode, node_id)
    panel: dict[str, Any] = {
        "mode": mode,
        "node_id": node_id,
        "values": values or {},
        "errors": errors or {},
        "kinds": EDITABLE_KINDS,
        "statuses": NODE_STATUSES,
        "teams": page.teams,
        "owners": page.owners,
        "targets": page.targets,
        "impact": page.impact,
        "parent_id": page.parent_id,
    }
    return render_page_or_partial(
        "tree/index.html", "tree/_tree.html", status=status, roots=page.roots, panel=panel
    )


def _save(mode: str, node_id: int, change: Callable[[], Any], back_to: Callable[[], int | None]):
    """Run one service change: 303 back to the tree, or the form again with the input kept.

    A refused field answers 422; a save made on a stale version answers 409 with
    the input on the current version (or the conflict page when the node is gone).
    """
    session = get_session()
    try:
        change()
    except ValidationFailed as exc:
        session.rollback()
        return _tree(mode, node_id, request.form.to_dict(), shown_errors(exc.errors), 422)
    except StaleVersion as exc:
        session.rollback()
        if exc.current is None:
            return conflict_response(exc)
        values = {**request.form.to_dict(), "version": exc.current}
        return _tree(mode, node_id, values, {"": str(exc)}, 409)
    session.commit()
    return _back_to(back_to())


def _node_values(node) -> dict[str, Any]:
    return {**{name: getattr(node, name) for name in NODE_FIELDS}, "version": node.version}


def _back_to(node_id: int | None):
    anchor = f"node-{node_id}" if node_id else None
    return redirect(url_for("tree.index", _anchor=anchor), code=303)


@bp.route("/")
@allow("viewer")
def index():
    """The whole tree."""
    return _tree()


@bp.route("/<int:node_id>/edit")
@allow("experimenter")
def edit(node_id: int):
    """The tree with the edit form open at a node."""
    node = get_node(get_session(), acting_user(), node_id, "experimenter")
    return _tree("edit", node_id, _node_values(node))


@bp.route("/<int:node_id>", methods=["POST"])
@allow("experimenter")
def update(node_id: int):
    """Save a node's fields."""
    # A form without a version is refused (422), never taken as "the latest".
    data = {**request.form.to_dict(), "version": request.form.get("version", "")}
    return _save(
        "edit",
        node_id,
        lambda: update_node(get_session(), node_id, data, actor=acting_user()),
        lambda: node_id,
    )


@bp.route("/<int:node_id>/children/new")
@allow("experimenter")
def new_child(node_id: int):
    """The tree with an add-child form open under a node."""
    user = acting_user()
    parent = get_node(get_session(), user, node_id, "viewer")
    values = {"kind": "driver", "team_id": parent.team_id, "owner_id": user.id, "status": "active"}
    return _tree("add", node_id, values)


@bp.route("/<int:node_id>/children", methods=["POST"])
@allow("experimenter")
def create(node_id: int):
    """Add a child node."""
    session = get_session()
    try:
        node = create_node(
            session, {**request.form.to_dict(), "parent_id": node_id}, actor=acting_user()
        )
    except ValidationFailed as exc:
        session.rollback()
        return _tree("add", node_id, request.form.to_dict(), exc.errors, 422)
    session.commit()
    return _back_to(node.id)


@bp.route("/<int:node_id>/move")
@allow("experimenter")
def move_form(node_id: int):
    """The tree with a move form open at a node."""
    node = get_node(get_session(), acting_user(), node_id, "experimenter")
    return _tree("move", node_id, {"parent_id": node.parent_id, "version": node.version})


@bp.route("/<int:node_id>/move", methods=["POST"])
@allow("experimenter")
def move(node_id: int):
    """Re-parent a node with its branch."""
    return _save(
        "move",
        node_id,
        lambda: move_node(
            get_session(),
            node_id,
            request.form.get("parent_id"),
            actor=acting_user(),
            expected_version=request.form.get("version", ""),
        ),
        lambda: node_id,
    )


@bp.route("/<int:node_id>/delete")
@allow("experimenter")
def delete_form(node_id: int):
    """The tree with the delete question open at a node."""
    node = get_node(get_session(), acting_user(), node_id, "experimenter")
    return _tree("delete", node_id, {"policy": "reparent", "version": node.version})


@bp.route("/<int:node_id>/delete", methods=["POST"])
@allow("experimenter")
def delete(node_id: int):
    """Delete a node, re-parenting or refusing as chosen."""
    node = get_node(get_session(), acting_user(), node_id, "experimenter")
    parent_id = node.parent_id
    return _save(
        "delete",
        node_id,
        lambda: delete_node(
            get_session(),
            node_id,
            actor=acting_user(),
            policy=request.form.get("policy", "reparent"),
            target_id=request.form.get("target_id") or None,
            expected_version=request.form.get("version", ""),
        ),
        lambda: parent_id,
    )
