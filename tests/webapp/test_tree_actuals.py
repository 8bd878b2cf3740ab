"""The tree measures itself (issue 16 item 3): nodes tied to a ledger metric show the
ledger's actuals per period (the root reads TTM NRR by default), other nodes take dated
actuals entered inline by their editors (compare-and-set on a date that has one), each
drawn as a sparkline with baseline → target → actual; the weekly review's tree summary
and the dashboard show the same actuals against target."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlmodel import Session, select

from experiments.models import AuditEvent, DriverNode
from experiments.tree_models import DriverActual
from tests.factories import store_ledger_file
from tests.ledger_gen import write_csv

HX = {"HX-Request": "true"}


def pct(value: float, digits: int = 1) -> str:
    return f"{value * 100:.{digits}f}%"


@pytest.fixture
def stored(db_engine, tmp_path, admin):
    path = tmp_path / "ledger.csv"
    write_csv(path, n_accounts=200, months=14, seed=3)
    with Session(db_engine, expire_on_commit=False) as session:
        return store_ledger_file(session, path, admin)


@pytest.fixture
def editor(login_as):
    return login_as("experimenter")


def add_node(db_engine, name: str, **fields) -> DriverNode:
    with Session(db_engine, expire_on_commit=False) as session:
        root = session.exec(select(DriverNode).where(DriverNode.parent_id.is_(None))).one()
        node = DriverNode(name=name, parent_id=root.id, **fields)
        session.add(node)
        session.commit()
        return node


def set_root(db_engine, **fields) -> DriverNode:
    with Session(db_engine, expire_on_commit=False) as session:
        root = session.exec(select(DriverNode).where(DriverNode.parent_id.is_(None))).one()
        for name, value in fields.items():
            setattr(root, name, value)
        session.add(root)
        session.commit()
        return root


def card(html: str, node_id: int) -> str:
    match = re.search(rf'<li id="node-{node_id}">\s*<article.*?</article>', html, re.S)
    assert match, f"no card for node {node_id}"
    return match.group(0)


def test_root_reads_ttm_nrr_from_the_ledger_with_baseline_and_target(editor, stored, db_engine):
    root = set_root(db_engine, baseline=1.02, target=1.08)
    html = card(editor.get("/tree/").get_data(as_text=True), root.id)
    last = stored["ttm"][-1]
    assert "NRR, trailing twelve months: 102.0% → 108.0% →" in html
    assert f'<span class="actual-value">{pct(last["nrr"])}</span>' in html
    assert f"({last['period']}, from the ledger)" in html
    spark = re.search(r'<svg class="chart sparkline".*?</svg>', html, re.S).group(0)
    assert 'role="img"' in spark and 'class="ref ref-target"' in spark
    assert 'class="ref ref-baseline"' in spark
    # one point per defined TTM period: the 12th period on
    assert spark.count("<circle") == 1 and f"latest actual {pct(last['nrr'])}" in spark
    assert spark.count("L") == sum(1 for t in stored["ttm"] if t["nrr"] is not None) - 1


def test_a_lever_tied_to_churn_rate_in_the_editor_shows_the_monthly_rate(editor, stored,
                                                                         db_engine):
    lever = add_node(db_engine, "Churn", kind="lever")
    response = editor.post(f"/tree/{lever.id}", data={
        "csrf_token": editor.csrf, "version": "1", "name": "Churn", "kind": "lever",
        "status": "active", "metric": "churn_rate", "baseline": "0.02", "target": "0.015"})
    assert response.status_code == 303
    html = card(editor.get("/tree/").get_data(as_text=True), lever.id)
    rate = stored["monthly"][-1]["churn_rate"]
    assert "Churn rate, monthly (churned MRR ÷ start MRR): 2.00% → 1.50% →" in html
    assert f'<span class="actual-value">{pct(rate, 2)}</span>' in html
    # a ledger node takes no hand-entered actuals
    assert "Enter an actual" not in html
    refused = editor.post(f"/tree/{lever.id}/actuals", data={
        "csrf_token": editor.csrf, "measured_on": "2026-11-01", "value": "0.01"})
    assert refused.status_code == 422
    assert "takes its actuals from the revenue ledger" in refused.get_data(as_text=True)


def test_unknown_metric_is_refused_beside_the_field(editor, db_engine):
    lever = add_node(db_engine, "Expansion", kind="lever")
    response = editor.post(f"/tree/{lever.id}", data={
        "csrf_token": editor.csrf, "version": "1", "name": "Expansion", "kind": "lever",
        "status": "active", "metric": "arr"})
    assert response.status_code == 422
    assert "must be one of: nrr, grr" in response.get_data(as_text=True)


def test_a_driver_takes_dated_actuals_inline_and_draws_them(editor, db_engine):
    driver = add_node(db_engine, "Activation", kind="driver", leading_metric="activated share",
                      baseline=0.55, target=0.70)
    today = date.today()
    for days, value in ((20, "0.56"), (10, "0.6"), (1, "0.62")):
        response = editor.post(f"/tree/{driver.id}/actuals", headers=HX, data={
            "csrf_token": editor.csrf, "measured_on": (today - timedelta(days=days)).isoformat(),
            "value": value})
        assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith(f'<li id="node-{driver.id}">')  # the branch swapped in place
    assert 'role="status">Saved<' in html
    assert "activated share: 0.55 → 0.7 →" in html
    assert '<span class="actual-value">0.62</span>' in html
    spark = re.search(r'<svg class="chart sparkline".*?</svg>', html, re.S).group(0)
    assert spark.count("L") == 2  # three points, one line
    with Session(db_engine) as session:
        rows = session.exec(select(DriverActual).where(DriverActual.node_id == driver.id)).all()
        events = session.exec(select(AuditEvent).where(AuditEvent.action == "node.actual")).all()
    assert sorted(r.value for r in rows) == [0.56, 0.6, 0.62]
    assert len(events) == 3 and all(e.actor_id == editor.user.id for e in events)


@pytest.mark.parametrize(("field", "value", "message"), [
    ("measured_on", "30/11/2026", "must be a date such as 2026-12-01"),
    ("measured_on", "", "is required"),
    ("measured_on", "2999-01-01", "must not be in the future"),
    ("value", "", "is required"),
    ("value", "lots", "must be a number"),
    ("value", "nan", "must be a finite number"),
])
def test_bad_actual_input_is_refused_beside_its_field(editor, db_engine, field, value, message):
    driver = add_node(db_engine, "Adoption", kind="driver")
    data = {"csrf_token": editor.csrf, "measured_on": "2026-01-05", "value": "0.4", field: value}
    response = editor.post(f"/tree/{driver.id}/actuals", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert message in html and "aria-invalid" in html
    assert '<details open>' in card_and_form(html, driver.id)
    with Session(db_engine) as session:
        assert session.exec(select(DriverActual)).all() == []


def card_and_form(html: str, node_id: int) -> str:
    return re.search(rf'<li id="node-{node_id}">.*?</details>', html, re.S).group(0)


def test_changing_a_dated_actual_needs_the_version_it_was_made_on(editor, login_as, db_engine):
    driver = add_node(db_engine, "Seats", kind="driver")
    post = {"csrf_token": editor.csrf, "measured_on": "2026-02-01", "value": "3"}
    assert editor.post(f"/tree/{driver.id}/actuals", data=post).status_code == 303
    # the same date again from the blank form: refused, nothing overwritten
    again = editor.post(f"/tree/{driver.id}/actuals", data={**post, "value": "4"})
    assert again.status_code == 422
    assert "2026-02-01 already has the value 3" in again.get_data(as_text=True)
    # two people change it from version 1: the first wins, the second gets one 409
    other = login_as("experimenter")
    first = other.post(f"/tree/{driver.id}/actuals",
                       data={**post, "csrf_token": other.csrf, "value": "5", "version": "1"})
    assert first.status_code == 303
    second = editor.post(f"/tree/{driver.id}/actuals", data={**post, "value": "6",
                                                             "version": "1"})
    assert second.status_code == 409
    assert "was changed by" in second.get_data(as_text=True)
    with Session(db_engine) as session:
        row = session.exec(select(DriverActual)).one()
    assert (row.value, row.version) == (5.0, 2)


def test_viewers_cannot_enter_actuals_and_other_teams_nodes_are_404(login_as, db_engine,
                                                                    factory):
    viewer = login_as("viewer")
    driver = add_node(db_engine, "Reactivation", kind="driver")
    data = {"csrf_token": viewer.csrf, "measured_on": "2026-01-01", "value": "1"}
    assert viewer.post(f"/tree/{driver.id}/actuals", data=data).status_code == 403
    team_b = factory.team("team-b")
    hidden = add_node(db_engine, "B's driver", kind="driver", team_id=team_b.id)
    member = login_as("viewer", teams={"team-a": "experimenter"})
    data["csrf_token"] = member.csrf
    assert member.post(f"/tree/{hidden.id}/actuals", data=data).status_code == 404
    with Session(db_engine) as session:
        assert session.exec(select(DriverActual)).all() == []


def test_a_nodes_owner_enters_actuals_whatever_their_role(login_as, db_engine):
    owner = login_as("viewer")
    mine = add_node(db_engine, "My driver", kind="driver", owner_id=owner.user.id)
    other = add_node(db_engine, "Not mine", kind="driver")
    html = owner.get("/tree/").get_data(as_text=True)
    assert "Enter an actual of My driver" in html and "Enter an actual of Not mine" not in html
    data = {"csrf_token": owner.csrf, "measured_on": "2026-01-01", "value": "2"}
    assert owner.post(f"/tree/{mine.id}/actuals", data=data).status_code == 303
    assert owner.post(f"/tree/{other.id}/actuals", data=data).status_code == 403
    with Session(db_engine) as session:
        (row,) = session.exec(select(DriverActual)).all()
    assert (row.node_id, row.entered_by_id) == (mine.id, owner.user.id)


def test_deleting_a_node_deletes_its_actuals(editor, db_engine):
    driver = add_node(db_engine, "Short-lived", kind="driver")
    editor.post(f"/tree/{driver.id}/actuals",
                data={"csrf_token": editor.csrf, "measured_on": "2026-03-01", "value": "1"})
    response = editor.post(f"/tree/{driver.id}/delete",
                           data={"csrf_token": editor.csrf, "version": "1", "policy": "refuse"})
    assert response.status_code == 303
    with Session(db_engine) as session:
        assert session.exec(select(DriverActual)).all() == []


def test_review_summary_shows_the_periods_actuals_against_target(editor, stored, db_engine):
    root = set_root(db_engine, baseline=1.0, target=1.08)
    driver = add_node(db_engine, "Activation", kind="driver", leading_metric="activated share",
                      baseline=0.5, target=0.7)
    editor.post(f"/tree/{driver.id}/actuals", data={
        "csrf_token": editor.csrf, "measured_on": (date.today() - timedelta(days=2)).isoformat(),
        "value": "0.61"})
    html = editor.get("/review/", follow_redirects=True).get_data(as_text=True)
    section = re.search(r'id="tree-actuals".*?</table>', html, re.S).group(0)
    last = stored["ttm"][-1]
    row = re.search(rf'<tr data-node="{root.id}">(.*?)</tr>', section, re.S).group(1)
    assert pct(last["nrr"]) in row and "108.0%" in row and last["period"] in row
    gap = (last["nrr"] - 1.08) * 100
    assert f"{gap:+.1f} pts" in row
    row = re.search(rf'<tr data-node="{driver.id}">(.*?)</tr>', section, re.S).group(1)
    assert "0.61" in row and "0.7" in row and "-0.09" in row


def test_dashboard_leads_with_current_nrr_and_grr_against_target(editor, stored, db_engine):
    set_root(db_engine, target=1.08)
    add_node(db_engine, "Gross retention", kind="lever", metric="grr", target=0.95)
    html = editor.get("/").get_data(as_text=True)
    top = re.search(r'<section[^>]*class="card dashboard-nrr".*?</section>', html, re.S).group(0)
    assert html.index("dashboard-nrr") < html.index('id="tree-heading"')
    last = stored["ttm"][-1]
    assert pct(last["nrr"]) in top and pct(last["grr"]) in top
    assert "target 108.0%" in top and "target 95.0%" in top
    assert 'href="/nrr"' in top
    assert re.search(r'<svg class="chart line-chart" id="dashboard-trend"', top)


def test_dashboard_without_a_ledger_points_to_the_nrr_page(editor):
    html = editor.get("/").get_data(as_text=True)
    top = re.search(r'<section[^>]*class="card dashboard-nrr".*?</section>', html, re.S).group(0)
    assert "No revenue ledger yet" in top and 'href="/nrr"' in top


def test_review_exports_carry_the_actuals_against_target(editor, stored, db_engine):
    root = set_root(db_engine, baseline=1.0, target=1.08)
    week = "{}-W{:02d}".format(*date.today().isocalendar()[:2])
    last = stored["ttm"][-1]
    document = editor.get(f"/review/{week}/export.json").get_json()
    (line,) = [a for a in document["driver_tree_actuals"] if a["node_id"] == root.id]
    assert line["actual"] == last["nrr"] and line["target"] == 1.08
    assert line["period"] == last["period"] and line["source"] == "ledger"
    markdown = editor.get(f"/review/{week}/export.md").get_data(as_text=True)
    assert "### Actuals against target" in markdown
    assert f"| {last['period']} | 100.00% | 108.00% | {last['nrr'] * 100:.2f}% |" in markdown
    html = editor.get(f"/review/{week}/export.html").get_data(as_text=True)
    assert "<h3>Actuals against target</h3>" in html and f"{last['nrr'] * 100:.2f}%" in html
