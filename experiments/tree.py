"""The NRR driver tree: reading it with experiment roll-ups, and editing it safely.

Invariants every operation keeps: exactly one root (the NRR node, no parent);
every other node has a parent that exists; following parents from any node
reaches the root (no cycles); every experiment points at an existing node.
Deleting a node therefore either re-parents its children and experiments or is
refused, and a node is never moved into its own branch.

Every change to an existing node names the ``version`` it was made on and is one
compare-and-set (:mod:`experiments.versioning`). Changing a node's team needs the
experimenter role on both the old and the new team; making a team's node shared
(no team, visible to everyone) needs the admin role.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlmodel import Session, and_, func, select

from experiments.access import can, check_team_choice, require, team_roles, visible_team_ids
from experiments.audit import diff_fields, record_event
from experiments.errors import NotFound, ValidationFailed
from experiments.form_choices import owner_choices, owner_problem, team_choices
from experiments.input_rules import (
    LONG_TEXT_MAX,
    NAME_MAX,
    FieldErrors,
    read_choice,
    read_id,
    read_number,
    read_text,
)
from experiments.models import (
    LEDGER_METRICS,
    NODE_STATUSES,
    AnalysisSnapshot,
    DriverNode,
    Experiment,
    Team,
    User,
    utcnow,
)
from experiments.nrr_page import current_ledger
from experiments.reference_rows import all_rows
from experiments.reference_rows import by_id as rows_by_id
from experiments.tree_actuals import NodeActuals, record_actual, tree_actuals
from experiments.tree_models import DriverActual
from experiments.users import role_rank
from experiments.versioning import check_version, compare_and_set, expected_version

#: Kinds a user may give a node; ``root`` belongs to the one NRR node.
EDITABLE_KINDS: tuple[str, ...] = ("lever", "driver")
DELETE_POLICIES: tuple[str, ...] = ("reparent", "refuse")
#: The fields of a node that the edit form carries (and the audit diff compares).
NODE_FIELDS: tuple[str, ...] = (
    "name",
    "kind",
    "team_id",
    "owner_id",
    "hypothesis",
    "leading_metric",
    "baseline",
    "target",
    "status",
    "metric",
)


@dataclass
class TreeNode:
    """A node as the tree page draws it, with its experiments rolled up."""

    node: DriverNode
    children: list[TreeNode] = field(default_factory=list)
    experiment_counts: dict[str, int] = field(default_factory=dict)
    verdict_counts: dict[str, int] = field(default_factory=dict)
    owner: User | None = None
    team: Team | None = None
    editable: bool = False
    owned: bool = False  # the user owns the node (and may enter its actuals)
    actuals: NodeActuals | None = None  # filled by attach_actuals (the tree page, dashboard)

    @property
    def subtree_counts(self) -> dict[str, int]:
        """Experiments in this node's branch by status."""
        totals: Counter[str] = Counter(self.experiment_counts)
        for child in self.children:
            totals.update(child.subtree_counts)
        return dict(totals)

    @property
    def subtree_verdicts(self) -> dict[str, int]:
        """Latest verdicts of the experiments in this node's branch."""
        totals: Counter[str] = Counter(self.verdict_counts)
        for child in self.children:
            totals.update(child.subtree_verdicts)
        return dict(totals)

    def walk(self) -> Iterable[TreeNode]:
        yield self
        for child in self.children:
            yield from child.walk()


@cache  # built once: constructing this window query cost more than running it (demo)
def _experiments_with_latest_verdict():
    """``(id, node_id, status, team_id, verdict)`` of every experiment, the verdict of its
    newest snapshot that has one (``None``: none has): one statement for the roll-ups."""
    ranked = select(
        AnalysisSnapshot.experiment_id, AnalysisSnapshot.verdict,
        func.row_number().over(
            partition_by=AnalysisSnapshot.experiment_id,
            order_by=(AnalysisSnapshot.computed_at.desc(), AnalysisSnapshot.id.desc()),
        ).label("rank"),
    ).where(AnalysisSnapshot.verdict.is_not(None)).subquery()
    return select(Experiment.id, Experiment.node_id, Experiment.status, Experiment.team_id,
                  ranked.c.verdict).outerjoin(
        ranked, and_(ranked.c.experiment_id == Experiment.id, ranked.c.rank == 1))


