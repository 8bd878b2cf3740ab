"""Sufficient statistics, money totals and arm construction."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest

from stats import ArmData, ArmTotals, SufficientStats, arm_from_arrays
from stats.ratio import delta_method_variance, ratio_estimate, sigma_lin

SEEDS = [1, 2, 3]
SIZES = [30, 50_000]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
def test_moments_match_numpy(make_rows, seed, n):
    rows = make_rows(seed, n)
    x, y = rows.end, rows.start
    sums = SufficientStats.from_arrays(x, y)
    # Expected: numpy's two-pass estimators on the rows (np.mean, np.var, np.cov, ddof=1).
    assert sums.n == n
    assert sums.mean_x == pytest.approx(np.mean(x), rel=1e-12)
    assert sums.mean_y == pytest.approx(np.mean(y), rel=1e-12)
    assert sums.var_x == pytest.approx(np.var(x, ddof=1), rel=1e-9)
    assert sums.var_y == pytest.approx(np.var(y, ddof=1), rel=1e-9)
    assert sums.cov_xy == pytest.approx(np.cov(x, y, ddof=1)[0, 1], rel=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
def test_pooled_chunks_equal_whole(make_rows, seed, n):
    rows = make_rows(seed, n)
    x, y = rows.end, rows.start
    rng = np.random.default_rng(seed + 100)
    cuts = np.sort(rng.integers(0, n, size=5))
    chunks = [
        SufficientStats.from_arrays(cx, cy)
        for cx, cy in zip(np.split(x, cuts), np.split(y, cuts), strict=True)
    ]
    pooled = sum(chunks)
    whole = SufficientStats.from_arrays(x, y)
    # Expected: the statistics of the unsplit rows.
    assert pooled.n == whole.n
    for name in ("sum_x", "sum_y", "sum_xx", "sum_yy", "sum_xy"):
        assert getattr(pooled, name) == pytest.approx(getattr(whole, name), rel=1e-9), name
    for statistic in (ratio_estimate, delta_method_variance, sigma_lin):
        assert statistic(pooled) == pytest.approx(statistic(whole), rel=1e-9), statistic.__name__


def test_empty_is_identity_for_addition():
    sums = SufficientStats.from_arrays([3.0, 4.0], [2.0, 5.0])
    assert sums + SufficientStats.empty() == sums
    assert sum([sums]) == sums
    assert SufficientStats.empty().mean_x is None
    with pytest.raises(TypeError):
        sums + 1


def test_moments_need_enough_accounts():
    one = SufficientStats.from_arrays([5.0], [4.0])
    assert one.mean_x == 5.0
    assert one.var_x is None and one.var_y is None and one.cov_xy is None


def test_constant_rows_have_exactly_zero_variance():
    # 0.1 is not representable in binary, so naive Σx² - (Σx)²/n leaves rounding noise.
    x = np.full(1001, 1234.1)
    y = np.full(1001, 999.7)
    sums = SufficientStats.from_arrays(x, y)
    assert sums.var_x == 0.0
    assert sums.var_y == 0.0
    assert sums.cov_xy == 0.0


def test_decimal_sums_from_sql_become_floats():
    sums = SufficientStats(
        n=2,
        sum_x=Decimal("210.50"),
        sum_y=Decimal("200.00"),
        sum_xx=Decimal("22155.25"),
        sum_yy=Decimal("20000.00"),
        sum_xy=Decimal("21050.00"),
    )
    assert type(sums.sum_x) is float and sums.sum_x == 210.5
    assert type(sums.n) is int


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": -1}, "-1"),
        ({"n": 2.5}, "2.5"),
        ({"n": True}, "True"),
        ({"sum_x": float("nan")}, "nan"),
        ({"sum_yy": -4.0}, "-4.0"),
        ({"n": 0, "sum_x": 1.0}, "n is 0"),
    ],
)
def test_invalid_sums_raise_naming_the_value(kwargs, message):
    fields = {"n": 2, "sum_x": 1.0, "sum_y": 1.0, "sum_xx": 1.0, "sum_yy": 1.0, "sum_xy": 1.0}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        SufficientStats(**fields)


def test_from_arrays_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        SufficientStats.from_arrays([1.0, 2.0], [1.0])


def test_arm_totals_ratios():
    totals = ArmTotals(
        3, start_mrr=1000.0, expansion_mrr=150.0, contraction_mrr=40.0, churned_mrr=60.0
    )
    # Expected: DESIGN §4 by hand, end = 1000 + 150 - 40 - 60 = 1050.
    assert totals.end_mrr == 1050.0
    assert totals.nrr == pytest.approx(1.05)
    assert totals.grr == pytest.approx(0.90)
    assert ArmTotals.empty().nrr is None and ArmTotals.empty().grr is None
    assert (totals + totals).end_mrr == 2100.0


@pytest.mark.parametrize("seed", SEEDS)
def test_arm_from_arrays_matches_rows(make_rows, seed):
    rows = make_rows(seed, 2000)
    arm = arm_from_arrays(*rows.as_args())
    # Expected: numpy sums of each column and of end = start + expansion - contraction - churned.
    assert arm.totals.accounts == 2000
    assert arm.totals.start_mrr == pytest.approx(rows.start.sum(), rel=1e-12)
    assert arm.totals.expansion_mrr == pytest.approx(rows.expansion.sum(), rel=1e-12)
    assert arm.totals.contraction_mrr == pytest.approx(rows.contraction.sum(), rel=1e-12)
    assert arm.totals.churned_mrr == pytest.approx(rows.churned.sum(), rel=1e-12)
    assert arm.totals.end_mrr == pytest.approx(rows.end.sum(), rel=1e-9)
    assert arm.sums.sum_x == pytest.approx(rows.end.sum(), rel=1e-12)
    assert arm.sums.sum_xy == pytest.approx(float(np.sum(rows.end * rows.start)), rel=1e-12)
    np.testing.assert_allclose(arm.account_nrr, rows.end / rows.start, rtol=0, atol=1e-12)
    # a full churn gives an account NRR of exactly 0
    assert (arm.account_nrr == 0).sum() == (rows.churned > 0).sum()


def test_account_nrr_ties_survive_float_noise():
    start = np.array([110.16, 503.4, 39.25, 2.75, 1234.56])
    # Every account grew 10 %, but in floats end/start is 1.1 for some and 1.0999999999999999
    # for others.
    assert np.unique((start + 0.1 * start) / start).size == 2
    arm = arm_from_arrays(start, 0.1 * start, np.zeros(5), np.zeros(5))
    assert np.unique(arm.account_nrr).tolist() == [1.1]


def test_arm_from_arrays_validation():
    ok = [100.0, 200.0]
    zeros = [0.0, 0.0]
    with pytest.raises(ValueError, match="same length"):
        arm_from_arrays(ok, [0.0], zeros, zeros)
    with pytest.raises(ValueError, match=r"start must be greater than 0; got 0.0 at index 1"):
        arm_from_arrays([100.0, 0.0], zeros, zeros, zeros)
    with pytest.raises(ValueError, match=r"churned must hold finite numbers.*index 0"):
        arm_from_arrays(ok, zeros, zeros, [float("inf"), 0.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        arm_from_arrays([ok], [zeros], [zeros], [zeros])


def test_empty_arrays_give_an_empty_arm():
    arm = arm_from_arrays([], [], [], [])
    assert arm.totals.accounts == 0 and arm.sums.n == 0 and arm.account_nrr.size == 0
    assert arm.totals.nrr is None


def test_arm_data_consistency_checks():
    totals = ArmTotals(2, 200.0, 0.0, 0.0, 0.0)
    sums = SufficientStats.from_arrays([100.0], [100.0])
    with pytest.raises(ValueError, match=r"totals.accounts \(2\) and sums.n \(1\)"):
        ArmData(totals, sums)
    with pytest.raises(ValueError, match="account_nrr has 3 values"):
        ArmData(ArmTotals(1, 100.0, 0.0, 0.0, 0.0), sums, np.ones(3))


def test_arm_data_pools_by_addition(make_rows):
    first, second = make_rows(5, 40), make_rows(6, 60)
    both = arm_from_arrays(
        *(np.concatenate(pair) for pair in zip(first.as_args(), second.as_args(), strict=True))
    )
    pooled = arm_from_arrays(*first.as_args()) + arm_from_arrays(*second.as_args())
    # Expected: the arm built from the concatenated rows.
    assert pooled.totals.accounts == both.totals.accounts
    assert pooled.sums.sum_xy == pytest.approx(both.sums.sum_xy, rel=1e-12)
    np.testing.assert_array_equal(pooled.account_nrr, both.account_nrr)
    sums_only = ArmData(pooled.totals, pooled.sums)
    assert (sums_only + pooled).account_nrr is None


def test_comoments_pool_through_the_one_chan_merge(monkeypatch):
    """CoMoments and Moments share stats.moments.pool_centred (Chan et al., written once)."""
    from stats import sums

    calls = []
    real = sums.pool_centred

    def spy(*args):
        calls.append(args[0])
        return real(*args)

    monkeypatch.setattr(sums, "pool_centred", spy)
    pooled = sums.CoMoments.from_arrays([1.0, 2.0], [1.0, 1.0]) + sums.CoMoments.from_arrays(
        [3.0], [4.0]
    )
    assert calls == [2]
    assert (pooled.n, pooled.mean_x, pooled.m2x, pooled.cxy) == (3, 2.0, 2.0, 3.0)


def test_one_vector_check_for_sums_and_moments():
    from stats import moments, sums

    assert sums._as_vector is moments._as_vector
