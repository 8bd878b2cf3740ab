"""Issue 13 item 6: skewed MRR with unequal (or small) arms gets a test that holds alpha.

Simulations: lognormal(σ = 2) start MRR, a mix of churn, contraction and expansion;
the false-positive rate and coverage must sit within nominal ± 2 Monte Carlo SE.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stats import analyze, arm_from_arrays
from stats.robust import linearised_skewness, needs_permutation, permutation_test
from tests.stats.simulation import MEAN_MULTIPLIER, accounts, welch_many


def welch_p(xt, yt, xc, yc):
    """Delta-method Welch p-value by hand (numpy/scipy), the method being replaced."""
    from scipy import stats as scipy_stats

    def arm(x, y):
        r = x.sum() / y.sum()
        return r, np.var(x - r * y, ddof=1) / (x.size * y.mean() ** 2)

    (rt, vt), (rc, vc) = arm(xt, yt), arm(xc, yc)
    df = (vt + vc) ** 2 / (vt**2 / (xt.size - 1) + vc**2 / (xc.size - 1))
    return 2 * scipy_stats.t.sf(abs(rt - rc) / math.sqrt(vt + vc), df)


def welch_p_many(xt, yt, xc, yc):
    """Vectorised over replicates (rows): delta-method Welch p-values by hand."""
    from scipy import stats as scipy_stats

    diff, se, df = welch_many(xt, yt, xc, yc)
    return 2 * scipy_stats.t.sf(np.abs(diff) / se, df)


@pytest.mark.parametrize(("n_t", "n_c"), [(200, 200), (100, 400)])
def test_aa_false_positive_rate_and_coverage_hold_alpha(n_t, n_c):
    """1:1 and 4:1 with lognormal(σ = 2) MRR: rate and coverage within nominal ± 2 MC SE."""
    # B = 200: (B + 1)·α is not whole, so the size is 10/201 ≈ α (199 would give 4.5 %).
    reps, alpha, perms = 1000, 0.05, 200
    rng = np.random.default_rng(n_t * 7 + n_c)
    xt, yt = accounts(rng, (reps, n_t))
    xc, yc = accounts(rng, (reps, n_c))
    xe, ye = accounts(rng, (reps, n_t), lift=0.05)
    rejections = covered = covered_effect = 0
    for rep in range(reps):
        result = permutation_test(xt[rep], yt[rep], xc[rep], yc[rep], levels=(alpha,),
                                  permutations=perms, seed=rep)
        rejections += result.p_value < alpha
        uplift = xt[rep].sum() / yt[rep].sum() - xc[rep].sum() / yc[rep].sum()
        covered += abs(uplift) <= result.critical[0] * abs(uplift / result.statistic)
        # With a real effect: treatment NRR higher by 0.05 · 0.925 in the population.
        effect = permutation_test(xe[rep], ye[rep], xc[rep], yc[rep], levels=(alpha,),
                                  permutations=perms, seed=rep)
        uplift_e = xe[rep].sum() / ye[rep].sum() - xc[rep].sum() / yc[rep].sum()
        half = effect.critical[0] * abs(uplift_e / effect.statistic)
        covered_effect += abs(uplift_e - 0.05 * MEAN_MULTIPLIER) <= half
    nominal_se = math.sqrt(alpha * (1 - alpha) / reps)
    rate, coverage, coverage_effect = rejections / reps, covered / reps, covered_effect / reps
    assert abs(rate - alpha) <= 2 * nominal_se, f"A/A rate {rate:.3f} ± {nominal_se:.3f}"
    assert abs(coverage - (1 - alpha)) <= 2 * nominal_se, f"coverage {coverage:.3f}"
    assert abs(coverage_effect - (1 - alpha)) <= 2 * nominal_se, (
        f"coverage with an effect {coverage_effect:.3f} ± {nominal_se:.3f}"
    )
    # The defect on the same data: the Welch t rejects the A/A far more often than α.
    if n_t != n_c:
        welch = np.mean(welch_p_many(xt, yt, xc, yc) < alpha)
        assert welch > alpha + 2 * nominal_se, f"Welch A/A rate {welch:.3f}"


def test_analyze_switches_to_the_permutation_test_and_says_why():
    rng = np.random.default_rng(3)
    xt, yt = accounts(rng, 2000)
    xc, yc = accounts(rng, 500)
    zeros_t, zeros_c = np.zeros(2000), np.zeros(500)
    arms = {
        "control": arm_from_arrays(yc, np.maximum(xc - yc, 0), np.maximum(yc - xc, 0), zeros_c),
        "treatment": arm_from_arrays(yt, np.maximum(xt - yt, 0), np.maximum(yt - xt, 0),
                                     zeros_t),
    }
    (c,) = analyze(arms, control="control", weights={"control": 1, "treatment": 4}).comparisons
    assert c.inference["method"] == "permutation"
    assert "unequal arms (2000:500)" in c.inference["reason"]
    assert c.inference["welch_p_value"] == pytest.approx(welch_p(xt, yt, xc, yc), rel=1e-6)
    low, high = c.ci_abs
    assert (c.p_value < 0.05) == (not low <= 0 <= high)
    same = analyze(arms, control="control", weights={"control": 1, "treatment": 4}).comparisons
    assert same[0].p_value == c.p_value, "seeded: the same file gives the same p-value"
    assert analyze(arms, control="control", weights={"control": 1, "treatment": 4},
                   robust=False).comparisons[0].inference["method"] == "welch"


def test_skewness_and_the_rule():
    x = np.array([1.0, 2.0, 3.0, 10.0])
    y = np.ones(4)
    u = x - x.sum() / y.sum() * y
    d = u - u.mean()
    # population-moment skewness by hand
    assert linearised_skewness(x, y) == pytest.approx(np.mean(d**3) / np.mean(d**2) ** 1.5)
    assert needs_permutation(4000, 400, 40.0, 30.0).startswith("unequal arms")
    assert needs_permutation(500, 500, 30.0, 30.0).startswith("skewed MRR")
    assert needs_permutation(5000, 5000, 3.0, 3.0) is None  # 3/√5000 < 0.1
    assert needs_permutation(15_000, 15_000, 90.0, 90.0) is None  # above the cap
