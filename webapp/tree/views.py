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

from typing import Any

from flask import Blueprint, redirect, request, url_for

from experiments.errors import ValidationFailed
from experiments.models import NODE_STATUSES
from experiments.form_choices import owner_choices, team_choices
from experiments.tree import (
    EDITABLE_KINDS,
    NODE_FIELDS,
    create_node,
    delete_impact,
    delete_node,
    get_node,
    load_tree,
    move_node,
    node_choices,
    update_node,
)
from webapp.db import get_session
from webapp.rendering import render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("tree", __name__, url_prefix="/tree")


def _tree(mode: str | None = None, node_id: int | None = None, values: dict[str, Any] | None = None,
          errors: dict[str, str] | None = None, status: int = 200):
    """The tree page (or its fragment) with at most one form open, at ``node_id``."""
    session = get_session()
    user = acting_user()
    panel: dict[str, Any] = {"mode": mode, "node_id": node_id, "values": values or {}, "errors": errors or {},
                             "kinds": EDITABLE_KINDS, "statuses": NODE_STATUSES}
    if mode in ("edit", "add"):
        panel["teams"] = team_choices(session, user, needed="experimenter")
        panel["owners"] = owner_choices(session)
    if mode == "move":
        panel["targets"] = node_choices(session, user, exclude_branch_of=node_id)
    if mode == "delete":
        node = get_node(session, user, node_id, "experimenter")
        panel["impact"] = delete_impact(session, node)
        panel["targets"] = node_choices(session, user, exclude_branch_of=node_id)
        panel["parent_id"] = node.parent_id
    return render_page_or_partial("tree/index.html", "tree/_tree.html", status=status,
                                  roots=load_tree(session, user), panel=panel)


def _node_values(node) -> dict[str, Any]:
    return {name: getattr(node, name) for name in NODE_FIELDS}


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
    session = get_session()
    try:
        update_node(session, node_id, request.form, actor=acting_user())
    except ValidationFailed as exc:
        session.rollback()
        return _tree("edit", node_id, request.form.to_dict(), exc.errors, 422)
    session.commit()
    return _back_to(node_id)


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
        node = create_node(session, {**request.form.to_dict(), "parent_id": node_id}, actor=acting_user())
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
    return _tree("move", node_id, {"parent_id": node.parent_id})


@bp.route("/<int:node_id>/move", methods=["POST"])
@allow("experimenter")
def move(node_id: int):
    """Re-parent a node with its branch."""
    session = get_session()
    try:
        move_node(session, node_id, request.form.get("parent_id"), actor=acting_user())
    except ValidationFailed as exc:
        session.rollback()
        return _tree("move", node_id, request.form.to_dict(), exc.errors, 422)
    session.commit()
    return _back_to(node_id)


@bp.route("/<int:node_id>/delete")
@allow("experimenter")
def delete_form(node_id: int):
    """The tree with the delete question open at a node."""
    return _tree("delete", node_id, {"policy": "reparent"})


@bp.route("/<int:node_id>/delete", methods=["POST"])
@allow("experimenter")
def delete(node_id: int):
    """Delete a node, re-parenting or refusing as chosen."""
    session = get_session()
    node = get_node(session, acting_user(), node_id, "experimenter")
    parent_id = node.parent_id
    try:
        delete_node(session, node_id, actor=acting_user(), policy=request.form.get("policy", "reparent"),
                    target_id=request.form.get("target_id") or None)
    except ValidationFailed as exc:
        session.rollback()
        return _tree("delete", node_id, request.form.to_dict(), exc.errors, 422)
    session.commit()
    return _back_to(parent_id)
