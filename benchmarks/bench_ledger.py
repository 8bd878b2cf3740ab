"""Benchmark the revenue ledger import (issue 16): a 1,000,000-row ledger CSV.

Usage::

    python benchmarks/bench_ledger.py [--rows 1000000] [--postgres URL | --no-postgres]
                                      [--runs 1] [--keep-csv PATH]

The CSV comes from ``tests/ledger_gen.py`` (24 months, plan/region/size dimensions,
customer_since and days_to_value). For each backend (SQLite in a temporary file;
PostgreSQL in a scratch database created and dropped on the server of ``--postgres``,
default ``$DATABASE_URL`` when it names PostgreSQL) a fresh child process creates the
schema and times ``import_ledger`` + commit: validation (pyarrow fast path), bulk insert
(``executemany`` / ``COPY``), the current pointers, the figures of the whole current
ledger (``stats.ledger``) and the audit event. It then times a second upload that
replaces two periods (the figures need the other 22 periods read back from the database)
and 20 reads of the stored figures (``current_figures``). Peer: DuckDB reading the same
CSV into a table and summing start/end by period, wall and CPU time, and each import's
ratio to it. Prints a Markdown table with the commit and the load average.
Target (issue 16): ≤ 10 s per million rows on each backend; stored figures ≤ 100 ms.
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

TARGET_SECONDS = 10.0
TARGET_FIGURES_MS = 100.0
DIMENSIONS = "plan,region,size"


def generate_csv(path: Path, rows: int) -> int:
    from tests.ledger_gen import accounts_for_rows, write_csv

    ledger = write_csv(path, n_accounts=accounts_for_rows(rows), months=24, seed=20261130)
    return int(ledger.rows)


def _replacement(path: Path, out: Path) -> None:
    """The ledger's last two periods again, every start_mrr one cent higher."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    table = pa_csv.read_csv(
        path, convert_options=pa_csv.ConvertOptions(strings_can_be_null=False,
                                                    column_types={"period": pa.string()})
    )
    periods = sorted(set(table.column("period").to_pylist()))[-2:]
    table = table.filter(pc.is_in(table.column("period"), value_set=pa.array(periods)))
    pa_csv.write_csv(table, out)


def child(url: str, csv_path: str, replace_path: str) -> None:
    """Runs in a fresh process: schema, import, replacement, figures reads; prints JSON."""
    import resource

    from sqlmodel import Session, SQLModel

    import experiments.models  # noqa: F401  (all tables on the metadata)
    from experiments.db import make_engine
    from experiments.ledger import current_figures, import_ledger

    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    result: dict = {}
    def cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime

    with Session(engine) as session:
        started, started_cpu = time.perf_counter(), cpu()
        version = import_ledger(session, csv_path, dimensions=DIMENSIONS, actor=None,
                                filename="ledger.csv")
        session.commit()
        result["import_s"] = time.perf_counter() - started
        result["import_cpu_s"] = cpu() - started_cpu  # this process only (not the server)
        result["load_during"] = os.getloadavg()[0]
        result["rows"] = version.row_count
        started = time.perf_counter()
        import_ledger(session, replace_path, dimensions=DIMENSIONS, actor=None,
                      filename="replace.csv")
        session.commit()
        result["replace_s"] = time.perf_counter() - started
    reads = []
    for _ in range(20):
        with Session(engine) as session:
            started = time.perf_counter()
            figures = current_figures(session)
            reads.append(time.perf_counter() - started)
    result["figures_ms"] = statistics.median(reads) * 1000
    result["figures_periods"] = len(figures["periods"])
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    engine.dispose()
    print(json.dumps(result))


def _cpu_self() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def duckdb_peer(csv_path: Path) -> tuple[float, float]:
    """Wall and CPU time (all of DuckDB's threads) of the peer's read + sums."""
    import duckdb

    started, started_cpu = time.perf_counter(), _cpu_self()
    connection = duckdb.connect()
    connection.execute(
        f"CREATE TABLE ledger AS SELECT * FROM read_csv('{csv_path}', header = true,"
        " all_varchar = false)"
    )
    connection.execute(
        "SELECT period, sum(start_mrr), sum(start_mrr + expansion_mrr - contraction_mrr"
        " - churned_mrr) FROM ledger WHERE start_mrr > 0 GROUP BY period ORDER BY period"
    ).fetchall()
    connection.close()
    return time.perf_counter() - started, _cpu_self() - started_cpu


def _run_child(url: str, csv_path: Path, replace_path: Path) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, "--child", url, str(csv_path), str(replace_path)],
        check=True, capture_output=True, text=True, cwd=ROOT,
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def _postgres_scratch(server_url: str):
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"bench_ledger_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", default=None)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep-csv", default=None)
    args = parser.parse_args()
    server = None
    if not args.no_postgres:
        server = args.postgres or os.environ.get("DATABASE_URL", "")
        if not server.startswith("postgresql"):
            server = None

    with tempfile.TemporaryDirectory() as folder:
        csv_path = Path(args.keep_csv) if args.keep_csv else Path(folder) / "ledger.csv"
        if not csv_path.exists():
            rows = generate_csv(csv_path, args.rows)
        replace_path = Path(folder) / "replace.csv"
        _replacement(csv_path, replace_path)
        with open(csv_path, "rb") as handle:
            rows = sum(1 for _ in handle) - 1
        size_mb = csv_path.stat().st_size / 1e6
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip()
        print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, commit {commit}")
        print(f"{rows:,} rows, {size_mb:.0f} MB; load average {os.getloadavg()[0]:.1f}; "
              f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores")
        results = []
        for run in range(args.runs):
            sqlite_url = f"sqlite:///{Path(folder) / f'bench-{run}.db'}"
            results.append(("SQLite", _run_child(sqlite_url, csv_path, replace_path)))
            if server:
                url, drop = _postgres_scratch(server)
                try:
                    results.append(("PostgreSQL", _run_child(url, csv_path, replace_path)))
                finally:
                    drop()
            wall, cpu = duckdb_peer(csv_path)
            results.append(("DuckDB peer (read + sum)", {"import_s": wall, "import_cpu_s": cpu}))
        print()
        print("| backend | import + figures | its CPU time | wall / CPU vs DuckDB | load average |"
              " target | replace 2 periods | stored figures (median of 20) | peak RSS |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        peers = {}  # the peer that ran right after each import, by run
        run_of = []
        run = 0
        for _name, r in results:
            run_of.append(run)
            if "rows" not in r:
                peers[run] = r
                run += 1
        for (name, r), run in zip(results, run_of, strict=True):
            if "rows" not in r:
                print(f"| {name} | {r['import_s']:.1f} s | {r['import_cpu_s']:.1f} s |"
                      " | | | | | |")
                continue
            peer = peers.get(run)
            ratio = (f"{r['import_s'] / peer['import_s']:.1f}× / "
                     f"{r['import_cpu_s'] / peer['import_cpu_s']:.1f}×") if peer else ""
            print(f"| {name} | **{r['import_s']:.1f} s** | {r['import_cpu_s']:.1f} s | "
                  f"{ratio} | {r['load_during']:.1f} | ≤ {TARGET_SECONDS:.0f} s | "
                  f"{r['replace_s']:.1f} s | {r['figures_ms']:.1f} ms | "
                  f"{r['peak_rss_mb']:.0f} MB |")
        print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
