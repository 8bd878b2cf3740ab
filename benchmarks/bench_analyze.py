"""Benchmark `nrrlab analyze` on a generated 1,000,000-account, two-arm CSV.

Usage: python benchmarks/bench_analyze.py [--rows 1000000] [--runs 5] [--nrr-columns]
                                          [--baseline DIR] [--duckdb] [--floor] [--bytecode]
Prints wall time (min / median), CPU and peak RSS of the CLI process; the file is
generated once into benchmarks/data/ (git-ignored). Targets: issue #3, ≤ 1.6 s wall and
≤ 500 MB peak RSS on the project's 2-core machines; issue 18, ≤ 1.5 × the DuckDB query
below (``--duckdb``) and ≤ 250 MB.

``--nrr-columns`` adds issue 15's optional columns (days_observed, pre_start_mrr,
pre_end_mrr), so CUPED and journey velocity are computed too. ``--baseline DIR`` runs
the same file through another checkout of the code (e.g. ``git archive <commit>``
unpacked into DIR) alternately with this one, on the same interpreter, and prints the
ratio of the medians: on a shared machine only a side-by-side ratio is comparable.
``--duckdb`` does the same with DuckDB's per-arm sums query on the file (issue 18's
reference: the CLI within 1.5 × of it, peak RSS ≤ 250 MB). ``--floor`` adds the least a
Python CLI computing these statistics with numpy/scipy can cost: a fresh interpreter
that imports duckdb, numpy, scipy.special and ``stats`` (one after the other, as a
plain script would) and runs the same DuckDB query. It leaves out what the CLI must do
besides: click and the CLI's own modules, the byte scan and the contract's checks, the
per-account columns (the query only sums), the statistics themselves and the report.

``--bytecode``: every timed program (CLI, baseline, DuckDB, floor) runs with Python's
bytecode cache, written once by an untimed warm-up run into benchmarks/data/pycache/
(``PYTHONPYCACHEPREFIX``), as an installed package has it. Without it the programs inherit
the environment: where ``PYTHONDONTWRITEBYTECODE`` is set (as on the project's sandboxes)
every run compiles the project's modules from source (~0.1–0.2 s of CPU for the CLI,
part of it also in the floor's ``import stats``), which no installed copy pays.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def generate(path: Path, rows: int, seed: int = 7, *, nrr_columns: bool = False) -> None:
    """Two arms, lognormal MRR, ~8% full churn, contraction and expansion; written in chunks.

    With ``nrr_columns`` every account also has days_observed (days to value beyond it
    are blank: censored) and a pre-period (pre_start_mrr, pre_end_mrr).
    """
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment,"
        "days_to_value"
    )
    if nrr_columns:
        header += ",days_observed,pre_start_mrr,pre_end_mrr"
    with path.open("w") as out:
        out.write(header + "\n")
        chunk = 100_000
        segments = np.array(["SMB", "Mid-Market", "Enterprise"])
        for first in range(0, rows, chunk):
            n = min(chunk, rows - first)
            variant = np.where(rng.random(n) < 0.5, "control", "treatment")
            start = np.round(np.exp(rng.normal(6.4, 1.0, n)), 2).clip(1, None)
            churn = rng.random(n) < 0.08
            contraction = np.where(
                ~churn & (rng.random(n) < 0.1), np.round(start * rng.uniform(0.1, 0.5, n), 2), 0
            )
            lift = np.where(variant == "treatment", 0.22, 0.18)
            expansion = np.where(
                ~churn & (rng.random(n) < lift), np.round(start * rng.lognormal(-1.2, 0.6, n), 2), 0
            )
            churned = np.where(churn, start, 0)
            seg = segments[rng.integers(0, 3, n)]
            days = np.round(rng.gamma(2, 9, n), 1)
            if nrr_columns:
                observed = rng.integers(14, 90, n)
                pre_start = np.round(start * rng.uniform(0.8, 1.1, n), 2)
                pre_end = np.round(pre_start * rng.normal(1.0, 0.08, n).clip(0), 2)
                lines = [
                    f"acct-{first + i:07d},{variant[i]},{start[i]:.2f},{expansion[i]:.2f},"
                    f"{contraction[i]:.2f},{churned[i]:.2f},{seg[i]},"
                    f"{days[i] if days[i] <= observed[i] else ''},{observed[i]},"
                    f"{pre_start[i]:.2f},{pre_end[i]:.2f}"
                    for i in range(n)
                ]
            else:
                lines = [
                    f"acct-{first + i:07d},{variant[i]},{start[i]:.2f},{expansion[i]:.2f},"
                    f"{contraction[i]:.2f},{churned[i]:.2f},{seg[i]},{days[i]}"
                    for i in range(n)
                ]
            out.write("\n".join(lines) + "\n")


#: Set by ``--bytecode``: the environment of every timed program (see the docstring).
_ENV: dict[str, str] | None = None


def _bytecode_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(HERE / "data" / "pycache")
    return env


def run_once(path: Path, code_dir: Path | None = None) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds (user + system) of one `nrrlab analyze`
    run, in a fresh process.

    ``code_dir``: run that checkout's code instead of this one (same interpreter). CPU
    time is the steadier measure on a shared machine: waiting for a core is not counted.
    """
    code = (
        "import resource, subprocess, sys, time;"
        "t = time.perf_counter();"
        "r = subprocess.run([sys.executable, '-m', 'experiments.cli', 'analyze',"
        f" {str(path)!r}], stdout=subprocess.DEVNULL);"
        "w = time.perf_counter() - t;"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(w, u.ru_maxrss, r.returncode, u.ru_utime + u.ru_stime)"
    )
    env = _ENV
    if code_dir is not None:
        env = {**(_ENV or os.environ), "PYTHONPATH": str(code_dir)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=code_dir or HERE.parent, env=env,
    ).stdout.split()
    if out[2] != "0":
        raise SystemExit("nrrlab analyze failed")
    return float(out[0]), int(out[1]), float(out[3])


