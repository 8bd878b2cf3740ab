"""CPU per read-page request in one process, page cache on (a kept page) against off.

Usage::

    python benchmarks/bench_page_cache.py [--workspace demo] [--requests 40] [--rounds 5]

The workspace is built as ``benchmarks/bench_pages.py`` builds it (a fresh SQLite database,
``nrrlab db upgrade``, the demo seed or a generated workspace). The app is created in this
process as production runs it (``NRRLAB_ENV=production``, the gunicorn worker's garbage
collector settings) and one signed-in admin session reads each page through Flask's test
client. For every page, rounds alternate: ``--requests`` GETs with the cache off (every
one rendered), then the same with it on (after one GET that fills it, so every measured
one is a hit). CPU is ``time.process_time()`` of this process (the database is SQLite, in
process): the median of the rounds, in ms per request, beside the machine's load.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_pages import _environment, pages, prepare  # noqa: E402


def _cpu_ms(client, path: str, requests: int) -> float:
    started = time.process_time()
    for _ in range(requests):
        response = client.get(path)
        if response.status_code != 200:
            raise RuntimeError(f"{path} answered {response.status_code}")
    return (time.process_time() - started) * 1000 / requests


def measure(spec: str, requests: int, rounds: int) -> list[dict]:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-page-cache-{spec}-"))
    try:
        env = _environment(folder)
        info = prepare(spec, folder, env)
        os.environ.update(env)
        from tests.helpers import Auth
        from webapp import create_app
        from webapp.gunicorn_conf import GC_THRESHOLDS

        app = create_app()
        client = app.test_client()
        if Auth(client).login(info["email"], info["password"]).status_code != 303:
            raise RuntimeError("sign-in failed")
        gc.collect()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        rows = []
        for name, path in pages(info).items():
            client.get(path)  # the review's first GET freezes its week (a write)
            off, on = [], []
            for _ in range(rounds):
                app.config["PAGE_CACHE"] = False
                off.append(_cpu_ms(client, path, requests))
                app.config["PAGE_CACHE"] = True
                client.get(path)  # fills the cache
                on.append(_cpu_ms(client, path, requests))
            rows.append({"page": name, "off_ms": statistics.median(off),
                         "on_ms": statistics.median(on)})
        return rows
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default="demo")
    parser.add_argument("--requests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    load = "/".join(f"{x:.1f}" for x in os.getloadavg())
    rows = measure(args.workspace, args.requests, args.rounds)
    print(f"# bench_page_cache: workspace {args.workspace}, {args.rounds} rounds × "
          f"{args.requests} GETs, load before {load}, after "
          f"{'/'.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("| page | CPU per request, cache off | cache on (hit) | ratio |\n|---|---:|---:|---:|")
    for row in rows:
        print(f"| {row['page']} | {row['off_ms']:.2f} ms | {row['on_ms']:.2f} ms | "
              f"{row['off_ms'] / row['on_ms']:.1f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
