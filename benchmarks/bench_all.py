"""``make bench``: every performance benchmark of issue 18 in one run, on generated fixtures.

Usage::

    python benchmarks/bench_all.py [--quick] [--postgres URL | --no-postgres] [--log FILE]

Runs, one after another (never in parallel: they would share the two cores):

1. ``bench_pages.py`` — the read pages under gunicorn: the demo workspace with both
   server kinds (p50 one at a time, server CPU per request, req/s at 16 clients), the
   demo's first view after a write (``--page-cache off,after-write``; the write moves
   the data generation only, or edits one experiment: ``--write``), then the scaling
   workspaces one at a time, kept pages and first views after a write (10 / 100 / 1,000
   experiments, 50 / 500 tree nodes, 300 experiments with 52 weeks of review history)
   (``--quick``: the demo and 10 × 50, gthread only);
2. ``bench_analyze.py --duckdb --floor --bytecode`` — ``nrrlab analyze`` (with its
   bytecode cached, as installed) on 1,000,000 accounts side
   by side with DuckDB's sums query on the same file and with the floor of a Python CLI
   computing the statistics (interpreter, the imports, the same query) (wall, CPU, peak
   RSS);
3. ``bench_upload.py`` — the 1,000,000-row upload (import service + analysis) on SQLite
   and, when a server is given or ``$DATABASE_URL`` names one, PostgreSQL
   (``--quick`` skips it);
4. ``profile_targets.py`` — pyinstrument profiles of the read pages (demo and 300
   experiments × 52 weeks) and of ``nrrlab analyze`` on 1M accounts: where a missed
   target's time goes (``--quick`` skips it).

Every fixture is generated (accounts CSVs into the git-ignored ``benchmarks/data/``,
databases in temporary folders). Each section's output is printed as it comes and the
whole run is kept in ``--log`` (default ``benchmarks/data/bench_all-<UTC time>.txt``),
headed by the date, commit, machine and load average, for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "unknown"


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small workspaces, 1 analyze run, no upload benchmark")
    parser.add_argument("--postgres", default=None, help="PostgreSQL server URL for uploads")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--log", type=Path, default=None)
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime())
    log_path = args.log or HERE / "data" / f"bench_all-{stamp}.txt"
    log_path.parent.mkdir(parents=True, exist_ok=True)

    python = sys.executable
    pages = [python, str(HERE / "bench_pages.py")]
    if args.quick:
        sections = [("read pages under gunicorn", [
            *pages, "--workspaces", "demo,10x50", "--servers", "gthread", "--seconds", "5",
            "--requests", "20"])]
    else:
        sections = [
            ("read pages under gunicorn: demo, one at a time and 16 clients",
             [*pages, "--workspaces", "demo", "--servers", "gthread,sync4"]),
            ("read pages under gunicorn: demo, the first view after a write",
             [*pages, "--workspaces", "demo", "--servers", "gthread", "--clients", "0",
              "--page-cache", "off,after-write", "--write", "generation,experiment"]),
            ("read pages under gunicorn: scaling, one at a time",
             [*pages, "--workspaces", "10x50,100x50,100x500,300x50h,1000x50",
              "--servers", "gthread", "--clients", "0", "--requests", "20",
              "--page-cache", "on,after-write", "--write", "generation,experiment"]),
        ]
    sections += [
        ("nrrlab analyze vs DuckDB, 1M accounts",
         [python, str(HERE / "bench_analyze.py"), "--duckdb", "--floor", "--bytecode",
          "--runs", "1" if args.quick else "3"]),
    ]
    if not args.quick:
        upload = [python, str(HERE / "bench_upload.py")]
        if args.no_postgres:
            upload.append("--no-postgres")
        elif args.postgres:
            upload += ["--postgres", args.postgres]
        sections.append(("1M-row upload (SQLite, PostgreSQL)", upload))
        sections.append(("profiles of the page and analysis targets (pyinstrument)", [
            python, str(HERE / "profile_targets.py"), "--workspaces", "demo,300x50h",
            "--pages", "dashboard,experiment list,results page,tree,review", "--analyze"]))

    failed = []
    with log_path.open("w") as log:
        def say(text: str) -> None:
            print(text, flush=True)
            log.write(text + "\n")
            log.flush()

        say(f"# make bench — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit "
            f"{_commit()}, {platform.machine()} × {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, load average {_load()}")
        for title, command in sections:
            say(f"\n## {title} (load average {_load()})\n$ {' '.join(command[1:])}")
            started = time.perf_counter()
            process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True)
            for line in process.stdout:
                say(line.rstrip("\n"))
            if process.wait() != 0:
                failed.append(title)
                say(f"!! {title} failed (exit {process.returncode})")
            say(f"({title}: {time.perf_counter() - started:.0f} s, load average after "
                f"{_load()})")
        say(f"\nlog: {log_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
