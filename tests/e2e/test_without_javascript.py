"""With JavaScript off (htmx never loads) the main forms still work as plain HTML forms:
sign in, add a tree node, register and start an experiment, upload its accounts, filter
the experiment list."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from experiments.demo import Behaviour
from tests.e2e.conftest import ADMIN_NAME, sign_in
from tests.e2e.pages import WIN, accounts_csv, fill_new_experiment

KEY = "nojs-annual-nudge"


def test_main_forms_work_without_javascript(nojs_page, server, tmp_path):
    page = nojs_page
    sign_in(page, server)
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    # Tree: "Add child" loads the tree with the form open; saving redirects back to the tree.
    page.goto(f"{server}/tree/")
    page.get_by_role("navigation", name="Actions for Expansion").get_by_role(
        "link", name="Add child"
    ).click()
    expect(page).to_have_url(re.compile(r"/tree/\d+/children/new$"))
    form = page.get_by_role("form", name="Add a node under Expansion")
    form.get_by_label("Name").fill("Annual plan conversion")
    form.get_by_label("Owner").select_option(label=ADMIN_NAME)
    form.get_by_label("Hypothesis").fill(
        "If we offer annual plans at renewal, then NRR rises because annual accounts churn less."
    )
    form.get_by_role("button", name="Add node").click()
    expect(page).to_have_url(re.compile(r"/tree/\?saved=\d+#node-\d+$"))
    node = page.locator(
        "article.node", has=page.locator("strong", has_text=re.compile(r"^Annual plan conversion$"))
    )
    expect(node.locator(".node-facts")).to_contain_text(ADMIN_NAME)
    expect(node.get_by_role("status")).to_have_text("Saved")

    # Experiment form: the variant buttons re-render the whole form; registering redirects.
    page.goto(f"{server}/experiments/new")
    fill_new_experiment(
        page,
        key=KEY,
        name="Annual plan nudge (no JS)",
        node="Annual plan conversion",
        stage="Customer lifecycle · renewal",
        treatment="nudge",
    )
    page.get_by_role("button", name="Add variant").click()
    expect(page.locator("#variants tbody tr")).to_have_count(3)
    expect(page.get_by_label("Key", exact=True)).to_have_value(KEY)
    page.get_by_role("button", name="Remove variant 3").click()
    expect(page.locator("#variants tbody tr")).to_have_count(2)
    page.get_by_role("button", name="Register draft").click()
    expect(page).to_have_url(re.compile(rf"/experiments/{KEY}$"))
    page.get_by_role("button", name="Start experiment").click()
    expect(page.locator("h1 .badge.status-running")).to_have_text("running")

    # Upload: a plain multipart POST, then the experiment page with a flash and the verdict.
    data = accounts_csv(
        tmp_path, "nojs.csv", {"control": (1500, Behaviour()), "nudge": (1500, WIN)}, seed=3
    )
    page.get_by_label("Account CSV").set_input_files(data)
    page.get_by_role("button", name="Upload and analyse").click()
    # The import runs in the background: without JS a page offers a refresh link until done.
    for _ in range(60):
        page.wait_for_load_state()
        if "/uploads/" not in page.url:
            break
        page.wait_for_timeout(500)
        page.get_by_role("link", name="Refresh").click()
    expect(page).to_have_url(re.compile(rf"/experiments/{KEY}$"))
    expect(
        page.get_by_role("status").filter(has_text="Uploaded nojs.csv as dataset version 1")
    ).to_be_visible()
    expect(page.locator(".verdict-line .badge.verdict")).to_have_text(re.compile(r"Win$"))

    # The experiment list filters with a GET form; the URL can be bookmarked.
    page.goto(f"{server}/experiments/")
    page.get_by_label("Search name or key").fill("no JS")
    page.get_by_label("Status").select_option("running")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"[?&]q=no\+JS"))
    expect(page.locator("#experiment-count")).to_have_text(
        re.compile(r"^1 experiment match(es)? these filters\.$")
    )
    expect(page.locator("table.registry tbody tr")).to_have_count(1)
    expect(page.get_by_role("link", name=KEY)).to_be_visible()
