"""A node's "enter an actual" form is drawn on demand (issue 18: a 500-node tree drew 500
of them on every view): the tree shows a link; its htmx GET answers the form alone, open,
for the link's place; without JavaScript the link opens the tree with that node's form
open. Only whoever may enter the node's actuals is offered it."""

from __future__ import annotations

import re

from tests.webapp.test_tree_actuals import HX, add_node


def _forms(html: str) -> list[str]:
    return re.findall(r'<form class="actual-form"[^>]*aria-label="([^"]+)"', html)


def test_the_tree_links_to_each_form_and_htmx_fetches_it_open(login_as, db_engine):
    editor = login_as("experimenter")
    driver = add_node(db_engine, "Activation", kind="driver", leading_metric="activated share")
    tree = editor.get("/tree/").get_data(as_text=True)
    assert _forms(tree) == []  # no form drawn up front
    url = f"/tree/{driver.id}/actuals"
    link = re.search(rf'<a href="{url}#node-{driver.id}" hx-get="{url}"[^>]*>', tree)
    assert link and 'aria-label="Enter an actual of Activation"' in link.group(0)

    fragment = editor.get(url, headers=HX)
    html = fragment.get_data(as_text=True)
    assert fragment.status_code == 200
    assert html.lstrip().startswith("<details open>") and "<html" not in html
    assert _forms(html) == ["Enter an actual of Activation"]
    assert f'action="{url}"' in html and 'name="csrf_token"' in html
    assert 'name="measured_on" type="date" value="" required autofocus' in html
    # the form fetched works: a save answers the branch, as the form drawn up front did
    saved = editor.post(url, headers=HX, data={"csrf_token": editor.csrf,
                                               "measured_on": "2026-01-05", "value": "0.6"})
    assert saved.status_code == 200 and 'role="status">Saved<' in saved.get_data(as_text=True)


def test_without_javascript_the_link_opens_the_tree_with_that_form_open(login_as, db_engine):
    editor = login_as("experimenter")
    one = add_node(db_engine, "Activation", kind="driver")
    add_node(db_engine, "Adoption", kind="driver")
    page = editor.get(f"/tree/{one.id}/actuals")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "<html" in html
    assert _forms(html) == ["Enter an actual of Activation"]  # that node's only
    assert "<details open>" in html
    assert 'aria-label="Enter an actual of Adoption">Enter an actual</a>' in html


def test_who_may_not_enter_actuals_is_not_offered_the_form(login_as, db_engine):
    viewer = login_as("viewer")
    driver = add_node(db_engine, "Activation", kind="driver")
    assert "Enter an actual" not in viewer.get("/tree/").get_data(as_text=True)
    answer = viewer.get(f"/tree/{driver.id}/actuals", headers=HX)
    assert answer.status_code == 404 and "<form" not in answer.get_data(as_text=True)
    assert _forms(viewer.get(f"/tree/{driver.id}/actuals").get_data(as_text=True)) == []
    assert viewer.get("/tree/999999/actuals").status_code == 404
