"""Read pages under gunicorn: p50 one request at a time and req/s at 16 clients (issue 18).

Usage::

    python benchmarks/bench_pages.py [--workspaces demo,10x50,100x50,1000x50,100x500,300x50h]
                                     [--servers gthread,sync4] [--clients 16] [--seconds 10]
                                     [--requests 60] [--page-cache on,off,after-write]
                                     [--write generation,experiment]
                                     [--workspaces-kept DIR] [--json out.json]

Each workspace is a fresh SQLite database in a temporary folder, migrated with
``nrrlab db upgrade``:

* ``demo`` — ``nrrlab seed-demo`` (6 experiments, 10 tree nodes; the issue's reference);
* ``<E>x<N>`` — :func:`benchmarks.workspace.build_workspace` with E experiments and N
  tree nodes (100 accounts per arm, data uploaded through the upload's service, so every
  analysis is stored); a trailing ``h`` adds 52 weeks of review meetings (each week opened
  once as of its end), the issue's "300 experiments and 52 weeks of history".

For each workspace and each server kind a gunicorn is started on a free loopback port:
``gthread`` is ``gunicorn -c python:webapp.gunicorn_conf`` (workers = cores, 4 threads);
``sync4`` is ``gunicorn -w 4`` with sync workers (the issue's "before" configuration).
The app runs as in production (``NRRLAB_ENV=production``, a random key; cookies not
marked Secure because the client speaks plain HTTP). One signed-in admin session is used
for everything.

* **one at a time**: ``--requests`` GETs of each page back to back on one keep-alive
  connection (Python ``http.client``), after 5 warm-up GETs; p50 and p95.
* **server CPU per request**: user + system CPU of the gunicorn processes over the
  one-at-a-time block, divided by its requests (from ``/proc``). On a shared machine this
  is the steadier figure: waiting for a core is not counted. ``2 cores × 1000 / CPU ms``
  bounds the req/s two quiet cores could serve.
* **16 clients** (after all one-at-a-time figures, each run once the server is idle again):
  ``wrk -t2 -c16 -d<seconds>s`` per page with the session cookie (``wrk``
  runs on the same two cores as the server, so it takes some of their CPU); falls back to
  a threaded Python client when ``wrk`` is not installed. Non-2xx answers are counted.

``--page-cache on,off`` runs each server with the rendered-page cache (``webapp.page_cache``)
on and then off (``NRRLAB_PAGE_CACHE``), side by side; the default is ``on`` (production's).
With the cache on, the warm-up GETs fill it and the measured requests are repeats of an
unchanged page. ``after-write`` runs the cache on, as production does, but before every
GET (outside its timing) commits a write that moves the data generation
(``UPDATE data_generation SET n = n + 1`` on the workspace's database, as any committed
write of the app does): each measured GET is then the first view after a write, which
renders the page and rebuilds whatever is kept per data generation (the review's rows),
while what is kept by its own inputs (parsed analyses, results bodies) is reused, as after
a write that did not touch them. ``--write experiment`` makes each of those writes also
edit one experiment's hypothesis (the next experiment each time), the common write: the
review's rows kept by their inputs are then rebuilt for that one experiment only
(``--write generation,experiment`` runs both kinds side by side). ``off`` turns the page
cache off but keeps the rest.

Prints Markdown tables (and the machine's load average before and after each block).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.live_server import free_port  # noqa: E402

TARGET_P50_MS = 10.0
TARGET_RPS = 400.0
TARGET_REVIEW_MS = 50.0
DEMO_ADMIN = ("ops@example.com", "bench demo passphrase 123")
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _environment(folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update({
        "DATABASE_URL": f"sqlite:///{folder / 'bench.db'}",
        "NRRLAB_INSTANCE_PATH": str(folder),
        "SECRET_KEY": secrets.token_urlsafe(48),
        "NRRLAB_ENV": "production",
        "NRRLAB_SECURE_COOKIES": "0",
        "NRRLAB_PASSWORD": DEMO_ADMIN[1],
        "PYTHONPATH": str(ROOT),
    })
    return env


def _nrrlab(env: dict[str, str], *args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "experiments.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=3600, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"nrrlab {' '.join(args)} failed: {done.stderr[-2000:]}")


def prepare(spec: str, folder: Path, env: dict[str, str]) -> dict:
    """Build the workspace ``spec`` in ``folder``; returns what to sign in with and where."""
    _nrrlab(env, "db", "upgrade")
    started = time.perf_counter()
    if spec == "demo":
        _nrrlab(env, "create-user", DEMO_ADMIN[0], "--role", "admin")
        _nrrlab(env, "seed-demo")
        info = {"email": DEMO_ADMIN[0], "password": DEMO_ADMIN[1],
                "key": "seat-limit-nudge", "experiments": 6, "nodes": 10, "weeks": 0}
    else:
        match = re.fullmatch(r"(\d+)x(\d+)(h?)", spec)
        if not match:
            raise SystemExit(f"workspace {spec!r}: use demo or <experiments>x<nodes>[h]")
        code = (
            "import json, sys\n"
            "from sqlmodel import Session\n"
            "from experiments.db import make_engine\n"
            "from benchmarks.workspace import build_workspace\n"
            "e, n, h = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == 'h'\n"
            "engine = make_engine(sys.argv[4])\n"
            "with Session(engine, expire_on_commit=False) as s:\n"
            "    info = build_workspace(s, experiments=e, nodes=n, weeks=52 if h else 8,\n"
            "                           history=h)\n"
            "print(json.dumps({k: v for k, v in info.items() if k != 'keys'}))\n")
        done = subprocess.run([sys.executable, "-c", code, *match.groups(),
                               env["DATABASE_URL"]], env=env, cwd=ROOT, capture_output=True,
                              text=True, timeout=7200, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"workspace {spec} failed: {done.stderr[-3000:]}")
        from benchmarks.workspace import ADMIN_EMAIL, PASSWORD

        info = {"email": ADMIN_EMAIL, "password": PASSWORD, "key": "exp-0001",
                **json.loads(done.stdout.strip().splitlines()[-1])}
    info["build_seconds"] = round(time.perf_counter() - started, 1)
    return info


class Gunicorn:
    def __init__(self, kind: str, env: dict[str, str], folder: Path, page_cache: str = "on"):
        self.kind, self.folder, self.port = kind, folder, free_port()
        self.env = {**env, "NRRLAB_PAGE_CACHE": "1" if page_cache == "on" else "0"}
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> Gunicorn:
        bind = f"127.0.0.1:{self.port}"
        if self.kind == "gthread":
            args = ["-c", "python:webapp.gunicorn_conf", "-b", bind]
        elif self.kind == "sync4":
            args = ["-w", "4", "-b", bind, "--access-logfile", "-",
                    "webapp.wsgi:create_wsgi_app()"]
        else:
            raise SystemExit(f"server kind {self.kind!r}: gthread or sync4")
        log = (self.folder / f"gunicorn-{self.kind}.log").open("a")
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", *args], env=self.env,
                                        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                status, _, _ = _get(self.port, "/healthz", "")
                if status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError("gunicorn did not start: "
                           + (self.folder / f"gunicorn-{self.kind}.log").read_text()[-2000:])

    def cpu_seconds(self) -> float:
        """User + system CPU of the master and its workers so far (Linux ``/proc``)."""
        if self.process is None:
            return 0.0
        pids = [self.process.pid]
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
        ticks = 0
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return ticks / os.sysconf("SC_CLK_TCK")

    def settle(self, timeout: float = 120) -> None:
        """Wait until the server is idle (requests a concurrent run left queued are done)."""
        deadline = time.monotonic() + timeout
        before = self.cpu_seconds()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            now = self.cpu_seconds()
            if now - before < 0.03:
                return
            before = now

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
            self.process = None


def _get(port: int, path: str, cookie: str, connection: http.client.HTTPConnection | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    own = connection is None
    connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        if own:
            connection.close()


def sign_in(port: int, email: str, password: str) -> str:
    """The session cookie of a fresh sign-in (``name=value``)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/login")
    response = connection.getresponse()
    page = response.read().decode()
    cookie = response.getheader("Set-Cookie", "").split(";")[0]
    token = _CSRF.search(page).group(1)
    body = (f"email={_quote(email)}&password={_quote(password)}&csrf_token={_quote(token)}")
    connection.request("POST", "/login", body=body, headers={
        "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    response.read()
    if response.status != 303:
        raise RuntimeError(f"sign-in answered {response.status}")
    connection.close()
    return response.getheader("Set-Cookie", "").split(";")[0]


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


#: What ``--write`` commits before each GET of ``--page-cache after-write``.
WRITE_KINDS = ("generation", "experiment")


def _write_between(database: Path | None, kind: str = "generation"):
    """A callable committing a write that moves the data generation (``None``: no-op).

    ``generation`` moves the number alone (a write no page shows, or one to another table);
    ``experiment`` also edits one experiment's hypothesis, the next experiment each time
    (cycling through them): the common write, which changes one row of the review."""
    if database is None:
        return lambda: None
    if kind not in WRITE_KINDS:
        raise SystemExit(f"--write {kind!r}: one of {', '.join(WRITE_KINDS)}")
    import sqlite3

    ids: list[int] = []
    count = [0]

    def write() -> None:
        with sqlite3.connect(database, timeout=30) as connection:
            if kind == "experiment":
                if not ids:
                    ids.extend(r[0] for r in connection.execute(
                        "SELECT id FROM experiment ORDER BY id"))
                count[0] += 1
                connection.execute(
                    "UPDATE experiment SET hypothesis = ?, updated_at = ? WHERE id = ?",
                    (f"bench edit {count[0]}",
                     datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),  # as SQLAlchemy does
                     ids[count[0] % len(ids)]))
            connection.execute("UPDATE data_generation SET n = n + 1 WHERE id = 1")
        connection.close()

    return write


def one_at_a_time(port: int, path: str, cookie: str, requests: int,
                  database: Path | None = None, write_kind: str = "generation") -> dict:
    """p50/p95 of ``requests`` GETs; with ``database`` each after a write of ``write_kind``
    (:func:`_write_between`; outside timing)."""
    write = _write_between(database, write_kind)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(5):
        write()
        status, _, _ = _get(port, path, cookie, connection)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}")
    times = []
    for _ in range(requests):
        write()
        started = time.perf_counter()
        _get(port, path, cookie, connection)
        times.append((time.perf_counter() - started) * 1000)
    connection.close()
    times.sort()
    return {"p50_ms": round(statistics.median(times), 1),
            "p95_ms": round(times[min(len(times) - 1, round(0.95 * (len(times) - 1)))], 1)}


