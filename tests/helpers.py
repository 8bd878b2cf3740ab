"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import re
from pathlib import Path

TEST_PASSWORD = "correct horse battery"
#: The sample account files of the data contract (good and bad).
SAMPLES = Path(__file__).resolve().parent / "data"


def dispose_app(app) -> None:
    """Close the app's pooled connections (an open one left to the GC is a ResourceWarning)."""
    app.extensions["nrrlab.engine"].dispose()


_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token_of(client) -> str:
    """A valid CSRF token for ``client``'s session, read off the sign-in page as a browser would."""
    page = client.get("/login").get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, "sign-in page carries no CSRF token"
    return match.group(1)


class Auth:
    def __init__(self, client):
        self.client = client

    def login(self, email: str, password: str = TEST_PASSWORD):
        token = csrf_token_of(self.client)
        return self.client.post(
            "/login", data={"email": email, "password": password, "csrf_token": token}
        )

    def token(self) -> str:
        return csrf_token_of(self.client)
