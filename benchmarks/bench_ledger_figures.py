"""Benchmark ``stats.ledger.ledger_figures`` on a generated ~1,000,000-row, 24-period ledger.

Usage: python benchmarks/bench_ledger_figures.py [--rows 1000000] [--months 24] [--runs 5]
Prints the row count, min / median wall time of ledger_figures (arrays already in memory,
three dimensions, customer_since and days_to_value present) and the machine load.
Target (issue 16): well under 2 s for 1M rows × 24 periods.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stats.ledger import ledger_figures
from tests.ledger_gen import accounts_for_rows, generate_ledger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ledger = generate_ledger(accounts_for_rows(args.rows, months=args.months), months=args.months)
    arrays = ledger.to_arrays()
    times = []
    for _ in range(args.runs):
        began = time.perf_counter()
        figures = ledger_figures(arrays)
        times.append(time.perf_counter() - began)
    print(f"rows={ledger.rows} accounts={ledger.region.size} periods={len(figures.periods)}")
    print(f"ledger_figures: min {min(times):.3f} s, median {statistics.median(times):.3f} s")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
