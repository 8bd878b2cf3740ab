"""Issue 16 item 5 on the pages: the planner and the registration form's sample-size hint
show the revenue ledger's σ (DESIGN §4's sigma_lin of the last period) and say where it
came from; without a ledger both look as before.

Expected σ: numpy over the CSV rows (tests/experiments/test_planning_ledger.py); expected
sample sizes: statsmodels' ``TTestIndPower``.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from sqlmodel import Session

from experiments.ledger import import_ledger
from tests.experiments.test_planning_ledger import CSV, by_hand, solve

pytestmark = pytest.mark.db

HX = {"HX-Request": "true"}
SOURCE_ALL = "measured on the revenue ledger: all accounts, 2026-10, 7 accounts"
HINT_QUERY = urlencode(
    {
        "mde": "0.02",
        "alpha": "0.05",
        "power": "0.8",
        "control": "0",
        "variant_key": ["control", "nudge"],
        "variant_weight": ["1", "1"],
    },
    doseq=True,
)


@pytest.fixture
def ledger(db_engine):
    with Session(db_engine) as session:
        import_ledger(session, CSV, dimensions="plan", actor=None, filename="ledger.csv")
        session.commit()


def test_the_planner_opens_on_the_ledger_sigma_and_names_its_source(ledger, login_as):
    client = login_as("viewer")
    sigma, nrr, _ = by_hand()
    response = client.get("/planner/")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<label for="plan-segment">Take them from the revenue ledger</label>' in body
    assert '<option value="all" selected>all accounts (7 accounts, sigma ' in body
    assert '<option value="plan=enterprise">plan = enterprise (3 accounts' in body
    assert 'value="plan=basic"' not in body  # one account: no σ to offer
    for field_id in re.findall(r'<(?:input|select|textarea)[^>]* id="([^"]+)"', body):
        assert f'for="{field_id}"' in body, field_id
    # the ledger's baseline is its last month's NRR, not the trailing-twelve-month headline
    assert (f"Spread sigma = {sigma:.3f} and baseline monthly NRR {nrr * 100:.1f}%, "
            f"{SOURCE_ALL}") in body
    assert f"{solve(0.02, sigma):,}</strong> accounts" in body
    assert "2,454</strong>" not in body  # not the assumed 0.25 any more


def test_the_planner_sizes_a_chosen_segment_and_still_takes_typed_numbers(ledger, login_as):
    client = login_as("viewer")
    sigma = by_hand("enterprise")[0]
    fragment = client.get("/planner/?" + urlencode({"segment": "plan=enterprise"}), headers=HX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body
    assert (
        f"Spread sigma = {sigma:.3f}" in body
        and "measured on the revenue ledger: plan = enterprise, 2026-10, 3 accounts" in body
    )
    assert f"{solve(0.02, sigma):,}</strong> accounts" in body
    typed = client.get("/planner/?" + urlencode({"segment": "", "sigma": "0.25"}))
    text = typed.get_data(as_text=True)
    assert "Spread sigma = 0.25 as entered." in text and "2,454</strong> accounts" in text
    bad = client.get("/planner/?" + urlencode({"segment": "plan=basic"}))
    text = bad.get_data(as_text=True)
    assert bad.status_code == 422 and 'href="#plan-segment"' in text
    assert re.search(r'id="plan-segment-error">is not a segment of the revenue ledger', text)


def test_without_a_ledger_the_planner_is_as_before(login_as):
    client = login_as("viewer")
    body = client.get("/planner/").get_data(as_text=True)
    assert 'name="segment"' not in body and "revenue ledger" not in body
    # nothing typed: the default is said to be one, not "as entered"
    assert ("Spread sigma = 0.25 — the planner's default (a typical B2B SaaS value), "
            "not a measurement.") in body and "as entered" not in body
    assert "2,454</strong> accounts" in body
    stale = client.get("/planner/?segment=all")  # a link from when a ledger existed
    assert stale.status_code == 422
    assert "No revenue ledger with a measured spread has been uploaded." in stale.get_data(
        as_text=True
    )


def test_the_registration_hint_uses_the_ledger_sigma(ledger, login_as):
    client = login_as("admin")
    sigma = by_hand()[0]
    n = solve(0.02, sigma)
    fragment = client.get(f"/experiments/sample-size-hint?{HINT_QUERY}", headers=HX)
    body = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in body
    assert f"Sized with sigma = {sigma:.3f}, {SOURCE_ALL}." in body
    assert f"{n:,} in control, {n:,} in nudge" in body
    assert 'class="hint assumption"' not in body
    form = client.get("/experiments/new").get_data(as_text=True)
    assert f"Sized with sigma = {sigma:.3f}, {SOURCE_ALL}." in form


def test_without_a_ledger_the_hint_states_the_assumption(login_as):
    client = login_as("admin")
    body = client.get(f"/experiments/sample-size-hint?{HINT_QUERY}", headers=HX).get_data(
        as_text=True
    )
    assert "Sized with sigma = 0.250, assumed — no measurement yet." in body
    assert "2,454 in control, 2,454 in nudge" in body
