"""A new workspace without demo data (issue 14, item 9): the dashboard and the tree say
what to do next, from an empty tree to a first branch and a first experiment."""

from __future__ import annotations

import re

from sqlmodel import Session, select

from experiments.models import DriverNode


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def test_a_new_workspace_guides_from_the_empty_tree_to_a_first_experiment(db_engine, login_as):
    client = login_as("experimenter")
    with Session(db_engine) as session:
        assert session.exec(select(DriverNode)).all()[0].parent_id is None  # only the root

    dashboard = text(client.get("/"))
    assert "Getting started" in dashboard
    assert "Add a first branch to the driver tree." in dashboard
    assert "once a branch exists, use “New experiment here” on it" in dashboard
    tree = text(client.get("/tree/"))
    assert "Only the NRR root so far." in tree and "Add child" in tree

    with Session(db_engine) as session:
        root = session.exec(select(DriverNode)).one()
        session.add(DriverNode(name="Expansion", kind="lever", parent_id=root.id))
        session.commit()
        lever_id = session.exec(select(DriverNode.id).where(DriverNode.name == "Expansion")).one()

    body = client.get("/").get_data(as_text=True)
    dashboard = text(client.get("/"))
    assert "Done: the tree has 1 branch under NRR (Expansion)." in dashboard
    assert f'href="/experiments/new?node_id={lever_id}">register one on Expansion</a>' in body
    assert "Only the NRR root so far." not in text(client.get("/tree/"))


def test_the_guide_is_gone_once_an_experiment_exists(db_engine, login_as, factory):
    from tests.webapp.test_tree import make_experiment, make_node

    client = login_as("experimenter")
    lever = make_node(db_engine, "Expansion", kind="lever")
    make_experiment(db_engine, lever, "first-test")
    assert "Getting started" not in text(client.get("/"))