def _visible(teams: set[int] | None, team_id: int | None) -> bool:
    return teams is None or team_id is None or team_id in teams


def load_tree(session: Session, user: User) -> list[TreeNode]:
    """The roots of the tree ``user`` may see.

    Another team's nodes are left out; a visible node whose parent is hidden hangs
    under its nearest visible ancestor, so a team's branch never floats loose.
    """
    teams = visible_team_ids(session, user)
    nodes = all_rows(session, DriverNode, DriverNode.position, DriverNode.id)
    parents = {n.id: n.parent_id for n in nodes}
    users = rows_by_id(session, User)
    team_rows = rows_by_id(session, Team)
    memberships = team_roles(session, user) if user.role != "admin" else {}

    def editable(team_id: int | None) -> bool:
        role = (
            "admin"
            if user.role == "admin"
            else (user.role if team_id is None else memberships.get(team_id))
        )
        return role_rank(role) >= role_rank("experimenter")

    by_id = {
        n.id: TreeNode(
            n,
            owner=users.get(n.owner_id),
            team=team_rows.get(n.team_id),
            editable=editable(n.team_id),
            owned=user.id is not None and n.owner_id == user.id,
        )
        for n in nodes
        if _visible(teams, n.team_id)
    }
    for _experiment_id, node_id, status, team_id, verdict in session.exec(
            _experiments_with_latest_verdict()).all():
        if node_id in by_id and _visible(teams, team_id):
            item = by_id[node_id]
            item.experiment_counts[status] = item.experiment_counts.get(status, 0) + 1
            if verdict:
                item.verdict_counts[verdict] = item.verdict_counts.get(verdict, 0) + 1
    roots: list[TreeNode] = []
    for item in by_id.values():
        parent = by_id.get(_nearest_kept_ancestor(item.node, by_id, parents))
        (parent.children if parent else roots).append(item)
    return roots


def _nearest_kept_ancestor(node: DriverNode, kept: Mapping[int, Any],
                           parents: Mapping[int, int | None]) -> int | None:
    """The id of ``node``'s nearest ancestor in ``kept`` (``None``: it is a root there)."""
    ancestor = node.parent_id
    seen: set[int] = set()
    while ancestor is not None and ancestor not in kept and ancestor not in seen:
        seen.add(ancestor)
        ancestor = parents.get(ancestor)
    return ancestor if ancestor in kept else None


def attach_actuals(session: Session, roots: list[TreeNode], figures: Any) -> list[TreeNode]:
    """Give every node of ``roots`` its actuals (``figures``: the current ledger's
    :class:`stats.ledger.LedgerFigures`, or ``None``)."""
    items = [item for root in roots for item in root.walk()]
    found = tree_actuals(session, [item.node for item in items], figures)
    for item in items:
        item.actuals = found.get(item.node.id)
    return roots


def enter_actual(session: Session, node_id: int, data: Mapping[str, Any], *,
                 actor: User) -> DriverActual:
    """Enter (or change) a dated actual of a node's leading metric: its owner may (whatever
    their role in its team), and so may anyone who edits the node (experimenter).

    Raises
    ------
    NotFound
        As :func:`get_node`.
    PermissionDenied
        Neither the node's owner nor an experimenter of its team.
    ValidationFailed, StaleVersion
        As :func:`experiments.tree_actuals.record_actual`.
    """
    node = get_node(session, actor, node_id, "viewer")
    if actor.id is None or actor.id != node.owner_id:
        require(session, actor, node.team_id, "experimenter")
    return record_actual(session, node, data, actor=actor)



