"""stats.impact: τ² against statsmodels' meta-analysis, shrinkage by hand, the winner's curse
in simulation, and the revenue arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.meta_analysis import combine_effects

from stats.impact import between_variance, revenue_impact, shrink


@pytest.mark.parametrize("method", ["dl", "pm"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tau2_and_prior_mean_equal_statsmodels(method, seed):
    rng = np.random.default_rng(seed)
    se = rng.uniform(0.01, 0.03, 25)
    x = rng.normal(0.01, 0.02, 25) + rng.normal(0, se)
    reference = combine_effects(x, se**2, method_re=method)
    # statsmodels iterates Paule-Mandel to a loose tolerance; ours is the root to ~1e-15
    rel = 1e-8 if method == "dl" else 1e-6
    tau2 = between_variance(x, se, method)
    assert tau2 == pytest.approx(reference.tau2, rel=rel)
    if method == "pm":
        w = 1 / (se**2 + tau2)
        q = np.sum(w * (x - np.sum(w * x) / np.sum(w)) ** 2)
        assert q == pytest.approx(x.size - 1, rel=1e-10)
    result = shrink(x, se, method)
    assert result.prior_var == tau2
    assert result.prior_mean == pytest.approx(reference.mean_effect_re, rel=rel)
    # posterior mean and sd of the normal-normal model, by hand at the same τ²
    b = tau2 / (tau2 + se**2)
    w = 1 / (se**2 + tau2)
    m = np.sum(w * x) / np.sum(w)
    np.testing.assert_allclose(result.shrunk, m + b * (x - m), rtol=1e-10)
    np.testing.assert_allclose(result.factors, b, rtol=1e-12)
    np.testing.assert_allclose(result.shrunk_se, np.sqrt(b) * se, rtol=1e-12)
    assert result.note is None


def test_too_few_estimates_are_not_shrunk_and_say_so():
    result = shrink([0.05, -0.01], [0.02, 0.01])
    assert result.shrunk == (0.05, -0.01) and result.prior_var is None
    assert result.method == "none"
    assert "not shrunk: 2 estimates" in result.note
    assert result.prior_mean == pytest.approx((0.05 / 0.0004 - 0.01 / 0.0001) / 12_500)
    assert shrink([], []).prior_mean is None


def test_no_spread_beyond_noise_pools_completely_and_says_so():
    x = [0.010, 0.011, 0.009, 0.010]
    se = [0.02, 0.02, 0.03, 0.02]
    result = shrink(x, se)
    assert result.prior_var == 0.0
    w = 1 / np.square(se)
    assert result.shrunk == pytest.approx([np.sum(w * x) / np.sum(w)] * 4, rel=1e-12)
    assert "shrunk to the portfolio mean" in result.note
    assert result.to_dict()["note"] == result.note


@pytest.mark.parametrize(
    ("x", "se", "message"),
    [
        ([0.1, 0.2], [0.01], "same length"),
        ([0.1, np.nan, 0.0], [0.01, 0.01, 0.01], "estimate 1 must be a finite number"),
        ([0.1, 0.2, 0.0], [0.01, 0.0, 0.01], "standard error 1 must be a finite number > 0"),
    ],
)
def test_bad_portfolio_input(x, se, message):
    with pytest.raises(ValueError, match=message):
        shrink(x, se)


def test_bad_method():
    with pytest.raises(ValueError, match="method must be 'dl' or 'pm'"):
        shrink([0.1, 0.2, 0.3], [0.1, 0.1, 0.1], "reml")


def test_shrinkage_undoes_the_winners_curse_in_simulation():
    # 400 portfolios of 40 experiments: true effects ~ N(0.01, 0.02²), standard errors
    # ~ U(0.015, 0.025); a "win" is significant and positive (x/se > 1.96). Per portfolio we
    # take the mean raw, shrunk and true uplift among its wins; the Monte Carlo error is the
    # standard error of those per-portfolio means.
    rng = np.random.default_rng(15)
    reps, k = 400, 40
    raw_bias, shrunk_bias, raw_mean, true_mean = [], [], [], []
    for _ in range(reps):
        truth = rng.normal(0.01, 0.02, k)
        se = rng.uniform(0.015, 0.025, k)
        x = truth + rng.normal(0.0, se)
        wins = x / se > 1.96
        if not wins.any():
            continue
        shrunk = np.asarray(shrink(x, se).shrunk)
        raw_bias.append(x[wins].mean() - truth[wins].mean())
        shrunk_bias.append(shrunk[wins].mean() - truth[wins].mean())
        raw_mean.append(x[wins].mean())
        true_mean.append(truth[wins].mean())
    raw_bias, shrunk_bias = np.array(raw_bias), np.array(shrunk_bias)
    mc = lambda v: v.std(ddof=1) / np.sqrt(v.size)  # noqa: E731
    print(
        f"portfolios with wins {raw_bias.size}; mean raw uplift among wins "
        f"{np.mean(raw_mean):.4f} vs true {np.mean(true_mean):.4f}; bias raw "
        f"{raw_bias.mean():.4f} ± {mc(raw_bias):.4f}, shrunk {shrunk_bias.mean():.4f} "
        f"± {mc(shrunk_bias):.4f}"
    )
    assert raw_bias.size > 0.9 * reps
    # the raw mean among wins overstates the truth by many Monte Carlo errors
    assert raw_bias.mean() > 0.01 and raw_bias.mean() > 10 * mc(raw_bias)
    # the shrunk mean is much closer to the true mean among the same wins
    assert abs(shrunk_bias.mean()) < 0.3 * raw_bias.mean()
    assert np.mean(np.abs(shrunk_bias)) < np.mean(np.abs(raw_bias))


def test_revenue_impact_arithmetic():
    impact = revenue_impact(0.015, (-0.005, 0.035), 2_400_000.0, 0.25, 10_000_000.0)
    # by hand: 0.015 · 2.4M · 0.25 = 9,000 per month
    assert impact.monthly_mrr == pytest.approx(9_000.0)
    assert impact.annual == pytest.approx(108_000.0)
    assert impact.annual_ci == pytest.approx((-36_000.0, 252_000.0))
    assert impact.monthly_ci == pytest.approx((-3_000.0, 21_000.0))
    assert impact.company_points == pytest.approx(0.0009)
    assert impact.company_points_ci == pytest.approx((-0.0003, 0.0021))
    assert impact.to_dict()["annual_ci"] == list(impact.annual_ci)


def test_revenue_impact_missing_and_bad_inputs():
    impact = revenue_impact(0.02, (None, None), 1_000.0, 1.0)
    assert impact.annual == pytest.approx(240.0)
    assert impact.annual_ci == (None, None)
    assert impact.company_points is None and impact.company_points_ci == (None, None)
    assert revenue_impact(None, (None, None), 1_000.0, 1.0).annual is None
    with pytest.raises(ValueError, match="rollout_share must be between 0 and 1; got 50"):
        revenue_impact(0.02, (0.0, 0.04), 1_000.0, 50)
    with pytest.raises(ValueError, match="base_start_mrr must be >= 0"):
        revenue_impact(0.02, (0.0, 0.04), -1.0, 0.5)
    with pytest.raises(ValueError, match="company_start_mrr must be > 0"):
        revenue_impact(0.02, (0.0, 0.04), 1.0, 0.5, 0.0)
