"""Issue 15 in the browser: a generated experiment whose treatment raises churn, registered
with a GRR guardrail, uploaded, then read as a user reads it — the waterfall per arm, the
failed guardrail beside the verdict, and the time-to-value curves — in Chromium against the
real server (strict CSP: a console error would fail the test)."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import new_context, screenshot
from tests.e2e.pages import fill_new_experiment
from tests.webapp.test_nrr_figures_page import churn_raising_csv

KEY = "e2e-nrr-figures"


def _percent(text: str) -> float:
    return float(re.search(r"-?\d+(\.\d+)?", text.replace("−", "-")).group(0))


def _register_with_guardrail_and_upload(page, server, tmp_path) -> None:
    page.goto(f"{server}/experiments/new")
    fill_new_experiment(page, key=KEY, name="E2E NRR figures", node="Adoption",
                        stage="Customer lifecycle · adoption", treatment="treatment")
    page.get_by_label("Guardrails").fill("grr:0.01")
    page.get_by_role("button", name="Register draft").click()
    page.wait_for_url(re.compile(rf"/experiments/{KEY}$"))
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Start experiment").click()
    expect(page.locator("h1 .badge.status-running")).to_have_text("running")
    path = tmp_path / f"{KEY}.csv"
    path.write_bytes(churn_raising_csv(seed=21, n=400))
    page.get_by_label("Account CSV").set_input_files(path)
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator(".upload .alert-success")).to_contain_text(
        "as dataset version 1 (800 accounts)", timeout=60_000)


def test_waterfall_guardrail_failure_and_velocity_curve(admin_page, server, tmp_path, browser,
                                                       admin_cookies):
    page = admin_page
    _register_with_guardrail_and_upload(page, server, tmp_path)
    page.goto(f"{server}/experiments/{KEY}/results")

    # The failed guardrail stands beside the verdict, in words.
    headline = page.locator(".verdict-line .headline")
    expect(headline.locator(".guardrail-status")).to_have_text("— guardrail failed: GRR")
    guardrails = page.locator("table.guardrails-table")
    expect(guardrails.get_by_role("row", name=re.compile("GRR"))).to_contain_text("Fail")

    # The waterfall: one accessible chart per arm, read back against the arms table.
    charts = page.locator("svg.waterfall-chart")
    expect(charts).to_have_count(2)
    arms = {}
    for row in page.locator("table.arms-table tbody tr").all():
        name = row.locator("th").inner_text().split()[0]
        arms[name] = _percent(row.locator("td").nth(6).inner_text())  # NRR
    for chart, arm in zip(charts.all(), ("control", "treatment"), strict=True):
        expect(chart.locator("title")).to_have_text(re.compile(rf"^NRR waterfall of {arm}"))
        end = chart.locator("g.wf-end text.wf-value").text_content()
        assert abs(_percent(end) - arms[arm]) < 0.06, (end, arms[arm])
        # expansion climbs from the start bar's top, churn falls to the end bar's top
        box = {kind: chart.locator(f"g.wf-{kind} rect").bounding_box()
               for kind in ("start", "expansion", "churn", "end")}
        assert abs(box["expansion"]["y"] + box["expansion"]["height"] - box["start"]["y"]) < 1.5
        assert abs(box["churn"]["y"] + box["churn"]["height"] - box["end"]["y"]) < 1.5
    # the treatment churns more: its churn bar is the taller one
    churn = [c.locator("g.wf-churn rect").bounding_box()["height"] for c in charts.all()]
    assert churn[1] > churn[0], churn
    expect(page.locator(".lever-sentence").first).to_contain_text("The lever that moved is churn")

    # The velocity curve: two step lines, the treatment reaching value sooner.
    km = page.locator("svg.km-chart")
    expect(km).to_have_count(1)
    expect(km.locator("path.km-curve")).to_have_count(2)
    lengths = km.locator("path.km-curve").evaluate_all("ps => ps.map(p => p.getTotalLength())")
    assert all(length > 100 for length in lengths), lengths
    velocity = page.locator("table.velocity-table")
    shares = {}
    for arm in ("control", "treatment"):
        cells = velocity.get_by_role("row", name=re.compile(rf"^{arm}")).locator("td")
        shares[arm] = _percent(cells.nth(3).inner_text())
    assert shares["treatment"] > shares["control"], shares
    # the table behind the chart (a <details>) agrees with the velocity table at the target
    page.locator("details.chart-table", has=page.locator("table.km-table")).locator(
        "summary").click()
    target = page.locator("table.km-table").get_by_role("row", name=re.compile(r"\(target\)"))
    cells = target.locator("td")
    assert [_percent(cells.nth(i).inner_text()) for i in (0, 1)] == [
        shares["control"], shares["treatment"]]
    screenshot(page, "nrr-figures-results")

    # Without JavaScript the same page carries the charts and their tables (<details> opens
    # natively).
    context = new_context(browser, java_script_enabled=False)
    try:
        context.add_cookies(admin_cookies)
        plain = context.new_page()
        plain.goto(f"{server}/experiments/{KEY}/results")
        expect(plain.locator("svg.waterfall-chart")).to_have_count(2)
        expect(plain.locator("svg.km-chart path.km-curve")).to_have_count(2)
        expect(plain.locator(".verdict-line .guardrail-status")).to_have_text(
            "— guardrail failed: GRR")
        plain.locator("details.chart-table", has=plain.locator("table.waterfall-table")).locator(
            "summary").click()
        expect(plain.locator("table.waterfall-table")).to_be_visible()
    finally:
        context.close()
