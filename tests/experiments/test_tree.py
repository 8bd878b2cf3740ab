"""The driver tree service: editing, moving and deleting without cycles or orphans,
team scoping, roll-ups, and the audit trail."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, func, select

from experiments.errors import NotFound, PermissionDenied, ValidationFailed
from experiments.models import (
    AnalysisSnapshot,
    AuditEvent,
    Dataset,
    DriverNode,
    Experiment,
    Variant,
)
from experiments.tree import (
    branch_ids,
    create_node,
    delete_node,
    load_tree,
    move_node,
    node_choices,
    update_node,
)
from experiments.users import create_user, ensure_team, set_team_role
from tests.helpers import TEST_PASSWORD


def add(session, actor, parent: DriverNode, name: str, **fields) -> DriverNode:
    return create_node(session, {"parent_id": parent.id, "name": name, **fields}, actor=actor)


def add_experiment(
    session: Session,
    node: DriverNode,
    key: str,
    *,
    status: str = "draft",
    team_id: int | None = None,
) -> Experiment:
    experiment = Experiment(key=key, name=key, node_id=node.id, status=status, team_id=team_id)
    session.add(experiment)
    session.flush()
    session.add(Variant(experiment_id=experiment.id, key="control", is_control=True))
    session.flush()
    return experiment


def assert_tree_invariants(session: Session) -> None:
    """One root; every parent exists; following parents always reaches the root; no orphaned
    experiment."""
    parents = dict(session.exec(select(DriverNode.id, DriverNode.parent_id)).all())
    roots = [n for n, p in parents.items() if p is None]
    assert len(roots) == 1
    for node in parents:
        seen = set()
        current = node
        while parents[current] is not None:
            assert current not in seen, f"cycle through node {current}"
            seen.add(current)
            assert parents[current] in parents, f"node {current} has a missing parent"
            current = parents[current]
        assert current == roots[0]
    for node_id in session.exec(select(Experiment.node_id)).all():
        assert node_id in parents, "an experiment points at a missing node"


def count(session: Session, model) -> int:
    return session.exec(select(func.count()).select_from(model)).one()


# ---------------------------------------------------------------- create / update


def test_create_node_appends_a_child_and_records_the_event(session, admin, root):
    first = add(
        session,
        admin,
        root,
        "Expansion",
        kind="lever",
        leading_metric="Expansion MRR",
        baseline="0.06",
        target="0.09",
        hypothesis="If we …, then NRR … because …",
    )
    second = add(session, admin, root, "Churn", kind="lever")
    assert first.parent_id == root.id and first.kind == "lever"
    assert (first.baseline, first.target) == (0.06, 0.09)
    assert second.position == first.position + 1
    event = session.exec(
        select(AuditEvent)
        .where(AuditEvent.action == "node.create")
        .where(AuditEvent.entity_id == str(first.id))
    ).one()
    assert event.actor_id == admin.id
    assert event.diff["name"] == [None, "Expansion"]


def test_update_node_diffs_only_what_changed(session, admin, root):
    node = add(session, admin, root, "Adoption", leading_metric="WAU")
    update_node(
        session,
        node.id,
        {"name": "Adoption v2", "leading_metric": "WAU", "kind": "driver"},
        actor=admin,
    )
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "node.update")).one()
    assert event.diff == {"name": ["Adoption", "Adoption v2"]}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": ""}, "name", "is required"),
        ({"name": "x" * 201}, "name", "at most 200"),
        ({"name": "ok", "hypothesis": "h" * 10_001}, "hypothesis", "at most 10,000"),
        ({"name": "ok", "baseline": "lots"}, "baseline", "must be a number"),
        ({"name": "ok", "target": "nan"}, "target", "finite"),
        ({"name": "ok", "kind": "root"}, "kind", "must be one of"),
        ({"name": "ok", "status": "gone"}, "status", "must be one of"),
        ({"name": "ok", "team_id": "999999"}, "team_id", "unknown team"),
        ({"name": "ok", "team_id": "99999999999999999999"}, "team_id", "unknown team"),
        ({"name": "ok", "owner_id": "424242"}, "owner_id", "unknown owner"),
        ({"name": "bad\x00name"}, "name", "control characters"),
    ],
)
def test_create_node_refuses_bad_fields_and_stores_nothing(
    session, admin, root, data, field, message
):
    before = count(session, DriverNode)
    with pytest.raises(ValidationFailed) as caught:
        create_node(session, {"parent_id": root.id, **data}, actor=admin)
    assert message in caught.value.errors[field]
    assert count(session, DriverNode) == before


def test_the_root_keeps_its_kind_and_cannot_belong_to_a_team(session, admin, root):
    team = ensure_team(session, "growth", "Growth")
    with pytest.raises(ValidationFailed) as caught:
        update_node(session, root.id, {"name": "NRR", "team_id": team.id}, actor=admin)
    assert "shared by every team" in caught.value.errors["team_id"]
    update_node(session, root.id, {"name": "NRR", "kind": "lever"}, actor=admin)
    assert root.kind == "root" and root.name == "NRR"


# ---------------------------------------------------------------- moving


def test_move_reparents_the_whole_branch(session, admin, root):
    a = add(session, admin, root, "A")
    b = add(session, admin, root, "B")
    a1 = add(session, admin, a, "A1")
    move_node(session, a.id, b.id, actor=admin)
    assert a.parent_id == b.id and a1.parent_id == a.id
    assert branch_ids(session, b.id) == {b.id, a.id, a1.id}
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "node.move")).one()
    assert event.diff == {"parent_id": [root.id, b.id]}
    assert_tree_invariants(session)


def test_moving_under_an_own_descendant_is_refused_with_a_clear_message(session, admin, root):
    a = add(session, admin, root, "Churn")
    a1 = add(session, admin, a, "Activation")
    a2 = add(session, admin, a1, "Checklist")
    with pytest.raises(ValidationFailed) as caught:
        move_node(session, a.id, a2.id, actor=admin)
    message = caught.value.errors["parent_id"]
    assert "'Churn' cannot be moved under 'Checklist'" in message
    assert "inside the branch" in message
    with pytest.raises(ValidationFailed, match="under itself"):
        move_node(session, a.id, a.id, actor=admin)
    assert a.parent_id == root.id
    assert_tree_invariants(session)


def test_the_root_cannot_be_moved_and_unknown_parents_are_refused(session, admin, root):
    a = add(session, admin, root, "A")
    with pytest.raises(ValidationFailed, match="root cannot be moved"):
        move_node(session, root.id, a.id, actor=admin)
    with pytest.raises(ValidationFailed, match="unknown new parent"):
        move_node(session, a.id, 987654, actor=admin)
    with pytest.raises(ValidationFailed, match="unknown new parent"):
        move_node(session, a.id, "abc", actor=admin)


# ---------------------------------------------------------------- deleting


def test_delete_reparents_children_and_experiments_to_the_parent(session, admin, root):
    lever = add(session, admin, root, "Lever")
    doomed = add(session, admin, lever, "Doomed")
    child = add(session, admin, doomed, "Child")
    experiment = add_experiment(session, doomed, "exp-one")
    impact = delete_node(session, doomed.id, actor=admin)
    assert (impact.children, impact.experiments) == (1, 1)
    assert session.get(DriverNode, doomed.id) is None
    assert child.parent_id == lever.id and experiment.node_id == lever.id
    # Forms opened on the moved rows before the delete are now stale.
    assert (child.version, experiment.version) == (2, 2)
    event = session.exec(select(AuditEvent).where(AuditEvent.action == "node.delete")).one()
    assert event.diff["moved_to"] == [None, lever.id]
    assert event.diff["moved_experiments"] == [None, ["exp-one"]]
    assert event.diff["name"] == ["Doomed", None]
    assert_tree_invariants(session)


def test_delete_reparents_to_a_chosen_node_but_never_into_the_deleted_branch(session, admin, root):
    a = add(session, admin, root, "A")
    b = add(session, admin, root, "B")
    a1 = add(session, admin, a, "A1")
    experiment = add_experiment(session, a, "exp-a")
    with pytest.raises(ValidationFailed) as caught:
        delete_node(session, a.id, actor=admin, target_id=a1.id)
    assert "inside the branch being deleted" in caught.value.errors["target_id"]
    with pytest.raises(ValidationFailed, match="unknown node"):
        delete_node(session, a.id, actor=admin, target_id="77777")
    delete_node(session, a.id, actor=admin, target_id=str(b.id))
    assert a1.parent_id == b.id and experiment.node_id == b.id
    assert_tree_invariants(session)


def test_refuse_policy_keeps_a_node_that_still_has_children_or_experiments(session, admin, root):
    a = add(session, admin, root, "A")
    add_experiment(session, a, "exp-a")
    before = (count(session, DriverNode), count(session, AuditEvent))
    with pytest.raises(ValidationFailed) as caught:
        delete_node(session, a.id, actor=admin, policy="refuse")
    assert "0 child nodes and 1 experiment" in caught.value.errors["policy"]
    assert (count(session, DriverNode), count(session, AuditEvent)) == before
    empty = add(session, admin, root, "Empty")
    delete_node(session, empty.id, actor=admin, policy="refuse")
    assert session.get(DriverNode, empty.id) is None


def test_the_root_cannot_be_deleted_and_policies_are_checked(session, admin, root):
    with pytest.raises(ValidationFailed, match="root cannot be deleted"):
        delete_node(session, root.id, actor=admin)
    a = add(session, admin, root, "A")
    with pytest.raises(ValidationFailed) as caught:
        delete_node(session, a.id, actor=admin, policy="shrug")
    assert "policy" in caught.value.errors


# ---------------------------------------------------------------- teams


@pytest.fixture
def teams(session: Session, admin, root):
    growth = ensure_team(session, "growth", "Growth")
    success = ensure_team(session, "success", "Success")
    churn = add(session, admin, root, "Churn", team_id=success.id)
    activation = add(session, admin, churn, "Activation", team_id=growth.id)
    member = create_user(session, "grower@tree.test", TEST_PASSWORD, role="viewer")
    set_team_role(session, member, growth, "experimenter", actor=None)
    watcher = create_user(session, "watcher@tree.test", TEST_PASSWORD, role="viewer")
    set_team_role(session, watcher, growth, "viewer", actor=None)
    session.commit()
    return {
        "growth": growth,
        "success": success,
        "churn": churn,
        "activation": activation,
        "member": member,
        "watcher": watcher,
    }


def test_another_teams_node_is_hidden_and_a_visible_node_hangs_under_its_nearest_visible_ancestor(
    session, root, teams
):
    roots = load_tree(session, teams["member"])
    assert [r.node.id for r in roots] == [root.id]
    assert [c.node.name for c in roots[0].children] == ["Activation"]
    assert roots[0].children[0].editable and not roots[0].editable
    labels = [label.strip() for _, label in node_choices(session, teams["member"])]
    assert "Churn" not in labels and "Activation" in labels


def test_team_scoping_of_edits(session, teams):
    member, watcher = teams["member"], teams["watcher"]
    with pytest.raises(NotFound):
        update_node(session, teams["churn"].id, {"name": "Mine now"}, actor=member)
    with pytest.raises(PermissionDenied):
        update_node(session, teams["activation"].id, {"name": "Watched"}, actor=watcher)
    with pytest.raises(NotFound):
        create_node(session, {"parent_id": teams["churn"].id, "name": "Sneaky"}, actor=member)
    # a shared node needs the experimenter role globally; this member has it only in growth
    with pytest.raises(PermissionDenied):
        create_node(session, {"parent_id": teams["activation"].id, "name": "Shared"}, actor=member)
    node = create_node(
        session,
        {"parent_id": teams["activation"].id, "name": "Growth's", "team_id": teams["growth"].id},
        actor=member,
    )
    assert node.team_id == teams["growth"].id
    with pytest.raises(ValidationFailed) as caught:
        update_node(
            session, node.id, {"name": "Growth's", "team_id": teams["success"].id}, actor=member
        )
    assert caught.value.errors["team_id"] == "unknown team"
    with pytest.raises(ValidationFailed, match="unknown new parent"):
        move_node(session, node.id, teams["churn"].id, actor=member)


# ---------------------------------------------------------------- roll-ups


def test_rollup_counts_the_whole_branch_and_latest_verdicts(session, admin, root):
    lever = add(session, admin, root, "Lever")
    driver = add(session, admin, lever, "Driver")
    add_experiment(session, lever, "on-lever", status="running")
    won = add_experiment(session, driver, "on-driver", status="decided")
    add_experiment(session, driver, "draft-one")
    dataset = Dataset(experiment_id=won.id, version=1, sha256="0" * 64)
    session.add(dataset)
    session.flush()
    session.add(
        AnalysisSnapshot(
            experiment_id=won.id, dataset_id=dataset.id, verdict="inconclusive", result={}
        )
    )
    session.flush()
    session.add(
        AnalysisSnapshot(experiment_id=won.id, dataset_id=dataset.id, verdict="win", result={})
    )
    session.flush()
    (tree,) = load_tree(session, admin)
    lever_item = tree.children[0]
    assert lever_item.experiment_counts == {"running": 1}
    assert lever_item.subtree_counts == {"running": 1, "decided": 1, "draft": 1}
    assert lever_item.subtree_verdicts == {"win": 1}
    assert tree.subtree_counts == lever_item.subtree_counts


# ---------------------------------------------------------------- property


operations = st.lists(
    st.tuples(
        st.sampled_from(["move", "delete", "delete-refuse", "add"]),
        st.integers(min_value=0, max_value=30),
        st.integers(min_value=0, max_value=30),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_random_edit_sequences_never_break_the_tree(session, admin, root, ops):
    try:
        nodes = [root]
        for i in range(6):
            nodes.append(add(session, admin, nodes[i // 2], f"n{i}"))
        for i, node in enumerate(nodes[1::2]):
            add_experiment(session, node, f"prop-{i}")
        for op, x, y in ops:
            alive = session.exec(select(DriverNode).order_by(DriverNode.id)).all()
            node, other = alive[x % len(alive)], alive[y % len(alive)]
            experiments_before = count(session, Experiment)
            try:
                if op == "move":
                    move_node(session, node.id, other.id, actor=admin)
                elif op == "add":
                    add(session, admin, node, f"extra-{x}-{y}")
                else:
                    delete_node(
                        session,
                        node.id,
                        actor=admin,
                        policy="refuse" if op == "delete-refuse" else "reparent",
                        target_id=other.id,
                    )
            except ValidationFailed:
                pass
            assert count(session, Experiment) == experiments_before
            assert_tree_invariants(session)
    finally:
        session.rollback()


def test_delete_refuses_to_rewrite_another_teams_nodes_or_experiments(session, root):
    """A Customer Success experimenter may delete their own node, but not if that would
    re-parent the Growth team's node hanging under it."""
    from experiments.errors import ValidationFailed
    from experiments.tree import create_node, delete_node
    from experiments.users import create_user, ensure_team, set_team_role

    growth, success = ensure_team(session, "growth", "Growth"), ensure_team(session, "cs", "CS")
    liam = create_user(session, "liam@tree.test", TEST_PASSWORD, role="viewer")
    set_team_role(session, liam, success, "experimenter", actor=None)
    admin = create_user(session, "boss@tree.test", TEST_PASSWORD, role="admin")
    churn = create_node(
        session,
        {"parent_id": root.id, "name": "Churn", "kind": "lever", "team_id": success.id},
        actor=admin,
    )
    activation = create_node(
        session, {"parent_id": churn.id, "name": "Activation", "team_id": growth.id}, actor=admin
    )
    session.commit()
    with pytest.raises(ValidationFailed, match="a team you cannot edit"):
        delete_node(session, churn.id, actor=liam)
    session.rollback()
    session.refresh(activation)
    assert activation.parent_id == churn.id  # untouched
    delete_node(session, churn.id, actor=admin)  # an admin may
    session.flush()
    session.refresh(activation)
    assert activation.parent_id == root.id
