"""The driver tree: reading it as nested nodes (editing arrives with the registry work)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlmodel import Session, select

from experiments.access import visible_team_ids
from experiments.models import DriverNode, Experiment, User


@dataclass
class TreeNode:
    node: DriverNode
    children: list[TreeNode] = field(default_factory=list)
    experiment_counts: dict[str, int] = field(default_factory=dict)

    @property
    def subtree_counts(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for status, count in self.experiment_counts.items():
            totals[status] += count
        for child in self.children:
            for status, count in child.subtree_counts.items():
                totals[status] += count
        return dict(totals)


def load_tree(session: Session, user: User) -> list[TreeNode]:
    """The roots of the tree the user may see (another team's nodes are left out)."""
    teams = visible_team_ids(session, user)
    nodes = session.exec(select(DriverNode).order_by(DriverNode.position, DriverNode.id)).all()
    visible = [n for n in nodes if teams is None or n.team_id is None or n.team_id in teams]
    by_id = {n.id: TreeNode(n) for n in visible}
    experiments = session.exec(select(Experiment.node_id, Experiment.status, Experiment.team_id)).all()
    for node_id, status, team_id in experiments:
        if node_id in by_id and (teams is None or team_id is None or team_id in teams):
            counts = by_id[node_id].experiment_counts
            counts[status] = counts.get(status, 0) + 1
    roots: list[TreeNode] = []
    for tree_node in by_id.values():
        parent = by_id.get(tree_node.node.parent_id)
        (parent.children if parent else roots).append(tree_node)
    return roots
