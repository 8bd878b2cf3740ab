"""Issue 13 item 2: sample sizes per arm for the allocation and for alpha/k (DESIGN §4c).

Expected sizes come from statsmodels' ``TTestIndPower().solve_power`` (nobs1 = control,
``ratio`` = n_T / n_C), rounded up by hand; power from statsmodels' ``power``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from statsmodels.stats.power import TTestIndPower

from stats import analyze, arm_from_arrays
from stats.sizing import plan_sample_sizes
from tests.stats.simulation import holm_by_hand


def statsmodels_n(d, alpha, power, ratio):
    return math.ceil(
        TTestIndPower().solve_power(
            effect_size=d, alpha=alpha, power=power, ratio=ratio, alternative="two-sided"
        )
    )


@pytest.mark.parametrize(("w_c", "w_t"), [(1, 1), (3, 1), (1, 3), (2, 1)])
@pytest.mark.parametrize("sigma", [0.25, 0.44])
def test_one_treatment_sized_for_its_allocation(w_c, w_t, sigma):
    ratio = w_t / w_c
    plan = plan_sample_sizes(0.02, sigma, control="c", weights={"c": w_c, "t": w_t})
    n_c = statsmodels_n(0.02 / sigma, 0.05, 0.8, ratio)
    assert plan.required_n == {"c": n_c, "t": math.ceil(round(ratio * n_c, 9))}
    assert plan.alpha_sizing == 0.05


def test_issue_example_three_to_one_needs_about_21405_and_7135():
    # The sigma at which equal arms need 10,701 each (the issue's file).
    sigma = 0.02 / TTestIndPower().solve_power(nobs1=10_701, alpha=0.05, power=0.8, ratio=1.0)
    plan = plan_sample_sizes(0.02, sigma, control="control",
                             weights={"control": 3, "treatment": 1})
    assert plan.required_n["control"] == pytest.approx(21_405, abs=6)
    assert plan.required_n["treatment"] == pytest.approx(7_135, abs=3)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_k_treatments_are_sized_at_alpha_over_k(k):
    weights = {"control": 2.0, **{f"t{i}": 1.0 + i for i in range(k)}}
    plan = plan_sample_sizes(0.03, 0.3, control="control", weights=weights, alpha=0.05, power=0.9)
    assert plan.alpha_sizing == pytest.approx(0.05 / k)
    expected_control = {}
    for i in range(k):
        ratio = (1.0 + i) / 2.0
        n_c = statsmodels_n(0.1, 0.05 / k, 0.9, ratio)
        expected_control[f"t{i}"] = n_c
        assert plan.required_n[f"t{i}"] == math.ceil(round(ratio * n_c, 9))
    assert plan.control_n_for == expected_control
    assert plan.required_n["control"] == max(expected_control.values())


def test_report_carries_required_n_alpha_sizing_and_power_at_alpha_star():
    rng = np.random.default_rng(4)
    arms = {}
    for name, n in (("control", 900), ("a", 300), ("b", 300)):
        start = rng.lognormal(6, 1, n)
        arms[name] = arm_from_arrays(start, start * rng.gamma(1, 0.1, n), np.zeros(n),
                                     np.zeros(n))
    result = analyze(arms, control="control", weights={"control": 3, "a": 1, "b": 1},
                     sigma=0.4, mde=0.05, robust=False)
    report = result.to_dict()
    assert report["alpha_sizing"] == pytest.approx(0.025)
    assert report["sigma_planning"] == 0.4 and report["sigma_source"] == "given"
    n_c = statsmodels_n(0.05 / 0.4, 0.025, 0.8, 1 / 3)
    assert report["required_n"] == {"control": n_c, "a": math.ceil(round(n_c / 3, 9)),
                                    "b": math.ceil(round(n_c / 3, 9))}
    for comparison in result.comparisons:
        assert comparison.required_n_per_arm == n_c
        expected_power = TTestIndPower().power(effect_size=0.125, nobs1=900, ratio=300 / 900,
                                               alpha=0.025)
        assert comparison.power_achieved == pytest.approx(expected_power, rel=1e-6)


def _normal_arm(rng, n, mean, sd):
    # start = 1 for every account: NRR is a plain mean and sigma_lin the plain sd.
    x = rng.normal(mean, sd, n)
    return arm_from_arrays(np.ones(n), np.maximum(x - 1, 0), np.maximum(1 - x, 0), np.zeros(n))


def test_underpowered_means_an_arm_below_its_required_n_not_a_re_estimated_power():
    rng = np.random.default_rng(9)
    # required n ≈ 393 per arm for d = 0.2 at alpha 0.05, power 0.8
    small = {"control": _normal_arm(rng, 100, 1.0, 0.1), "t": _normal_arm(rng, 100, 1.0, 0.1)}
    big = {"control": _normal_arm(rng, 500, 1.0, 0.1), "t": _normal_arm(rng, 500, 1.0, 0.1)}
    for arms, verdict in ((small, "underpowered"), (big, "inconclusive")):
        (c,) = analyze(arms, control="control", sigma=0.1, mde=0.02, robust=False).comparisons
        if c.p_value_adjusted >= 0.05:
            assert c.verdict == verdict


@pytest.mark.parametrize("treatments", [1, 2])
def test_power_at_the_locked_n_is_the_planned_power(treatments):
    """Simulation: one real MDE-sized effect; P(win) at the planned n within ± 3 points of 80 %."""
    sigma, mde, alpha, reps = 0.1, 0.02, 0.05, 4000
    weights = {"control": 1.0, **{f"t{i}": 1.0 for i in range(treatments)}}
    plan = plan_sample_sizes(mde, sigma, control="control", weights=weights, alpha=alpha)
    n = plan.required_n["control"]
    rng = np.random.default_rng(13 + treatments)
    control = rng.normal(0.0, sigma, (reps, n))
    arms = [rng.normal(mde if i == 0 else 0.0, sigma, (reps, n)) for i in range(treatments)]
    # Independent Welch t per comparison (scipy), then Holm across the treatments by hand.
    from scipy import stats as scipy_stats

    p = np.stack([scipy_stats.ttest_ind(a, control, axis=1, equal_var=False).pvalue
                  for a in arms], axis=1)
    adjusted = holm_by_hand(p)
    diff = arms[0].mean(axis=1) - control.mean(axis=1)
    win = np.mean((adjusted[:, 0] < alpha) & (diff > 0))
    se = math.sqrt(0.8 * 0.2 / reps)
    assert abs(win - 0.8) <= 0.03, f"P(win) {win:.3f} ± {se:.3f} at n = {n} per arm"
