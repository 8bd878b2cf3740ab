"""The driver tree page: every view as a full page and as an htmx fragment, inline
edits with 303 after success and 422 with messages beside the fields, delete
policies, team scoping and escaping."""

from __future__ import annotations

import re

import pytest
from sqlmodel import Session, func, select

from experiments.models import (
    AuditEvent,
    DriverNode,
    Experiment,
    Journey,
    JourneyStage,
    Team,
    Variant,
)
from webapp.db import get_engine

HX = {"HX-Request": "true"}


@pytest.fixture
def editor(login_as):
    return login_as("experimenter")


def nodes(db_engine) -> dict[str, DriverNode]:
    with Session(db_engine) as session:
        return {n.name: n for n in session.exec(select(DriverNode)).all()}


def node_count(db_engine) -> int:
    with Session(db_engine) as session:
        return session.exec(select(func.count()).select_from(DriverNode)).one()


def make_node(db_engine, name: str, parent: str = "Net Revenue Retention", **fields) -> DriverNode:
    with Session(db_engine, expire_on_commit=False) as session:
        parent_node = session.exec(select(DriverNode).where(DriverNode.name == parent)).one()
        node = DriverNode(name=name, parent_id=parent_node.id, **fields)
        session.add(node)
        session.commit()
        return node


def make_experiment(db_engine, node: DriverNode, key: str, **fields) -> None:
    with Session(db_engine) as session:
        experiment = Experiment(key=key, name=key, node_id=node.id, **fields)
        session.add(experiment)
        session.flush()
        session.add(Variant(experiment_id=experiment.id, key="control", is_control=True))
        session.commit()


_VERSIONED = (
    (re.compile(r"^/tree/(\d+)(?:/move|/delete)?$"), DriverNode),
    (re.compile(r"^/journeys/(\d+)$"), Journey),
    (re.compile(r"^/journeys/stages/(\d+)(?:/move|/delete)?$"), JourneyStage),
)


def current_version(client, url: str) -> str | None:
    """The version a page would have put in the form posted to ``url`` (as a browser sends it)."""
    for pattern, model in _VERSIONED:
        if (match := pattern.match(url)) and int(match.group(1)) < 2**31:
            with client.application.app_context(), Session(get_engine()) as session:
                row = session.get(model, int(match.group(1)))
                return str(row.version) if row is not None else "1"
    return None


def post(client, url: str, data: dict | None = None, *, htmx: bool = False):
    form = {"csrf_token": client.csrf, **(data or {})}
    if "version" not in form and (version := current_version(client, url)) is not None:
        form["version"] = version
    return client.post(url, data=form, headers=HX if htmx else {})


def is_fragment(body: str) -> bool:
    return "<html" not in body and '<nav aria-label="Main">' not in body


def root_id(db_engine) -> int:
    return nodes(db_engine)["Net Revenue Retention"].id


# ---------------------------------------------------------------- pages and fragments


