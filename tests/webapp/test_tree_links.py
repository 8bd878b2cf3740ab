"""The tree's per-node links (issue 18: a 500-node tree builds ~3,500 of them, so each
endpoint's URL is built once per request and every node's id put in its place by
``webapp.tree.views.node_url``): every link must still be the one ``url_for`` gives, under
a mount prefix too, and for ids of any length."""

from __future__ import annotations

import re

from flask import url_for
from sqlmodel import Session, select

from experiments.models import DriverNode

ENDPOINTS = ("tree.edit", "tree.new_child", "tree.move_form", "tree.delete_form",
             "tree.add_actual", "experiments.new")


def _nodes(db_engine, count: int) -> list[int]:
    with Session(db_engine, expire_on_commit=False) as session:
        root = session.exec(select(DriverNode).where(DriverNode.parent_id.is_(None))).one()
        made = [DriverNode(name=f"Lever {i}", parent_id=root.id, kind="lever",
                           leading_metric="activation") for i in range(count)]
        session.add_all(made)
        session.commit()
        return [root.id, *(n.id for n in made)]


def test_every_node_link_is_url_for_s_under_a_mount_prefix(app, db_engine, login_as):
    ids = _nodes(db_engine, 12)  # ids of one and two digits
    client = login_as("admin")
    html = client.get("/tree/", environ_overrides={"SCRIPT_NAME": "/lab"}).get_data(as_text=True)
    with app.test_request_context("/tree/", environ_overrides={"SCRIPT_NAME": "/lab"}):
        for node_id in ids:
            expected = {endpoint: url_for(endpoint, node_id=node_id) for endpoint in ENDPOINTS
                        if not (node_id == ids[0] and endpoint in ("tree.move_form",
                                                                   "tree.delete_form",
                                                                   "tree.add_actual"))}
            for endpoint, url in expected.items():
                assert url.startswith("/lab/"), url
                assert f'"{url}"' in html, (endpoint, node_id, url)
            # and a node's links never carry another node's id
            assert f'"{url_for("tree.edit", node_id=node_id)}"' in html
    edits = re.findall(r'href="/lab/tree/(\d+)/edit"', html)
    assert sorted(map(int, edits)) == sorted(ids)
