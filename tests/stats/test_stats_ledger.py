"""Issue 16: the ledger figures (DESIGN §3b) against an independent pandas computation.

Every expected value below is computed in this file with pandas groupby/merge (or by hand
on tiny ledgers), never with ``stats.ledger``. The generated ledger comes from
tests/ledger_gen.py, whose known monthly rates are also recovered within sampling error.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stats.ledger import LedgerArrays, LedgerFigures, ledger_figures
from tests.ledger_gen import DIMENSIONS, LedgerRates, generate_ledger

RTOL = 1e-9
P = 24


# --------------------------------------------------------------------------- oracle (pandas)


@pytest.fixture(scope="module")
def generated():
    return generate_ledger(20_000, months=P, seed=20261130)


@pytest.fixture(scope="module")
def figures(generated):
    return ledger_figures(generated.to_arrays()).to_dict()


@pytest.fixture(scope="module")
def frame(generated):
    """Active rows with period index, end and the movement columns; pandas only."""
    df = generated.to_frame()
    df["t"] = df["period"].map({label: i for i, label in enumerate(generated.periods)})
    df["end"] = df.start_mrr + df.expansion_mrr - df.contraction_mrr - df.churned_mrr
    df["kept"] = df.start_mrr - df.contraction_mrr - df.churned_mrr
    df["logo"] = (df.churned_mrr == df.start_mrr).astype(float)
    active = df[df.start_mrr > 0].copy()
    active["first"] = active.groupby("account_id").t.transform("min")
    active["new"] = active.start_mrr.where(active.t == active["first"], 0.0)
    return active


def oracle_monthly(active: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = active.groupby(keys)
    out = pd.DataFrame(
        {
            "accounts": g.size(),
            "start_mrr": g.start_mrr.sum(),
            "expansion_mrr": g.expansion_mrr.sum(),
            "contraction_mrr": g.contraction_mrr.sum(),
            "churned_mrr": g.churned_mrr.sum(),
            "end_mrr": g.end.sum(),
            "new_mrr": g.new.sum(),
            "logo_churn": g.logo.mean(),
        }
    )
    out["nrr"] = out.end_mrr / out.start_mrr
    out["grr"] = g.kept.sum() / out.start_mrr
    out["expansion_rate"] = out.expansion_mrr / out.start_mrr
    out["contraction_rate"] = out.contraction_mrr / out.start_mrr
    out["churn_rate"] = out.churned_mrr / out.start_mrr
    return out


def oracle_ttm_pairs(active: pd.DataFrame) -> pd.DataFrame:
    """One row per (account active at M − 11, M): its base start and its end at M (0 if gone)."""
    base = active[active.t <= P - 12][
        ["account_id", "t", "start_mrr", "days_to_value", *DIMENSIONS]
    ]
    base = base.assign(M=base.t + 11)
    at_m = active[["account_id", "t", "end"]].rename(columns={"t": "M"})
    pairs = base.merge(at_m, on=["account_id", "M"], how="left")
    pairs["end"] = pairs["end"].fillna(0.0)
    pairs["capped"] = np.minimum(pairs["end"], pairs.start_mrr)
    return pairs


def oracle_ttm(pairs: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    g = pairs.groupby(keys)
    out = pd.DataFrame({"accounts": g.size(), "start": g.start_mrr.sum()})
    out["nrr"] = g["end"].sum() / out.start
    out["grr"] = g.capped.sum() / out.start
    return out


def assert_close(actual, expected, what):
    assert actual == pytest.approx(expected, rel=RTOL, abs=1e-9), what


MONTHLY_KEYS = (
    "accounts",
    "start_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "end_mrr",
    "new_mrr",
    "nrr",
    "grr",
    "logo_churn",
    "expansion_rate",
    "contraction_rate",
    "churn_rate",
)


def test_monthly_figures_equal_pandas(figures, frame, generated):
    expected = oracle_monthly(frame, ["t"])
    assert figures["periods"] == list(generated.periods)
    assert [row["period"] for row in figures["monthly"]] == list(generated.periods)
    for t, row in enumerate(figures["monthly"]):
        for key in MONTHLY_KEYS:
            assert_close(row[key], expected.loc[t, key], f"{row['period']} {key}")


def test_ttm_equals_pandas_merge(figures, frame):
    expected = oracle_ttm(oracle_ttm_pairs(frame), ["M"])
    ttm = figures["ttm"]
    assert len(ttm) == P
    assert all(row["nrr"] is None and row["accounts"] is None for row in ttm[:11])
    for m in range(11, P):
        assert ttm[m]["accounts"] == expected.loc[m, "accounts"]
        assert_close(ttm[m]["nrr"], expected.loc[m, "nrr"], f"ttm nrr {m}")
        assert_close(ttm[m]["grr"], expected.loc[m, "grr"], f"ttm grr {m}")
    # The cap bites: accounts that expanded are held at their start in GRR.
    assert ttm[-1]["grr"] < ttm[-1]["nrr"]


@pytest.mark.parametrize("dimension", DIMENSIONS)
def test_dimension_breakdowns_equal_pandas(figures, frame, dimension):
    monthly = oracle_monthly(frame, [dimension, "t"])
    ttm = oracle_ttm(oracle_ttm_pairs(frame), [dimension, "M"])
    block = figures["dimensions"][dimension]
    for label in block["values"]:
        for t, row in enumerate(block["monthly"][label]):
            if (label, t) not in monthly.index:
                assert row["accounts"] == 0 and row["nrr"] is None
                continue
            for key in MONTHLY_KEYS:
                assert_close(row[key], monthly.loc[(label, t), key], f"{label} {t} {key}")
        for m, row in enumerate(block["ttm"][label]):
            if m < 11:
                assert row["nrr"] is None
                continue
            assert row["accounts"] == ttm.loc[(label, m), "accounts"]
            assert_close(row["nrr"], ttm.loc[(label, m), "nrr"], f"{label} ttm {m}")
            assert_close(row["grr"], ttm.loc[(label, m), "grr"], f"{label} ttm grr {m}")


def test_upgraded_accounts_move_plan_group(figures, frame):
    # Accounts do change plan in the generated ledger, and the plan breakdown still adds up
    # to the company row each month (each row counted once, under its own value).
    changes = frame.groupby("account_id").plan.nunique()
    assert (changes > 1).sum() > 100
    plan = figures["dimensions"]["plan"]
    for t, row in enumerate(figures["monthly"]):
        assert sum(plan["monthly"][v][t]["accounts"] for v in plan["values"]) == row["accounts"]


def test_cohorts_equal_pandas(figures, frame, generated):
    first_day = pd.Timestamp(generated.periods[0] + "-01")
    since = pd.to_datetime(frame.customer_since.replace("", None))
    members = frame[since >= first_day].copy()
    members["cohort"] = pd.to_datetime(members.customer_since).dt.to_period("Q").astype(str)
    members["cohort"] = members.cohort.str.replace("Q", "-Q")
    members["age"] = members.t - members["first"] + 1
    start0 = members[members.age == 1].groupby("cohort").start_mrr.sum()
    accounts = members.groupby("cohort").account_id.nunique()
    reached = members.groupby("account_id").agg(
        cohort=("cohort", "first"), first=("first", "first")
    )
    max_age = (P - reached["first"]).groupby(reached.cohort).min()
    end_by_age = members.groupby(["cohort", "age"]).end.sum()

    assert [c["cohort"] for c in figures["cohorts"]] == sorted(start0.index)
    assert len(figures["cohorts"]) == 8  # 2025-Q1 .. 2026-Q4
    for c in figures["cohorts"]:
        name = c["cohort"]
        assert c["accounts"] == accounts[name]
        assert_close(c["start_mrr"], start0[name], name)
        assert len(c["nrr_by_age"]) == max_age[name]
        for a, nrr in enumerate(c["nrr_by_age"], start=1):
            assert_close(nrr, end_by_age.get((name, a), 0.0) / start0[name], f"{name} age {a}")


def test_velocity_cohorts_equal_pandas(figures, frame):
    pairs = oracle_ttm_pairs(frame)
    last = pairs[pairs.M == P - 1].copy()
    days = last.days_to_value
    q1, q2 = days.dropna().quantile([1 / 3, 2 / 3])  # pandas: linear interpolation
    last["group"] = np.select(
        [days.isna(), days <= q1, days <= q2], ["not_reached", "fast", "average"], "slow"
    )
    g = last.groupby("group")
    got = {row["cohort"]: row for row in figures["velocity_cohorts"]}
    assert list(got) == ["fast", "average", "slow", "not_reached"]
    for name, row in got.items():
        assert row["accounts"] == g.size()[name]
        assert_close(row["ttm_nrr"], g["end"].sum()[name] / g.start_mrr.sum()[name], name)
        expected_max = None if name == "not_reached" else g.days_to_value.max()[name]
        assert row["max_days"] == expected_max


def test_sigma_equals_pandas_std(figures, frame):
    last = frame[frame.t == P - 1].assign(ratio=lambda d: d["end"] / d.start_mrr)
    assert_close(figures["sigma"]["overall"], last.ratio.std(), "overall σ")  # ddof = 1
    for dimension in DIMENSIONS:
        by_value = last.groupby(dimension).ratio.std()
        for label, sigma in figures["sigma"]["by_dimension"][dimension].items():
            assert_close(sigma, by_value[label], f"σ {dimension}={label}")


def test_known_rates_recovered_within_sampling_error(figures, frame, generated):
    """Pooled over the 24 months, the generator's rates are within 3 standard errors.

    se of a pooled ratio Σx/Σy by linearisation: √Σ(x − R·y)² / Σy (rows independent given
    their start, which is how the generator draws them); se of logo churn √(p(1−p)/n).
    """
    expected = generated.rates.expected()
    monthly = figures["monthly"]
    start = sum(r["start_mrr"] for r in monthly)
    n = sum(r["accounts"] for r in monthly)
    logo = sum(r["logo_churn"] * r["accounts"] for r in monthly) / n
    p = expected["logo_churn"]
    assert abs(logo - p) < 3 * math.sqrt(p * (1 - p) / n)
    y = frame.start_mrr.to_numpy()
    for key, column in (
        ("churn_rate", "churned_mrr"),
        ("expansion_rate", "expansion_mrr"),
        ("contraction_rate", "contraction_mrr"),
    ):
        ratio = sum(r[column] for r in monthly) / start
        x = frame[column].to_numpy()
        se = math.sqrt(np.sum((x - ratio * y) ** 2)) / y.sum()
        assert abs(ratio - expected[key]) < 3 * se, (key, ratio, expected[key], se)
    assert expected["nrr"] == pytest.approx(0.995)


def test_stored_form_is_json_and_round_trips(figures):
    text = json.dumps(figures, allow_nan=False)
    again = LedgerFigures.from_dict(json.loads(text))
    assert again.to_dict() == figures
    assert set(figures) >= {
        "periods",
        "monthly",
        "ttm",
        "dimensions",
        "cohorts",
        "velocity_cohorts",
        "sigma",
        "definitions",
    }
    assert again.plain_sigma("plan", "pro") == figures["sigma"]["by_dimension"]["plan"]["pro"]
    assert (
        again.last_period("region", "emea").start_mrr
        == (figures["dimensions"]["region"]["monthly"]["emea"][-1]["start_mrr"])
    )
    assert again.last_period("region", "nowhere") is None


# --------------------------------------------------------------------------- edge cases


def ledger(rows, periods=12, dimensions=None, since=None, days=None):
    """LedgerArrays from (account, period, start, expansion, contraction, churned) tuples."""
    labels = tuple(
        f"2025-{m:02d}" if m <= 12 else f"2026-{m - 12:02d}" for m in range(1, 1 + periods)
    )
    cols = list(zip(*rows, strict=True)) if rows else [()] * 6
    account = np.array(cols[0], dtype=np.int64)
    return LedgerArrays(
        account=account,
        period=np.array(cols[1], dtype=np.int64),
        start=np.array(cols[2], dtype=float),
        expansion=np.array(cols[3], dtype=float),
        contraction=np.array(cols[4], dtype=float),
        churned=np.array(cols[5], dtype=float),
        customer_since=None if since is None else np.array(since, float)[account],
        days_to_value=None if days is None else np.array(days, float)[account],
        dimensions=dimensions or {},
        periods=labels,
    )


def test_start_zero_rows_are_the_same_as_missing_rows():
    rows = [(0, 0, 100, 10, 0, 0), (1, 0, 50, 0, 0, 50), (0, 1, 110, 0, 5, 0)]
    with_zero = ledger([*rows, (1, 1, 0, 0, 0, 0)], periods=2)
    figures = ledger_figures(with_zero).to_dict()
    assert figures == ledger_figures(ledger(rows, periods=2)).to_dict()
    feb = figures["monthly"][1]
    assert (
        feb["accounts"] == 1 and feb["start_mrr"] == 110 and feb["nrr"] == pytest.approx(105 / 110)
    )
    jan = figures["monthly"][0]
    assert jan["nrr"] == pytest.approx(110 / 150) and jan["logo_churn"] == 0.5


def test_new_business_is_start_of_first_active_month_not_expansion():
    rows = [
        (0, 0, 100, 0, 0, 0),
        (0, 1, 100, 0, 0, 100),  # churns in February
        (1, 2, 40, 0, 0, 0),  # new in March
        (0, 3, 70, 0, 0, 0),  # comes back in April: not new business
        (1, 3, 40, 5, 0, 0),
    ]
    monthly = ledger_figures(ledger(rows, periods=4)).to_dict()["monthly"]
    assert [m["new_mrr"] for m in monthly] == [100, 0, 40, 0]
    assert monthly[2]["expansion_mrr"] == 0 and monthly[2]["nrr"] == 1.0
    assert monthly[3]["expansion_mrr"] == 5 and monthly[3]["start_mrr"] == 110


def test_ttm_counts_an_account_gone_by_m_as_zero_and_caps_grr_at_start():
    rows = [(0, 0, 100, 0, 0, 0), (1, 0, 100, 0, 0, 0), (2, 0, 100, 0, 0, 0)]
    rows += [(0, 11, 100, 50, 0, 0)]  # +50 by month 12
    rows += [(1, 11, 0, 0, 0, 0)]  # start-0 at M: gone
    # account 2 has no row at M at all; account 3 is new at M and not in the base
    rows += [(3, 11, 500, 0, 0, 0)]
    rows += [(2, 5, 100, 0, 20, 0)]  # a later month of account 2 does not enter TTM at M
    ttm = ledger_figures(ledger(rows, periods=12)).to_dict()["ttm"]
    assert ttm[10] == {"period": "2025-11", "nrr": None, "grr": None, "accounts": None}
    assert ttm[11]["accounts"] == 3
    assert ttm[11]["nrr"] == pytest.approx(150 / 300)
    assert ttm[11]["grr"] == pytest.approx(100 / 300)  # min(150, 100) + 0 + 0


def test_ttm_of_a_dimension_uses_the_base_rows_value():
    rows = [(0, 0, 100, 0, 0, 0), (0, 11, 100, 20, 0, 0)]
    plan = (np.array([0, 1]), ("basic", "pro"))  # upgraded by month 12
    dims = ledger_figures(ledger(rows, dimensions={"plan": plan})).to_dict()["dimensions"]
    assert dims["plan"]["ttm"]["basic"][11]["nrr"] == pytest.approx(1.2)
    assert dims["plan"]["ttm"]["pro"][11]["accounts"] == 0
    assert dims["plan"]["ttm"]["pro"][11]["nrr"] is None
    assert dims["plan"]["monthly"]["pro"][11]["accounts"] == 1
    assert dims["plan"]["monthly"]["basic"][11]["accounts"] == 0


def test_dimension_breakdown_uses_each_rows_own_value():
    rows = [(0, 0, 100, 50, 0, 0), (0, 1, 150, 0, 0, 0), (1, 0, 80, 0, 0, 0), (1, 1, 80, 0, 0, 0)]
    plan = (np.array([0, 1, 0, 0]), ("basic", "pro"))
    figures = ledger_figures(ledger(rows, periods=2, dimensions={"plan": plan})).to_dict()
    basic, pro = (figures["dimensions"]["plan"]["monthly"][v] for v in ("basic", "pro"))
    assert [basic[0]["accounts"], basic[1]["accounts"]] == [2, 1]
    assert pro[0]["accounts"] == 0 and pro[0]["nrr"] is None
    assert pro[1]["start_mrr"] == 150 and pro[1]["new_mrr"] == 0


def test_cohorts_only_from_first_period_and_only_ages_every_member_reached():
    rows = [
        (0, 0, 100, 10, 0, 0),  # customer since before the ledger: no cohort
        (1, 0, 100, 0, 0, 0),
        (1, 1, 100, 20, 0, 0),
        (1, 2, 120, 0, 0, 0),
        (2, 1, 50, 0, 0, 50),  # same quarter, one month later, churns at once
        (3, 2, 10, 0, 0, 0),  # blank customer_since: no cohort
    ]
    since = [-3, 0, 2, np.nan]  # account 2's customer_since is in March (still Q1)
    figures = ledger_figures(ledger(rows, periods=3, since=since)).to_dict()
    assert figures["cohorts"] == [
        {
            "cohort": "2025-Q1",
            "accounts": 2,
            "start_mrr": 150.0,
            # age 1: ends of account 1 in Jan (100) + account 2 in Feb (0);
            # age 2: account 1 Feb end (120) + account 2 Mar (no row, 0); age 3 not reached by 2
            "nrr_by_age": [pytest.approx(100 / 150), pytest.approx(120 / 150)],
        }
    ]


def test_velocity_terciles_put_ties_on_the_lower_side():
    # days sorted: 1 1 1 2 3 3 → q1 = 1 (position 5/3 between two 1s), q2 = 2 + 1/3
    days = [1, 1, 3, 2, 1, 3, np.nan]
    rows = [(a, 0, 100, 0, 0, 0) for a in range(7)]
    rows += [(a, 11, 100 + 10 * a, 0, 0, 0) for a in range(7)]
    figures = ledger_figures(ledger(rows, periods=12, days=days)).to_dict()
    groups = {g["cohort"]: g for g in figures["velocity_cohorts"]}
    assert {k: g["accounts"] for k, g in groups.items()} == {
        "fast": 3,
        "average": 1,
        "slow": 2,
        "not_reached": 1,
    }
    assert groups["fast"]["max_days"] == 1 and groups["average"]["max_days"] == 2
    assert groups["not_reached"]["max_days"] is None
    # fast = accounts 0, 1, 4: ends 100, 110, 140 over starts 300
    assert groups["fast"]["ttm_nrr"] == pytest.approx(350 / 300)
    assert groups["not_reached"]["ttm_nrr"] == pytest.approx(160 / 100)


def test_logo_churn_does_not_count_contraction_to_zero():
    rows = [(0, 0, 100, 0, 60, 40), (1, 0, 100, 0, 0, 100), (2, 0, 100, 0, 0, 0)]
    jan = ledger_figures(ledger(rows, periods=1)).to_dict()["monthly"][0]
    assert jan["logo_churn"] == pytest.approx(1 / 3)
    assert jan["grr"] == pytest.approx(100 / 300) and jan["nrr"] == jan["grr"]


@pytest.mark.parametrize("periods", [0, 1])
def test_empty_and_one_period_ledgers_give_nulls_not_crashes(periods):
    rows = [(0, 0, 100, 0, 0, 0)] if periods else []
    figures = ledger_figures(ledger(rows, periods=periods, since=[0], days=[3])).to_dict()
    json.dumps(figures, allow_nan=False)
    assert len(figures["monthly"]) == len(figures["ttm"]) == periods
    assert figures["velocity_cohorts"] == []
    assert figures["sigma"]["overall"] is None
    assert figures["warnings"]
    if periods:
        assert figures["ttm"][0]["nrr"] is None
        assert figures["cohorts"][0]["nrr_by_age"] == [1.0]


def test_a_period_without_active_rows_has_null_ratios():
    rows = [(0, 0, 100, 0, 0, 100), (0, 1, 0, 0, 0, 0)]
    plan = (np.array([0, 0]), ("basic",))
    figures = ledger_figures(ledger(rows, periods=2, dimensions={"plan": plan})).to_dict()
    feb = figures["monthly"][1]
    assert feb["accounts"] == 0 and feb["nrr"] is None and feb["logo_churn"] is None
    assert figures["sigma"] == {"overall": None, "by_dimension": {"plan": {"basic": None}}}


def test_duplicate_account_period_and_bad_labels_are_rejected():
    with pytest.raises(ValueError, match="appears twice in period 2025-02"):
        ledger_figures(ledger([(0, 1, 1, 0, 0, 0), (0, 1, 2, 0, 0, 0)], periods=2))
    with pytest.raises(ValueError, match="consecutive"):
        LedgerArrays(*(np.zeros(0),) * 6, periods=("2025-01", "2025-03"))
    with pytest.raises(ValueError, match="YYYY-MM"):
        LedgerArrays(*(np.zeros(0),) * 6, periods=("2025-13",))
    with pytest.raises(ValueError, match="period codes"):
        ledger([(0, 2, 1, 0, 0, 0)], periods=2)


def test_generator_rates_validate():
    with pytest.raises(ValueError):
        LedgerRates(churn=0.6, expansion=0.5)
    small = generate_ledger(50, months=3, seed=1)
    assert set(np.unique(small.period)) <= {0, 1, 2}


def test_a_row_without_a_dimension_value_is_left_out_of_that_breakdown_only():
    rows = [(0, 0, 100, 0, 0, 0), (1, 0, 300, 30, 0, 0), (2, 0, 50, 0, 0, 50)]
    region = (np.array([0, -1, 0]), ("emea",))
    figures = ledger_figures(ledger(rows, periods=1, dimensions={"region": region})).to_dict()
    emea = figures["dimensions"]["region"]["monthly"]["emea"][0]
    assert emea["accounts"] == 2 and emea["nrr"] == pytest.approx(100 / 150)
    assert figures["monthly"][0]["accounts"] == 3
    assert figures["sigma"]["by_dimension"]["region"]["emea"] == pytest.approx(
        np.std([1, 0], ddof=1)
    )


# --------------------------------------------------------------------------- properties

FAST = settings(max_examples=40, deadline=None, database=None)


def random_ledger(seed):
    """A small sparse ledger in random row order: gaps, start-0 rows, comebacks, plan moves."""
    rng = np.random.default_rng(seed)
    n_accounts, periods = int(rng.integers(1, 15)), int(rng.integers(1, 16))
    present = rng.random((n_accounts, periods)) < 0.7
    acc, per = np.nonzero(present)
    n = acc.size
    start = np.where(rng.random(n) < 0.15, 0.0, rng.integers(1, 500, n).astype(float))
    churned = np.where(rng.random(n) < 0.2, start, 0.0)
    contraction = np.where(churned == 0, np.floor(start * rng.random(n) * 0.5), 0.0)
    expansion = np.where(rng.random(n) < 0.3, rng.integers(0, 100, n), 0).astype(float)
    plan = rng.integers(0, 2, n)
    since = rng.choice([-5.0, 0.0, 1.0, 4.0, np.nan], n_accounts)
    days = rng.choice([1.0, 2.0, 2.0, 5.0, 9.0, np.nan], n_accounts)
    order = rng.permutation(n)
    rows = [
        (int(acc[i]), int(per[i]), start[i], expansion[i], contraction[i], churned[i])
        for i in order
    ]
    dims = {"plan": (plan[order], ("a", "b"))}
    return rows, periods, dims, since, days


def assert_same(a, b):
    """Equal documents, floats up to summation-order rounding."""
    if isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-12, abs=1e-9)
    else:
        assert a == b


def loop_figures(rows, periods, since, days):
    """TTM, cohorts and velocity groups by plain Python loops over a dict of active rows."""
    active = {(a, t): (s, s + x - c - h) for a, t, s, x, c, h in rows if s > 0}
    ttm = []
    for m in range(periods):
        if m < 11:
            ttm.append((None, None, None))
            continue
        base = [(a, s) for (a, t), (s, _) in active.items() if t == m - 11]
        ends = [active.get((a, m), (0, 0.0))[1] for a, _ in base]
        total = sum(s for _, s in base)
        ttm.append(
            (
                sum(ends) / total if total else None,
                sum(min(e, s) for e, (_, s) in zip(ends, base, strict=True)) / total
                if total
                else None,
                len(base),
            )
        )
    first = {}
    for a, t in active:
        first[a] = min(first.get(a, t), t)
    cohorts = {}
    for a in first:
        if not math.isnan(since[a]) and since[a] >= 0:
            cohorts.setdefault(2025 * 4 + int(since[a]) // 3, []).append(a)
    cohort_rows = []
    for q in sorted(cohorts):
        members = cohorts[q]
        start0 = sum(active[(a, first[a])][0] for a in members)
        ages = min(periods - first[a] for a in members)
        nrr = [
            sum(active.get((a, first[a] + age - 1), (0, 0.0))[1] for a in members) / start0
            for age in range(1, ages + 1)
        ]
        cohort_rows.append((f"{q // 4}-Q{q % 4 + 1}", len(members), start0, nrr))
    return ttm, cohort_rows


@FAST
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_random_sparse_ledgers_match_a_loop_computation(seed):
    rows, periods, dims, since, days = random_ledger(seed)
    arrays = ledger(rows, periods=periods, dimensions=dims, since=since, days=days)
    figures = ledger_figures(arrays).to_dict()
    json.dumps(figures, allow_nan=False)
    ttm, cohorts = loop_figures(rows, periods, since, days)
    for got, (nrr, grr, accounts) in zip(figures["ttm"], ttm, strict=True):
        assert got["accounts"] == accounts
        assert got["nrr"] == (None if nrr is None else pytest.approx(nrr))
        assert got["grr"] == (None if grr is None else pytest.approx(grr))
    assert [
        (c["cohort"], c["accounts"], c["start_mrr"], c["nrr_by_age"]) for c in figures["cohorts"]
    ] == [(name, n, start0, [pytest.approx(v) for v in nrr]) for name, n, start0, nrr in cohorts]
    # Each row counted once, under its own plan: the breakdown adds up to the company.
    plan = figures["dimensions"]["plan"]["monthly"]
    for t, row in enumerate(figures["monthly"]):
        assert plan["a"][t]["accounts"] + plan["b"][t]["accounts"] == row["accounts"]
        both = plan["a"][t]["start_mrr"] + plan["b"][t]["start_mrr"]
        assert both == pytest.approx(row["start_mrr"])
        if row["nrr"] is not None:
            identity = 1 + row["expansion_rate"] - row["contraction_rate"] - row["churn_rate"]
            assert row["nrr"] == pytest.approx(identity)
    # Row order does not matter.
    reversed_arrays = ledger(
        rows[::-1],
        periods=periods,
        dimensions={"plan": (dims["plan"][0][::-1], ("a", "b"))},
        since=since,
        days=days,
    )
    assert_same(ledger_figures(reversed_arrays).to_dict(), figures)
