"""The browser can sign in and see the main pages without console errors."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "path", ["/", "/tree/", "/experiments/", "/review/", "/planner/", "/journeys/"]
)
def test_main_pages_render_without_errors(admin_page, server, path):
    response = admin_page.goto(server + path)
    assert response.status < 400
    assert admin_page.locator("h1").first.is_visible()
