"""Loopback receivers for the notification tests: an HTTP server that records webhook
calls and answers with a scripted sequence of statuses, and an aiosmtpd SMTP server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

#: The fixed clock of the byte-for-byte tests: Monday 7 December 2026, 08:00 UTC.
FIXED_NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
BASE_URL = "https://nrr.example.com"


@dataclass
class Call:
    path: str
    headers: dict[str, str]  # names in lower case (HTTP names are case-insensitive)
    body: bytes


@dataclass
class Receiver:
    url: str
    calls: list[Call] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)  # answered in turn, then 200
    delay: float = 0.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A loopback HTTP server in a thread: records every POST, answers ``statuses`` in
    turn (then 200), after ``delay`` seconds."""
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            state.calls.append(Call(self.path, headers, body))
            if state.delay:
                time.sleep(state.delay)
            status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield state
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Mailbox:
    port: int
    messages: list = field(default_factory=list)  # aiosmtpd Envelope objects


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    """aiosmtpd on a free loopback port, keeping every envelope it receives."""
    from aiosmtpd.controller import Controller

    box = Mailbox(port=_free_port())

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            box.messages.append(envelope)
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


@pytest.fixture
def smtp_env(monkeypatch, smtp_server) -> Mailbox:
    """NRRLAB_SMTP_* pointing at the local server (no TLS, no login) and a base URL."""
    monkeypatch.setenv("NRRLAB_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NRRLAB_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("NRRLAB_SMTP_FROM", "NRR Lab <nrrlab@example.com>")
    monkeypatch.setenv("NRRLAB_SMTP_STARTTLS", "0")
    monkeypatch.setenv("NRRLAB_BASE_URL", BASE_URL)
    return smtp_server


@pytest.fixture
def no_dispatch(db_engine) -> Iterator[None]:
    """No job queue for the test engine: deliveries are sent by calling ``deliver``."""
    from experiments import notify

    notify._dispatchers.pop(db_engine.pool, None)
    yield
    notify._dispatchers.pop(db_engine.pool, None)