def node_choices(
    session: Session, user: User, *, exclude_branch_of: int | None = None
) -> list[tuple[int, str]]:
    """``(id, indented name)`` of the visible nodes in tree order, for select lists.

    ``exclude_branch_of`` leaves out that node and everything under it (the
    places a node cannot be moved to).
    """
    # The tree's shape only (load_tree's rule for hidden parents), without its roll-ups.
    teams = visible_team_ids(session, user)
    nodes = all_rows(session, DriverNode, DriverNode.position, DriverNode.id)
    parents = {n.id: n.parent_id for n in nodes}
    kept = {n.id: n for n in nodes if _visible(teams, n.team_id)}
    children: dict[int | None, list[DriverNode]] = {}
    for node in kept.values():
        children.setdefault(_nearest_kept_ancestor(node, kept, parents), []).append(node)
    choices: list[tuple[int, str]] = []

    def visit(items: list[DriverNode], depth: int) -> None:
        for node in items:
            if node.id == exclude_branch_of:
                continue
            choices.append((node.id, "\u2003" * depth + node.name))
            visit(children.get(node.id, []), depth + 1)

    visit(children.get(None, []), 0)
    return choices


def _parent_map(session: Session) -> dict[int, int | None]:
    return dict(session.exec(select(DriverNode.id, DriverNode.parent_id)).all())


def branch_ids(session: Session, node_id: int) -> set[int]:
    """``node_id`` and every node below it (visible or not)."""
    children: dict[int | None, list[int]] = {}
    for child, parent in _parent_map(session).items():
        children.setdefault(parent, []).append(child)
    found, todo = set(), [node_id]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found.add(current)
        todo.extend(children.get(current, []))
    return found


def ancestry(session: Session, node_id: int) -> list[DriverNode]:
    """The path from the root down to ``node_id`` (inclusive)."""
    nodes = rows_by_id(session, DriverNode)  # one read, shared with the page's documents
    path: list[DriverNode] = []
    seen: set[int] = set()
    current = nodes.get(node_id)
    while current is not None and current.id not in seen:
        seen.add(current.id)
        path.append(current)
        current = nodes.get(current.parent_id) if current.parent_id is not None else None
    return list(reversed(path))


def get_node(session: Session, user: User, node_id: int, needed: str = "viewer") -> DriverNode:
    """The node ``node_id`` if ``user`` may act on it as ``needed``.

    Raises
    ------
    NotFound
        No such node, or it belongs to a team the user is not in.
    PermissionDenied
        The user sees it but holds less than ``needed`` there.
    """
    node = session.get(DriverNode, node_id) if 0 < node_id < 2**31 else None
    if node is None:
        raise NotFound(f"no driver node {node_id}")
    require(session, user, node.team_id, needed)
    return node


def _snapshot(node: DriverNode) -> dict[str, Any]:
    return {name: getattr(node, name) for name in ("parent_id", *NODE_FIELDS)}


def _next_position(session: Session, parent_id: int) -> int:
    highest = session.exec(
        select(func.max(DriverNode.position)).where(DriverNode.parent_id == parent_id)
    ).one()
    return 0 if highest is None else highest + 1


def team_change_problem(
    session: Session, actor: User, old_team_id: int | None, new_team_id: int | None
) -> str | None:
    """Why ``actor`` may not move an object from ``old_team_id`` to ``new_team_id``.

    The rule for nodes and experiments alike: the actor already edits the object
    (the old side) and must also be an experimenter in the new team; making a
    team's object shared (no team, so every team sees it) is for admins only.
    """
    if old_team_id == new_team_id:
        return None
    if new_team_id is None:
        if old_team_id is not None and actor.role != "admin":
            return (
                "only an admin can make a team's object shared with every team; "
                "choose one of your teams"
            )
        return None
    return None


