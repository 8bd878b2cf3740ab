"""Recompute this report's NRR figures from its account data with NRR Lab's `stats` package.

Usage:  python3 reproduce.py

Needs Python 3.11+ with numpy and scipy (pip install numpy scipy); nothing else. The
`stats/` folder beside this script is NRR Lab's statistics package, copied into the
bundle, so the figures are recomputed by the very code that produced the report.

Reads accounts.csv (one row per account, DESIGN section 3) and expected.json (the
plan the report was computed under and its figures), reruns stats.analyze and prints
the headline figures, then whether they match the report.

Text cells of accounts.csv that begin with ' are quoted against spreadsheet formula
injection: the first ' is not part of the value.
"""
import csv
import json
import math
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run as `python3 -I reproduce.py` the script's folder is not on the path: put it there
# so the bundled `stats/` is found.
sys.path.insert(0, str(HERE))

import stats  # noqa: E402 - after the path is set


def unquote(text):
    text = text or ""
    return text[1:] if text.startswith("'") else text


def read_arms(path):
    columns = defaultdict(lambda: ([], [], [], []))
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            start, expansion, contraction, churned = columns[unquote(row["variant"])]
            start.append(float(row["start_mrr"]))
            expansion.append(float(row["expansion_mrr"] or 0))
            contraction.append(float(row["contraction_mrr"] or 0))
            churned.append(float(row["churned_mrr"] or 0))
    return {variant: stats.arm_from_arrays(*values) for variant, values in columns.items()}


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-9)


def main():
    expected = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
    plan = expected["plan"]
    result = stats.analyze(read_arms(HERE / "accounts.csv"), control=plan["control"],
                           alpha=plan["alpha"], power=plan["power"], mde=plan["mde"],
                           weights=plan["weights"], variants=plan["variants"])
    for arm in result.arms:
        print(f"arm {arm.variant}: accounts={arm.accounts} nrr={arm.nrr!r}")
    for c in result.comparisons:
        print(f"comparison {c.variant}: uplift_abs={c.uplift_abs!r} ci_abs={list(c.ci_abs)!r} "
              f"p_value={c.p_value!r} verdict={c.verdict}")
        print("  " + stats.summary_sentence(c, result.alpha))
    reported = {c["variant"]: c for c in expected["comparisons"]}
    same = len(reported) == len(result.comparisons) and all(
        c.variant in reported and close(c.uplift_abs, reported[c.variant]["uplift_abs"])
        and close(c.p_value, reported[c.variant]["p_value"]) for c in result.comparisons)
    print("MATCHES the report" if same else "DIFFERS from the report")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
