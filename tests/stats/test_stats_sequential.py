"""Issue 13 item 5: always-valid inference for weekly looks (DESIGN §4c "Sequential").

Expected values are the formula of Waudby-Smith et al. (2023) eq. 9 as GrowthBook's
gbstats 0.8 writes it, transcribed here with ``math`` independently of stats/.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from stats import analyze, arm_from_arrays
from stats.sequential import sequential_p_value, sequential_test


def by_hand(uplift, var_abs, n, tau, alpha):
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tau)
    s2 = var_abs * n
    half = math.sqrt(s2) * math.sqrt(
        2 * (n * rho**2 + 1) * math.log(math.sqrt(n * rho**2 + 1) / alpha) / (n * rho) ** 2
    )
    st2 = uplift**2 * n / var_abs
    p = min(1.0, math.sqrt(n * rho**2 + 1) * math.exp(-(rho**2) * st2 / (2 * (n * rho**2 + 1))))
    return (uplift - half, uplift + half), p


@pytest.mark.parametrize(
    ("uplift", "var_abs", "n", "tau", "alpha"),
    [(0.03, 1e-4, 10_000, 10_000, 0.05), (-0.01, 4e-5, 3_000, 20_000, 0.025),
     (0.002, 1e-6, 250_000, 40_000, 0.0167), (0.0, 1e-4, 500, 500, 0.1)],
)
def test_matches_the_formula(uplift, var_abs, n, tau, alpha):
    ci, p = by_hand(uplift, var_abs, n, tau, alpha)
    result = sequential_test(uplift, var_abs, n, tuning=tau, alpha=alpha)
    assert result.ci_abs == pytest.approx(ci, rel=1e-12, abs=1e-15)
    assert result.p_value == pytest.approx(p, rel=1e-12)
    assert result.tuning == tau


def test_p_below_alpha_exactly_when_zero_is_outside_the_interval():
    rng = np.random.default_rng(2)
    for _ in range(500):
        uplift = rng.normal(0, 0.02)
        var_abs = 10 ** rng.uniform(-6, -3)
        n = int(rng.integers(100, 100_000))
        result = sequential_test(uplift, var_abs, n, tuning=float(rng.integers(100, 50_000)),
                                 alpha=0.05)
        low, high = result.ci_abs
        assert (result.p_value < 0.05) == (not low <= 0 <= high)


def test_analyze_sequential_uses_alpha_star_and_planned_tuning():
    rng = np.random.default_rng(5)
    arms = {}
    for name, lift in (("control", 0.0), ("a", 0.05), ("b", 0.0)):
        start = rng.lognormal(6, 1, 3000)
        arms[name] = arm_from_arrays(start, start * (rng.gamma(1, 0.1, 3000) + lift),
                                     np.zeros(3000), np.zeros(3000))
    result = analyze(arms, control="control", sequential=True, robust=False)
    required = result.required_n
    for comparison in result.comparisons:
        seq = comparison.sequential
        assert seq.tuning == required["control"] + required[comparison.variant]
        t, c = arms[comparison.variant].sums, arms["control"].sums
        from stats import delta_method_variance

        var_abs = delta_method_variance(t) + delta_method_variance(c)
        ci, p = by_hand(comparison.uplift_abs, var_abs, 6000, seq.tuning, 0.025)
        assert seq.p_value == pytest.approx(p, rel=1e-9)
        assert seq.ci_abs == pytest.approx(ci, rel=1e-9)
        assert comparison.verdict == ("win" if p < 0.025 else comparison.verdict)
    assert result.comparisons[0].verdict == "win"
    assert result.to_dict()["comparisons"][0]["sequential"]["p_value"] is not None
    plain = analyze(arms, control="control", robust=False)
    assert all(c.sequential is None for c in plain.comparisons)
    assert plain.to_dict()["comparisons"][0]["sequential"] is None


def test_eight_weekly_looks_keep_the_false_positive_rate_below_alpha():
    """A/A, 8 weekly uploads of 250 accounts per arm, reject at the first look with p < α."""
    reps, weeks, per_week, alpha = 2000, 8, 250, 0.05
    rng = np.random.default_rng(21)
    shape = (2, reps, weeks * per_week)
    start = rng.lognormal(5.0, 1.0, shape)
    end = start * rng.choice([0.0, 1.0, 1.2, 1.6], p=[0.08, 0.62, 0.2, 0.1], size=shape)
    n = per_week * np.arange(1, weeks + 1)
    look_ends = n - 1

    def cumulative(values):
        return np.cumsum(values, axis=-1)[..., look_ends]

    sx, sy = cumulative(end), cumulative(start)
    sxx, syy, sxy = cumulative(end * end), cumulative(start * start), cumulative(end * start)
    ratio = sx / sy
    mean_y = sy / n
    # delta-method variance of each arm's ratio at each look (DESIGN §4), numpy by hand
    ss = sxx - 2 * ratio * sxy + ratio**2 * syy - (sx - ratio * sy) ** 2 / n
    var = ss / (n - 1) / (n * mean_y**2)
    uplift = ratio[1] - ratio[0]
    var_abs = var[0] + var[1]
    tau = 2 * weeks * per_week
    p = sequential_p_value(uplift, var_abs, 2 * n, tau, alpha)
    rate = np.mean((p < alpha).any(axis=1))
    se = math.sqrt(alpha * (1 - alpha) / reps)
    assert rate <= alpha, f"sequential false-positive rate {rate:.3f} ± {se:.3f} (MC SE)"
    # The defect this replaces: a fixed-horizon z-test at every look.
    from scipy.stats import norm

    fixed = 2 * norm.sf(np.abs(uplift) / np.sqrt(var_abs))
    naive = np.mean((fixed < alpha).any(axis=1))
    assert naive > alpha + 2 * se, f"peeking rate {naive:.3f} should exceed α"