def _wrk_rate(port: int, path: str, cookie: str, clients: int, seconds: int) -> dict:
    done = subprocess.run(
        ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--timeout", "30s", "-H",
         f"Cookie: {cookie}", f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, timeout=seconds + 120, check=True)
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": round(rate, 1), "requests": total, "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(0) if errors else "", "client": "wrk"}


def _threaded_rate(port: int, path: str, cookie: str, clients: int, seconds: int) -> dict:
    deadline = time.monotonic() + seconds
    counts, bad, lock = [0], [0], threading.Lock()

    def work() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < deadline:
            status, _, _ = _get(port, path, cookie, connection)
            with lock:
                counts[0] += 1
                bad[0] += status != 200
        connection.close()

    threads = [threading.Thread(target=work) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"rps": round(counts[0] / elapsed, 1), "requests": counts[0], "non_2xx": bad[0],
            "socket_errors": "", "client": "python threads"}


def rate(port: int, path: str, cookie: str, clients: int, seconds: int) -> dict:
    if shutil.which("wrk"):
        return _wrk_rate(port, path, cookie, clients, seconds)
    return _threaded_rate(port, path, cookie, clients, seconds)


def pages(info: dict) -> dict[str, str]:
    from experiments.review_weeks import current_week

    return {
        "dashboard": "/",
        "experiment list": "/experiments/",
        "results page": f"/experiments/{info['key']}",
        "tree": "/tree/",
        "review": f"/review/{current_week().label}",
        "NRR page": "/nrr",
        "/me": "/me",
    }


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "webapp", "experiments",
                            "stats"], cwd=ROOT, capture_output=True, text=True, check=False)
    return done.stdout.strip() + ("+uncommitted" if dirty.stdout.strip() else "")


