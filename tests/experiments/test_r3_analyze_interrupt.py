"""^C during `nrrlab analyze`'s DuckDB read stops the read, even between two queries.

DuckDB forgets an interrupt sent while no query runs: the read's thread runs Python
between its queries (the variant names of the first chunk, the arrays' checks of a pass),
and a ^C landing there let the next query (a whole pass over the file) run to its end.
"""

from __future__ import annotations

import threading
import time

import duckdb
import pytest

import experiments.accounts_csv.duck as duck

ROWS = 200_000


@pytest.fixture
def accounts(tmp_path):
    lines = ["account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,"
             "days_to_value,days_observed"]
    lines += [f"acct-{i},{('control', 'treatment')[i % 2]},{100 + i % 50}.25,{i % 3},0,"
              f"{'0' if i % 9 else f'{100 + i % 50}.25'},{i % 40},{40 + i % 7}"
              for i in range(ROWS)]
    path = tmp_path / "accounts.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ctrl_c_between_two_queries_stops_the_next_one(accounts, monkeypatch):
    inside, interrupted = threading.Event(), threading.Event()
    passes: list[str] = []
    real_first, real_rows = duck._first_variants, duck._rows

    def first_variants(*args):
        inside.set()
        interrupted.wait(5)  # the ^C comes while this thread runs Python
        time.sleep(0.05)
        return real_first(*args)

    def rows(*args):
        try:
            found = real_rows(*args)
        except duckdb.InterruptException:
            passes.append("interrupted")
            raise
        passes.append("read to the end")
        return found

    def ctrl_c():
        assert inside.wait(5)
        interrupted.set()
        raise KeyboardInterrupt

    monkeypatch.setattr(duck, "_first_variants", first_variants)
    monkeypatch.setattr(duck, "_rows", rows)
    with pytest.raises(KeyboardInterrupt):
        duck.read_columns(accounts, meanwhile=ctrl_c)
    assert passes == ["interrupted"]
    assert not [thread for thread in threading.enumerate() if thread.name == "nrrlab-duckdb"]
