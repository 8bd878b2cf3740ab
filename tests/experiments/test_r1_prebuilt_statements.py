"""Review R1 of the review's and dashboard's statements cut (issue 18, H2): the statements
built once with expanding ``IN`` lists answer an empty list and more ids than SQLite's old
999-variable limit alike; the review's tree summary, which now reads the ledger once, has
the figures of the two reads it replaced; a lookup by id that reuses the transaction's
ordered copy still shows a change the session made, and a new transaction sees another
session's. Runs on SQLite and in the PostgreSQL pass."""

from __future__ import annotations

from datetime import date

import pytest
from sqlmodel import Session, select

from experiments import decisions, review, tree_actuals
from experiments.impact import company_start_mrr
from experiments.models import DriverNode, Experiment, ReviewItem, ReviewMeeting, User
from experiments.nrr_page import current_ledger
from experiments.reference_rows import all_rows, by_id
from experiments.review import build_review
from experiments.review_tree import TreeCopy, tree_now
from experiments.review_weeks import current_week
from experiments.tree_actuals import actuals_summary
from tests.factories import make_node, make_user, root_node, store_ledger_file
from tests.ledger_gen import write_csv
from tests.webapp.test_results import make_experiment

pytestmark = pytest.mark.db

#: More ids than SQLite's former SQLITE_MAX_VARIABLE_NUMBER (999), none of them stored.
MISSING = list(range(10_000, 11_500))


def test_expanding_statements_answer_empty_and_long_id_lists(session, admin, db_engine):
    factory_team = make_user(session, "analyst@example.com", "admin")
    session.commit()
    make_experiment(db_engine, team=None)
    build_review(session, factory_team, current_week())  # opens the week: meeting, items
    session.commit()
    experiment = session.exec(select(Experiment)).one()
    item = session.exec(select(ReviewItem)).one()
    node = root_node(session)

    assert session.exec(review._SHOWN_ITEMS, params={"ids": []}).all() == []
    shown = session.exec(review._SHOWN_ITEMS, params={"ids": [*MISSING, item.id]}).all()
    assert [(i.id, e.id) for i, e in shown] == [(item.id, experiment.id)]

    assert session.exec(decisions._VARIANT_KEYS, params={"ids": []}).all() == []
    keys = session.exec(decisions._VARIANT_KEYS,
                        params={"ids": [experiment.id, *MISSING]}).all()
    assert [(e, k) for e, k, _control in keys] == [(experiment.id, "control"),
                                                   (experiment.id, "treatment")]

    assert session.exec(tree_actuals._ACTUALS_OF_NODES,
                        params={"node_ids": [node.id, *MISSING]}).all() == []
    heads = session.exec(review._ITEM_HEADS,
                         params={"meeting_id": session.exec(select(ReviewMeeting.id)).one()})
    assert [row[1] for row in heads] == [item.id]


@pytest.mark.parametrize("with_ledger", [True, False])
def test_the_tree_summary_reads_the_figures_of_the_two_reads_it_replaced(
        session, admin, tmp_path, with_ledger):
    root = root_node(session)
    grr = make_node(session, "Gross retention", parent=root, metric="grr", target=0.9)
    session.commit()
    if with_ledger:
        write_csv(tmp_path / "ledger.csv", n_accounts=80, months=14, seed=5)
        store_ledger_file(session, tmp_path / "ledger.csv", admin)
    day = date.today()
    copy = tree_now(session, [root, grr], day)
    # Before H2: the actuals from current_ledger, the start MRR from a read of its own.
    before = TreeCopy(tuple(actuals_summary(session, [root, grr], current_ledger(session), day)),
                      company_start_mrr(session), day)
    assert copy == before
    if with_ledger:
        assert copy.company_start_mrr is not None and copy.company_start_mrr > 0
        assert {line.node_id for line in copy.lines} == {root.id, grr.id}
    else:
        assert copy.company_start_mrr is None and copy.lines == ()


def test_a_lookup_by_id_from_an_ordered_copy_shows_the_sessions_own_change(session):
    zed = make_user(session, "zed@example.com")
    session.commit()
    ordered = all_rows(session, User, User.name, User.email)  # the page's copy, by name
    assert zed in ordered
    zed.name = "Zed Renamed"  # not flushed: the copy must not be used
    assert by_id(session, User)[zed.id].name == "Zed Renamed"
    node = DriverNode(parent_id=root_node(session).id, name="Added", kind="lever")
    session.add(node)
    session.flush()  # flushed: the copy is dropped, the next read sees the row
    assert by_id(session, DriverNode)[node.id].name == "Added"


def test_a_new_transaction_of_the_same_session_sees_another_sessions_rename(session, db_engine):
    amy = make_user(session, "amy@example.com")
    session.commit()
    assert by_id(session, User)[amy.id].name != "Amy Elsewhere"
    with Session(db_engine) as other:
        row = other.get(User, amy.id)
        row.name = "Amy Elsewhere"
        other.commit()
    session.commit()  # the transaction ends (as a request's or a job's loop does)
    session.expire_all()  # expire_on_commit=False: the identity map keeps loaded values
    assert by_id(session, User)[amy.id].name == "Amy Elsewhere"