def prepared(spec: str, folder: Path, env: dict[str, str], kept: Path | None) -> dict:
    """:func:`prepare`, or with ``kept`` a copy of the workspace built there before (built
    and kept there first if it is not): a workspace of thousands of experiments takes
    minutes to build, and a baseline and a change are best measured on the same one."""
    if kept is None:
        return prepare(spec, folder, env)
    import sqlite3

    source = kept / spec
    if not (source / "info.json").exists():
        source.mkdir(parents=True, exist_ok=True)
        info = prepare(spec, source, {**env, **_environment(source)})
        (source / "info.json").write_text(json.dumps(info))
    with sqlite3.connect(source / "bench.db") as original, \
            sqlite3.connect(folder / "bench.db") as copy:
        original.backup(copy)  # a consistent copy, whatever its write-ahead log holds
    original.close()
    copy.close()
    _nrrlab(env, "db", "upgrade")  # a no-op unless the kept one is older than the code
    return {**json.loads((source / "info.json").read_text()), "build_seconds": 0.0}


def run(specs: list[str], servers: list[str], clients: int, seconds: int, requests: int,
        only: set[str] | None, page_cache: tuple[str, ...] = ("on",),
        writes: tuple[str, ...] = ("generation",), kept: Path | None = None) -> list[dict]:
    results = []
    for spec in specs:
        folder = Path(tempfile.mkdtemp(prefix=f"bench-pages-{spec}-"))
        try:
            env = _environment(folder)
            info = prepared(spec, folder, env, kept)
            print(f"\n### workspace {spec}: {info['experiments']} experiments, "
                  f"{info['nodes']} tree nodes, {info.get('meetings', 0)} review meetings "
                  f"(built in {info['build_seconds']} s)", flush=True)
            runs = [(k, c, w) for k in servers for c in page_cache
                    for w in (writes if c == "after-write" else ("",))]
            for kind, cache, write_kind in runs:
                with Gunicorn(kind, env, folder, "off" if cache == "off" else "on") as server:
                    cookie = sign_in(server.port, info["email"], info["password"])
                    load_before = _load()
                    shown = f"{cache} ({write_kind} write)" if write_kind else cache
                    print(f"\n{kind}, page cache {shown}, load before {load_before}\n\n"
                          "| page | p50 one at a time"
                          f" | p95 | server CPU per request | req/s at {clients} clients | "
                          "non-2xx |\n|---|---:|---:|---:|---:|---:|", flush=True)
                    wanted = {n: p for n, p in pages(info).items() if not only or n in only}
                    # First every page one at a time, then the concurrent runs: requests a
                    # concurrent run leaves queued must not land in a one-at-a-time figure.
                    singles = {}
                    for name, path in wanted.items():
                        server.settle()
                        cpu_before = server.cpu_seconds()
                        single = one_at_a_time(
                            server.port, path, cookie, requests,
                            folder / "bench.db" if cache == "after-write" else None,
                            write_kind or "generation")
                        # Server CPU per request (the 5 warm-up GETs included): unlike wall
                        # time it hardly changes with the machine's load.
                        single["cpu_ms"] = round(
                            (server.cpu_seconds() - cpu_before) * 1000 / (requests + 5), 1)
                        singles[name] = single
                    for name, path in wanted.items():
                        single = singles[name]
                        if clients and cache != "after-write":
                            server.settle()
                            many = rate(server.port, path, cookie, clients, seconds)
                        else:
                            many = {"rps": "not run", "non_2xx": "–", "client": "-"}
                        row = {"workspace": spec, "server": kind, "page_cache": cache,
                               "write": write_kind or None, "page": name, "path": path,
                               **single, **many, "load_before": load_before,
                               "load_after": _load(), "commit": _commit(),
                               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
                        results.append(row)
                        print(f"| {name} | {single['p50_ms']} ms | {single['p95_ms']} ms | "
                              f"{single['cpu_ms']} ms | {many['rps']} | {many['non_2xx']} |",
                              flush=True)
                    print(f"(load after {_load()}; client {results[-1]['client']})", flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspaces", default="demo,10x50,100x50,1000x50,100x500,300x50h")
    parser.add_argument("--servers", default="gthread,sync4")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--pages", default="", help="comma-separated page names (default all)")
    parser.add_argument("--page-cache", default="on",
                        help="comma-separated: on, off, after-write (the cache on, a write "
                         "before each timed GET: the first view after a write)")
    parser.add_argument("--write", default="generation",
                        help="comma-separated, for after-write: generation (the number alone) "
                        "and/or experiment (one experiment's hypothesis edited, the next one "
                        "each time)")
    parser.add_argument("--workspaces-kept", type=Path, metavar="DIR",
                        help="build each workspace once into DIR/<spec> and measure a copy of "
                        "it (reused by later runs with the same DIR)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    # A TERM (e.g. from a time limit) unwinds normally, so every gunicorn started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(f"# bench_pages: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit "
          f"{_commit()}, {os.cpu_count()} CPUs, {platform.python_version()}, load {_load()}")
    modes = tuple(args.page_cache.split(","))
    if not modes or set(modes) - {"on", "off", "after-write"}:
        raise SystemExit(f"--page-cache {args.page_cache!r}: on, off, after-write or a list")
    writes = tuple(args.write.split(","))
    if not writes or set(writes) - set(WRITE_KINDS):
        raise SystemExit(f"--write {args.write!r}: {', '.join(WRITE_KINDS)} or a list")
    rows = run(args.workspaces.split(","), args.servers.split(","), args.clients, args.seconds,
               args.requests, set(args.pages.split(",")) if args.pages else None, modes,
               writes, args.workspaces_kept)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
