"""The NRR driver tree, edited inline.

Every form opens inside the tree (a GET that renders the tree with that form
open) and posts back. A saved edit or a new child answers an htmx request with the
one branch it changed (``#node-<id>``, swapped in place so the page does not move)
and a "Saved" status on the node; every other success answers 303 to the tree,
which htmx follows and swaps as the ``#tree`` fragment. A browser without JavaScript
always gets the 303 and loads the tree as a page, with the same status on the node.
A refused form re-renders the whole ``#tree`` (``HX-Retarget``) with the form open.

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
| GET    | /tree/<id>/actuals           | owner/exp.   | actual_form |
| POST   | /tree/<id>/actuals           | owner/exp.   | add_actual  |

A node tied to a ledger metric shows its actuals from the revenue ledger; any other
node's editors enter dated actuals of its leading metric inline (``add_actual``; the
same form with a date that has a value and its version changes that value). That form is
drawn on demand: the node shows an "Enter an actual" link whose htmx GET swaps the form
in (``actual_form``); without JavaScript the link opens the tree with the form open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, g, make_response, redirect, render_template, request, url_for

from experiments.errors import ValidationFailed
from experiments.models import NODE_STATUSES
from experiments.tree import (
    EDITABLE_KINDS,
    NODE_FIELDS,
    create_node,
    delete_node,
    enter_actual,
    get_node,
    move_node,
    tree_page,
    update_node,
)
from experiments.tree_actuals import METRIC_LABELS
from experiments.versioning import StaleVersion
from webapp.db import get_session
from webapp.experiments.forms import conflict_response, shown_errors
from webapp.page_cache import cached_page
from webapp.rendering import is_htmx, render_page_or_partial
from webapp.security import acting_user, allow

bp = Blueprint("tree", __name__, url_prefix="/tree")

#: An id no node has: where a node's id goes in an endpoint's URL built once (node_url).
_MARK = 918_273_645_546


@bp.app_template_global()
def node_url(endpoint: str, node_id: int) -> str:
    """``url_for(endpoint, node_id=node_id)``, with ``url_for`` run once per endpoint and
    request around a marker id and each node's id put in its place: a 500-node tree draws
    ~3,500 node links, and ``url_for`` costs 10-30 µs each."""
    built: dict[str, list[str]] = g.setdefault("tree_node_urls", {})
    parts = built.get(endpoint)
    if parts is None:
        parts = built[endpoint] = url_for(endpoint, node_id=_MARK).split(str(_MARK))
    if len(parts) != 2:  # the marker is not where the id goes: build this one in full
        return url_for(endpoint, node_id=node_id)
    return f"{parts[0]}{int(node_id)}{parts[1]}"


def _tree(
    mode: str | None = None,
    node_id: int | None = None,
    values: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
    saved_id: int | None = None,
):
    """The tree page (or its fragment) with at most one form open, at ``node_id``.

    An htmx request answered with a refused form (4xx) swaps the whole tree, whatever
    the form targeted, so that the message above the tree is seen.
    """
    page = tree_page(get_session(), acting_user(), mode, node_id)
    panel: dict[str, Any] = {
        "mode": mode,
        "node_id": node_id,
        "values": values or {},
        "errors": errors or {},
        "kinds": EDITABLE_KINDS,
        "statuses": NODE_STATUSES,
        "metrics": METRIC_LABELS,
        "teams": page.teams,
        "owners": page.owners,
        "targets": page.targets,
        "impact": page.impact,
        "parent_id": page.parent_id,
        "saved_id": saved_id,
    }
    response = render_page_or_partial(
        "tree/index.html", "tree/_tree.html", status=status, roots=page.roots, panel=panel
    )
    if status >= 400 and is_htmx():
        response.headers["HX-Retarget"] = "#tree"
        response.headers["HX-Reswap"] = "outerHTML"
    return response


def _find(items: list, node_id: int):
    for item in items:
        if item.node.id == node_id:
            return item
        found = _find(item.children, node_id)
        if found is not None:
            return found
    return None


def _saved(branch_id: int | None, saved_id: int):
    """After a save: the htmx swap of the changed branch, or 303 to the tree.

    ``branch_id`` is the node whose ``<li>`` is re-rendered (the saved node itself, or
    the parent of a new child); ``saved_id`` carries the "Saved" status.
    """
    if not is_htmx() or branch_id is None:
        return redirect(url_for("tree.index", saved=saved_id, _anchor=f"node-{saved_id}"),
                        code=303)
    page = tree_page(get_session(), acting_user())
    item = _find(page.roots, branch_id)
    if item is None:  # no longer visible to this user (its team changed): the whole tree
        return _tree(saved_id=saved_id)
    panel = {"mode": None, "node_id": None, "values": {}, "errors": {}, "saved_id": saved_id}
    return make_response(render_template("tree/_branch.html", item=item, panel=panel))


def _save(
    mode: str,
    node_id: int,
    change: Callable[[], Any],
    back_to: Callable[[], int | None],
    *,
    in_place: bool = False,
):
    """Run one service change: back to the tree (``in_place``: the node's branch swapped
    with a "Saved" status), or the form again with the input kept.

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
    if in_place:
        return _saved(node_id, node_id)
    return _back_to(back_to())


