"""Issue 12 item 6: the sign-in limit holds under parallel attempts (the count is atomic),
and it is per account and per account-and-address, never per address alone."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlmodel import Session, select

from experiments.models import AuditEvent
from tests.helpers import TEST_PASSWORD, csrf_token_of, dispose_app

PARALLEL = 60


@pytest.fixture
def limited_app(db_engine, database_url, tmp_path):
    from webapp import create_app

    app = create_app({"NRRLAB_ENV": "testing", "SECRET_KEY": "l" * 48, "DATABASE_URL": database_url,
                      "INSTANCE_PATH": str(tmp_path / "instance"),
                      "LOGIN_FAILURE_LIMIT": 10, "LOGIN_ACCOUNT_FAILURE_LIMIT": 10,
                      "LOGIN_ADDRESS_DELAY_MAX": 0.0})
    yield app
    dispose_app(app)


def _storm(app, *, addresses: list[str], email: str) -> Counter:
    """``len(addresses)`` wrong passwords for ``email`` at the same moment, one per client."""
    clients = []
    for address in addresses:
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        clients.append((client, csrf_token_of(client)))
    barrier, statuses = threading.Barrier(len(clients)), []

    def attempt(client, token) -> None:
        barrier.wait(timeout=30)
        response = client.post("/login", data={"email": email, "password": "not the password",
                                               "csrf_token": token})
        statuses.append(response.status_code)

    threads = [threading.Thread(target=attempt, args=pair) for pair in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return Counter(statuses)


def _events(db_engine, action: str) -> list[AuditEvent]:
    with Session(db_engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)).all())


def test_sixty_parallel_guesses_from_sixty_addresses_check_exactly_the_account_limit(
        limited_app, factory, db_engine):
    factory.user("ana@example.com")
    addresses = [f"198.51.100.{i}" for i in range(1, PARALLEL + 1)]
    statuses = _storm(limited_app, addresses=addresses, email="ana@example.com")
    assert statuses == Counter({401: 10, 429: PARALLEL - 10})
    assert len(_events(db_engine, "auth.login_failed")) == 10
    throttled = _events(db_engine, "auth.login_throttled")
    assert [(e.entity_id, e.diff["key"][1]) for e in throttled] == [("ana@example.com", "account")]


def test_sixty_parallel_guesses_from_one_address_check_exactly_the_pair_limit_and_spare_others(
        limited_app, factory, db_engine):
    factory.user("ana@example.com")
    factory.user("bob@example.com")
    statuses = _storm(limited_app, addresses=["203.0.113.7"] * PARALLEL, email="ana@example.com")
    assert statuses == Counter({401: 10, 429: PARALLEL - 10})
    assert len(_events(db_engine, "auth.login_failed")) == 10
    # the address is not blocked: Bob signs in from it
    bob = limited_app.test_client()
    bob.environ_base["REMOTE_ADDR"] = "203.0.113.7"
    response = bob.post("/login", data={"email": "bob@example.com", "password": TEST_PASSWORD,
                                        "csrf_token": csrf_token_of(bob)})
    assert response.status_code == 303