#: The reference of issue 18: DuckDB reading the same file and summing per arm what the
#: analysis needs (counts, the four money columns, squares and the start×end cross term).
DUCKDB_SUMS = """
SELECT variant, count(*), sum(start_mrr), sum(expansion_mrr), sum(contraction_mrr),
       sum(churned_mrr), sum(start_mrr * start_mrr),
       sum((start_mrr + expansion_mrr - contraction_mrr - churned_mrr) ** 2),
       sum(start_mrr * (start_mrr + expansion_mrr - contraction_mrr - churned_mrr))
FROM read_csv(?, header = true) GROUP BY variant ORDER BY variant
"""


def run_duckdb(path: Path, *, floor: bool = False) -> tuple[float, int, float]:
    """Wall seconds, peak RSS (KiB) and CPU seconds of the DuckDB sums query on ``path``,
    in a fresh process (interpreter start and ``import duckdb`` included, as the CLI's
    imports are).

    ``floor``: first import numpy, scipy.special and ``stats`` too (``--floor``).
    """
    query = " ".join(DUCKDB_SUMS.split())
    imports = "duckdb, numpy, scipy.special, stats, sys" if floor else "duckdb, sys"
    inner = (f"import {imports}; c = duckdb.connect(); "
             "c.execute('SET enable_progress_bar = false'); "
             f"c.execute({query!r}, [sys.argv[1]]).fetchall()")
    code = (
        "import resource, subprocess, sys, time;"
        "t = time.perf_counter();"
        f"r = subprocess.run([sys.executable, '-c', {inner!r}, {str(path)!r}]);"
        "w = time.perf_counter() - t;"
        "u = resource.getrusage(resource.RUSAGE_CHILDREN);"
        "print(w, u.ru_maxrss, r.returncode, u.ru_utime + u.ru_stime)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=HERE.parent, env=_ENV).stdout
    out = out.strip().splitlines()[-1].split()
    if out[2] != "0":
        raise SystemExit("the DuckDB query failed")
    return float(out[0]), int(out[1]), float(out[3])


def time_from_sums(repeats: int = 200) -> tuple[float, float]:
    """Median and 95th-percentile milliseconds of stats.analyze on two arms' sums alone."""
    import stats

    rng = np.random.default_rng(1)
    arms = {}
    for name in ("control", "treatment"):
        start = np.exp(rng.normal(6, 1, 50_000))
        end = start * rng.uniform(0.7, 1.3, start.size)
        full = stats.arm_from_arrays(
            start, np.maximum(end - start, 0), np.maximum(start - end, 0), np.zeros(start.size)
        )
        arms[name] = stats.ArmData(totals=full.totals, sums=full.sums)  # no rows: sums only
    stats.analyze(arms, control="control")  # warm-up (lazy imports)
    laps = []
    for _ in range(repeats):
        t = time.perf_counter()
        stats.analyze(arms, control="control")
        laps.append((time.perf_counter() - t) * 1000)
    laps.sort()
    return statistics.median(laps), laps[int(0.95 * len(laps)) - 1]


def _peer_report(title: str, label: str, runs: list[tuple[float, int, float]]
                 ) -> tuple[list[float], list[float]]:
    """Print a peer program's wall, CPU and RSS lines; returns its walls and CPU times."""
    wall = [w for w, _, _ in runs]
    cpu = [c for _, _, c in runs]
    print(f"{title}: wall min {min(wall):.2f} s, median {statistics.median(wall):.2f} s; "
          f"CPU median {statistics.median(cpu):.2f} s; peak RSS "
          f"{max(r for _, r, _ in runs) / 1024:.0f} MB")
    print(f"runs wall ({label}): {' / '.join(f'{w:.2f}' for w in wall)}")
    print(f"runs CPU ({label}): {' / '.join(f'{c:.2f}' for c in cpu)}")
    print(f"runs peak RSS ({label}): {_rss_runs(runs)} MB")
    return wall, cpu


def _rss_runs(runs: list[tuple[float, int, float]]) -> str:
    """Each run's peak RSS in MB (a target met in one run only is not met)."""
    return " / ".join(f"{r / 1024:.0f}" for _, r, _ in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nrr-columns", action="store_true",
                        help="add days_observed and the pre-period columns to the file")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout to time side by side (alternating runs)")
    parser.add_argument("--duckdb", action="store_true",
                        help="also time DuckDB's per-arm sums query on the same file, "
                             "alternating with the CLI (issue 18: CLI ≤ 1.5 × DuckDB)")
    parser.add_argument("--floor", action="store_true",
                        help="also time the floor: the same query after importing duckdb, "
                             "numpy, scipy.special and stats in a fresh interpreter")
    parser.add_argument("--bytecode", action="store_true",
                        help="run every program with a warmed bytecode cache (as installed) "
                             "in benchmarks/data/pycache, whatever PYTHONDONTWRITEBYTECODE says")
    args = parser.parse_args()
    global _ENV
    if args.bytecode:
        _ENV = _bytecode_env()
    suffix = "_nrr" if args.nrr_columns else ""
    path = HERE / "data" / f"accounts_{args.rows}{suffix}.csv"
    if not path.exists():
        t = time.perf_counter()
        generate(path, args.rows, nrr_columns=args.nrr_columns)
        print(
            f"generated {path.name} ({path.stat().st_size / 1e6:.1f} MB)"
            f" in {time.perf_counter() - t:.1f} s"
        )
    results, baseline, duck, floor = [], [], [], []
    if args.bytecode:  # untimed: writes the bytecode cache the timed runs read
        run_once(path)
        if args.baseline is not None:
            run_once(path, args.baseline.resolve())
        if args.floor:
            run_duckdb(path, floor=True)
    load_before = os.getloadavg()
    for _ in range(args.runs):
        results.append(run_once(path))
        if args.baseline is not None:
            baseline.append(run_once(path, args.baseline.resolve()))
        if args.duckdb:
            duck.append(run_duckdb(path))
        if args.floor:
            floor.append(run_duckdb(path, floor=True))
    print(f"load average before {' / '.join(f'{x:.1f}' for x in load_before)}, after "
          f"{' / '.join(f'{x:.1f}' for x in os.getloadavg())}")
    walls = [w for w, _, _ in results]
    cpus = [c for _, _, c in results]
    peak_mb = max(r for _, r, _ in results) / 1024
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"file: {path.stat().st_size / 1e6:.1f} MB, {args.rows:,} rows; bytecode cache: "
          f"{'warmed (--bytecode)' if args.bytecode else 'as the environment says'}")
    print(
        f"nrrlab analyze wall: min {min(walls):.2f} s,"
        f" median {statistics.median(walls):.2f} s over {args.runs} runs"
    )
    print(f"CPU (user + system): median {statistics.median(cpus):.2f} s")
    print(f"peak RSS: {peak_mb:.0f} MB (runs: {_rss_runs(results)} MB)")
    if baseline:
        old = [w for w, _, _ in baseline]
        old_cpu = [c for _, _, c in baseline]
        print(
            f"baseline {args.baseline}: min {min(old):.2f} s,"
            f" median {statistics.median(old):.2f} s,"
            f" CPU median {statistics.median(old_cpu):.2f} s,"
            f" peak RSS {max(r for _, r, _ in baseline) / 1024:.0f} MB"
        )
        print(f"runs wall (new): {' / '.join(f'{w:.2f}' for w in walls)}")
        print(f"runs wall (baseline): {' / '.join(f'{w:.2f}' for w in old)}")
        print(f"runs CPU (new): {' / '.join(f'{c:.2f}' for c in cpus)}")
        print(f"runs CPU (baseline): {' / '.join(f'{c:.2f}' for c in old_cpu)}")
        print(f"runs peak RSS (new): {_rss_runs(results)} MB")
        print(f"runs peak RSS (baseline): {_rss_runs(baseline)} MB")
        ratio = statistics.median(walls) / statistics.median(old)
        cpu_ratio = statistics.median(cpus) / statistics.median(old_cpu)
        print(f"ratio new/baseline (medians): wall {ratio:.3f}, CPU {cpu_ratio:.3f}")
    if duck:
        d_wall, d_cpu = _peer_report("DuckDB sums query", "DuckDB", duck)
        print(f"runs wall (CLI): {' / '.join(f'{w:.2f}' for w in walls)}")
        print(f"runs CPU (CLI): {' / '.join(f'{c:.2f}' for c in cpus)}")
        print(f"ratio CLI/DuckDB (medians): wall "
              f"{statistics.median(walls) / statistics.median(d_wall):.2f}, CPU "
              f"{statistics.median(cpus) / statistics.median(d_cpu):.2f} (target wall ≤ 1.5; "
              f"peak RSS target ≤ 250 MB)")
    if floor:
        f_wall, f_cpu = _peer_report("floor (imports + DuckDB query)", "floor", floor)
        print(f"ratio CLI/floor (medians): wall "
              f"{statistics.median(walls) / statistics.median(f_wall):.2f}, CPU "
              f"{statistics.median(cpus) / statistics.median(f_cpu):.2f}")
    median_ms, p95_ms = time_from_sums()
    print(
        "stats.analyze from sufficient statistics (2 arms):"
        f" median {median_ms:.2f} ms, p95 {p95_ms:.2f} ms"
    )


if __name__ == "__main__":
    main()