def _read_node_fields(
    session: Session,
    data: Mapping[str, Any],
    *,
    actor: User,
    is_root: bool,
    errors: FieldErrors,
    current: DriverNode | None = None,
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": read_text(data, "name", errors, max_length=NAME_MAX, required=True),
        "hypothesis": read_text(
            data, "hypothesis", errors, max_length=LONG_TEXT_MAX, multiline=True
        ),
        "leading_metric": read_text(data, "leading_metric", errors, max_length=NAME_MAX),
        "baseline": read_number(data, "baseline", errors, example="0.55"),
        "target": read_number(data, "target", errors, example="0.70"),
        "status": read_choice(data, "status", errors, NODE_STATUSES, default="active"),
        # blank: actuals are entered by hand (the root then reads NRR, see tree_actuals)
        "metric": read_choice(data, "metric", errors, LEDGER_METRICS, default="") or None,
    }
    values["kind"] = (
        "root" if is_root else read_choice(data, "kind", errors, EDITABLE_KINDS, default="driver")
    )
    team_id = read_id(data, "team_id", errors, what="team")
    if team_id is not None:
        if is_root:
            errors.add("team_id", "the NRR root is shared by every team and cannot belong to one")
        elif current is not None and team_id == current.team_id:
            pass  # unchanged: the actor's right to edit the node covers it
        elif problem := check_team_choice(
            session, actor, team_id, needed="experimenter", purpose="give it a node"
        ):
            errors.add("team_id", problem)
    if (
        current is not None
        and "team_id" not in errors
        and (problem := team_change_problem(session, actor, current.team_id, team_id))
    ):
        errors.add("team_id", problem)
    values["team_id"] = team_id
    owner_id = read_id(data, "owner_id", errors, what="owner")
    if owner_id is not None and (
        problem := owner_problem(
            session, owner_id, None if "team_id" in errors else team_id, what="node"
        )
    ):
        errors.add("owner_id", problem)
    values["owner_id"] = owner_id
    return values


def _require_shared_edit(session: Session, actor: User, team_id: int | None) -> None:
    # A node without a team is edited with the global role.
    require(session, actor, team_id, "experimenter")


def create_node(session: Session, data: Mapping[str, Any], *, actor: User) -> DriverNode:
    """Add a child under ``data['parent_id']`` with the node fields of ``data``.

    Raises
    ------
    NotFound
        The parent does not exist or is another team's.
    PermissionDenied
        The actor may not edit nodes without a team (global role below experimenter).
    ValidationFailed
        A field is missing, too long or names an unknown team or owner.
    """
    errors = FieldErrors()
    parent_id = read_id(data, "parent_id", errors, required=True, what="parent node")
    errors.raise_if_any()
    parent = get_node(session, actor, parent_id, "viewer")
    values = _read_node_fields(session, data, actor=actor, is_root=False, errors=errors)
    errors.raise_if_any()
    if values["team_id"] is None:
        _require_shared_edit(session, actor, None)
    node = DriverNode(parent_id=parent.id, position=_next_position(session, parent.id), **values)
    session.add(node)
    session.flush()
    record_event(
        session,
        "node.create",
        actor=actor,
        entity_type="driver_node",
        entity_id=node.id,
        team_id=node.team_id,
        diff=diff_fields({}, _snapshot(node)),
    )
    return node


def _what(node: DriverNode) -> str:
    return f"The node '{node.name}'"


def _seen(session: Session, node: DriverNode, raw: Any) -> int:
    """The version the actor saw (``None``: the loaded row's), refused early when stale."""
    seen = expected_version(node, raw)
    check_version(
        session, node, seen, what=_what(node), entity_type="driver_node", entity_id=node.id
    )
    return seen


def _write(session: Session, node: DriverNode, seen: int, values: Mapping[str, Any]) -> None:
    """``UPDATE driver_node SET …, version = version + 1 WHERE id = ? AND version = seen``."""
    compare_and_set(
        session,
        node,
        seen,
        {**values, "updated_at": utcnow()},
        what=_what(node),
        entity_type="driver_node",
        entity_id=node.id,
    )


def update_node(
    session: Session, node_id: int, data: Mapping[str, Any], *, actor: User
) -> DriverNode:
    """Replace the editable fields of a node (not its place in the tree: see :func:`move_node`).

    ``data['version']`` is the version the form was made on (a form must send it;
    only a caller without a form leaves the key out).

    Raises
    ------
    NotFound, PermissionDenied
        As :func:`get_node` with ``experimenter``.
    StaleVersion
        Somebody saved a newer version first.
    ValidationFailed
        A field is missing, too long or names an unknown team or owner; the team
        change is not allowed (see :func:`team_change_problem`); ``version``.
    """
    node = get_node(session, actor, node_id, "experimenter")
    seen = _seen(session, node, data.get("version") if "version" in data else None)
    errors = FieldErrors()
    values = _read_node_fields(
        session, data, actor=actor, is_root=node.parent_id is None, errors=errors, current=node
    )
    errors.raise_if_any()
    before = _snapshot(node)
    changes = diff_fields(before, {**before, **values})
    if changes:
        _write(session, node, seen, values)
        record_event(
            session,
            "node.update",
            actor=actor,
            entity_type="driver_node",
            entity_id=node.id,
            team_id=node.team_id,
            diff=changes,
        )
    return node


