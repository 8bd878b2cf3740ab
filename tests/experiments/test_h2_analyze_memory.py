"""`nrrlab analyze`'s DuckDB read keeps its memory low (issue 18: peak RSS <= 250 MB on a
million accounts).

Three things kept the peak up: DuckDB's memory (~40 MB on a million rows) stayed until
the arrays were checked and grouped; the numeric rules made whole-column temporaries
(~40 MB at once); the id-hash check sorted a copy of the hashes (8 MB). The tests below
check each on its own, with numpy's allocations counted by tracemalloc (DuckDB's own
memory is not counted there: the connection must be closed instead).
"""

from __future__ import annotations

import threading
import tracemalloc

import duckdb
import numpy as np
import pytest

import experiments.accounts_csv.duck as duck
from experiments.accounts_csv.contract import MAX_CENTS

MIB = 1 << 20
ROWS = 1_000_000


def _peak_bytes(function, *args):
    """``function(*args)`` and the most memory numpy allocated at once while it ran."""
    tracemalloc.start()
    try:
        result = function(*args)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _found(rows: int, seed: int = 3) -> dict[str, np.ndarray]:
    """Valid arrays as the query fetches them (money in units, NaN for a blank)."""
    rng = np.random.default_rng(seed)
    start = np.round(rng.uniform(1, 5_000, rows), 2)
    churned = np.where(rng.random(rows) < 0.08, start, 0.0)
    contraction = np.where(churned == 0, np.round(start * rng.uniform(0, 0.5, rows), 2), 0.0)
    observed = rng.integers(14, 90, rows).astype(np.float64)
    reached = np.round(rng.uniform(0, 100, rows), 1)
    return {
        "start": start,
        "expansion": np.round(rng.uniform(0, 100, rows), 2),
        "contraction": contraction,
        "churned": churned,
        "pre_start": np.round(start * 0.9, 2),
        "pre_end": np.where(rng.random(rows) < 0.01, np.nan, np.round(start * 0.95, 2)),
        "days_to_value": np.where(reached <= observed, reached, np.nan),
        "days_observed": observed,
    }


def _rules_by_hand(found: dict[str, np.ndarray]) -> bool:
    """DESIGN §3's numeric rules on whole columns, in integer cents (the reference)."""
    cents = {key: found[key] * 100 for key in ("start", "expansion", "contraction", "churned",
                                               "pre_start", "pre_end")}
    for values in cents.values():
        if np.any(values[~np.isnan(values)] >= MAX_CENTS):
            return False
    start = np.rint(cents["start"]).astype(np.int64)
    losses = np.rint(cents["contraction"]).astype(np.int64) + np.rint(
        cents["churned"]).astype(np.int64)
    if np.any(start <= 0) or np.any(losses > start):
        return False
    reached, observed = found["days_to_value"], found["days_observed"]
    if np.any(np.isinf(reached)) or np.any(np.isinf(observed)):
        return False
    both = ~np.isnan(reached) & ~np.isnan(observed)
    return not np.any(reached[both] > observed[both])


def test_numeric_rules_need_no_column_sized_temporaries():
    found = _found(ROWS)
    kept, peak = _peak_bytes(duck._numbers_keep_the_rules, found)
    assert kept is True and _rules_by_hand(found) is True
    # One float64 column of a million rows is 7.6 MiB; the whole-column version took ~40.
    assert peak < 4 * MIB, f"the numeric checks held {peak / MIB:.1f} MiB at once"


@pytest.mark.parametrize("row", [0, 65_535, 65_536, ROWS - 1])
@pytest.mark.parametrize("broken", [
    ("start", 0.0),                       # start must be above 0
    ("contraction", "start+0.01"),        # contraction + churned above start by a cent
    ("expansion", MAX_CENTS / 100),       # money at the cap
    ("pre_end", MAX_CENTS / 100),
    ("days_to_value", np.inf),            # a digit string too long for a double
    ("days_to_value", 91.0),              # later than days_observed (at most 89)
])
def test_a_broken_row_anywhere_is_found(row, broken):
    """Block edges included (the checks run in blocks of 65,536 rows)."""
    found = _found(ROWS, seed=row)
    key, value = broken
    if value == "start+0.01":
        found["churned"][row] = 0.0
        value = found["start"][row] + 0.01
    if key == "days_to_value":
        found["days_observed"][row] = 89.0
    found[key][row] = value
    assert _rules_by_hand(found) is False
    assert duck._numbers_keep_the_rules(found) is False


def test_id_hashes_are_checked_without_a_copy():
    rng = np.random.default_rng(5)
    hashes = rng.integers(0, 2**63, ROWS, dtype=np.int64).astype(np.uint64)
    distinct, peak = _peak_bytes(duck._all_distinct, hashes.copy())
    assert distinct == (np.unique(hashes).size == ROWS)
    assert peak < MIB, f"the uniqueness check held {peak / MIB:.1f} MiB (a copy is 7.6 MiB)"
    hashes[ROWS - 1] = hashes[12]
    assert duck._all_distinct(hashes.copy()) is False


def _accounts_file(tmp_path, rows: int = 3_000):
    lines = ["account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,"
             "days_to_value"]
    lines += [f"acct-{i},{('control', 'treatment')[i % 2]},{100 + i % 50}.25,{i % 3},0,"
              f"{'0' if i % 9 else f'{100 + i % 50}.25'},{i % 40}" for i in range(rows)]
    path = tmp_path / "accounts.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_duckdb_is_closed_before_the_arrays_are_checked(tmp_path, monkeypatch):
    """DuckDB's memory goes before the checks and the grouping make theirs, and those run
    on the calling thread (their arrays are freed where the statistics allocate)."""
    connections, seen = [], []
    real_connect, real_checked = duck._connect, duck._checked

    def connect(spill):
        connection = real_connect(spill)
        connections.append(connection)
        return connection

    def checked(found, names):
        open_ = []
        for connection in connections:
            try:
                connection.execute("SELECT 1")
                open_.append(connection)
            except duckdb.ConnectionException:
                pass
        seen.append((threading.current_thread() is threading.main_thread(), len(open_)))
        return real_checked(found, names)

    monkeypatch.setattr(duck, "_connect", connect)
    monkeypatch.setattr(duck, "_checked", checked)
    columns = duck.read_columns(_accounts_file(tmp_path))
    assert columns is not None and list(columns) == ["control", "treatment"]
    assert [arm.start.size for arm in columns.values()] == [1_500, 1_500]
    assert connections, "read_columns opened no DuckDB"
    assert seen == [(True, 0)], "(on the calling thread, DuckDB connections still open)"
