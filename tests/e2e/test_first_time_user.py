"""What a first-time user trips over (issue 14), each seen in the browser: a long error
list grouped into readable entries, a clean address after signing in, the driver tree's
inline save confirmed in place, an audit log that reads as words and fits a phone, tables
and plots on a 390 px screen, and a new workspace that says what to do first."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import (
    ADMIN_EMAIL,
    _nrrlab,
    running_server,
    screenshot,
    server_env,
)
from tests.e2e.pages import (
    accessibility_problems,
    assert_no_horizontal_overflow,
    register_and_start,
)
from tests.helpers import TEST_PASSWORD

HEADER = "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr\n"


def test_identical_upload_errors_are_grouped_and_the_list_is_capped(
    admin_page, server, tmp_path
):
    page = admin_page
    register_and_start(page, server, key="e2e-grouped-errors", treatment="upsell-prompt")
    page.problems.allow_status(422)
    # 2,503 rows with a variant key the experiment does not have (lines 2 to 2,504),
    # then 25 rows repeating earlier account ids: 25 distinct problems.
    rows = "".join(f"a{i},treatment,100,0,0,0\n" for i in range(2503))
    rows += "".join(f"a{i},control,100,0,0,0\n" for i in range(25))
    path = tmp_path / "wrong-variant.csv"
    path.write_text(HEADER + rows)
    page.get_by_label("Account CSV").set_input_files(path)
    page.get_by_role("button", name="Upload and analyse").click()

    errors = page.get_by_role("alert").filter(has_text="The file was not stored.")
    expect(errors).to_contain_text("wrong-variant.csv has 2,528 problems")
    items = errors.get_by_role("listitem")
    expect(items).to_have_count(20)
    expect(items.first).to_have_text(
        "lines 2\u20132,504, variant: \"treatment\" is not one of the experiment's variants"
        " (control, upsell-prompt)"
    )
    expect(items.nth(1)).to_have_text("line 2,505, account_id: duplicate of line 2")
    expect(items.last).to_have_text("line 2,523, account_id: duplicate of line 20")
    expect(errors).to_contain_text("\u2026 and 6 more problems not listed here.")
    # the list is not numbered, so no clipped "0." markers
    assert errors.locator("ol").count() == 0
    assert accessibility_problems(page) == []
    screenshot(page, "upload-errors-grouped")
    page.set_viewport_size({"width": 390, "height": 844})
    first = items.first.bounding_box()
    assert first is not None and first["x"] >= 0 and first["x"] + first["width"] <= 390
    screenshot(page, "upload-errors-grouped-390")


def test_signing_in_leaves_a_clean_address(page, server):
    page.goto(f"{server}/")
    assert page.url == f"{server}/login"
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server}/")
    assert page.url == f"{server}/", "no stray next= or ? after signing in"
    screenshot(page, "signed-in-clean-address")

    # a deeper page still comes back after signing in, without a trailing "?"
    page.context.clear_cookies()
    page.goto(f"{server}/tree/")
    assert page.url == f"{server}/login?next=/tree/"
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server}/tree/")
    assert page.url == f"{server}/tree/"


def test_tree_inline_save_stays_in_place_and_says_saved(admin_page, server):
    page = admin_page
    page.set_viewport_size({"width": 1280, "height": 700})
    page.goto(f"{server}/tree/")
    page.evaluate("window.__marker = 1")
    root = page.locator("article.node").first
    root_name = root.locator("strong").inner_text()

    # "Add child" directly under the root proposes a lever
    page.get_by_role("navigation", name=f"Actions for {root_name}").get_by_role(
        "link", name="Add child"
    ).click()
    add = page.get_by_role("form", name=f"Add a node under {root_name}")
    expect(add.get_by_label("Kind")).to_have_value("lever")
    add.get_by_label("Name").fill("E2E first lever")
    add.get_by_role("button", name="Add node").click()
    lever = page.locator("article.node", has=page.locator("strong", has_text="E2E first lever"))
    expect(lever.get_by_role("status")).to_have_text("Saved")

    # ... and under that lever a driver
    page.get_by_role("navigation", name="Actions for E2E first lever").get_by_role(
        "link", name="Add child"
    ).click()
    add = page.get_by_role("form", name="Add a node under E2E first lever")
    expect(add.get_by_label("Kind")).to_have_value("driver")
    page.get_by_role("link", name="Cancel").click()
    expect(add).to_be_hidden()

    # an edit half-way down the page: saved in place, the page does not jump
    actions = page.get_by_role("navigation", name="Actions for Reactivation")
    actions.scroll_into_view_if_needed()
    actions.get_by_role("link", name="Edit").click()
    form = page.get_by_role("form", name="Edit Reactivation")
    form.get_by_label("Leading metric").fill("Reactivated admins")
    form.get_by_role("button", name="Save").scroll_into_view_if_needed()
    before = page.evaluate("window.scrollY")
    form.get_by_role("button", name="Save").click()
    node = page.locator(
        "article.node", has=page.locator("strong", has_text=re.compile(r"^Reactivation$"))
    )
    status = node.get_by_role("status")
    expect(status).to_have_text("Saved")
    expect(form).to_be_hidden()
    expect(node.locator(".node-facts")).to_contain_text("Reactivated admins")
    after = page.evaluate("window.scrollY")
    # the form closing shortens the page, which may pull the scroll up, never down
    assert after <= before + 1, f"the page scrolled down from {before} to {after} px"
    box = node.bounding_box()
    assert box is not None and 0 <= box["y"] < 700, "the saved node is out of view"
    assert page.evaluate("() => window.__marker") == 1, "the page reloaded"
    assert accessibility_problems(page) == []
    screenshot(page, "tree-inline-saved")


def test_audit_log_reads_as_words_and_fits_a_phone(admin_page, server):
    page = admin_page
    # an edit through the site with a "<" typed and a field cleared
    page.goto(f"{server}/tree/")
    page.get_by_role("navigation", name="Actions for Reactivation").get_by_role(
        "link", name="Edit"
    ).click()
    form = page.get_by_role("form", name="Edit Reactivation")
    form.get_by_label("Leading metric").fill("admins < 30 days dormant")
    form.get_by_label("Owner").select_option("")
    form.get_by_role("button", name="Save").click()
    expect(form).to_be_hidden()

    page.goto(f"{server}/admin/audit?action=node.update")
    row = page.locator(".audit-table tbody tr").first
    expect(row).to_contain_text("leading_metric")
    expect(row).to_contain_text("admins < 30 days dormant")
    text = row.inner_text()
    assert "\\u003c" not in text and "null" not in text and '"' not in text
    assert re.search(r"owner_id\s+cleared \(was \d+\)", text), text
    expect(row.locator("td").last).to_have_text("127.0.0.1")
    screenshot(page, "audit-readable")

    # filters and pagination are there; on a phone the page stays short and narrow
    expect(page.get_by_role("search").get_by_label("Action")).to_have_value("node.update")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{server}/admin/audit")
    assert_no_horizontal_overflow(page, "audit log at 390 px")
    height = page.evaluate("document.documentElement.scrollHeight")
    rows = page.locator(".audit-table tbody tr").count()
    assert rows <= 50
    assert height < 400 * max(rows, 1) and height < 20_000, f"{height} px for {rows} events"
    screenshot(page, "audit-390")


def test_tables_keep_words_whole_and_the_first_column_in_view_on_a_phone(admin_page, server):
    page = admin_page
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{server}/experiments/")
    table = page.locator("table.registry")
    wrap = page.locator(".table-wrap", has=table)
    # no word of a cell is split over two lines ("Annua l plan"); keys may break at a hyphen
    split = page.evaluate(
        """() => [...document.querySelectorAll('table.registry td, table.registry th')]
          .filter(cell => {
            const range = document.createRange();
            for (const node of cell.querySelectorAll('*, :scope')) {
              for (const text of node.childNodes) {
                if (text.nodeType !== 3) continue;
                const re = /[^\\s\\-\\/]+/g; let m;  // a break at a hyphen is fine
                while ((m = re.exec(text.data))) {
                  range.setStart(text, m.index); range.setEnd(text, m.index + m[0].length);
                  if (range.getClientRects().length > 1) return true;
                }
              }
            }
            return false; })
          .map(cell => cell.textContent.trim().slice(0, 40))"""
    )
    assert split == [], f"words broken across lines: {split}"
    first = table.locator("tbody tr").first.locator("td").first
    before = first.bounding_box()
    wrap.evaluate("w => { w.scrollLeft = w.scrollWidth; }")
    assert wrap.evaluate("w => w.scrollLeft") > 0, "the table does not scroll sideways"
    after = first.bounding_box()
    assert after is not None and before is not None
    assert abs(after["x"] - before["x"]) < 2, "the first column scrolled out of view"
    screenshot(page, "registry-390-scrolled")

    # the forest plot keeps readable labels and scrolls inside its box
    page.goto(f"{server}/experiments/seat-limit-nudge")
    plot = page.locator("svg.forest-plot")
    expect(plot).to_be_visible()
    size = plot.evaluate(
        "svg => svg.querySelector('text').getBoundingClientRect().height"
    )
    assert size >= 9, f"forest plot labels are {size:.1f} px tall"
    assert_no_horizontal_overflow(page, "experiment page at 390 px")
    screenshot(page, "forest-390")


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory):
    """A second NRR Lab as `make run` leaves it before any demo data: the NRR root, the
    default journey and one admin."""
    folder = tmp_path_factory.mktemp("e2e-empty")
    env = server_env(folder, "f")
    _nrrlab("db", "upgrade", env=env)
    _nrrlab("create-user", ADMIN_EMAIL, "--role", "admin", "--name", "First", env=env)
    with running_server(folder, env) as base:
        yield base


def test_a_new_workspace_guides_to_a_first_branch_and_experiment(page, empty_server):
    server = empty_server
    page.goto(f"{server}/login")
    page.get_by_label("Email").fill(ADMIN_EMAIL)
    page.get_by_label("Password").fill(TEST_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server}/")

    guide = page.get_by_role("region", name="Getting started")
    expect(guide).to_contain_text("Add a first branch to the driver tree.")
    screenshot(page, "first-run-dashboard")
    page.set_viewport_size({"width": 390, "height": 844})
    assert_no_horizontal_overflow(page, "first-run dashboard at 390 px")
    assert accessibility_problems(page) == []
    page.set_viewport_size({"width": 1280, "height": 900})
    guide.get_by_role("link", name="driver tree").click()
    expect(page.locator(".tree-empty")).to_contain_text("Only the NRR root so far.")
    screenshot(page, "first-run-tree")

    root = page.locator("article.node").first.locator("strong").inner_text()
    page.get_by_role("navigation", name=f"Actions for {root}").get_by_role(
        "link", name="Add child"
    ).click()
    form = page.get_by_role("form", name=f"Add a node under {root}")
    expect(form.get_by_label("Kind")).to_have_value("lever")
    form.get_by_label("Name").fill("Expansion")
    form.get_by_role("button", name="Add node").click()
    expect(page.get_by_role("status").filter(has_text="Saved")).to_be_visible()

    page.goto(f"{server}/")
    expect(guide).to_contain_text("Done: the tree has 1 branch under NRR (Expansion).")
    guide.get_by_role("link", name="register one on Expansion").click()
    expect(page.locator("h1")).to_contain_text("New experiment")
    expect(page.locator("#node_id option:checked")).to_contain_text("Expansion")
    screenshot(page, "first-run-new-experiment")