def move_node(
    session: Session, node_id: int, new_parent_id: Any, *, actor: User, expected_version: Any = None
) -> DriverNode:
    """Re-parent a node (with its whole branch) under ``new_parent_id``, as its last child.

    Raises
    ------
    NotFound, PermissionDenied
        As :func:`get_node` with ``experimenter``.
    ValidationFailed
        ``parent_id``: the node is the root, the new parent is unknown, or it lies
        inside the node's own branch (which would make a cycle).
    """
    node = get_node(session, actor, node_id, "experimenter")
    seen = _seen(session, node, expected_version)
    if node.parent_id is None:
        raise ValidationFailed(
            {"parent_id": "the NRR root cannot be moved: every other node hangs under it"}
        )
    errors = FieldErrors()
    parent_id = read_id(
        {"parent_id": new_parent_id}, "parent_id", errors, required=True, what="new parent node"
    )
    errors.raise_if_any()
    try:
        parent = get_node(session, actor, parent_id, "viewer")
    except NotFound:
        raise ValidationFailed({"parent_id": "unknown new parent node"}) from None
    if parent.id == node.id:
        raise ValidationFailed({"parent_id": f"'{node.name}' cannot be moved under itself"})
    if parent.id in branch_ids(session, node.id):
        raise ValidationFailed(
            {
                "parent_id": (
                    f"'{node.name}' cannot be moved under '{parent.name}': '{parent.name}' is "
                    "inside the branch "
                    f"of '{node.name}', so the tree would loop back on itself"
                )
            }
        )
    if parent.id == node.parent_id:
        return node
    old_parent = node.parent_id
    _write(
        session,
        node,
        seen,
        {"parent_id": parent.id, "position": _next_position(session, parent.id)},
    )
    record_event(
        session,
        "node.move",
        actor=actor,
        entity_type="driver_node",
        entity_id=node.id,
        team_id=node.team_id,
        diff={"parent_id": [old_parent, parent.id]},
    )
    return node


@dataclass(frozen=True)
class DeleteImpact:
    """What deleting a node would affect (all of it, visible to the actor or not)."""

    children: int
    experiments: int

    @property
    def empty(self) -> bool:
        return self.children == 0 and self.experiments == 0


