"""Bounded soak: the demo workspace under gunicorn (2 workers), 90 % page reads, 10 % writes.

Usage::

    python benchmarks/soak.py [--seconds 300] [--clients 8] [--max-requests 200000]
                              [--postgres URL]

A small threaded client (standard library, loopback only): ``--clients`` signed-in
users, each sending requests back to back until ``--seconds`` or ``--max-requests``.
Reads cycle through the dashboard, experiment list, every experiment's page, the
tree, journeys, this week's review and the planner; every tenth request creates a
team (``POST /admin/teams``, a write transaction). Reports status counts, 5xx (must be
0) and p50/p99 latency, as a Markdown row for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.live_server import Client, Server, environment, prepare  # noqa: E402

WRITE_EVERY = 10  # 10 % writes
_EXPERIMENT_LINK = re.compile(r'href="(/experiments/[A-Za-z0-9_-]+)"')


def _read_paths(client: Client) -> list[str]:
    status, page = client.get("/experiments/")
    if status != 200:
        raise RuntimeError(f"experiment list answered {status}")
    experiments = sorted(set(_EXPERIMENT_LINK.findall(page)) - {"/experiments/new"})
    return ["/", "/experiments/", *experiments, "/tree/", "/journeys/", "/review/", "/planner/"]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(seconds: float, clients: int, max_requests: int, folder: Path,
        database_url: str | None = None) -> dict:
    env = environment(folder, database_url)
    prepare(env, demo=True)
    server = Server(env, folder, workers=2)
    server.start()
    try:
        users = []
        for _ in range(clients):
            client = Client(server.base, timeout=60)
            client.login()
            users.append(client)
        paths = _read_paths(users[0])
        sequence = itertools.count()
        samples: list[tuple[str, int, float]] = []
        lock = threading.Lock()
        deadline = time.monotonic() + seconds

        def work(client: Client) -> None:
            while time.monotonic() < deadline:
                n = next(sequence)
                if n >= max_requests:
                    return
                started = time.perf_counter()
                try:
                    if n % WRITE_EVERY == WRITE_EVERY - 1:
                        kind = "write"
                        status, _ = client.post("/admin/teams", {"slug": f"soak-{n}",
                                                                 "name": f"Soak {n}"})
                    else:
                        kind = "read"
                        status, _ = client.get(paths[n % len(paths)])
                except OSError:
                    kind, status = "error", 599  # a broken connection counts as a 5xx
                elapsed = time.perf_counter() - started
                with lock:
                    samples.append((kind, status, elapsed))

        threads = [threading.Thread(target=work, args=(client,)) for client in users]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
    finally:
        server.stop()
    statuses = Counter(status for _kind, status, _t in samples)
    latencies = {kind: [t * 1000 for k, _s, t in samples if k == kind]
                 for kind in ("read", "write")}
    everything = [t * 1000 for _k, _s, t in samples]
    return {
        "requests": len(samples), "seconds": round(wall, 1),
        "per_second": round(len(samples) / wall, 1),
        "statuses": dict(sorted(statuses.items())),
        "errors_5xx": sum(n for status, n in statuses.items() if status >= 500),
        "writes": len(latencies["write"]),
        "p50_ms": round(statistics.median(everything), 1),
        "p99_ms": round(_percentile(everything, 0.99), 1),
        "read_p50_ms": round(statistics.median(latencies["read"]), 1),
        "read_p99_ms": round(_percentile(latencies["read"], 0.99), 1),
        "write_p50_ms": round(statistics.median(latencies["write"]), 1),
        "write_p99_ms": round(_percentile(latencies["write"], 0.99), 1),
        "pages": len(paths),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--postgres", default=None, help="a scratch PostgreSQL database URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nrrlab-soak-") as folder:
        result = run(args.seconds, args.clients, args.max_requests, Path(folder), args.postgres)
    print(result)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"| {backend} | {result['seconds']} s | {args.clients} | {result['requests']} "
          f"({result['writes']} writes) | {result['per_second']}/s | {result['statuses']} "
          f"| **{result['errors_5xx']}** | {result['p50_ms']} / {result['p99_ms']} ms "
          f"| {result['read_p50_ms']} / {result['read_p99_ms']} ms "
          f"| {result['write_p50_ms']} / {result['write_p99_ms']} ms |")
    sys.exit(1 if result["errors_5xx"] else 0)


if __name__ == "__main__":
    main()
