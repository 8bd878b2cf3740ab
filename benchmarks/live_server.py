"""A real NRR Lab under gunicorn on a free loopback port, and a small HTTP client for it.

Used by the fault and soak runs (``benchmarks/fault_kill9.py``, ``benchmarks/soak.py``)
and by the short kill -9 test in ``tests/reliability``. Loopback only; standard library
only (urllib with a cookie jar), so nothing is added to the test extra.
"""

from __future__ import annotations

import contextlib
import http.client
import http.cookiejar
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADMIN_EMAIL = "ops@example.com"
ADMIN_PASSWORD = "fault tolerant passphrase"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(folder: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({
        "DATABASE_URL": database_url or f"sqlite:///{folder / 'live.db'}",
        "NRRLAB_INSTANCE_PATH": str(folder),
        "SECRET_KEY": "k" * 48,
        "NRRLAB_ENV": "development",
        "NRRLAB_PASSWORD": ADMIN_PASSWORD,
        "PYTHONPATH": str(ROOT),
    })
    return env


def nrrlab(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "experiments.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"nrrlab {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def prepare(env: dict[str, str], *, demo: bool = False) -> None:
    """Migrate, create the admin, and (optionally) load the demo workspace."""
    nrrlab(env, "db", "upgrade")
    nrrlab(env, "create-user", ADMIN_EMAIL, "--role", "admin")
    if demo:
        nrrlab(env, "seed-demo")


@dataclass
class Server:
    env: dict[str, str]
    folder: Path
    workers: int = 2
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> None:
        log = (self.folder / "gunicorn.log").open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-w", str(self.workers), "-b",
             f"127.0.0.1:{self.port}", "--timeout", "60", "webapp.wsgi:create_wsgi_app()"],
            env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: kill -9 takes master and workers
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.kill()
        tail = (self.folder / "gunicorn.log").read_text()[-3000:]
        raise RuntimeError(f"gunicorn did not start:\n{tail}")

    def kill(self) -> None:
        """``kill -9`` of the whole server (master and workers), as a crash would."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        self.process = None

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()
        self.process = None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # answer 303 to the caller, do not follow
        return None


class Client:
    """A browser-like client: cookies, CSRF token, no redirect following."""

    def __init__(self, base: str, timeout: float = 30):
        self.base, self.timeout, self.csrf = base, timeout, ""
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), _NoRedirect())

    def request(self, method: str, path: str, data: dict | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        request = urllib.request.Request(self.base + path, data=body, method=method)
        try:
            try:
                with self.opener.open(request, timeout=self.timeout) as response:
                    return response.status, response.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode("utf-8", "replace")
        except http.client.HTTPException as exc:  # the connection broke mid-answer
            raise ConnectionError(str(exc)) from exc

    def get(self, path: str) -> tuple[int, str]:
        return self.request("GET", path)

    def post(self, path: str, data: dict) -> tuple[int, str]:
        return self.request("POST", path, {**data, "csrf_token": self.csrf})

    def login(self, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
        status, page = self.get("/login")
        match = _CSRF.search(page)
        if status != 200 or not match:
            raise RuntimeError(f"no sign-in form ({status})")
        self.csrf = match.group(1)
        status, _ = self.post("/login", {"email": email, "password": password})
        if status != 303:
            raise RuntimeError(f"sign-in failed ({status})")
        # signing in starts a fresh session, and with it a fresh CSRF token
        status, page = self.get("/account/password")
        match = _CSRF.search(page)
        if status != 200 or not match:
            raise RuntimeError(f"no CSRF token after signing in ({status})")
        self.csrf = match.group(1)