def delete_impact(session: Session, node: DriverNode) -> DeleteImpact:
    children = session.exec(
        select(func.count()).select_from(DriverNode).where(DriverNode.parent_id == node.id)
    ).one()
    experiments = session.exec(
        select(func.count()).select_from(Experiment).where(Experiment.node_id == node.id)
    ).one()
    return DeleteImpact(children=children, experiments=experiments)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def delete_node(
    session: Session,
    node_id: int,
    *,
    actor: User,
    policy: str = "reparent",
    target_id: Any = None,
    expected_version: Any = None,
) -> DeleteImpact:
    """Delete a node; its children and experiments go to ``target_id`` (default: its parent).

    With ``policy="refuse"`` a node that still has children or experiments is not
    deleted. Either way nothing is ever left pointing at a missing node.

    Raises
    ------
    NotFound, PermissionDenied
        As :func:`get_node` with ``experimenter``.
    ValidationFailed
        The node is the root; the policy is unknown; ``refuse`` met a non-empty
        node; or the target is unknown or inside the node's own branch.
    """
    node = get_node(session, actor, node_id, "experimenter")
    seen = _seen(session, node, expected_version)
    if node.parent_id is None:
        raise ValidationFailed({"": "the NRR root cannot be deleted"})
    errors = FieldErrors()
    chosen_policy = read_choice(
        {"policy": policy}, "policy", errors, DELETE_POLICIES, default="reparent"
    )
    chosen_target = read_id({"target_id": target_id}, "target_id", errors, what="node")
    errors.raise_if_any()
    impact = delete_impact(session, node)
    if chosen_policy == "refuse" and not impact.empty:
        raise ValidationFailed(
            {
                "policy": (
                    f"'{node.name}' still has {_plural(impact.children, 'child node')} and "
                    f"{_plural(impact.experiments, 'experiment')}, so it was not deleted; "
                    "choose to move them to another node instead"
                )
            }
        )
    target_id_value = chosen_target if chosen_target is not None else node.parent_id
    try:
        target = get_node(session, actor, target_id_value, "viewer")
    except NotFound:
        raise ValidationFailed(
            {"target_id": "unknown node to move the children and experiments to"}
        ) from None
    if target.id in branch_ids(session, node.id):
        raise ValidationFailed(
            {
                "target_id": (
                    f"'{target.name}' is inside the branch being deleted; choose a node outside it"
                )
            }
        )
    before = _snapshot(node)
    children = session.exec(
        select(DriverNode)
        .where(DriverNode.parent_id == node.id)
        .order_by(DriverNode.position, DriverNode.id)
    ).all()
    experiments = session.exec(select(Experiment).where(Experiment.node_id == node.id)).all()
    # Re-parenting rewrites the children's and experiments' rows: the actor must be
    # allowed to edit every one of them, not just the node being deleted.
    if any(
        not can(session, actor, team, "experimenter")
        for team in {*(c.team_id for c in children), *(e.team_id for e in experiments)}
    ):
        raise ValidationFailed(
            {
                "": (
                    f"'{node.name}' holds nodes or experiments of a team you cannot edit; "
                    "ask that team to move them first, or an admin to delete the node"
                )
            }
        )
    # Claim the node's version first: a concurrent edit or delete of it loses cleanly.
    _write(session, node, seen, {})
    position = _next_position(session, target.id)
    # The moved rows change too: their versions go up, so a form opened on them before
    # the delete is refused as stale instead of putting the old parent back.
    for offset, child in enumerate(children):
        child.parent_id = target.id
        child.position = position + offset
        child.version += 1
        session.add(child)
    for experiment in experiments:
        experiment.node_id = target.id
        experiment.version += 1
        session.add(experiment)
    session.flush()
    session.delete(node)
    session.flush()
    diff = diff_fields(before, {})
    if children or experiments:
        diff["moved_to"] = [None, target.id]
        diff["moved_children"] = [None, [c.id for c in children]]
        diff["moved_experiments"] = [None, [e.key for e in experiments]]
    record_event(
        session,
        "node.delete",
        actor=actor,
        entity_type="driver_node",
        entity_id=node_id,
        team_id=before["team_id"],
        diff=diff,
    )
    return impact


@dataclass(frozen=True)
class TreePage:
    """The tree page: the visible tree and the choices of the one form open on it.

    ``mode`` is ``None`` (no form), ``edit``, ``add``, ``move`` or ``delete`` at
    ``node_id``; only the choices that form needs are filled in.
    """

    roots: list[TreeNode]
    teams: list[Team] = field(default_factory=list)
    owners: list[User] = field(default_factory=list)
    targets: list[tuple[int, str]] = field(default_factory=list)
    impact: DeleteImpact | None = None
    parent_id: int | None = None


def tree_page(
    session: Session, user: User, mode: str | None = None, node_id: int | None = None
) -> TreePage:
    """Everything the tree page shows for ``user`` with the ``mode`` form open at ``node_id``.

    Raises
    ------
    NotFound, PermissionDenied
        ``delete``: as :func:`get_node` with ``experimenter``.
    """
    extra: dict[str, Any] = {}
    if mode in ("edit", "add"):
        extra["teams"] = team_choices(session, user, needed="experimenter")
        extra["owners"] = owner_choices(session)
    if mode == "move":
        extra["targets"] = node_choices(session, user, exclude_branch_of=node_id)
    if mode == "delete" and node_id is not None:
        node = get_node(session, user, node_id, "experimenter")
        extra["impact"] = delete_impact(session, node)
        extra["targets"] = node_choices(session, user, exclude_branch_of=node_id)
        extra["parent_id"] = node.parent_id
    roots = attach_actuals(session, load_tree(session, user), current_ledger(session))
    return TreePage(roots=roots, **extra)