def test_tree_page_shows_every_node_with_its_facts_and_rollup(db_engine, login_as):
    lever = make_node(
        db_engine,
        "Churn",
        kind="lever",
        leading_metric="Logo churn",
        baseline=0.07,
        target=0.05,
        hypothesis="If fewer leave, then NRR rises because churn is the biggest loss.",
    )
    driver = make_node(db_engine, "Activation", parent="Churn")
    make_experiment(db_engine, driver, "checklist", status="running")
    make_experiment(db_engine, lever, "winback", status="decided", decision="ship")
    client = login_as("viewer")
    response = client.get("/tree/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and "<html" in body and 'id="tree"' in body
    assert "Logo churn: 0.07 → 0.05" in body
    assert "If fewer leave" in body
    assert "2 experiments" in body and "1 running" in body and "1 decided" in body
    assert f'href="/experiments/?node_id={lever.id}"' in body
    assert "Edit</a>" not in body  # a viewer gets no edit links
    assert "HX-Request" in response.headers["Vary"]
    fragment = client.get("/tree/", headers=HX).get_data(as_text=True)
    assert (
        is_fragment(fragment)
        and fragment.lstrip().startswith("{#") is False
        and 'id="tree"' in fragment
    )


@pytest.mark.parametrize("form", ["edit", "children/new", "move", "delete"])
def test_each_inline_form_opens_as_a_page_and_as_a_fragment(db_engine, editor, form):
    node = make_node(db_engine, "Expansion", kind="lever")
    page = editor.get(f"/tree/{node.id}/{form}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "<html" in body and "<form" in body and 'name="csrf_token"' in body
    fragment = editor.get(f"/tree/{node.id}/{form}", headers=HX)
    fbody = fragment.get_data(as_text=True)
    assert (
        fragment.status_code == 200
        and is_fragment(fbody)
        and 'id="tree"' in fbody
        and "<form" in fbody
    )
    # every field has a label, every form posts with hx-post to the tree
    for field_id in re.findall(r'<(?:input|select|textarea)[^>]* id="([^"]+)"', fbody):
        assert f'for="{field_id}"' in fbody, field_id
    assert 'hx-target="#tree"' in fbody and f'hx-post="/tree/{node.id}' in fbody


def test_edit_links_are_urls_with_htmx_twins(db_engine, editor):
    node = make_node(db_engine, "Expansion", kind="lever")
    body = editor.get("/tree/").get_data(as_text=True)
    assert f'href="/tree/{node.id}/edit" hx-get="/tree/{node.id}/edit"' in body
    assert f'hx-get="/tree/{root_id(db_engine)}/move"' not in body  # the root cannot move
    assert f'hx-get="/tree/{root_id(db_engine)}/delete"' not in body


# ---------------------------------------------------------------- editing


def test_add_child_then_edit_it_without_js(db_engine, editor):
    root = root_id(db_engine)
    response = post(
        editor,
        f"/tree/{root}/children",
        {
            "name": "Expansion",
            "kind": "lever",
            "leading_metric": "Expansion MRR",
            "baseline": "0.06",
            "target": "0.09",
            "hypothesis": "If we…",
            "status": "active",
        },
    )
    assert response.status_code == 303
    node = nodes(db_engine)["Expansion"]
    assert response.headers["Location"].endswith(f"/tree/?saved={node.id}#node-{node.id}")
    # without JavaScript the tree page marks the saved node
    page = editor.get(response.headers["Location"]).get_data(as_text=True)
    assert re.search(
        rf'id="node-{node.id}-name">Expansion</strong>.*?role="status">Saved<', page, re.S
    )
    assert page.count('role="status">Saved<') == 1
    assert (node.parent_id, node.baseline, node.target) == (root, 0.06, 0.09)
    response = post(
        editor, f"/tree/{node.id}", {"name": "Expansion lever", "kind": "lever", "status": "paused"}
    )
    assert response.status_code == 303
    assert nodes(db_engine)["Expansion lever"].status == "paused"
    with Session(db_engine) as session:
        actions = session.exec(
            select(AuditEvent.action).where(AuditEvent.entity_type == "driver_node")
        ).all()
    assert actions == ["node.create", "node.update"]


def test_an_htmx_edit_answers_the_nodes_branch_with_a_saved_status(db_engine, editor):
    # issue 14, item 3: the edit is swapped in place (no jump) and confirmed
    node = make_node(db_engine, "Expansion", kind="lever")
    child = make_node(db_engine, "Seats", parent="Expansion", kind="driver")
    response = post(editor, f"/tree/{node.id}", {"name": "Renamed", "kind": "lever"}, htmx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and is_fragment(body)
    assert body.lstrip().startswith(f'<li id="node-{node.id}">')
    assert f'id="node-{child.id}"' in body  # the branch keeps its children
    assert 'id="tree"' not in body and "Net Revenue Retention" not in body
    assert re.search(r'<span class="saved-status" role="status">Saved</span>', body)
    assert body.count('role="status">Saved<') == 1
    # the form posts to that branch, in place and without scrolling
    form = editor.get(f"/tree/{node.id}/edit", headers=HX).get_data(as_text=True)
    assert f'hx-target="#node-{node.id}" hx-swap="outerHTML show:none focus-scroll:false"' in form


def test_an_htmx_add_answers_the_parents_branch_with_the_new_node_saved(db_engine, editor):
    node = make_node(db_engine, "Expansion", kind="lever")
    response = post(
        editor, f"/tree/{node.id}/children", {"name": "Seats", "kind": "driver"}, htmx=True
    )
    body = response.get_data(as_text=True)
    seats = nodes(db_engine)["Seats"]
    assert response.status_code == 200
    assert body.lstrip().startswith(f'<li id="node-{node.id}">')
    assert re.search(rf'id="node-{seats.id}-name">Seats</strong>.*?role="status">Saved<', body,
                     re.S)


def test_a_refused_htmx_save_retargets_the_whole_tree(db_engine, editor):
    node = make_node(db_engine, "Expansion", kind="lever")
    response = post(editor, f"/tree/{node.id}", {"name": ""}, htmx=True)
    assert response.status_code == 422
    assert response.headers["HX-Retarget"] == "#tree"
    assert response.headers["HX-Reswap"] == "outerHTML"
    assert 'id="tree"' in response.get_data(as_text=True)


def test_kind_defaults_to_lever_under_the_root_and_driver_below(db_engine, editor):
    lever = make_node(db_engine, "Expansion", kind="lever")
    selected = re.compile(r'<option value="(\w+)" selected>')
    under_root = editor.get(f"/tree/{root_id(db_engine)}/children/new").get_data(as_text=True)
    under_lever = editor.get(f"/tree/{lever.id}/children/new").get_data(as_text=True)
    kind_select = re.compile(r'name="kind".*?</select>', re.S)
    assert selected.findall(kind_select.search(under_root).group()) == ["lever"]
    assert selected.findall(kind_select.search(under_lever).group()) == ["driver"]


@pytest.mark.parametrize(
    ("data", "field_id", "message"),
    [
        ({"name": ""}, "name", "is required"),
        ({"name": "n" * 201}, "name", "at most 200 characters"),
        ({"name": "x", "hypothesis": "h" * 10_001}, "hypothesis", "at most 10,000 characters"),
        ({"name": "x", "baseline": "high"}, "baseline", "must be a number"),
        ({"name": "x", "owner_id": "999999"}, "owner", "unknown owner"),
        ({"name": "x", "team_id": "424242"}, "team", "unknown team"),
        ({"name": "x", "kind": "root"}, "kind", "must be one of"),
    ],
)
@pytest.mark.parametrize("htmx", [False, True])
def test_bad_input_is_a_422_with_the_message_beside_the_field_and_nothing_stored(
    db_engine, editor, data, field_id, message, htmx
):
    root = root_id(db_engine)
    before = node_count(db_engine)
    response = post(editor, f"/tree/{root}/children", data, htmx=htmx)
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert re.search(rf'id="add-{root}-{field_id}-error">[^<]*{re.escape(message)}', body), body[
        -3000:
    ]
    assert re.search(rf'aria-describedby="[^"]*add-{root}-{field_id}-error"', body)
    assert node_count(db_engine) == before
    assert is_fragment(body) == htmx


def test_html_in_every_text_field_is_stored_verbatim_and_rendered_escaped(db_engine, editor):
    root = root_id(db_engine)
    script = "<script>alert(1)</script>"
    response = post(
        editor,
        f"/tree/{root}/children",
        {
            "name": script,
            "leading_metric": f"<b>{script}</b>",
            "hypothesis": f"<img src=x onerror=alert(1)>{script}",
        },
    )
    assert response.status_code == 303
    body = editor.get("/tree/").get_data(as_text=True)
    assert script not in body and "<img src=x" not in body and "<b>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body
    # and in a 422 re-render
    response = post(
        editor, f"/tree/{root}/children", {"name": script, "baseline": "nope", "hypothesis": script}
    )
    assert response.status_code == 422 and script not in response.get_data(as_text=True)


def test_move_under_own_descendant_is_a_422_with_a_clear_message(db_engine, editor):
    churn = make_node(db_engine, "Churn")
    make_node(db_engine, "Activation", parent="Churn")
    activation = nodes(db_engine)["Activation"]
    response = post(editor, f"/tree/{churn.id}/move", {"parent_id": activation.id})
    body = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "&#39;Churn&#39; cannot be moved under &#39;Activation&#39;" in body
    assert nodes(db_engine)["Churn"].parent_id == root_id(db_engine)
    # the move form does not even offer the branch
    form = editor.get(f"/tree/{churn.id}/move").get_data(as_text=True)
    assert (
        f'<option value="{activation.id}"' not in form and f'<option value="{churn.id}"' not in form
    )


def test_move_and_root_rules(db_engine, editor):
    a = make_node(db_engine, "A")
    b = make_node(db_engine, "B")
    assert post(editor, f"/tree/{a.id}/move", {"parent_id": b.id}).status_code == 303
    assert nodes(db_engine)["A"].parent_id == b.id
    root = root_id(db_engine)
    response = post(editor, f"/tree/{root}/move", {"parent_id": a.id})
    assert response.status_code == 422 and "root cannot be moved" in response.get_data(as_text=True)
    response = post(editor, f"/tree/{root}/delete", {"policy": "reparent"})
    assert response.status_code == 422 and "root cannot be deleted" in response.get_data(
        as_text=True
    )


def test_delete_asks_what_to_do_and_reparents_to_the_parent_by_default(db_engine, editor):
    lever = make_node(db_engine, "Lever")
    doomed = make_node(db_engine, "Doomed", parent="Lever")
    make_node(db_engine, "Child", parent="Doomed")
    make_experiment(db_engine, doomed, "orphan-candidate")
    question = editor.get(f"/tree/{doomed.id}/delete").get_data(as_text=True)
    assert "It has 1 child node and 1 experiment" in question
    assert (
        'name="policy" value="reparent"' in question and 'name="policy" value="refuse"' in question
    )
    assert f'<option value="{lever.id}" selected>' in question and "(its parent)" in question
    assert "hx-confirm=" in question
    response = post(
        editor, f"/tree/{doomed.id}/delete", {"policy": "reparent", "target_id": str(lever.id)}
    )
    assert response.status_code == 303
    after = nodes(db_engine)
    assert "Doomed" not in after and after["Child"].parent_id == lever.id
    with Session(db_engine) as session:
        assert (
            session.exec(
                select(Experiment.node_id).where(Experiment.key == "orphan-candidate")
            ).one()
            == lever.id
        )


def test_refusing_a_non_empty_delete_is_a_422_and_nothing_changes(db_engine, editor):
    doomed = make_node(db_engine, "Doomed")
    make_node(db_engine, "Child", parent="Doomed")
    before = node_count(db_engine)
    response = post(editor, f"/tree/{doomed.id}/delete", {"policy": "refuse"}, htmx=True)
    body = response.get_data(as_text=True)
    assert response.status_code == 422 and is_fragment(body)
    assert "still has 1 child node and 0 experiments, so it was not deleted" in body
    assert node_count(db_engine) == before
    target_inside = nodes(db_engine)["Child"].id
    response = post(
        editor, f"/tree/{doomed.id}/delete", {"policy": "reparent", "target_id": target_inside}
    )
    assert response.status_code == 422 and "inside the branch being deleted" in response.get_data(
        as_text=True
    )
    empty = make_node(db_engine, "Empty")
    assert "It has no child nodes and no experiments" in editor.get(
        f"/tree/{empty.id}/delete"
    ).get_data(as_text=True)
    assert post(editor, f"/tree/{empty.id}/delete", {"policy": "refuse"}).status_code == 303


# ---------------------------------------------------------------- permissions


def test_viewers_cannot_edit(db_engine, login_as):
    node = make_node(db_engine, "Expansion")
    viewer = login_as("viewer")
    assert viewer.get(f"/tree/{node.id}/edit").status_code == 403
    assert post(viewer, f"/tree/{node.id}", {"name": "Hijacked"}).status_code == 403
    assert nodes(db_engine)["Expansion"].name == "Expansion"


def test_team_scoped_nodes(db_engine, login_as):
    grower = login_as("viewer", teams={"growth": "experimenter"})
    watcher = login_as("viewer", teams={"growth": "viewer", "success": "experimenter"})
    with Session(db_engine) as session:
        teams = {t.slug: t.id for t in session.exec(select(Team)).all()}
    secret = make_node(db_engine, "Success lever", team_id=teams["success"])
    mine = make_node(db_engine, "Growth lever", team_id=teams["growth"])
    page = grower.get("/tree/").get_data(as_text=True)
    assert "Success lever" not in page and "Growth lever" in page
    for url in (f"/tree/{secret.id}/edit", f"/tree/{secret.id}/move", f"/tree/{secret.id}/delete"):
        assert grower.get(url).status_code == 404
    assert post(grower, f"/tree/{secret.id}", {"name": "Mine"}).status_code == 404
    assert post(grower, f"/tree/{secret.id}/delete", {"policy": "reparent"}).status_code == 404
    assert (
        post(
            grower, f"/tree/{mine.id}", {"name": "Growth lever 2", "team_id": teams["growth"]}
        ).status_code
        == 303
    )
    # a growth viewer sees the node but may not change it
    assert watcher.get(f"/tree/{mine.id}/edit").status_code == 403
    response = post(watcher, f"/tree/{mine.id}", {"name": "Nope", "team_id": teams["growth"]})
    assert response.status_code == 403 and "experimenter role" in response.get_data(as_text=True)
    assert post(watcher, "/tree/999999/edit").status_code == 405
    assert watcher.get("/tree/999999/edit").status_code == 404
    assert watcher.get("/tree/99999999999999999999/edit").status_code == 404


def test_posts_need_a_csrf_token_and_accept_the_htmx_header(db_engine, editor):
    node = make_node(db_engine, "Expansion")
    refused = editor.post(f"/tree/{node.id}", data={"name": "No token"})
    assert refused.status_code == 400
    accepted = editor.post(
        f"/tree/{node.id}",
        data={"name": "Header token", "version": "1"},
        headers={**HX, "X-CSRFToken": editor.csrf},
    )
    assert accepted.status_code == 200
    assert "Header token" in nodes(db_engine)


def test_dashboard_still_draws_the_read_only_tree(db_engine, login_as):
    make_node(db_engine, "Expansion", kind="lever")
    body = login_as("experimenter").get("/").get_data(as_text=True)
    assert "Expansion" in body and 'hx-get="/tree/' not in body


# ---------------------------------------------------------------- versions and team changes


def test_a_stale_save_is_409_naming_who_changed_it_with_the_input_kept(db_engine, login_as):
    node = make_node(db_engine, "Expansion", kind="lever")
    first, second = login_as("experimenter"), login_as("experimenter")
    assert (
        post(
            first,
            f"/tree/{node.id}",
            {"name": "Expansion (first)", "kind": "lever", "version": "1"},
        ).status_code
        == 303
    )
    response = post(
        second,
        f"/tree/{node.id}",
        {
            "name": "Expansion (second)",
            "kind": "lever",
            "leading_metric": "Seats added",
            "version": "1",
        },
    )
    body = response.get_data(as_text=True)
    assert response.status_code == 409
    assert f"was changed by {first.user.name or first.user.email} on " in body
    assert "you saw version 1, it is now version 2" in body
    assert 'value="Expansion (second)"' in body and 'value="Seats added"' in body
    assert 'name="version" value="2"' in body
    assert nodes(db_engine)["Expansion (first)"].version == 2


@pytest.mark.parametrize(
    "url_suffix, data",
    [
        ("", {"name": "Renamed", "kind": "lever"}),
        ("/move", {"parent_id": "PARENT"}),
        ("/delete", {"policy": "reparent"}),
    ],
)
@pytest.mark.parametrize("version", ["", "x", "2.0"])
def test_a_tree_form_without_a_usable_version_is_422(db_engine, editor, url_suffix, data, version):
    node = make_node(db_engine, "Expansion", kind="lever")
    other = make_node(db_engine, "Churn", kind="lever")
    form = {k: (str(other.id) if v == "PARENT" else v) for k, v in data.items()}
    response = post(editor, f"/tree/{node.id}{url_suffix}", {**form, "version": version})
    assert response.status_code == 422
    assert "made on" in response.get_data(as_text=True)
    after = nodes(db_engine)["Expansion"]
    assert (after.version, after.parent_id) == (1, node.parent_id)


def test_changing_a_nodes_team_needs_edit_rights_on_both_teams(db_engine, login_as, factory):
    for slug in ("growth", "success", "finance"):
        factory.team(slug)
    with Session(db_engine) as session:
        teams = {t.slug: t.id for t in session.exec(select(Team)).all()}
    node = make_node(db_engine, "Growth lever", team_id=teams["growth"])
    member = login_as(
        "experimenter",
        teams={"growth": "experimenter", "success": "experimenter", "finance": "viewer"},
    )
    # Shared (no team) would show the node to every team: admins only.
    shared = post(member, f"/tree/{node.id}", {"name": "Growth lever", "team_id": ""})
    assert shared.status_code == 422
    assert "only an admin can make a team" in shared.get_data(as_text=True)
    # A team where the member only views: refused.
    viewer_side = post(
        member, f"/tree/{node.id}", {"name": "Growth lever", "team_id": teams["finance"]}
    )
    assert viewer_side.status_code == 422
    assert nodes(db_engine)["Growth lever"].team_id == teams["growth"]
    # Edit rights on both sides: allowed.
    moved = post(member, f"/tree/{node.id}", {"name": "Growth lever", "team_id": teams["success"]})
    assert moved.status_code == 303 and nodes(db_engine)["Growth lever"].team_id == teams["success"]
    # An admin may make it shared.
    admin = login_as("admin")
    made_shared = post(admin, f"/tree/{node.id}", {"name": "Growth lever", "team_id": ""})
    assert made_shared.status_code == 303
    assert nodes(db_engine)["Growth lever"].team_id is None
    with Session(db_engine) as session:
        updates = session.exec(select(AuditEvent).where(AuditEvent.action == "node.update")).all()
    assert [e.diff["team_id"] for e in updates] == [
        [teams["growth"], teams["success"]],
        [teams["success"], None],
    ]
