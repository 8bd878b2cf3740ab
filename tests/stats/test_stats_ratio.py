"""Ratio-metric formulas against independent computations on the rows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats

from stats import SufficientStats
from stats.ratio import (
    delta_method_variance,
    ratio_estimate,
    relative_uplift_variance,
    sigma_lin,
    welch_satterthwaite_df,
)

SEEDS = [11, 12, 13]
SIZES = [30, 50_000]


def gradient_variance(x: np.ndarray, y: np.ndarray) -> float:
    """var(mean_x / mean_y) by the delta method written as g' Σ g / n with numpy's covariance
    matrix."""
    covariance = np.cov(np.vstack([x, y]), ddof=1)
    gradient = np.array([1.0 / y.mean(), -x.mean() / y.mean() ** 2])
    return float(gradient @ covariance @ gradient) / x.size


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
def test_ratio_estimate(make_rows, seed, n):
    rows = make_rows(seed, n)
    sums = SufficientStats.from_arrays(rows.end, rows.start)
    # Expected: Σend / Σstart with numpy.
    assert ratio_estimate(sums) == pytest.approx(rows.end.sum() / rows.start.sum(), rel=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
def test_delta_method_variance_matches_gradient_form(make_rows, seed, n):
    rows = make_rows(seed, n)
    sums = SufficientStats.from_arrays(rows.end, rows.start)
    # Expected: g' Σ g / n with Σ = np.cov of (end, start) and g = (1/my, -mx/my²).
    assert delta_method_variance(sums) == pytest.approx(
        gradient_variance(rows.end, rows.start), rel=1e-9
    )


@pytest.mark.parametrize("seed", SEEDS)
def test_delta_method_variance_matches_design_formula(make_rows, seed):
    rows = make_rows(seed, 500)
    x, y = rows.end, rows.start
    mx, my = x.mean(), y.mean()
    vx, vy = np.var(x, ddof=1), np.var(y, ddof=1)
    cxy = np.cov(x, y)[0, 1]
    # Expected: DESIGN §4 term by term, from numpy moments.
    expected = (vx / my**2 - 2 * mx * cxy / my**3 + mx**2 * vy / my**4) / x.size
    assert delta_method_variance(SufficientStats.from_arrays(x, y)) == pytest.approx(
        expected, rel=1e-9
    )


@pytest.mark.parametrize("seed", [21, 22])
def test_delta_method_variance_agrees_with_bootstrap(make_rows, seed):
    rows = make_rows(seed, 3000, tail=0.8)
    x, y = rows.end, rows.start
    rng = np.random.default_rng(seed)
    # Expected: variance of Σx*/Σy* over 2000 nonparametric bootstrap resamples
    # (Efron & Tibshirani 1993).
    replicates = np.empty(2000)
    for block in range(0, 2000, 250):
        index = rng.integers(0, x.size, size=(250, x.size))
        replicates[block : block + 250] = x[index].sum(axis=1) / y[index].sum(axis=1)
    bootstrap_variance = replicates.var(ddof=1)
    assert delta_method_variance(SufficientStats.from_arrays(x, y)) == pytest.approx(
        bootstrap_variance, rel=0.15
    )


def test_delta_method_reduces_to_variance_of_mean_when_start_is_constant():
    x = np.array([3.0, 5.0, 4.0, 10.0, 0.0])
    # Expected: with y ≡ 1 the ratio is the mean of x, whose variance is s²/n
    # (scipy.stats.sem squared).
    expected = scipy_stats.sem(x) ** 2
    assert delta_method_variance(SufficientStats.from_arrays(x, np.ones(5))) == pytest.approx(
        expected, rel=1e-12
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("n", SIZES)
def test_sigma_lin_matches_residual_sd(make_rows, seed, n):
    rows = make_rows(seed, n)
    x, y = rows.end, rows.start
    r = x.sum() / y.sum()
    sums = SufficientStats.from_arrays(x, y)
    # Expected: sd(x - R·y, ddof=1) / mean(y) on the rows (DESIGN §4).
    assert sigma_lin(sums) == pytest.approx(np.std(x - r * y, ddof=1) / y.mean(), rel=1e-9)
    # and sigma_lin² = n · var(R): the same linearisation seen two ways
    assert sigma_lin(sums) ** 2 == pytest.approx(n * delta_method_variance(sums), rel=1e-9)


def test_welch_df_by_hand():
    var_t, n_t, var_c, n_c = 2.5e-4, 120, 1.0e-4, 80
    # Expected: Satterthwaite's formula evaluated by hand.
    numerator = (2.5e-4 + 1.0e-4) ** 2
    denominator = (2.5e-4) ** 2 / 119 + (1.0e-4) ** 2 / 79
    assert welch_satterthwaite_df(var_t, n_t, var_c, n_c) == pytest.approx(
        numerator / denominator, rel=1e-12
    )


def test_welch_df_matches_scipy_welch_test():
    rng = np.random.default_rng(5)
    a, b = rng.normal(0, 1, 40), rng.normal(0, 3, 25)
    # Expected: the df scipy.stats.ttest_ind(equal_var=False) reports for the same samples.
    expected = scipy_stats.ttest_ind(a, b, equal_var=False).df
    df = welch_satterthwaite_df(a.var(ddof=1) / a.size, a.size, b.var(ddof=1) / b.size, b.size)
    assert df == pytest.approx(expected, rel=1e-12)


def test_welch_df_degenerate():
    assert welch_satterthwaite_df(0.0, 10, 0.0, 10) is None
    assert welch_satterthwaite_df(None, 10, 1e-4, 10) is None
    assert welch_satterthwaite_df(1e-4, 1, 1e-4, 10) is None
    # one arm without variance: all the uncertainty, and all the df, come from the other
    assert welch_satterthwaite_df(0.0, 10, 1e-4, 31) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="-1"):
        welch_satterthwaite_df(-1.0, 10, 1e-4, 10)


def test_relative_uplift_variance_matches_gradient_form():
    r_t, v_t, r_c, v_c = 1.08, 3e-4, 0.97, 2e-4
    # Expected: g' diag(V_T, V_C) g with g = ∇(R_T/R_C) = (1/R_C, -R_T/R_C²).
    gradient = np.array([1 / r_c, -r_t / r_c**2])
    expected = gradient @ np.diag([v_t, v_c]) @ gradient
    assert relative_uplift_variance(r_t, v_t, r_c, v_c) == pytest.approx(expected, rel=1e-12)
    assert relative_uplift_variance(r_t, v_t, 0.0, v_c) is None


def test_degenerate_arms():
    empty = SufficientStats.empty()
    one = SufficientStats.from_arrays([120.0], [100.0])
    assert ratio_estimate(empty) is None
    assert ratio_estimate(one) == 1.2
    for statistic in (delta_method_variance, sigma_lin):
        assert statistic(empty) is None
        assert statistic(one) is None


def test_same_ratio_everywhere_gives_exactly_zero_variance(make_rows):
    rows = make_rows(3, 10_000)
    # Every account keeps exactly 93.7 % of its revenue: var(R) is 0, not rounding noise.
    sums = SufficientStats.from_arrays(0.937 * rows.start, rows.start)
    assert delta_method_variance(sums) == 0.0
    assert sigma_lin(sums) == 0.0


def test_all_churned_arm_has_zero_ratio_and_variance(make_rows):
    rows = make_rows(4, 200)
    sums = SufficientStats.from_arrays(np.zeros(200), rows.start)
    assert ratio_estimate(sums) == 0.0
    assert delta_method_variance(sums) == 0.0
