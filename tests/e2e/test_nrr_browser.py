"""Issue 16 in the browser: upload a revenue ledger on /nrr/upload, read the trend on the
NRR page, drill into one dimension (htmx swaps the page and the address keeps it), and
see the driver tree's NRR root measure itself from the ledger.

A server of its own (the demo workspace plus one ledger), so the shared server's
dashboard stays as the other browser tests expect it. The expected figures are
computed here with pandas from the uploaded file, not read from the app.
"""

from __future__ import annotations

import re

import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import (
    ADMIN_EMAIL,
    _nrrlab,
    new_context,
    running_server,
    screenshot,
    server_env,
    signed_in_cookies,
    watched_page,
)
from tests.e2e.pages import accessibility_problems, assert_no_horizontal_overflow
from tests.ledger_gen import write_csv


@pytest.fixture(scope="module")
def ledger_server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("e2e-nrr")
    env = server_env(folder, "n")
    _nrrlab("db", "upgrade", env=env)
    _nrrlab("create-user", ADMIN_EMAIL, "--role", "admin", "--name", "Ledger", env=env)
    _nrrlab("seed-demo", env=env)
    with running_server(folder, env) as base:
        yield base


@pytest.fixture(scope="module")
def cookies(browser, ledger_server):
    """The admin's session on the ledger server: one sign-in for the module (slow hash)."""
    return signed_in_cookies(browser, ledger_server)


@pytest.fixture(scope="module")
def ledger_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ledger") / "ledger.csv"
    write_csv(path, n_accounts=400, months=14, seed=11)
    return path


def expected(path) -> dict:
    """The last period's monthly NRR, TTM NRR and TTM NRR per plan, with pandas."""
    frame = pd.read_csv(path)
    frame = frame[frame.start_mrr > 0].copy()
    frame["end"] = (frame.start_mrr + frame.expansion_mrr - frame.contraction_mrr
                    - frame.churned_mrr)
    periods = sorted(frame.period.unique())
    last, base = periods[-1], periods[-12]
    at_last = frame[frame.period == last]
    start = frame[frame.period == base].set_index("account_id")
    end = at_last.set_index("account_id").end.reindex(start.index).fillna(0)
    start = start.assign(end=end)
    return {
        "last": last,
        "monthly_nrr": at_last.end.sum() / at_last.start_mrr.sum(),
        "ttm_nrr": start.end.sum() / start.start_mrr.sum(),
        # TTM groups by the plan on the window's base row (docs/LEDGER.md)
        "ttm_by_plan": {plan: g.end.sum() / g.start_mrr.sum() for plan, g in
                        start.groupby("plan")},
    }


def pct(value: float, digits: int) -> str:
    return f"{value * 100:.{digits}f}%"


@pytest.fixture
def ledger_page(context, cookies):
    """A signed-in page on the ledger server (not the shared one), checked for errors."""
    context.add_cookies(cookies)
    page = watched_page(context)
    yield page
    page.problems.assert_clean()


