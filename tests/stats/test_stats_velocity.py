"""stats.velocity against lifelines, scipy.stats.logrank, exact fractions and pandas."""

from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test
from scipy import stats as sps

from stats.velocity import (
    TimeTable,
    kaplan_meier,
    km_curve,
    logrank_p,
    velocity_arm,
    velocity_cohorts,
)


def simulate(rng, n, scale, follow_up=60, blank_share=0.05):
    """Whole-day times to value; accounts followed 20..follow_up days; some rows fully blank."""
    value_day = np.ceil(rng.exponential(scale, n))
    observed = rng.integers(20, follow_up + 1, n).astype(float)
    reached = value_day <= observed
    days_to_value = np.where(reached, value_day, np.nan)
    days_observed = observed.copy()
    blank = (~reached) & (rng.random(n) < blank_share)
    days_observed[blank] = np.nan
    return days_to_value, days_observed


def lifelines_input(days_to_value, days_observed):
    keep = ~np.isnan(days_to_value) | ~np.isnan(days_observed)
    event = ~np.isnan(days_to_value[keep])
    duration = np.where(event, days_to_value[keep], days_observed[keep])
    return duration, event


def test_kaplan_meier_equals_lifelines():
    rng = np.random.default_rng(1)
    dtv, obs = simulate(rng, 2_000, scale=25)
    table = TimeTable.from_arrays(dtv, obs)
    times, survival = kaplan_meier(table)
    duration, event = lifelines_input(dtv, obs)
    kmf = KaplanMeierFitter().fit(duration, event)
    expected = kmf.survival_function_at_times(times).to_numpy()
    np.testing.assert_allclose(survival, expected, rtol=1e-12)
    arm = velocity_arm(table, 14)
    assert arm["reached"] == int(event.sum())
    assert arm["censored"] == int((~event).sum())  # fully blank rows are left out
    assert arm["reached"] + arm["censored"] < dtv.size
    assert arm["share_by_target"] == pytest.approx(
        1 - float(kmf.survival_function_at_times([14.0]).iloc[0]), rel=1e-12
    )
    assert arm["median_days"] == kmf.median_survival_time_


def exact_survival(durations, events):
    """Kaplan-Meier with Fractions, written out row by row (no numpy)."""
    s, out = Fraction(1), {}
    for t in sorted(set(durations)):
        d = sum(1 for u, e in zip(durations, events, strict=True) if u == t and e)
        n = sum(1 for u in durations if u >= t)
        if d:
            s *= 1 - Fraction(d, n)
            out[t] = s
    return out


@pytest.mark.parametrize(
    ("durations", "events", "target", "median", "share"),
    [
        # S drops to exactly 1/2 at day 2: the median is 2, not a midpoint of 2 and 3
        ([1, 2, 3, 4], [1, 1, 1, 1], 2, 2.0, Fraction(1, 2)),
        # an event on the target day counts by then; censored at 5 stays at risk at 5
        ([3, 5, 5, 8, 9, 9], [1, 1, 0, 1, 0, 0], 5, 8.0, Fraction(1, 3)),
        # never reaches 1/2: no median
        ([2, 4, 6, 6, 6], [1, 0, 0, 0, 0], 14, None, Fraction(1, 5)),
        # three factors whose exact product is 1/2 (float rounding must not hide it)
        ([1, 2, 3, 6, 6, 6], [1, 1, 1, 0, 0, 0], 2, 3.0, Fraction(1, 3)),
    ],
)
def test_median_and_share_by_target_match_exact_fractions(durations, events, target, median, share):
    dtv = [float(t) if e else np.nan for t, e in zip(durations, events, strict=True)]
    obs = [float(t) for t in durations]
    arm = velocity_arm(TimeTable.from_arrays(dtv, obs), target)
    exact = exact_survival(durations, events)
    exact_median = next((float(t) for t, s in exact.items() if s <= Fraction(1, 2)), None)
    assert arm["median_days"] == exact_median == median
    assert arm["share_by_target"] == pytest.approx(float(share), abs=1e-15)


def test_empty_and_eventless_arms():
    assert velocity_arm(TimeTable.empty()) == {
        "reached": 0,
        "censored": 0,
        "median_days": None,
        "share_by_target": None,
    }
    only_censored = TimeTable.from_arrays([np.nan, np.nan], [5.0, 9.0])
    assert velocity_arm(only_censored) == {
        "reached": 0,
        "censored": 2,
        "median_days": None,
        "share_by_target": 0.0,
    }
    assert logrank_p(only_censored, only_censored) is None
    assert logrank_p(TimeTable.empty(), only_censored) is None
    with pytest.raises(ValueError, match="target_days must be >= 0"):
        velocity_arm(only_censored, -1)


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_logrank_equals_lifelines_and_scipy_on_small_data(seed):
    rng = np.random.default_rng(seed)
    c = simulate(rng, 300, scale=20)
    t = simulate(rng, 250, scale=15)
    mine = logrank_p(TimeTable.from_arrays(*c), TimeTable.from_arrays(*t))
    (dc, ec), (dt, et) = lifelines_input(*c), lifelines_input(*t)
    assert mine == pytest.approx(logrank_test(dc, dt, ec, et).p_value, rel=1e-9)
    x = sps.CensoredData(uncensored=dc[ec], right=dc[~ec])
    y = sps.CensoredData(uncensored=dt[et], right=dt[~et])
    assert mine == pytest.approx(sps.logrank(x, y).pvalue, rel=1e-9)


