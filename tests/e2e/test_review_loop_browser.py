"""The review loop in a browser (issue 17 acceptance): a team member signs in and lands on
"My week"; during the weekly review she raises an action (htmx, in place), sees it flagged
overdue on her week, and closes it from the review without a page reload — after which it
leaves her week."""

from __future__ import annotations

import uuid

from playwright.sync_api import expect

from experiments.demo import DEMO_MEMBER_PASSWORD
from tests.e2e.conftest import screenshot, sign_in
from tests.e2e.pages import accessibility_problems

MARIA = "maria@nrrlab.example"  # the demo workspace's growth experimenter
MARKER = "() => window.__marker"


def test_my_week_and_closing_an_action_during_the_review(page, server):
    title = f"Ask finance for the Q4 figures {uuid.uuid4().hex[:6]}"

    # Signing in lands a non-admin on her own week.
    sign_in(page, server, MARIA, DEMO_MEMBER_PASSWORD)
    assert page.url.endswith("/me")
    expect(page.get_by_role("heading", level=1)).to_contain_text("My week")
    for heading in ("Decisions I owe", "My open actions", "My experiments", "My branches"):
        expect(page.get_by_role("heading", level=2, name=heading)).to_be_visible()
    expect(page.locator("#my-experiments tbody tr").first).to_be_visible()
    assert accessibility_problems(page) == []
    screenshot(page, "my-week")

    # The weekly review: raise an action at the top, in place (htmx).
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Review").click()
    expect(page.locator("#actions-h")).to_contain_text("open")
    page.evaluate("window.__marker = 1")
    form = page.locator("form.review-action-new")
    form.get_by_label("Action").fill(title)
    form.get_by_label("Owner").select_option(label="Maria Okafor")
    form.get_by_label("Due").fill("2020-01-31")
    form.get_by_role("button", name="Add action").click()
    card = page.locator("article.review-action", has_text=title)
    expect(card).to_be_visible()
    expect(card.locator(".badge.overdue")).to_have_text("Overdue")
    expect(page.locator("#actions [role=status]")).to_have_text("Action added.")
    assert page.evaluate(MARKER) == 1, "adding an action reloaded the page"
    assert accessibility_problems(page) == []

    # Her week lists it, overdue, with the way back to the review.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="My week").click()
    row = page.locator("#my-actions tr", has_text=title)
    expect(row.get_by_text("Overdue")).to_be_visible()
    row.get_by_role("link", name="Close or edit in this week's review").click()

    # Closing it during the review: the card replaces itself, no reload.
    page.evaluate("window.__marker = 2")
    card = page.locator("article.review-action", has_text=title)
    card.get_by_label("Outcome (optional, kept when closing)").fill("Figures arrived")
    card.get_by_role("button", name="Mark done").click()
    expect(card.get_by_role("status")).to_have_text("Closed as done.")
    expect(card.get_by_role("button", name="Reopen")).to_be_visible()
    expect(card).to_have_attribute("data-state", "done")
    # The heading's counts follow (sent out of band): her action is no longer open.
    expect(page.locator("#actions-counts")).not_to_contain_text("overdue")
    assert page.evaluate(MARKER) == 2, "closing an action reloaded the page"
    screenshot(page, "review-action-closed")

    # Closed: it stays on this week's review as done, and leaves her week.
    page.reload()
    expect(page.locator("article.review-action", has_text=title)).to_have_attribute(
        "data-state", "done")
    page.goto(f"{server}/me")
    expect(page.locator("#my-actions")).not_to_contain_text(title)

    # The quarter's review is one click away, printable and accessible too.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Quarter").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Quarterly business review")
    expect(page.locator("#weeks tfoot")).to_contain_text("Quarter")
    assert accessibility_problems(page) == []
    screenshot(page, "quarterly-review")