def test_upload_read_the_trend_drill_into_a_dimension_and_see_the_tree_actual(
    ledger_page, ledger_server, ledger_file
):
    base, page = ledger_server, ledger_page
    want = expected(ledger_file)
    page.goto(base)

    # Before any ledger: the page says so and leads to the upload.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="NRR").click()
    expect(page.get_by_role("heading", name="No revenue ledger yet")).to_be_visible()
    page.get_by_role("link", name="Upload a revenue ledger").click()
    page.wait_for_url(f"{base}/nrr/upload")

    page.get_by_label("Ledger CSV").set_input_files(str(ledger_file))
    page.get_by_label("Dimension columns").fill("plan, region, size")
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status").filter(has_text="Stored")).to_be_visible(timeout=60_000)

    # The trend: headline figures, the chart (accessible), and the monthly table.
    page.goto(f"{base}/nrr")
    ttm = page.locator('[data-figure="ttm-nrr"] .value')
    expect(ttm).to_have_text(pct(want["ttm_nrr"], 1))
    expect(page.locator('[data-figure="nrr"] .value')).to_have_text(pct(want["monthly_nrr"], 1))
    trend = page.get_by_role("img", name="NRR and GRR by month and trailing twelve months")
    expect(trend).to_be_visible()
    expect(trend.locator("desc")).to_contain_text("NRR (TTM): ")
    expect(page.locator("#nrr-trend line.ref-target")).to_have_count(1)  # the demo root's 108%
    page.get_by_text("The figures by month (table)").click()
    last_row = page.locator(f'#nrr-monthly tr[data-period="{want["last"]}"]')
    expect(last_row.locator('[data-col="ttm-nrr"]')).to_have_text(pct(want["ttm_nrr"], 2))
    screenshot(page, "nrr-page")

    # Drill into plan: the select swaps the page body (htmx) and pushes the address.
    page.get_by_label("Break down by").select_option("plan")
    expect(page.get_by_role("heading", name=re.compile(r"^By plan in "))).to_be_visible()
    page.wait_for_url(re.compile(r"/nrr\?.*dimension=plan"))
    for plan, value in want["ttm_by_plan"].items():
        row = page.locator(f'#nrr-breakdown tr[data-group="{plan}"]')
        expect(row.locator('[data-col="ttm-nrr"]')).to_have_text(pct(value, 2))
    expect(page.locator(".multiples svg[role=img]")).to_have_count(len(want["ttm_by_plan"]))
    page.reload()  # the pushed address is the same view
    expect(page.get_by_role("heading", name=re.compile(r"^By plan in "))).to_be_visible()
    screenshot(page, "nrr-by-plan")

    # The driver tree's NRR root reads its actual from the ledger.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Driver tree").click()
    root = page.locator("#tree > ul.tree > li").first
    actuals = root.locator(".node-actuals").first
    expect(actuals).to_contain_text("NRR, trailing twelve months: 102.0% → 108.0% →")
    expect(actuals.locator(".actual-value")).to_have_text(pct(want["ttm_nrr"], 1))
    expect(actuals).to_contain_text(f"({want['last']}, from the ledger)")
    expect(actuals.get_by_role("img")).to_be_visible()
    screenshot(page, "nrr-tree-actuals")

    # And the dashboard leads with it.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Dashboard").click()
    top = page.get_by_role("region", name=re.compile("Net revenue retention"))
    expect(top.locator('[data-figure="nrr"] .value')).to_have_text(pct(want["ttm_nrr"], 1))
    screenshot(page, "nrr-dashboard")


def test_the_nrr_page_fits_a_phone_and_passes_the_accessibility_basics(
    ledger_page, ledger_server
):
    """Runs after the upload above (same module server); on its own it checks the empty page."""
    base, page = ledger_server, ledger_page
    problems = []
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        for path in ("/nrr", "/nrr?dimension=region", "/tree/", "/"):
            assert page.goto(base + path).status == 200
            try:
                assert_no_horizontal_overflow(page, f"{path} at {width} px")
            except AssertionError as exc:
                problems.append(str(exc))
            problems += [f"{path} at {width} px: {p}" for p in accessibility_problems(page)]
    screenshot(page, "nrr-dashboard-390")
    assert not problems, "\n".join(problems)


def test_without_javascript_the_breakdown_and_an_entered_actual_work(
    browser, cookies, ledger_server
):
    """Runs after the upload above: the GET form and the tree's actual form post plainly."""
    base = ledger_server
    context = new_context(browser, java_script_enabled=False)
    try:
        context.add_cookies(cookies)
        page = watched_page(context)
        page.goto(f"{base}/nrr")
        page.get_by_label("Break down by").select_option("region")
        page.get_by_role("button", name="Show").click()
        page.wait_for_url(re.compile(r"/nrr\?period=\d{4}-\d{2}&dimension=region"))
        expect(page.get_by_role("heading", name=re.compile(r"^By region in "))).to_be_visible()

        page.goto(f"{base}/tree/")
        card = page.get_by_role("article", name="Activation", exact=True)
        card.get_by_text("Enter an actual").click()
        form = card.get_by_role("form", name="Enter an actual of Activation")
        form.get_by_label("Date").fill("2026-01-15")
        form.get_by_label("Accounts reaching first value in 14 days").fill("0.61")
        form.get_by_role("button", name="Save actual").click()
        page.wait_for_url(re.compile(r"/tree/\?saved=\d+"))
        card = page.get_by_role("article", name="Activation", exact=True)
        expect(card.locator(".actual-value")).to_have_text("0.61")
        expect(card.get_by_role("status")).to_have_text("Saved")
        page.problems.assert_clean()
    finally:
        context.close()
