"""The main pages at a desktop and a phone width: a screenshot of each (test-artifacts/e2e),
no horizontal overflow, no console errors or failed requests, and the accessibility basics
(labels, text alternatives, heading order, visible focus, verdicts in words)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot
from tests.e2e.pages import accessibility_problems, assert_no_horizontal_overflow, focus_problems

# name, path, heading: the pages a user spends the week on (demo data from the server fixture).
PAGES = [
    ("dashboard", "/", "Dashboard"),
    ("tree", "/tree/", "Driver tree"),
    ("experiments", "/experiments/", "Experiments"),
    ("experiment-results", "/experiments/seat-limit-nudge", "Seat-limit nudge for admins"),
    ("experiment-srm", "/experiments/winback-sequence", "Win-back email sequence"),
    ("experiment-new", "/experiments/new", "New experiment"),
    ("review", "/review/", None),
    ("planner", "/planner/", "Sample-size planner"),
    ("journeys", "/journeys/", "Journeys"),
    ("admin-users", "/admin/users", "Users"),
]
WIDTHS = {"desktop": 1280, "phone": 390}


@pytest.mark.parametrize("width_name", list(WIDTHS))
def test_main_pages_layout_and_accessibility(admin_page, server, width_name):
    page = admin_page
    page.set_viewport_size({"width": WIDTHS[width_name], "height": 900})
    problems: list[str] = []
    for name, path, heading in PAGES:
        response = page.goto(server + path)
        assert response.status == 200, f"{path} answered {response.status}"
        h1 = page.locator("h1").first
        expect(h1).to_be_visible()
        if heading:
            expect(h1).to_contain_text(heading)
        screenshot(page, f"{name}-{width_name}")
        try:
            assert_no_horizontal_overflow(page, f"{path} at {WIDTHS[width_name]} px")
        except AssertionError as exc:
            problems.append(str(exc))
        problems += [f"{path}: {p}" for p in accessibility_problems(page)]
        if width_name == "desktop":
            problems += [f"{path}: {p}" for p in focus_problems(page)]
    assert not problems, "\n".join(problems)


def test_login_page_layout_and_accessibility(page, server):
    for width_name, width in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": 800})
        page.goto(f"{server}/login")
        screenshot(page, f"login-{width_name}")
        assert_no_horizontal_overflow(page, f"/login at {width} px")
        assert accessibility_problems(page) == []
    assert focus_problems(page, presses=4) == []


def test_verdict_is_written_not_only_coloured(admin_page, server):
    """Verdicts are words (and a mark) on the badge, not colour alone; the forest plot has a text
    equivalent. Uses the demo's planted win and sample ratio mismatch, found from the list."""
    page = admin_page
    for verdict, label in [("win", "Win"), ("srm", "Sample ratio mismatch")]:
        page.goto(f"{server}/experiments/")
        row = page.locator(
            "table.registry tbody tr", has=page.locator(f".badge.verdict-{verdict}")
        ).first
        # the list shows the same badge as the results page: a mark and the written label
        list_badge = row.locator(f".badge.verdict-{verdict}")
        expect(list_badge).to_have_text(re.compile(rf"(^|\s){label}\s*$"))
        expect(list_badge.locator("[aria-hidden=true]")).not_to_have_text("")
        row.locator("td").first.get_by_role("link").click()
        headline = page.locator(".verdict-line .badge.verdict")
        expect(headline).to_have_text(re.compile(rf"(^|\s){label}$"))
        expect(headline.locator("[aria-hidden=true]")).not_to_have_text("")
        for badge in page.locator(".comparisons-table .badge.verdict").all():
            expect(badge).to_have_text(
                re.compile(r"(Win|Loss|Inconclusive|Underpowered|Sample ratio mismatch)$")
            )
        plot = page.get_by_role("img", name=re.compile(r"^Forest plot: NRR uplift per treatment"))
        expect(plot).to_be_visible()
        assert re.search(r"[+-]?\d", plot.locator("desc").text_content()), (
            "the plot's description has no figures"
        )
        if verdict == "srm":
            expect(
                page.get_by_role("alert").filter(has_text="Sample ratio mismatch")
            ).to_be_visible()


#: Links the crawler does not follow: signing out, files and downloads, raw JSON.
SKIPPED_LINK = re.compile(
    r"/logout|/static/|/healthz|\.(csv|json|md|py|zip|txt)(\?|$)|/export|/download|/documents/"
)


DUPLICATE_IDS_JS = """() => {
  const count = {};
  for (const el of document.querySelectorAll('[id]')) count[el.id] = (count[el.id] || 0) + 1;
  return Object.keys(count).filter(id => count[id] > 1);
}"""


def _page_pattern(path: str) -> str:
    """One page per route: ids and keys in the path collapse to one pattern."""
    path = path.split("#")[0].split("?")[0]
    path = re.sub(r"^/experiments/(?!new$)[^/]+", "/experiments/K", path)
    return re.sub(r"/\d+", "/N", path)


def test_every_page_fits_a_phone_and_labels_every_field(admin_page, server):
    """A crawler from the dashboard through every same-site link (one page per route
    pattern) at 390 px: no horizontal overflow, every form field labelled (issue 14, item 7)."""
    page = admin_page
    page.set_viewport_size({"width": 390, "height": 844})
    queue, seen, visited, problems = ["/"], set(), [], []
    while queue and len(visited) < 80:
        path = queue.pop(0)
        pattern = _page_pattern(path)
        if pattern in seen:
            continue
        seen.add(pattern)
        response = page.goto(server + path)
        if response is None or response.status != 200:
            continue
        visited.append(path)
        try:
            assert_no_horizontal_overflow(page, f"{path} at 390 px")
        except AssertionError as exc:
            problems.append(str(exc))
            screenshot(page, "overflow-390-" + re.sub(r"\W+", "-", path).strip("-"))
        problems += [
            f"{path}: {p}" for p in accessibility_problems(page) if "without a label" in p
        ]
        # a label whose "for" names an id used twice labels the wrong element
        problems += [f"{path}: id used twice: {d}" for d in page.evaluate(DUPLICATE_IDS_JS)]
        for href in page.eval_on_selector_all(
            "a[href^='/']:not([download])", "links => links.map(a => a.getAttribute('href'))"
        ):
            if not SKIPPED_LINK.search(href) and _page_pattern(href) not in seen:
                queue.append(href.split("#")[0])
    assert len(visited) >= 15, f"the crawler reached only {visited}"
    assert not problems, "\n".join(problems)
