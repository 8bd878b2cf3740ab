"""Browser end-to-end fixtures: the real server on a free loopback port with a fresh
SQLite database, driven by Playwright in Debian's Chromium (never a downloaded browser).

The database holds what `make run` gives a new user (the default journey, the NRR root
and the demo workspace of `nrrlab seed-demo`) plus the admin the tests sign in as. Tests
create everything else through the UI under unique keys, so they run in any order.

Without /usr/bin/chromium the suite is skipped with a clear reason (`make test` prints it),
unless NRRLAB_REQUIRE_E2E=1 (set by .ci/run), which turns every skip into a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.helpers import TEST_PASSWORD

CHROMIUM = os.environ.get("NRRLAB_CHROMIUM", "/usr/bin/chromium")
# Chromium's own background traffic is refused on this closed network; these flags stop it.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "e2e"
ADMIN_EMAIL = "e2e-admin@example.com"
ADMIN_NAME = "E2E Admin"


REQUIRED = os.environ.get("NRRLAB_REQUIRE_E2E") == "1"


def chromium_path() -> str | None:
    """Where Debian's Chromium is (``NRRLAB_CHROMIUM``: a path or a command name), or None."""
    return CHROMIUM if Path(CHROMIUM).is_file() else shutil.which(CHROMIUM)


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    missing = chromium_path() is None
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
            if missing and not REQUIRED:
                item.add_marker(
                    pytest.mark.skip(
                        reason=f"browser tests skipped: {CHROMIUM} not found"
                        " (apt-get install chromium)"
                    )
                )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _nrrlab(*args: str, env: dict) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "experiments.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"nrrlab {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}",
            pytrace=False,
        )


def server_env(folder: Path, secret: str) -> dict:
    """The environment of a test server whose SQLite database and instance live in ``folder``."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(
        {
            "DATABASE_URL": f"sqlite:///{folder / 'e2e.db'}",
            "NRRLAB_INSTANCE_PATH": str(folder),
            "SECRET_KEY": secret * 48,
            "NRRLAB_ENV": "development",
            "NRRLAB_PASSWORD": TEST_PASSWORD,
        }
    )
    return env


@contextmanager
def running_server(folder: Path, env: dict) -> Iterator[str]:
    """``nrrlab serve`` on a free loopback port until the block ends; yields its base URL."""
    port = _free_port()
    with (folder / "server.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "experiments.cli", "serve", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(
                    f"server did not start: {(folder / 'server.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)
        try:
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    """Base URL of a running NRR Lab with an admin user and the default journey."""
    folder = tmp_path_factory.mktemp("e2e")
    env = server_env(folder, "e")
    _nrrlab("db", "upgrade", env=env)
    _nrrlab("create-user", ADMIN_EMAIL, "--role", "admin", "--name", ADMIN_NAME, env=env)
    _nrrlab("seed-demo", env=env)
    with running_server(folder, env) as base:
        yield base


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:  # only when NRRLAB_REQUIRE_E2E=1; otherwise the tests were skipped
        pytest.fail(
            f"NRRLAB_REQUIRE_E2E=1 but {CHROMIUM} is missing (apt-get install chromium)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class PageProblems:
    """Console errors and failed requests seen by a page; a test asserts there are none.

    A test that provokes an error answer on purpose (a 422 for a bad upload) declares it
    with :meth:`allow_status`; anything else still fails the test.
    """

    def __init__(self, page):
        self.console: list[str] = []
        self.failed: list[str] = []
        self.allowed: list[re.Pattern] = []
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console.append(str(e)))
        # ERR_ABORTED is a request the browser dropped itself because the page navigated on.
        page.on(
            "requestfailed",
            lambda r: (
                self.failed.append(f"{r.method} {r.url}: {r.failure}")
                if "ERR_ABORTED" not in (r.failure or "")
                else None
            ),
        )
        page.on(
            "response",
            lambda r: self.failed.append(f"{r.status} {r.url}") if r.status >= 500 else None,
        )

    def allow(self, pattern: str) -> None:
        """Tolerate console errors matching the regular expression ``pattern`` from now on."""
        self.allowed.append(re.compile(pattern))

    def allow_status(self, status: int) -> None:
        """Tolerate error answers with ``status`` (logged by Chromium, and by htmx for its
        requests)."""
        self.allow(rf"status of {status} |Response Status Error Code {status} from")

    def unexpected_console(self) -> list[str]:
        return [m for m in self.console if not any(p.search(m) for p in self.allowed)]

    def assert_clean(self) -> None:
        console = self.unexpected_console()
        assert not console, f"console errors: {console}"
        assert not self.failed, f"failed requests: {self.failed}"


def new_context(browser, **options):
    """A browser context at 1280 px that accepts downloads (``options`` override)."""
    options.setdefault("viewport", {"width": 1280, "height": 900})
    return browser.new_context(accept_downloads=True, **options)


def watched_page(context):
    """A new page of ``context`` recording its console errors and failed requests."""
    page = context.new_page()
    page.problems = PageProblems(page)
    page.set_default_timeout(15_000)
    return page


@pytest.fixture
def context(browser):
    context = new_context(browser)
    yield context
    context.close()


@pytest.fixture
def page(context, server):
    page = watched_page(context)
    yield page
    page.problems.assert_clean()


@pytest.fixture
def nojs_page(browser, server):
    """A signed-out page in a context with JavaScript disabled: htmx never loads."""
    context = new_context(browser, java_script_enabled=False)
    try:
        page = watched_page(context)
        yield page
        page.problems.assert_clean()
    finally:
        context.close()


def sign_in(page, base: str, email: str = ADMIN_EMAIL, password: str = TEST_PASSWORD) -> None:
    page.goto(f"{base}/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def signed_in_cookies(browser, base: str) -> list:
    """The admin's session cookies on the server at ``base``, from one sign-in in a
    throwaway context (sign in once per scope: the password hash is slow on purpose)."""
    context = new_context(browser)
    page = context.new_page()
    sign_in(page, base)
    cookies = context.cookies()
    context.close()
    return cookies


@pytest.fixture(scope="session")
def admin_cookies(browser, server):
    """The admin's session cookies: one sign-in per run (the password hash is slow on purpose)."""
    return signed_in_cookies(browser, server)


@pytest.fixture
def admin_page(page, context, admin_cookies):
    """A page signed in as the admin."""
    context.add_cookies(admin_cookies)
    return page


def screenshot(page, name: str) -> Path:
    """Save a screenshot under test-artifacts/e2e (git-ignored) and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