def _node_values(node) -> dict[str, Any]:
    return {**{name: getattr(node, name) for name in NODE_FIELDS}, "version": node.version}


def _back_to(node_id: int | None):
    anchor = f"node-{node_id}" if node_id else None
    return redirect(url_for("tree.index", _anchor=anchor), code=303)


@bp.route("/")
@allow("viewer")
@cached_page
def index():
    """The whole tree (``?saved=<id>``: the node just saved, marked "Saved")."""
    saved = request.args.get("saved", "")
    return _tree(saved_id=int(saved) if saved.isdigit() and len(saved) < 12 else None)


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
        in_place=True,
    )


@bp.route("/<int:node_id>/children/new")
@allow("experimenter")
def new_child(node_id: int):
    """The tree with an add-child form open under a node."""
    user = acting_user()
    parent = get_node(get_session(), user, node_id, "viewer")
    # a lever directly under the root (NRR), a driver below a lever
    kind = "lever" if parent.parent_id is None else "driver"
    values = {"kind": kind, "team_id": parent.team_id, "owner_id": user.id, "status": "active"}
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
    return _saved(node_id, node.id)


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


@bp.route("/<int:node_id>/actuals")
@allow("viewer")  # the node's owner may; the form is offered only to whom add_actual allows
def actual_form(node_id: int):
    """One node's "enter an actual" form, drawn on demand (a 500-node tree drew 500 of
    them on every view): for htmx the form alone, swapped in place of the node's "Enter an
    actual" link; without JavaScript the tree with that form open."""
    get_node(get_session(), acting_user(), node_id, "viewer")  # another team's: 404
    if not is_htmx():
        return _tree("actual", node_id)
    item = _find(tree_page(get_session(), acting_user()).roots, node_id)
    if item is None or item.actuals is None or item.actuals.source != "entered" \
            or not (item.editable or item.owned):
        return make_response("This node takes no actuals from you.", 404)
    panel = {"mode": "actual", "node_id": node_id, "values": {}, "errors": {}}
    return make_response(render_template("tree/_actual.html", item=item, panel=panel))


@bp.route("/<int:node_id>/actuals", methods=["POST"])
@allow("viewer")  # the node's owner may; enter_actual checks the rest
def add_actual(node_id: int):
    """Enter (or change) a dated actual of the node's leading metric."""
    return _save(
        "actual",
        node_id,
        lambda: enter_actual(get_session(), node_id, request.form.to_dict(), actor=acting_user()),
        lambda: node_id,
        in_place=True,
    )
