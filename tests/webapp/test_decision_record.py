"""One decision record in the browser (issue 17 item 2; issue 15 items 2 and 5).

A decision made on the experiment page shows in the review item and the review exports, and
the other way round; a ship names what ships to whom; conflicting decisions get one 409; a
ship over a failed guardrail is a clear form error; uploads after a decision are refused
until the decision is reopened with a reason; rows decided before the record still render.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlmodel import select

from experiments.imports import import_accounts
from experiments.models import (
    AnalysisSnapshot,
    AuditEvent,
    Dataset,
    Experiment,
    ReviewItem,
)
from experiments.review import current_week
from tests.factories import accounts_csv

SAMPLE_CSV = Path(__file__).resolve().parents[1] / "data" / "accounts_example.csv"
HTMX = {"HX-Request": "true"}
SHIP = {"decision": "ship", "shipped_variant": "treatment", "rollout_share": "50%",
        "eligible_base": "120,000", "rationale": "Clear win on seats, no SRM."}


@pytest.fixture
def world(factory, login_as):
    factory.team("growth")
    factory.team("other")
    clients = {
        "exp": login_as("viewer", {"growth": "experimenter"}),
        "exp2": login_as("viewer", {"growth": "experimenter"}),
        "analyst": login_as("viewer", {"growth": "analyst"}),
        "viewer": login_as("viewer", {"growth": "viewer"}),
    }
    return clients


def stopped(factory, key="seat-nudge", **options):
    return factory.experiment(key, team="growth", status="stopped", **options)


def version_of(session, key) -> int:
    session.expire_all()
    return session.exec(select(Experiment).where(Experiment.key == key)).one().version


def decide_on_page(client, key, version, **fields):
    return client.post(f"/experiments/{key}/decide",
                       data={"csrf_token": client.csrf, "version": str(version),
                             **SHIP, **fields})


def review_form(client, key):
    """The review item form of ``key``: its URL and hidden versions."""
    week = current_week().label
    html = client.get(f"/review/{week}").get_data(as_text=True)
    match = re.search(rf'<form class="card review-item" id="item-{key}"[^>]*action="([^"]+)"',
                      html)
    assert match, f"no review item form for {key}"
    form = html[match.start():html.index("</form>", match.start())]
    version = re.search(r'name="version" value="(\d+)"', form).group(1)
    experiment_version = re.search(r'name="experiment_version" value="(\d+)"', form)
    return match.group(1), version, experiment_version.group(1) if experiment_version else None


def test_a_ship_on_the_page_shows_in_the_review_and_its_exports(world, factory, session):
    stopped(factory)
    client = world["exp"]
    page = client.get("/experiments/seat-nudge").get_data(as_text=True)
    # The ship part of the form: the treatments only, the share and the eligible base.
    assert re.search(r'<select id="shipped_variant" name="shipped_variant"', page)
    assert '<option value="treatment">' in page and '<option value="control">' not in page
    assert 'name="rollout_share"' in page and 'name="eligible_base"' in page
    week = current_week().label
    client.get(f"/review/{week}")  # the meeting is open with the experiment on its agenda
    response = decide_on_page(client, "seat-nudge", 1)
    assert response.status_code == 303, response.get_data(as_text=True)

    html = client.get(f"/review/{week}").get_data(as_text=True)
    item = html[html.index('id="item-seat-nudge"'):]
    item = item[:item.index("</form>")]
    assert "— not decided —" not in item
    assert "<code>treatment</code>" in item and "50.0% of the eligible base" in item
    assert "120,000.00 monthly MRR" in item and "on the experiment page" in item
    assert 'href="/experiments/seat-nudge#decision-reopen"' in item
    # The quarter's ships replace "NRR points won": listed, here without results to price.
    assert "NRR points won" not in html and 'id="impact-table"' in html
    assert "No impact figure: no results for the shipped variant &#39;treatment&#39;" in html

    data = json.loads(client.get(f"/review/{week}/export.json").get_data(as_text=True))
    record = data["items"]["seat-nudge"]["decision_record"]
    assert (record["decision"], record["shipped_variant"], record["rollout_share"],
            record["eligible_base_mrr"]) == ("ship", "treatment", 0.5, "120000")
    assert data["items"]["seat-nudge"]["decision"] == "ship"
    exp = next(e for e in data["experiments"] if e["experiment"]["key"] == "seat-nudge")
    assert exp["experiment"]["shipped_variant"] == "treatment"
    csv_text = client.get(f"/review/{week}/export.csv").get_data(as_text=True)
    assert "seat-nudge" in csv_text and "ship" in csv_text


def test_a_decision_in_the_review_shows_on_the_experiment_page(world, factory, session):
    stopped(factory)
    client = world["exp"]
    url, version, experiment_version = review_form(client, "seat-nudge")
    assert experiment_version == "1"
    response = client.post(url, headers={**HTMX, "X-CSRFToken": client.csrf}, data={
        "version": version, "experiment_version": experiment_version, "note": "",
        "decision": "ship", "decision_rationale": "Won in the meeting.",
        "shipped_variant": "treatment", "rollout_share": "0.25", "eligible_base": "80000"})
    assert response.status_code == 200, response.get_data(as_text=True)
    page = client.get("/experiments/seat-nudge").get_data(as_text=True)
    assert "Won in the meeting." in page and "<code>treatment</code>" in page
    assert f"on the review of {current_week().label}" in page
    assert 'id="decision-reopen"' in page and 'name="reason"' in page
    # One audit trail: the same event as a decision made on the page.
    session.expire_all()
    decided = session.exec(select(AuditEvent).where(AuditEvent.action == "experiment.decide")
                           ).one()
    assert decided.diff["source"] == [None, f"review {current_week().label}"]


def test_conflicting_decisions_get_one_409(world, factory, session):
    stopped(factory)
    first, second = world["exp"], world["exp2"]
    url, version, experiment_version = review_form(second, "seat-nudge")  # opened the review
    assert decide_on_page(first, "seat-nudge", 1).status_code == 303
    response = second.post(url, headers={**HTMX, "X-CSRFToken": second.csrf}, data={
        "version": version, "experiment_version": experiment_version,
        "note": "Discussed the pricing page.", "decision": "kill", "decision_rationale": "Flat.",
        "shipped_variant": "", "rollout_share": "", "eligible_base": ""})
    assert response.status_code == 409
    html = response.get_data(as_text=True)
    assert "you saw version 1" in html
    assert "Discussed the pricing page.</textarea>" in html  # the input is kept
    assert "<code>treatment</code>" in html  # and the record that won is shown
    # Both on the page at version 1: the first wins, the second is a 409.
    stopped(factory, key="other-exp")
    assert decide_on_page(first, "other-exp", 1).status_code == 303
    late = decide_on_page(second, "other-exp", 1, decision="kill")
    assert late.status_code == 409
    session.expire_all()
    decided = {e.key: e.decision for e in session.exec(select(Experiment)).all()}
    assert decided == {"seat-nudge": "ship", "other-exp": "ship"}


def test_a_ship_over_a_failed_guardrail_is_a_clear_form_error(world, factory, session):
    experiment = stopped(factory)
    # A real analysis of generated accounts, whose treatment comparison then carries a failed
    # GRR guardrail (DESIGN §4b shape).
    import_accounts(session, session.get(Experiment, experiment.id), accounts_csv(seed=5, n=60),
                    filename="a.csv", actor=None)
    session.commit()
    snapshot = session.exec(select(AnalysisSnapshot)).one()
    result = json.loads(json.dumps(snapshot.result))
    result["comparisons"][0]["guardrails"] = [
        {"metric": "grr", "margin": 0.01, "diff": -0.03, "p_value": 0.99, "status": "fail"}]
    snapshot.result = result
    session.add(snapshot)
    session.commit()
    client = world["exp"]
    page = client.get("/experiments/seat-nudge").get_data(as_text=True)
    assert 'id="failed-guardrails"' in page  # warned before submitting
    version = version_of(session, "seat-nudge")
    response = decide_on_page(client, "seat-nudge", version)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "failed its GRR (margin 1.00 pts, difference -3.00 pts) guardrail" in html
    assert 'id="rationale-error"' in html and 'aria-invalid="true"' in html
    assert "Clear win on seats, no SRM." in html  # the input is kept
    assert version_of(session, "seat-nudge") == version
    named = decide_on_page(client, "seat-nudge", version,
                           rationale="GRR fell 3 pts among tiny accounts; accepted.")
    assert named.status_code == 303


@pytest.mark.parametrize(("fields", "message"), [
    ({"shipped_variant": ""}, "a ship names the variant that ships"),
    ({"shipped_variant": "control"}, "must be one of the treatments"),
    ({"rollout_share": "0"}, "above 0 and at most 1"),
    ({"eligible_base": ""}, "needs the eligible base"),
])
def test_ship_fields_are_checked_with_messages_beside_them(world, factory, session, fields,
                                                           message):
    stopped(factory)
    response = decide_on_page(world["exp"], "seat-nudge", 1, **fields)
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    field = next(iter(fields))
    assert re.search(rf'id="{field}-error"[^>]*>[^<]*{re.escape(message)}', html)


def test_uploads_after_a_decision_are_refused_until_reopened_with_a_reason(world, factory,
                                                                          session):
    stopped(factory)
    exp, analyst = world["exp"], world["analyst"]
    assert decide_on_page(exp, "seat-nudge", 1, decision="kill").status_code == 303
    page = analyst.get("/experiments/seat-nudge").get_data(as_text=True)
    assert 'id="upload-closed"' in page and 'href="/experiments/seat-nudge#decision-reopen"' \
        in page
    with SAMPLE_CSV.open("rb") as handle:
        refused = analyst.post("/experiments/seat-nudge/datasets", headers={
            "X-CSRFToken": analyst.csrf}, data={"file": (handle, "late.csv")})
    assert refused.status_code == 409
    assert "reopen the decision with a reason" in refused.get_data(as_text=True)
    session.expire_all()
    assert session.exec(select(Dataset)).all() == []
    # Reopening needs the experimenter role and a reason.
    assert analyst.post("/experiments/seat-nudge/reopen", data={
        "csrf_token": analyst.csrf, "version": "2", "reason": "late"}).status_code == 403
    blank = exp.post("/experiments/seat-nudge/reopen", data={
        "csrf_token": exp.csrf, "version": "2", "reason": " "})
    assert blank.status_code == 422 and "say why the decision is reopened" in \
        blank.get_data(as_text=True)
    reopened = exp.post("/experiments/seat-nudge/reopen", data={
        "csrf_token": exp.csrf, "version": "2", "reason": "Late renewals arrived."})
    assert reopened.status_code == 303
    page = exp.get("/experiments/seat-nudge").get_data(as_text=True)
    assert "Decision reopened" in page and "Late renewals arrived." in page
    with SAMPLE_CSV.open("rb") as handle:
        accepted = analyst.post("/experiments/seat-nudge/datasets", headers={
            "X-CSRFToken": analyst.csrf}, data={"file": (handle, "late.csv")})
    assert accepted.status_code in (200, 202, 303), accepted.get_data(as_text=True)
    session.expire_all()
    assert len(session.exec(select(Dataset)).all()) == 1
    reopen_event = session.exec(select(AuditEvent).where(
        AuditEvent.action == "experiment.reopen")).one()
    assert reopen_event.diff["reason"] == [None, "Late renewals arrived."]


def test_rows_decided_before_the_record_still_render(world, factory, session):
    factory.experiment("legacy-ship", team="growth", status="decided", decision="ship",
                       decision_rationale="Shipped before the record.")
    client = world["viewer"]
    page = client.get("/experiments/legacy-ship")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "not recorded (decided before the record had it)" in html
    assert 'id="decision-reopen"' in html and 'name="reason"' not in html  # viewer: no form
    week = current_week().label
    review = client.get(f"/review/{week}")
    assert review.status_code == 200
    assert client.get(f"/review/{week}/export.md").status_code == 200
    session.expire_all()
    assert session.exec(select(ReviewItem)).all() is not None


def test_a_blank_eligible_base_defaults_from_the_revenue_ledger(world, factory, session,
                                                                monkeypatch):
    import experiments.ledger

    monkeypatch.setattr(experiments.ledger, "latest_start_mrr",
                        lambda session, **kw: 432_100.25)
    stopped(factory)
    client = world["exp"]
    page = client.get("/experiments/seat-nudge").get_data(as_text=True)
    assert re.search(r"Blank: the revenue ledger(&#39;|')s latest starting MRR, 432,100.25.", page)
    assert decide_on_page(client, "seat-nudge", 1, eligible_base="").status_code == 303
    session.expire_all()
    experiment = session.exec(select(Experiment).where(Experiment.key == "seat-nudge")).one()
    assert (experiment.eligible_base_cents, experiment.eligible_base_source) == (
        43_210_025, "revenue ledger")
    page = client.get("/experiments/seat-nudge").get_data(as_text=True)
    assert "432,100.25 monthly MRR <span class=\"muted\">(revenue ledger)</span>" in page


def test_a_reopened_experiment_page_has_unique_ids(world, factory):
    stopped(factory)
    client = world["exp"]
    assert decide_on_page(client, "seat-nudge", 1, decision="kill").status_code == 303
    assert client.post("/experiments/seat-nudge/reopen", data={
        "csrf_token": client.csrf, "version": "2", "reason": "More data."}).status_code == 303
    html = client.get("/experiments/seat-nudge").get_data(as_text=True)
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    assert 'name="decision"' in html and "Decision history (2)" in html


def test_the_review_page_shows_raw_and_shrunk_impact_of_a_ship(world, factory, session):
    experiment = stopped(factory)
    import_accounts(session, session.get(Experiment, experiment.id), accounts_csv(seed=7, n=80),
                    filename="a.csv", actor=None)
    session.commit()
    client = world["exp"]
    version = version_of(session, "seat-nudge")
    assert decide_on_page(client, "seat-nudge", version, rollout_share="0.4",
                          eligible_base="250000").status_code == 303
    week = current_week().label
    data = json.loads(client.get(f"/review/{week}/export.json").get_data(as_text=True))
    ship = data["impact"]["ships"][0]
    comparison = next(c for c in data["experiments"][0]["comparisons"]
                      if c["variant"] == "treatment")
    # uplift × base × share × 12, from the stored comparison (one estimate: not shrunk).
    assert ship["raw"]["annual"] == pytest.approx(comparison["uplift_abs"] * 250_000 * 0.4 * 12)
    assert ship["uplift_shrunk"] == pytest.approx(ship["uplift_abs"])
    html = client.get(f"/review/{week}").get_data(as_text=True)
    table = html[html.index('id="impact-table"'):html.index("</table>", html.index(
        'id="impact-table"'))]
    assert f"{ship['raw']['annual']:,.2f}" in table and "40.0% × 250,000.00" in table
    total = table[table.index('id="impact-total"'):]
    assert f"{data['impact']['total_shrunk']['annual']:,.2f}" in total
    assert "not shrunk: 1 estimate" in html
