"""Fixtures of the API tests: a token per role (and team), a client that sends it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlmodel import Session

from experiments.api_tokens import create_token


@dataclass
class TokenClient:
    """A Flask test client that sends ``Authorization: Bearer <secret>`` on every request."""

    client: Any
    secret: str
    user: Any

    def open(self, method: str, url: str, *, headers: dict | None = None, **kwargs):
        headers = {"Authorization": f"Bearer {self.secret}", **(headers or {})}
        return self.client.open(url, method=method, headers=headers, **kwargs)

    def get(self, url: str, **kwargs):
        return self.open("GET", url, **kwargs)

    def post(self, url: str, **kwargs):
        return self.open("POST", url, **kwargs)

    def patch(self, url: str, **kwargs):
        return self.open("PATCH", url, **kwargs)


def issue_token(engine, user, scope: str = "write", **fields) -> str:
    """A new token of ``user`` made through the service (committed); returns its secret."""
    with Session(engine, expire_on_commit=False) as session:
        issued = create_token(session, {"name": fields.pop("name", f"{scope} token"),
                                        "scope": scope, **fields}, actor=user)
        session.commit()
    return issued.secret


@pytest.fixture
def api_as(app, factory, db_engine):
    """``api_as(role, teams=None, scope="write")`` → a :class:`TokenClient` of a new user."""
    counter = iter(range(1_000_000))

    def make(role: str = "viewer", teams: dict[str, str] | None = None, scope: str = "write"):
        user = factory.user(f"api-{role}{next(counter)}@example.com", role, teams)
        return TokenClient(app.test_client(), issue_token(db_engine, user, scope), user)

    return make
