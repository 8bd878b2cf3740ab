"""htmx interactions a user relies on: the driver tree edits in place, a bad upload lists
its errors by line, and the planner answers as you type — none of them reloads the page."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import screenshot
from tests.e2e.pages import accessibility_problems, register_and_start
from tests.helpers import SAMPLES

MARKER = "() => window.__marker"


def test_tree_edits_inline_without_reload(admin_page, server):
    page = admin_page
    page.goto(f"{server}/tree/")
    page.evaluate("window.__marker = 1")
    page.problems.allow_status(422)
    actions = page.get_by_role("navigation", name="Actions for Reactivation")
    node = page.locator(
        "article.node", has=page.locator("strong", has_text=re.compile(r"^Reactivation$"))
    )

    # A mistake first: the form stays open with the message next to the field.
    actions.get_by_role("link", name="Edit").click()
    form = page.get_by_role("form", name="Edit Reactivation")
    expect(form.get_by_label("Name")).to_have_value("Reactivation")
    assert accessibility_problems(page) == []
    form.get_by_label("Baseline").fill("five percent")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#tree > .alert-error")).to_contain_text("The change was not saved")
    expect(form.get_by_label("Baseline")).to_have_attribute("aria-invalid", "true")
    expect(
        form.locator("#" + form.get_by_label("Baseline").get_attribute("aria-describedby"))
    ).to_be_visible()
    screenshot(page, "tree-edit-error")

    # Then the edit itself: the tree shows it in place.
    hypothesis = (
        "If CS calls dormant admins before renewal, then NRR rises because fewer of them churn."
    )
    form.get_by_label("Baseline").fill("0.05")
    form.get_by_label("Hypothesis").fill(hypothesis)
    form.get_by_label("Target").fill("0.12")
    form.get_by_role("button", name="Save").click()
    expect(form).to_be_hidden()
    expect(node.locator(".hypothesis")).to_have_text(hypothesis)
    expect(node.locator(".node-facts")).to_contain_text("0.05 → 0.12")
    assert page.evaluate(MARKER) == 1, "the page reloaded"


def test_bad_csv_lists_errors_by_line(admin_page, server):
    page = admin_page
    register_and_start(page, server, key="e2e-bad-upload")
    page.evaluate("window.__marker = 1")
    page.problems.allow_status(422)
    page.get_by_label("Account CSV").set_input_files(SAMPLES / "accounts_bad_example.csv")
    page.get_by_role("button", name="Upload and analyse").click()
    errors = page.get_by_role("alert").filter(has_text="The file was not stored.")
    expect(errors).to_contain_text(
        "accounts_bad_example.csv has 5 problems; fix them and upload the file again"
    )
    expect(errors.get_by_role("listitem")).to_have_text(
        [
            "line 3, start_mrr: must be greater than 0",
            re.compile(r"^line 4, expansion_mrr: "),
            re.compile(
                r"^line 5, churned_mrr: contraction_mrr \+ churned_mrr .* must not exceed start_mrr"
            ),
            "line 6, account_id: duplicate of line 2",
            "line 7, variant: is required",
        ]
    )
    # Nothing was stored: still no data, and the form is ready for the corrected file.
    expect(page.locator(".results-empty")).to_contain_text("No account data yet")
    expect(page.get_by_label("Account CSV")).to_be_visible()
    assert page.evaluate(MARKER) == 1
    assert accessibility_problems(page) == []
    screenshot(page, "upload-errors")


def test_planner_answers_as_you_type(admin_page, server):
    page = admin_page
    page.goto(f"{server}/planner/")
    page.evaluate("window.__marker = 1")
    control = page.locator("#planner-result .answer dd").first.locator("strong")
    before = int(control.inner_text().replace(",", ""))
    # Half-typed values ("0.") are answered with a 422 and "fix these inputs" on a slow machine.
    page.problems.allow_status(422)
    mde = page.get_by_label("Minimum detectable effect")
    mde.clear()
    mde.press_sequentially("0.04")
    expect(page).to_have_url(re.compile(r"[?&]mde=0\.04(&|$)"))
    expect(control).not_to_have_text(f"{before:,}")
    after = int(control.inner_text().replace(",", ""))
    # Twice the effect needs about a quarter of the accounts.
    assert 0.2 * before < after < 0.3 * before
    assert page.evaluate(MARKER) == 1, "the page reloaded"
