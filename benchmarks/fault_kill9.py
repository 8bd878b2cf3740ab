"""Fault run: ``kill -9`` of a gunicorn-served NRR Lab at random moments while a client writes.

Usage::

    python benchmarks/fault_kill9.py [--cycles 20] [--seed 12] [--postgres URL]

Each cycle starts the server (2 workers), signs in, and creates teams one after another
(``POST /admin/teams``, a 303 is the acknowledgement: the view commits before it
answers); after a random 0.3–2.5 s the whole process group gets SIGKILL. After the
restart every acknowledged team must be there, and on SQLite the file must pass
``PRAGMA integrity_check``. Prints one Markdown line per run for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.live_server import Client, Server, environment, prepare  # noqa: E402


def _stored_slugs(database_url: str) -> tuple[set[str], str]:
    from sqlalchemy import text

    from experiments.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            slugs = set(connection.execute(text("SELECT slug FROM team")).scalars())
            integrity = "n/a"
            if engine.dialect.name == "sqlite":
                integrity = connection.exec_driver_sql("PRAGMA integrity_check").scalar()
    finally:
        engine.dispose()
    return slugs, integrity


def run(cycles: int, seed: int, folder: Path, database_url: str | None = None) -> dict:
    """Run ``cycles`` kill -9 cycles; returns counts (``lost`` must be 0)."""
    rng = random.Random(seed)
    env = environment(folder, database_url)
    prepare(env)
    server = Server(env, folder)
    acknowledged: list[str] = []
    attempted = errors_5xx = 0
    counter = iter(range(10**9))
    for _cycle in range(cycles):
        server.start()
        client = Client(server.base, timeout=5)
        client.login()
        stop = threading.Event()

        def write(client: Client = client, stop: threading.Event = stop) -> None:
            nonlocal attempted, errors_5xx
            while not stop.is_set():
                slug = f"k{next(counter)}"
                attempted += 1
                try:
                    status, _ = client.post("/admin/teams", {"slug": slug, "name": slug})
                except OSError:
                    return  # the server died mid-request: not acknowledged
                if status == 303:
                    acknowledged.append(slug)
                elif status >= 500:
                    errors_5xx += 1

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(rng.uniform(0.3, 2.5))
        server.kill()
        stop.set()
        writer.join(timeout=30)
    server.start()  # a last restart: the app must come up on what the crashes left
    server.stop()
    stored, integrity = _stored_slugs(env["DATABASE_URL"])
    lost = [slug for slug in acknowledged if slug not in stored]
    return {"cycles": cycles, "attempted": attempted, "acknowledged": len(acknowledged),
            "stored": len(stored), "lost": len(lost), "errors_5xx": errors_5xx,
            "integrity": integrity}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--postgres", default=None, help="a scratch PostgreSQL database URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nrrlab-kill9-") as folder:
        started = time.monotonic()
        result = run(args.cycles, args.seed, Path(folder), args.postgres)
        result["seconds"] = round(time.monotonic() - started, 1)
    backend = "PostgreSQL" if args.postgres else "SQLite"
    print(f"| {backend} | {result['cycles']} | {result['attempted']} | {result['acknowledged']} "
          f"| {result['stored']} | **{result['lost']}** | {result['errors_5xx']} "
          f"| {result['integrity']} | {result['seconds']} s |")
    sys.exit(1 if result["lost"] or result["integrity"] not in ("ok", "n/a") else 0)


if __name__ == "__main__":
    main()
