"""Benchmark the NRR page: served from the stored ledger figures, target ≤ 100 ms.

Usage::

    python benchmarks/bench_nrr_page.py [--accounts 20000] [--months 24] [--runs 30]
                                        [--postgres URL | --no-postgres]

For each backend (SQLite in a temporary file; PostgreSQL in a scratch database created
and dropped on the server of ``--postgres``, default ``$DATABASE_URL`` when it names
PostgreSQL) a fresh child process migrates an empty database, imports a generated
ledger (``tests/ledger_gen.py``: ``--accounts`` accounts over ``--months`` months,
dimensions plan/region/size) with the service the upload uses, then signs in through
the Flask test client and times ``--runs`` GETs of each view: the page, the page
broken down by plan, its htmx fragment, the dashboard and the driver tree (both also
read the stored figures). The page work is reading one stored JSON document, building
the view model and rendering; the ledger rows are never read. Prints a Markdown table
(median and 95th percentile); the target is the median of ``/nrr``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_PAGE_MS = 100.0
PASSWORD = "bench-password-123"
VIEWS = (
    ("/nrr", {}),
    ("/nrr?dimension=plan", {}),
    ("/nrr?dimension=plan", {"HX-Request": "true"}),
    ("/", {}),
    ("/tree/", {}),
)


def child(url: str, accounts: int, months: int, runs: int) -> dict:
    """Migrate, import the ledger, time the views; one JSON line on stdout."""
    from sqlmodel import Session

    from experiments.db import make_engine
    from experiments.ledger import current_figures, import_ledger
    from experiments.migrate import upgrade
    from experiments.setup import ensure_defaults
    from experiments.users import create_user
    from tests.helpers import csrf_token_of
    from tests.ledger_gen import write_csv
    from webapp import create_app

    upgrade(url)
    engine = make_engine(url)
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "ledger.csv"
        ledger = write_csv(path, n_accounts=accounts, months=months, seed=16)
        with Session(engine, expire_on_commit=False) as session:
            ensure_defaults(session)
            admin = create_user(session, "bench@nrr.test", PASSWORD, role="admin")
            session.commit()
            started = time.perf_counter()
            import_ledger(session, path, dimensions=("plan", "region", "size"), actor=admin,
                          filename="ledger.csv")
            session.commit()
            import_seconds = time.perf_counter() - started
            stored_bytes = len(json.dumps(current_figures(session)))
        app = create_app({"SECRET_KEY": "b" * 40, "DATABASE_URL": url,
                          "INSTANCE_PATH": scratch, "NRRLAB_ENV": "testing"})
        client = app.test_client()
        token = csrf_token_of(client)
        response = client.post("/login", data={"email": "bench@nrr.test", "password": PASSWORD,
                                               "csrf_token": token})
        assert response.status_code == 303, response.status_code
        timings = {}
        for url_path, headers in VIEWS:
            key = url_path + (" (htmx)" if headers else "")
            assert client.get(url_path, headers=headers).status_code == 200  # warm caches
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                response = client.get(url_path, headers=headers)
                samples.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200
            samples.sort()
            timings[key] = {"median_ms": statistics.median(samples),
                            "p95_ms": samples[max(0, round(0.95 * len(samples)) - 1)],
                            "bytes": len(response.data)}
    engine.dispose()
    return {"rows": ledger.rows, "import_s": import_seconds, "stored_bytes": stored_bytes,
            "timings": timings}


def run_backend(name: str, url: str, args) -> dict:
    command = [sys.executable, __file__, "--child", url, "--accounts", str(args.accounts),
               "--months", str(args.months), "--runs", str(args.runs)]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if out.returncode != 0:
        raise SystemExit(f"{name} run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.accounts, args.months, args.runs)))
        return
    backends = []
    with tempfile.TemporaryDirectory() as scratch:
        backends.append(("SQLite", f"sqlite:///{Path(scratch) / 'bench.db'}", None))
        server = args.postgres or os.environ.get("DATABASE_URL", "")
        if not args.no_postgres and server.startswith("postgresql"):
            from tests.conftest import create_scratch_database, drop_scratch_database

            scratch_url = create_scratch_database(server)
            backends.append(("PostgreSQL", scratch_url, server))
        load = os.getloadavg()[0]
        print(f"NRR page benchmark: {args.accounts:,} accounts × {args.months} months, "
              f"{args.runs} runs per view, load {load:.1f}, {platform.python_version()}, "
              f"run {uuid.uuid4().hex[:6]}")
        print()
        print("| database | ledger rows | import | stored figures | view | median | p95 | "
              "target |")
        print("|---|---:|---:|---:|---|---:|---:|---|")
        try:
            for name, url, _server in backends:
                result = run_backend(name, url, args)
                for view, t in result["timings"].items():
                    target = (("**met**" if t["median_ms"] <= TARGET_PAGE_MS else "missed")
                              + f" (≤ {TARGET_PAGE_MS:.0f} ms)") if view == "/nrr" else ""
                    print(f"| {name} | {result['rows']:,} | {result['import_s']:.1f} s | "
                          f"{result['stored_bytes'] / 1024:,.0f} KiB | `{view}` | "
                          f"{t['median_ms']:.1f} ms | {t['p95_ms']:.1f} ms | {target} |")
        finally:
            for _name, url, server in backends:
                if server:
                    drop_scratch_database(server, url)


if __name__ == "__main__":
    main()
