"""Small tables read once per session transaction (experiments.reference_rows, issue 18):
the copy saves statements, and it never hides a change the session could see."""

from __future__ import annotations

from sqlalchemy import event
from sqlmodel import Session

from experiments.models import DriverNode, Team, User
from experiments.reference_rows import all_rows, by_id
from experiments.tree import load_tree
from tests.factories import make_node, make_user, root_node


def _selects(session) -> tuple[list[str], callable]:
    seen: list[str] = []
    engine = session.get_bind()

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    return seen, lambda: event.remove(engine, "before_cursor_execute", record)


def test_a_second_read_in_one_transaction_sends_no_statement(session):
    root = root_node(session)
    session.commit()
    seen, stop = _selects(session)
    try:
        first = by_id(session, DriverNode)
        again = by_id(session, DriverNode)
        ordered = all_rows(session, DriverNode, DriverNode.position, DriverNode.id)
    finally:
        stop()
    assert first == again and root.id in first
    # by_id reads the nodes in tree order, so the ordered read is the same copy
    assert len(seen) == 1
    assert [n.id for n in ordered] == sorted(first, key=lambda i: (first[i].position, i))


def test_a_lookup_by_id_uses_the_copy_in_any_order_and_reads_people_by_name(session):
    """The review page looks nodes and users up by id (the documents) and lists them in
    tree and name order (branch filter, owner lists): one statement per table."""
    root_node(session)
    make_user(session, "zed@example.com")
    make_user(session, "amy@example.com")
    session.commit()
    seen, stop = _selects(session)
    try:
        ordered_nodes = all_rows(session, DriverNode, DriverNode.position, DriverNode.id)
        nodes = by_id(session, DriverNode)
        users = by_id(session, User)
        by_name = all_rows(session, User, User.name, User.email)
    finally:
        stop()
    assert [s.split("FROM")[1].split()[0] for s in seen] == ["driver_node", "user_account"]
    assert list(nodes) == [n.id for n in ordered_nodes]
    assert [u.id for u in by_name] == list(users)
    assert [u.email for u in by_name].index("amy@example.com") < \
        [u.email for u in by_name].index("zed@example.com")


def test_an_added_node_is_seen_at_once_flushed_or_not(session, admin):
    root = root_node(session)
    session.commit()
    assert {item.node.name for item in load_tree(session, admin)[0].children} == set()
    child = make_node(session, "Expansion", parent=root)  # flushed: the copy is dropped
    assert [item.node.id for item in load_tree(session, admin)[0].children] == [child.id]
    pending = DriverNode(parent_id=root.id, name="Churn", kind="lever")
    session.add(pending)  # not flushed: the copy is not used, the query autoflushes
    names = {item.node.name for item in load_tree(session, admin)[0].children}
    assert names == {"Expansion", "Churn"}


def test_a_rollback_drops_the_copy(session, db_engine):
    before = len(all_rows(session, Team))
    with Session(db_engine) as other:
        other.add(Team(slug="elsewhere", name="Elsewhere"))
        other.commit()
    session.rollback()  # a new transaction: the other session's commit is visible now
    assert len(all_rows(session, Team)) == before + 1
