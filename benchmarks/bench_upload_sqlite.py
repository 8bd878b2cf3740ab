"""The background upload job on SQLite, side by side: this checkout (analysis beside the
inserts or after them) and, optionally, another checkout; with a concurrent saver.

Usage::

    python benchmarks/bench_upload_sqlite.py [--rows 1000000] [--runs 3]
        [--overlap on,off] [--baseline /path/to/other/checkout ...] [--shuffled]
        [--every-column] [--saves]

Each run of each program is a fresh process and database (``bench_upload.py``'s set-up
and file generator); the programs alternate within a run. Reports per program the
median wall time, the job's CPU time (user + system of its process: SQLite's work is
in-process) and peak RSS; with ``--saves``, a thread saving every 20 ms during the job
(an UPDATE through the app's engine), its number of saves, failures and longest wait.
``--shuffled``: account ids in random order (file order unchanged otherwise), which
costs SQLite's unique index far more than ids that ascend. ``--every-column``: the
optional columns of issue 15 too (days_observed, pre_start_mrr, pre_end_mrr,
enrolled_on), each blank in about 1 row in 10. ``--baseline`` may be repeated. Load
average before/after.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(root: str, csv_path: str, overlap: str, saves: bool) -> dict:
    """One good-file job in this process, on the code of checkout ``root``."""
    sys.path.insert(0, root)
    sys.path.insert(0, str(Path(root) / "benchmarks"))
    import shutil
    import threading

    import bench_upload
    import scipy.stats  # noqa: F401  (a running worker has it imported)
    from sqlalchemy import text
    from sqlmodel import Session

    from experiments.db import make_engine
    from experiments.imports import create_upload_job, run_upload_job, upload_file_path
    from experiments.models import UploadJob

    if overlap != "-":
        import experiments.rows_sqlite as rows_sqlite

        rows_sqlite.OVERLAP_ANALYSIS = overlap == "on"
    folder = Path(tempfile.mkdtemp(prefix="nrrlab-bench-sqlite-"))
    url = f"sqlite:///{folder / 'jobs.db'}"
    engine, user, experiment = bench_upload._setup(url)
    with Session(engine, expire_on_commit=False) as session:
        job = create_upload_job(session, experiment, filename="good.csv", actor=user)
        session.commit()
    shutil.copyfile(csv_path, upload_file_path(folder, job.id))
    waits: list[float] = []
    failures: list[str] = []
    done = threading.Event()

    def saver() -> None:
        other = make_engine(url)
        while not done.is_set():
            began = time.perf_counter()
            try:
                with other.begin() as connection:
                    connection.execute(text("UPDATE experiment SET name = :n WHERE id = :i"),
                                       {"n": f"Renamed {len(waits)}", "i": experiment.id})
                waits.append(time.perf_counter() - began)
            except Exception as exc:  # noqa: BLE001  (reported)
                failures.append(str(exc)[:80])
            time.sleep(0.02)
        other.dispose()

    thread = threading.Thread(target=saver) if saves else None
    started, cpu = time.perf_counter(), time.process_time()
    if thread:
        thread.start()
    run_upload_job(engine, job.id, folder)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    done.set()
    if thread:
        thread.join()
    with Session(engine) as session:
        state = session.get(UploadJob, job.id).state
    engine.dispose()
    shutil.rmtree(folder)
    return {"wall": wall, "cpu": cpu, "state": state,
            "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "saves": len(waits), "failures": len(failures),
            "max_wait": max(waits) if waits else None}


def shuffled_copy(source: Path, target: Path, seed: int = 7) -> None:
    """``source`` with its account ids permuted (every other cell in place)."""
    import numpy as np

    lines = source.read_bytes().rstrip(b"\n").split(b"\n")
    head, rows = lines[0], lines[1:]
    ids = [row.split(b",", 1)[0] for row in rows]
    np.random.default_rng(seed).shuffle(ids)
    target.write_bytes(b"\n".join([head] + [i + b"," + row.split(b",", 1)[1]
                                             for i, row in zip(ids, rows, strict=True)]) + b"\n")


def every_column_copy(source: Path, target: Path, seed: int = 3) -> None:
    """``source`` with the optional columns of issue 15 added (blanks included)."""
    import numpy as np

    lines = source.read_bytes().rstrip(b"\n").split(b"\n")
    rng = np.random.default_rng(seed)
    count = len(lines) - 1
    blank = rng.random((count, 3)) < 0.1
    observed = rng.integers(400, 800, count)
    pre = rng.integers(1_000, 300_000, count)
    day = np.datetime64("2025-01-01") + rng.integers(0, 365, count)
    out = [lines[0] + b",days_observed,pre_start_mrr,pre_end_mrr,enrolled_on"]
    for i, row in enumerate(lines[1:]):
        extra = ("" if blank[i, 0] else f"{observed[i]}.5",
                 "" if blank[i, 1] else f"{pre[i] / 100:.2f}",
                 "" if blank[i, 1] else f"{pre[i] * 11 // 10 / 100:.2f}",
                 "" if blank[i, 2] else str(day[i]))
        out.append(row + b"," + ",".join(extra).encode())
    target.write_bytes(b"\n".join(out) + b"\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--overlap", default="on",
                        help="on, off or on,off: analysis beside the inserts (this checkout)")
    parser.add_argument("--baseline", action="append", default=[],
                        help="another checkout whose job runs alternate (repeatable)")
    parser.add_argument("--shuffled", action="store_true", help="account ids in random order")
    parser.add_argument("--every-column", action="store_true",
                        help="the optional columns of issue 15 too")
    parser.add_argument("--saves", action="store_true", help="a concurrent saver during the job")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        root, csv_path, overlap, saves = args.child
        print(json.dumps(child(root, csv_path, overlap, saves == "1")))
        return 0

    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.path.insert(0, str(ROOT))
    from bench_upload import generate_csv

    programs = [(f"this checkout, overlap {mode}", str(ROOT), mode)
                for mode in args.overlap.split(",")]
    for baseline in args.baseline:
        programs.append((f"baseline {baseline}", str(Path(baseline).resolve()), "-"))
    results: dict[str, list[dict]] = {name: [] for name, _, _ in programs}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="nrrlab-bench-") as folder:
        csv_path = Path(folder) / "accounts.csv"
        generate_csv(csv_path, args.rows)
        if args.every_column:
            every_column_copy(csv_path, Path(folder) / "every.csv")
            csv_path = Path(folder) / "every.csv"
        if args.shuffled:
            shuffled_copy(csv_path, Path(folder) / "shuffled.csv")
            csv_path = Path(folder) / "shuffled.csv"
        for _ in range(args.runs):
            for name, root, mode in programs:
                completed = subprocess.run(
                    [sys.executable, __file__, "--child", root, str(csv_path), mode,
                     "1" if args.saves else "0"],
                    capture_output=True, text=True, check=False, cwd=root)
                if completed.returncode != 0:
                    raise RuntimeError(f"{name} failed:\n{completed.stderr[-4000:]}")
                results[name].append(json.loads(completed.stdout.strip().splitlines()[-1]))
                print(name, results[name][-1], file=sys.stderr)
    shape = "".join((" (ids shuffled)" if args.shuffled else "",
                     " (every optional column)" if args.every_column else ""))
    print(f"\nSQLite upload job, {args.rows:,} rows{shape},"
          f" {args.runs} runs alternating; load average {load_before:.1f} → "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| program | wall median (runs) | CPU median | peak RSS "
          "| saves / failed / longest wait |")
    print("|---|---|---:|---:|---|")
    for name, runs in results.items():
        walls = " / ".join(f"{r['wall']:.2f}" for r in runs)
        saves = ("" if not args.saves else
                 f"{sum(r['saves'] for r in runs)} / {sum(r['failures'] for r in runs)} / "
                 f"{max((r['max_wait'] or 0) for r in runs):.3f} s")
        states = {r["state"] for r in runs}
        print(f"| {name} | {statistics.median(r['wall'] for r in runs):.2f} s ({walls}) | "
              f"{statistics.median(r['cpu'] for r in runs):.2f} s | "
              f"{max(r['rss'] for r in runs):.0f} MB | {saves} |"
              + ("" if states == {"done"} else f" states {states}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
