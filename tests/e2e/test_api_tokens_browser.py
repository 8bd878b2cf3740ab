"""In the browser: an API token made on the account page works once shown, is never shown
again, and stops working when revoked; the API docs page renders under the CSP (a
blocked inline script or style would be a console error)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request


def _me(server: str, token: str) -> int:
    request = urllib.request.Request(f"{server}/api/v1/me",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            json.loads(response.read())
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_make_use_and_revoke_a_token(admin_page, server):
    page = admin_page
    page.goto(f"{server}/account/tokens")
    page.get_by_label("Name").fill("browser notebook")
    page.get_by_label("write", exact=False).first.check()
    page.get_by_role("button", name="Make token").click()
    secret = page.get_by_label("Your new token").input_value()
    assert secret.startswith("nrrlab_")
    assert _me(server, secret) == 200

    page.goto(f"{server}/account/tokens")
    assert secret not in page.content()
    row = page.get_by_role("row").filter(has_text="browser notebook")
    assert "active" in row.inner_text()
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    page.wait_for_load_state()
    assert "revoked" in page.get_by_role("row").filter(has_text="browser notebook").inner_text()
    assert _me(server, secret) == 401


def test_api_docs_page_renders_without_console_errors(page, server):
    response = page.goto(f"{server}/api/v1/docs")
    assert response.status == 200
    assert page.get_by_role("heading", name="NRR Lab API").is_visible()
    assert page.locator("#op-create_experiment").is_visible()
    assert page.locator("#problem-stale-version").count() == 1
