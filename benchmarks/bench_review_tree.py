"""The weekly review's views with the kept tree summary (H6), beside a baseline checkout.

Each run is a fresh child process per checkout: a SQLite workspace (``--experiments``
experiments, ``--nodes`` tree nodes each with a hand-entered actual, past weeks frozen),
then ``--views`` in-process views of the running week (as the page asks: rows kept per
process) and of last week (frozen), each after a committed write elsewhere (the data
generation moves, as for the first view after a write). Prints the median CPU
(user+sys of the process) and wall milliseconds per view and the statements per view;
runs alternate between the checkouts.

    python benchmarks/bench_review_tree.py --baseline /tmp/h6-base [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
from datetime import UTC, datetime, timedelta
from sqlalchemy import event, text
from sqlmodel import Session, select
from benchmarks.workspace import build_workspace
from experiments import migrate
from experiments.db import make_engine
from experiments.models import DriverNode, User
from experiments.review import build_review
from experiments.review_weeks import current_week
from experiments.tree_models import DriverActual

url, experiments, nodes, views = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
migrate.upgrade(url)
engine = make_engine(url)
with Session(engine, expire_on_commit=False) as s:
    build_workspace(s, experiments=experiments, nodes=nodes, weeks=4, accounts=40, history=True)
    today = datetime.now(UTC).date()
    for node in s.exec(select(DriverNode).where(DriverNode.parent_id.is_not(None))).all():
        s.add(DriverActual(node_id=node.id, measured_on=today - timedelta(days=10), value=1.5))
    s.commit()
count = [0]
event.listen(engine, "before_cursor_execute", lambda *a: count.__setitem__(0, count[0] + 1))
out = {}
for name, week in (("running week", current_week()), ("last week", current_week().previous)):
    cpu, wall, stmts = [], [], []
    for i in range(views + 1):
        with Session(engine) as w:  # a write elsewhere: the next view is the first after it
            w.execute(text("UPDATE user_account SET name = name WHERE id = 1"))
            w.commit()
        with Session(engine) as s:
            admin = s.exec(select(User).where(User.role == "admin")).first()
            count[0] = 0
            c0, t0 = time.process_time(), time.perf_counter()
            build_review(s, admin, week.label, agenda_page=1, keep_rows=True)
            s.commit()
            c1, t1 = time.process_time(), time.perf_counter()
        if i:  # the first view of each week freezes or refreshes it: not timed
            cpu.append((c1 - c0) * 1000); wall.append((t1 - t0) * 1000); stmts.append(count[0])
    out[name] = {"cpu_ms": sorted(cpu)[len(cpu) // 2], "wall_ms": sorted(wall)[len(wall) // 2],
                 "statements": max(stmts)}
print(json.dumps(out))
"""


def run(checkout: Path, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        env = {**os.environ, "PYTHONPATH": str(checkout), "NRRLAB_INSTANCE_PATH": folder}
        done = subprocess.run(
            [sys.executable, "-c", CHILD, url, str(args.experiments), str(args.nodes),
             str(args.views)], cwd=checkout, env=env, capture_output=True, text=True,
            check=True)
        return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with")
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--views", type=int, default=15)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    checkouts = {"this": HERE}
    if args.baseline:
        checkouts["baseline"] = args.baseline.resolve()
    results: dict[str, list[dict]] = {name: [] for name in checkouts}
    for _ in range(args.runs):
        for name, checkout in checkouts.items():  # alternating
            results[name].append(run(checkout, args))
    print(f"load average {os.getloadavg()[0]:.1f}; {args.experiments} experiments, "
          f"{args.nodes} nodes, median of {args.runs} runs x {args.views} views")
    for name, runs in results.items():
        for week in ("running week", "last week"):
            cpu = statistics.median(r[week]["cpu_ms"] for r in runs)
            wall = statistics.median(r[week]["wall_ms"] for r in runs)
            stmts = max(r[week]["statements"] for r in runs)
            print(f"{name:9} {week:13} cpu {cpu:7.1f} ms  wall {wall:7.1f} ms  "
                  f"statements {stmts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
