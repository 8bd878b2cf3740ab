"""One worker of the SQLite concurrency test: N read-then-write transactions.

Run as ``python -m tests.reliability.sqlite_workload URL WORKER N``; prints
``ok <count>`` or ``errors <count> <first message>``.
"""

from __future__ import annotations

import sys

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from experiments.db import make_engine, session_scope


def main(url: str, worker: int, transactions: int) -> None:
    engine = make_engine(url)
    done, errors = 0, []
    for i in range(transactions):
        try:
            with session_scope(engine) as session:
                # read, then write what was read + 1: a lost update shows in the total
                n = session.execute(text("SELECT n FROM counter WHERE id = 1")).scalar_one()
                session.execute(text("UPDATE counter SET n = :n WHERE id = 1"), {"n": n + 1})
                session.execute(text("INSERT INTO ledger (worker, i, seen) VALUES (:w, :i, :n)"),
                                {"w": worker, "i": i, "n": n})
            done += 1
        except OperationalError as exc:
            errors.append(str(exc.orig))
    engine.dispose()
    print(f"ok {done}" if not errors else f"errors {len(errors)} {errors[0]}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
