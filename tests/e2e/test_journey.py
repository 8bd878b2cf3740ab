"""A branch owner's week, end to end through the UI: sign in, add a driver, register an
experiment on a journey stage, start it, upload its accounts, read the verdict, decide,
find it in the weekly review and export the report."""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import expect

import stats
from experiments.accounts_csv import read_accounts
from experiments.analyze_file import arms_from_table
from experiments.demo import Behaviour
from tests.e2e.conftest import ADMIN_NAME, screenshot, sign_in
from tests.e2e.pages import WIN, accessibility_problems, accounts_csv, fill_new_experiment

ROOT = "Net Revenue Retention"
NODE = "Self-serve upgrade prompts"
HYPOTHESIS = (
    "If we prompt admins to upgrade when they hit plan limits, "
    "then NRR rises because more accounts expand."
)
KEY = "journey-upgrade-prompt"
TREATMENT = "prompt"


def test_branch_owner_week(page, server, tmp_path):
    # Sign in: the dashboard greets the user.
    sign_in(page, server)
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    # Driver tree: add a driver under the NRR root with the inline (htmx) form.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Driver tree").click()
    page.get_by_role("navigation", name=f"Actions for {ROOT}").get_by_role(
        "link", name="Add child"
    ).click()
    form = page.get_by_role("form", name=f"Add a node under {ROOT}")
    expect(form.get_by_label("Name")).to_be_visible()
    assert accessibility_problems(page) == []
    form.get_by_label("Name").fill(NODE)
    form.get_by_label("Kind").select_option("driver")
    form.get_by_label("Owner").select_option(label=ADMIN_NAME)
    form.get_by_label("Leading metric").fill("Accounts upgrading after a limit prompt")
    form.get_by_label("Hypothesis").fill(HYPOTHESIS)
    form.get_by_role("button", name="Add node").click()
    expect(form).to_be_hidden()
    node = page.locator("article.node", has=page.get_by_text(NODE, exact=True))
    expect(node.locator(".node-facts")).to_contain_text(ADMIN_NAME)
    expect(node.locator(".hypothesis")).to_have_text(HYPOTHESIS)
    # It sits directly under the root.
    root_item = page.locator("#tree > ul.tree > li").first
    expect(
        root_item.locator(":scope > ul.tree > li > article.node strong", has_text=NODE)
    ).to_have_count(1)

    # Register the experiment from the new node, on the adoption stage, trying the htmx
    # variant rows on the way.
    page.get_by_role("navigation", name=f"Actions for {NODE}").get_by_role(
        "link", name="New experiment here"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New experiment")
    expect(page.locator("#node_id option:checked")).to_have_text(NODE)
    fill_new_experiment(
        page,
        key=KEY,
        name="Upgrade prompt at plan limits",
        node=NODE,
        stage="Customer lifecycle · adoption",
        treatment=TREATMENT,
        hypothesis=HYPOTHESIS,
    )
    variants = page.locator("#variants tbody tr")
    expect(variants).to_have_count(2)
    page.get_by_role("button", name="Add variant").click()
    expect(variants).to_have_count(3)
    page.get_by_role("button", name="Remove variant 3").click()
    expect(variants).to_have_count(2)
    expect(page.get_by_label("Variant 2 key")).to_have_value(TREATMENT)
    expect(page.locator("#sample-size-hint")).to_contain_text("accounts to detect")
    page.get_by_role("button", name="Register draft").click()
    page.wait_for_url(re.compile(rf"/experiments/{KEY}$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("Upgrade prompt at plan limits")
    expect(page.locator("h1 .badge.status-draft")).to_have_text("draft")
    expect(page.locator(".experiment-meta")).to_contain_text("adoption")

    # Start it: the confirmation explains the plan locks.
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.accept()))
    page.get_by_role("button", name="Start experiment").click()
    expect(page.locator("h1 .badge.status-running")).to_have_text("running")
    assert "plan locks" in dialogs[-1]

    # Upload accounts with a clear expansion lift.
    data = accounts_csv(
        tmp_path,
        "journey-accounts.csv",
        {"control": (3000, Behaviour()), TREATMENT: (3000, WIN)},
        seed=8,
    )
    # The same file through the statistics engine directly: the page must agree with it.
    (expected,) = stats.analyze(
        arms_from_table(read_accounts(str(data))),
        control="control",
        alpha=0.05,
        power=0.8,
        mde=0.02,
    ).comparisons
    assert expected.verdict == "win", "the generated file should carry a clear effect"
    page.get_by_label("Account CSV").set_input_files(data)
    page.get_by_role("button", name="Upload and analyse").click()
    expect(page.locator(".upload .alert-success")).to_contain_text(
        "as dataset version 1 (6,000 accounts)"
    )

    # Read the verdict and the uplift, formatted as the page formats it.
    expect(page.locator(".verdict-line .badge.verdict")).to_have_text(re.compile(r"(^|\s)Win$"))
    row = page.locator(".comparisons-table tbody tr", has=page.locator("th", has_text=TREATMENT))
    uplift = f"{expected.uplift_abs * 100:+.2f}"
    expect(row.locator("td").first).to_have_text(uplift)
    expect(page.locator(".verdict-line .summary")).to_contain_text(
        f"raised NRR by {expected.uplift_abs * 100:.1f} pts"
    )
    expect(row.locator(".badge.verdict")).to_have_text(re.compile(r"Win$"))
    expect(page.get_by_role("img", name=re.compile("Forest plot"))).to_be_visible()
    screenshot(page, "journey-results")

    # Stop, then record the ship decision with its rationale.
    page.get_by_role("button", name="Stop experiment").click()
    expect(page.locator("h1 .badge.status-stopped")).to_have_text("stopped")
    assert accessibility_problems(page) == []
    page.get_by_label("Decision").select_option("ship")
    # A ship names what ships to whom (the one decision record, issue 17 item 2).
    page.get_by_label("Shipped variant").select_option(TREATMENT)
    page.get_by_label("Rollout share").fill("100%")
    page.get_by_label("Eligible base (monthly MRR)").fill("250000")
    rationale = f"NRR up {uplift} points with no SRM; roll the prompt out to every plan."
    page.get_by_label("Rationale").fill(rationale)
    page.get_by_role("button", name="Record decision").click()
    expect(page.locator("h1 .badge.decision-ship")).to_have_text("ship")
    decision = page.get_by_role("region", name=re.compile("Decision"))
    expect(decision).to_contain_text(rationale)
    expect(decision).to_contain_text("100.0% of the eligible base")
    assert "closes the experiment" in dialogs[-1]

    # This week's review lists it under "changed since last review".
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Review").click()
    changed = page.locator("#changed")
    expect(changed.get_by_role("heading", level=2)).to_contain_text("Changed since last review")
    line = changed.locator(f'tr[data-experiment="{KEY}"]')
    expect(line).to_be_visible()
    expect(line).to_contain_text("Upgrade prompt at plan limits")
    expect(line.locator(".badge.verdict-win")).to_be_visible()
    screenshot(page, "journey-review")

    # Export the report as CSV and HTML from the experiment page.
    line.get_by_role("link", name="Upgrade prompt at plan limits").click()
    exports = page.get_by_role("navigation", name="Uplift report")
    with page.expect_download() as info:
        exports.get_by_role("link", name="CSV").click()
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(download.path().read_text(encoding="utf-8-sig"))))
    (line_of_treatment,) = [r for r in rows if r["variant"] == TREATMENT]
    assert float(line_of_treatment["uplift_abs"]) == pytest.approx(expected.uplift_abs, rel=1e-9)
    assert line_of_treatment["decision"] == "ship"
    assert line_of_treatment["comparison_verdict"] == "win"

    with page.expect_download() as info:
        exports.get_by_role("link", name="Printable HTML").click()
    assert info.value.suggested_filename.endswith(".html")
    saved = tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    html = saved.read_text(encoding="utf-8")
    assert "Upgrade prompt at plan limits" in html
    assert f"{expected.uplift_abs * 100:+.2f} pts" in html
    external = re.findall(
        r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""",
        html,
        flags=re.I,
    )
    assert external == [], f"the HTML report loads external resources: {external}"

    # Opened on its own, the report asks for nothing beyond itself.
    report = page.context.new_page()
    requests: list[str] = []
    report.on("request", lambda request: requests.append(request.url))
    report.goto(saved.as_uri())
    expect(report.get_by_role("heading", level=1)).to_have_text("NRR uplift report")
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []
    report.close()