def test_logrank_stays_exact_where_scipy_overflows():
    # 150,000 accounts per arm, whole-day times: scipy.stats.logrank multiplies counts in
    # 64-bit integers (n_x·n_y·d·(n - d) ≈ 1e20 here) and wraps around.
    rng = np.random.default_rng(2026)
    n = 150_000
    c = simulate(rng, n, scale=20.0, follow_up=90, blank_share=0.0)
    t = simulate(rng, n, scale=19.7, follow_up=90, blank_share=0.0)
    mine = logrank_p(TimeTable.from_arrays(*c), TimeTable.from_arrays(*t))
    (dc, ec), (dt, et) = lifelines_input(*c), lifelines_input(*t)
    reference = logrank_test(dc, dt, ec, et).p_value
    assert mine == pytest.approx(reference, rel=1e-9)
    assert 1e-6 < reference < 0.5  # an ordinary p-value, not an extreme tail
    x = sps.CensoredData(uncensored=dc[ec], right=dc[~ec])
    y = sps.CensoredData(uncensored=dt[et], right=dt[~et])
    scipy_p = sps.logrank(x, y).pvalue
    assert scipy_p != pytest.approx(reference, rel=1e-3)


def test_time_table_from_counts_add_and_json():
    rng = np.random.default_rng(8)
    dtv, obs = simulate(rng, 500, scale=10)
    whole = TimeTable.from_arrays(dtv, obs)
    halves = TimeTable.from_arrays(dtv[:200], obs[:200]) + TimeTable.from_arrays(
        dtv[200:], obs[200:]
    )
    assert halves == whole
    rows = list(zip(whole.times, whole.events, whole.censored, strict=True))
    assert TimeTable.from_counts(reversed(rows)) == whole
    assert TimeTable.from_dict(json.loads(json.dumps(whole.to_dict()))) == whole
    assert whole.accounts == int((~np.isnan(dtv) | ~np.isnan(obs)).sum())


@pytest.mark.parametrize(
    ("dtv", "obs", "message"),
    [
        ([-1.0], [3.0], "days_to_value must be blank or a finite number >= 0; got -1.0 at index 0"),
        ([1.0, np.inf], [3.0, 3.0], "days_to_value .* got inf at index 1"),
        ([1.0], [3.0, 4.0], "same length"),
    ],
)
def test_bad_days_are_named(dtv, obs, message):
    with pytest.raises(ValueError, match=message):
        TimeTable.from_arrays(dtv, obs)


def test_time_table_rejects_unsorted_times():
    with pytest.raises(ValueError, match="distinct and ascending"):
        TimeTable((3.0, 1.0), (1, 1), (0, 0))


def test_km_curve_steps_and_thinning():
    rng = np.random.default_rng(9)
    dtv, obs = simulate(rng, 3_000, scale=30, follow_up=400)
    table = TimeTable.from_arrays(dtv, obs)
    times, survival = kaplan_meier(table)
    full = km_curve(table, max_points=10_000)
    assert full[0] == [0.0, 0.0]
    assert [p[0] for p in full[1 : times.size + 1]] == times.tolist()
    np.testing.assert_allclose([p[1] for p in full[1 : times.size + 1]], 1 - survival)
    assert full[-1][0] == max(table.times)
    thin = km_curve(table, max_points=50)
    assert len(thin) <= 52
    shares = [p[1] for p in thin]
    assert shares == sorted(shares) and thin[-1] == full[-1]
    assert km_curve(TimeTable.empty()) == []


def test_velocity_cohorts_equal_pandas():
    rng = np.random.default_rng(12)
    n = 1_000
    days = np.where(rng.random(n) < 0.8, rng.integers(0, 60, n).astype(float), np.nan)
    start = rng.lognormal(6, 1, n)
    end = start * rng.uniform(0.6, 1.5, n)
    rows = velocity_cohorts(days, start, end)
    # pandas oracle: linear quantiles, right-closed bins (-inf, q1], (q1, q2], (q2, inf)
    frame = pd.DataFrame({"days": days, "start": start, "end": end})
    q1, q2 = frame["days"].dropna().quantile([1 / 3, 2 / 3])
    frame["cohort"] = pd.cut(
        frame["days"], [-np.inf, q1, q2, np.inf], labels=["fast", "average", "slow"]
    ).astype(object)
    frame["cohort"] = frame["cohort"].fillna("not_reached")
    grouped = frame.groupby("cohort").agg(
        accounts=("start", "size"),
        start_mrr=("start", "sum"),
        end_mrr=("end", "sum"),
        max_days=("days", "max"),
    )
    assert [r["cohort"] for r in rows] == ["fast", "average", "slow", "not_reached"]
    for row in rows:
        expected = grouped.loc[row["cohort"]]
        assert row["accounts"] == expected["accounts"]
        assert row["start_mrr"] == pytest.approx(expected["start_mrr"], rel=1e-12)
        assert row["nrr"] == pytest.approx(expected["end_mrr"] / expected["start_mrr"], rel=1e-12)
        if row["cohort"] == "not_reached":
            assert row["max_days"] is None
        else:
            assert row["max_days"] == expected["max_days"]


def test_velocity_cohorts_ties_and_nobody_reached():
    rows = velocity_cohorts([5.0, 5.0, 5.0], [100.0] * 3, [110.0] * 3)
    assert [(r["cohort"], r["accounts"]) for r in rows] == [
        ("fast", 3),
        ("average", 0),
        ("slow", 0),
        ("not_reached", 0),
    ]
    assert rows[1]["nrr"] is None and rows[1]["max_days"] is None
    rows = velocity_cohorts([np.nan, np.nan], [100.0, 50.0], [100.0, 0.0])
    assert rows[3]["accounts"] == 2 and rows[3]["nrr"] == pytest.approx(100 / 150)
    with pytest.raises(ValueError, match="start must hold one value per account"):
        velocity_cohorts([1.0, 2.0], [100.0], [100.0, 100.0])
