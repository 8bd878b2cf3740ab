"""Adversarial probes of the wave-2 pages (QA1): hostile or odd bytes, two people at
once, and where a value comes from. Each test is a defect a user would notice, found
by probing, and fails on the code before its fix."""

from __future__ import annotations

import pytest
from sqlmodel import select

from experiments.notify_models import WebhookEndpoint

HTMX = {"HX-Request": "true"}


@pytest.mark.parametrize(("url", "words"), [
    ("https://[::1/hook", "is not a valid address"),  # urlsplit raised: a 500
    ("https://hooks.example.com:99999/h", "is not a valid address"),  # failed only when sent
    ("https://hooks.example.com\u202e/moc.live", "invisible characters (U+202E)"),
    ("https://hooks.exa\u200bmple.com/h", "invisible characters (U+200B)"),
    ("https://hooks.example.com/a b", "must not contain spaces"),
])
def test_a_malformed_webhook_address_is_a_field_error_not_a_500(session, login_as, url, words):
    """An admin typing a broken address gets a 422 naming the url field, and nothing
    is stored: before, ``[::1`` raised in urlsplit (500) and a port above 65535 or a
    right-to-left override was saved and only failed (or misled) later."""
    admin = login_as("admin")
    response = admin.post("/admin/webhooks", data={
        "csrf_token": admin.csrf, "name": "Ops", "url": url, "events": "decision"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert words in html
    assert 'aria-invalid="true"' in html
    assert session.exec(select(WebhookEndpoint)).all() == []
