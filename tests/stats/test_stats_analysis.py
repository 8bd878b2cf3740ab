"""analyze(): figures against an independent row-level computation, verdicts, degenerate data,
the report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

from stats import (
    ArmData,
    ExperimentResult,
    analyze,
    arm_from_arrays,
    summary_sentence,
)
from stats.analysis import Comparison

# The JSON report of DESIGN §4, plus the warnings lists.
REPORT_KEYS = {"alpha", "power", "mde", "control", "srm", "arms", "comparisons", "warnings",
               "required_n", "alpha_sizing", "sigma_planning", "sigma_source",
               # DESIGN §4b (issue 15)
               "guardrails_plan", "ttv_target_days", "velocity_curves", "velocity_cohorts"}
SRM_KEYS = {"p_value", "observed", "expected_weights", "flag"}
ARM_KEYS = {
    "variant",
    "accounts",
    "start_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "end_mrr",
    "nrr",
    "grr",
}
COMPARISON_KEYS = {
    "variant",
    "uplift_abs",
    "ci_abs",
    "uplift_rel",
    "ci_rel",
    "p_value",
    "p_value_adjusted",
    "p_value_mwu",
    "sigma_lin",
    "required_n_per_arm",
    "power_achieved",
    "verdict",
    "warnings",
    "ci_abs_adjusted",
    "ci_method",
    "inference",
    "mann_whitney",
    "sequential",
    # DESIGN §4b (issue 15)
    "levers",
    "logo_churn",
    "expansion_incidence",
    "guardrails",
    "cuped",
    "velocity",
    "permutation",
}


def arms_of(rows_by_variant, *, sums_only=False):
    arms = {variant: arm_from_arrays(*rows.as_args()) for variant, rows in rows_by_variant.items()}
    # Without the (end, start) rows the Welch/delta path of DESIGN §4 is pinned: the
    # permutation test for skewed small arms has its own tests (test_stats_robust.py).
    arms = {v: ArmData(a.totals, a.sums, a.account_nrr) for v, a in arms.items()}
    if sums_only:
        arms = {variant: ArmData(arm.totals, arm.sums) for variant, arm in arms.items()}
    return arms


def assert_json_safe(result: ExperimentResult) -> dict:
    report = result.to_dict()
    text = json.dumps(report, allow_nan=False)
    assert set(report) == REPORT_KEYS
    assert set(report["srm"]) == SRM_KEYS
    for arm in report["arms"]:
        assert set(arm) == ARM_KEYS
    for comparison in report["comparisons"]:
        assert set(comparison) == COMPARISON_KEYS
        assert len(comparison["ci_abs"]) == 2 and len(comparison["ci_rel"]) == 2
    return json.loads(text)


def reference(treatment, control, *, alpha, power, mde):
    """The comparison recomputed from rows with numpy/scipy/statsmodels, independently of stats/."""
    out = {}
    x_t, y_t, x_c, y_c = treatment.end, treatment.start, control.end, control.start
    r_t, r_c = x_t.sum() / y_t.sum(), x_c.sum() / y_c.sum()

    def delta_variance(x, y):
        # g' Σ g / n with numpy's covariance matrix
        gradient = np.array([1 / y.mean(), -x.mean() / y.mean() ** 2])
        return gradient @ np.cov(np.vstack([x, y])) @ gradient / x.size

    v_t, v_c = delta_variance(x_t, y_t), delta_variance(x_c, y_c)
    se = math.sqrt(v_t + v_c)
    df = (v_t + v_c) ** 2 / (v_t**2 / (x_t.size - 1) + v_c**2 / (x_c.size - 1))
    t_crit = scipy_stats.t.ppf(1 - alpha / 2, df)
    out["uplift_abs"] = r_t - r_c
    out["ci_abs"] = (r_t - r_c - t_crit * se, r_t - r_c + t_crit * se)
    out["p_value"] = 2 * scipy_stats.t.sf(abs(r_t - r_c) / se, df)
    gradient = np.array([1 / r_c, -r_t / r_c**2])
    se_rel = math.sqrt(gradient @ np.diag([v_t, v_c]) @ gradient)
    out["uplift_rel"] = r_t / r_c - 1
    out["ci_rel"] = (r_t / r_c - 1 - t_crit * se_rel, r_t / r_c - 1 + t_crit * se_rel)
    sigma = np.std(x_c - r_c * y_c, ddof=1) / y_c.mean()
    out["sigma_lin"] = sigma
    out["required_n_per_arm"] = math.ceil(
        TTestIndPower().solve_power(mde / sigma, alpha=alpha, power=power)
    )
    out["power_achieved"] = TTestIndPower().power(
        mde / sigma, nobs1=x_c.size, alpha=alpha, ratio=x_t.size / x_c.size
    )
    # per-account NRR rounded to 12 decimals as stats.arm_from_arrays documents (ties survive
    # float noise)
    out["p_value_mwu"] = scipy_stats.mannwhitneyu(
        np.round(x_t / y_t, 12), np.round(x_c / y_c, 12), alternative="two-sided"
    ).pvalue
    return out


@pytest.mark.parametrize("seed", [31, 32, 33])
@pytest.mark.parametrize(("n_control", "n_treatment"), [(30, 34), (50_000, 49_000)])
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_comparison_matches_independent_computation(make_rows, seed, n_control, n_treatment, alpha):
    rng = np.random.default_rng(seed)
    rows = {
        "control": make_rows(rng, n_control),
        "treatment": make_rows(rng, n_treatment, lift=0.01),
    }
    result = analyze(arms_of(rows), control="control", alpha=alpha, power=0.8, mde=0.02)
    (comparison,) = result.comparisons
    # Expected: reference() above — numpy delta method, scipy t, statsmodels power,
    # scipy Mann-Whitney.
    expected = reference(rows["treatment"], rows["control"], alpha=alpha, power=0.8, mde=0.02)
    for name in ("uplift_abs", "uplift_rel", "p_value", "sigma_lin", "p_value_mwu"):
        assert getattr(comparison, name) == pytest.approx(expected[name], rel=1e-8), name
    for name in ("ci_abs", "ci_rel"):
        assert getattr(comparison, name) == pytest.approx(expected[name], rel=1e-8), name
    assert comparison.power_achieved == pytest.approx(expected["power_achieved"], rel=1e-8)
    assert comparison.required_n_per_arm == expected["required_n_per_arm"]
    # one treatment: Holm leaves the p-value alone
    assert comparison.p_value_adjusted == pytest.approx(comparison.p_value, rel=1e-12)
    # Expected: arm totals as numpy column sums.
    control_arm = result.arms[0]
    assert control_arm.start_mrr == pytest.approx(rows["control"].start.sum(), rel=1e-12)
    assert control_arm.nrr == pytest.approx(
        rows["control"].end.sum() / rows["control"].start.sum(), rel=1e-9
    )
    grr = (rows["control"].start - rows["control"].contraction - rows["control"].churned).sum()
    assert control_arm.grr == pytest.approx(grr / rows["control"].start.sum(), rel=1e-9)
    # Expected: scipy.stats.chisquare of the arm sizes against equal weights.
    total = n_control + n_treatment
    assert result.srm.p_value == pytest.approx(
        scipy_stats.chisquare([n_control, n_treatment], [total / 2, total / 2]).pvalue, rel=1e-9
    )
    assert_json_safe(result)


def test_constant_start_reduces_to_welch_t_test():
    rng = np.random.default_rng(8)
    x_c, x_t = rng.gamma(2.0, 1.0, 80), rng.gamma(2.2, 1.3, 60)
    arms = {
        "control": arm_from_arrays(np.ones(80), x_c - 1, np.zeros(80), np.zeros(80)),
        "treatment": arm_from_arrays(np.ones(60), x_t - 1, np.zeros(60), np.zeros(60)),
    }
    (comparison,) = analyze(arms, control="control", robust=False).comparisons
    # Expected: with start ≡ 1 the NRR is a plain mean, so scipy's Welch t-test must agree exactly.
    welch = scipy_stats.ttest_ind(x_t, x_c, equal_var=False)
    assert comparison.p_value == pytest.approx(welch.pvalue, rel=1e-9)
    low, high = welch.confidence_interval(0.95)
    assert comparison.ci_abs == pytest.approx((low, high), rel=1e-9)


def test_holm_across_treatment_arms(make_rows):
    rng = np.random.default_rng(4)
    rows = {
        "control": make_rows(rng, 4000),
        "a": make_rows(rng, 4000, lift=0.02),
        "b": make_rows(rng, 4000, lift=0.005),
        "c": make_rows(rng, 4000),
    }
    result = analyze(arms_of(rows, sums_only=True), control="control")
    raw = [c.p_value for c in result.comparisons]
    # Expected: statsmodels multipletests(method="holm") on the raw p-values.
    expected = multipletests(raw, method="holm")[1]
    assert [c.p_value_adjusted for c in result.comparisons] == pytest.approx(
        list(expected), rel=1e-12
    )
    assert [c.variant for c in result.comparisons] == ["a", "b", "c"]


def test_known_effect_is_found(make_rows):
    rng = np.random.default_rng(2024)
    rows = {"control": make_rows(rng, 20_000), "treatment": make_rows(rng, 20_000, lift=0.03)}
    result = analyze(arms_of(rows), control="control", mde=0.02)
    (comparison,) = result.comparisons
    assert comparison.verdict == "win"
    low, high = comparison.ci_abs
    # The simulated truth: the lift adds exactly 3 NRR points to the population ratio.
    assert low < 0.03 < high
    assert "raised NRR" in summary_sentence(comparison, result.alpha)


def test_confidence_interval_coverage_under_the_null(make_rows):
    rng = np.random.default_rng(77)
    covered = rejected = 0
    replications = 300
    for _ in range(replications):
        # both arms from the same process: the true NRR difference is 0
        rows = {"control": make_rows(rng, 1000), "treatment": make_rows(rng, 1000)}
        (comparison,) = analyze(arms_of(rows, sums_only=True), control="control").comparisons
        low, high = comparison.ci_abs
        covered += low <= 0.0 <= high
        rejected += comparison.p_value < 0.05
    # Expected: a 95 % interval covers the true zero difference in about 95 % of replications
    # (binomial sd at n=300 is 1.3 %; heavy tails make the delta method a little liberal).
    assert 0.91 <= covered / replications <= 0.98
    assert rejected == replications - covered


# --- verdict rule -----------------------------------------------------------------------------


def test_verdict_win_and_loss(make_rows):
    rng = np.random.default_rng(1)
    rows = {
        "control": make_rows(rng, 5000),
        "up": make_rows(rng, 5000, lift=0.15),
        "down": make_rows(rng, 5000, lift=-0.15),
    }
    result = analyze(arms_of(rows), control="control", variants=["control", "up", "down"])
    verdicts = {c.variant: c.verdict for c in result.comparisons}
    assert verdicts == {"up": "win", "down": "loss"}
    down = result.comparisons[1]
    assert down.uplift_abs < 0 and down.ci_abs[1] < 0
    assert summary_sentence(down, result.alpha).startswith("Down lowered NRR by ")


def test_verdict_srm_overrides_win(make_rows):
    rng = np.random.default_rng(2)
    rows = {"control": make_rows(rng, 5000), "treatment": make_rows(rng, 4400, lift=0.15)}
    result = analyze(arms_of(rows), control="control", weights={"control": 1, "treatment": 1})
    (comparison,) = result.comparisons
    assert result.srm.flag
    assert comparison.p_value_adjusted < 1e-6  # would have been a clear win
    assert comparison.verdict == "srm"
    assert any("sample ratio mismatch" in w for w in result.warnings)
    assert summary_sentence(comparison, result.alpha).startswith("Sample ratio mismatch")


def test_planned_unequal_weights_do_not_trip_srm(make_rows):
    rng = np.random.default_rng(3)
    rows = {"control": make_rows(rng, 6000), "treatment": make_rows(rng, 3000, lift=0.15)}
    result = analyze(arms_of(rows), control="control", weights={"control": 2, "treatment": 1})
    assert not result.srm.flag
    assert result.srm.expected_weights == pytest.approx({"control": 2 / 3, "treatment": 1 / 3})
    assert result.comparisons[0].verdict == "win"


def test_verdict_underpowered_and_inconclusive(make_rows):
    # An exact copy of the control: uplift 0, p = 1, so only the achieved power decides.
    for n, verdict in ((40, "underpowered"), (30_000, "inconclusive")):
        rows = make_rows(5, n)
        result = analyze(arms_of({"control": rows, "treatment": rows}), control="control")
        (comparison,) = result.comparisons
        assert comparison.uplift_abs == 0.0 and comparison.p_value == pytest.approx(1.0)
        assert (comparison.power_achieved < 0.8) == (verdict == "underpowered")
        assert comparison.verdict == verdict
        assert "no detectable change" in summary_sentence(comparison, result.alpha)


# --- degenerate data --------------------------------------------------------------------------


def test_treatment_with_one_account(make_rows):
    rows = {"control": make_rows(6, 200), "treatment": make_rows(7, 1)}
    # planned 200:1 so that the tiny arm is not also a sample ratio mismatch
    result = analyze(arms_of(rows), control="control", weights={"control": 200, "treatment": 1})
    (comparison,) = result.comparisons
    assert comparison.uplift_abs is not None
    assert (
        comparison.ci_abs == (None, None)
        and comparison.p_value is None
        and comparison.p_value_adjusted is None
    )
    assert comparison.power_achieved is None
    # Issue 13 item 9: one account is a verdict that says so, not "inconclusive".
    assert comparison.verdict == "underpowered"
    assert any("'treatment' has a single account" in w for w in comparison.warnings)
    assert any("'treatment' has a single account" in w for w in result.warnings)
    assert "could not be computed" in summary_sentence(comparison, result.alpha)
    assert_json_safe(result)


def test_control_with_one_account(make_rows):
    rows = {"control": make_rows(6, 1), "treatment": make_rows(7, 200)}
    (comparison,) = analyze(arms_of(rows), control="control").comparisons
    assert comparison.sigma_lin is None and comparison.required_n_per_arm is None
    assert comparison.power_achieved is None and comparison.p_value is None
    assert any("sigma_lin" in w and "fewer than 2 accounts" in w for w in comparison.warnings)


def test_zero_variance_in_both_arms(make_rows):
    # Nobody expanded, contracted or churned: every account's NRR is exactly 1.
    rows = {
        v: make_rows(seed, 500, churn_rate=0, contraction_rate=0, expansion_rate=0)
        for v, seed in (("control", 1), ("treatment", 2))
    }
    result = analyze(arms_of(rows), control="control")
    (comparison,) = result.comparisons
    assert comparison.uplift_abs == pytest.approx(0.0, abs=1e-15)
    assert comparison.p_value is None and comparison.ci_abs == (None, None)
    assert comparison.sigma_lin == 0.0 and comparison.required_n_per_arm is None
    assert any("zero estimated variance" in w for w in comparison.warnings)
    assert any("sigma_lin = 0" in w for w in comparison.warnings)
    assert sum("zero variance" in w for w in result.warnings) == 2
    assert_json_safe(result)


def test_zero_variance_in_one_arm_uses_the_other(make_rows):
    control = make_rows(1, 300)
    flat = make_rows(2, 50, churn_rate=0, contraction_rate=0, expansion_rate=0)
    result = analyze(arms_of({"control": control, "treatment": flat}), control="control")
    (comparison,) = result.comparisons
    x, y = control.end, control.start
    gradient = np.array([1 / y.mean(), -x.mean() / y.mean() ** 2])
    se = math.sqrt(gradient @ np.cov(np.vstack([x, y])) @ gradient / x.size)
    # Expected: only the control contributes variance, so Welch's df is n_C - 1 = 299
    # (scipy.stats.t).
    half_width = scipy_stats.t.ppf(0.975, 299) * se
    assert comparison.ci_abs == pytest.approx(
        (comparison.uplift_abs - half_width, comparison.uplift_abs + half_width)
    )
    assert comparison.p_value == pytest.approx(
        2 * scipy_stats.t.sf(abs(comparison.uplift_abs) / se, 299)
    )


def test_all_churned_arms(make_rows):
    def churn_all(rows):
        return type(rows)(rows.start, 0 * rows.start, 0 * rows.start, rows.start)

    treatment_churned = analyze(
        arms_of({"control": make_rows(1, 300), "treatment": churn_all(make_rows(2, 300))}),
        control="control",
    )
    (comparison,) = treatment_churned.comparisons
    assert treatment_churned.arms[1].nrr == 0.0 and treatment_churned.arms[1].end_mrr == 0.0
    assert comparison.uplift_rel == pytest.approx(-1.0)
    assert comparison.verdict == "loss"
    assert any("'treatment' ended with no revenue" in w for w in treatment_churned.warnings)

    control_churned = analyze(
        arms_of({"control": churn_all(make_rows(1, 300)), "treatment": make_rows(2, 300)}),
        control="control",
    )
    (comparison,) = control_churned.comparisons
    assert comparison.uplift_abs > 0
    assert comparison.uplift_rel is None and comparison.ci_rel == (None, None)
    assert any("control NRR is 0" in w for w in comparison.warnings)
    assert comparison.sigma_lin == 0.0
    assert_json_safe(control_churned)


def test_planned_variant_without_rows(make_rows):
    result = analyze(
        arms_of({"control": make_rows(1, 400)}),
        control="control",
        variants=["control", "treatment"],
    )
    assert [arm.variant for arm in result.arms] == ["control", "treatment"]
    assert (
        result.arms[1].accounts == 0 and result.arms[1].nrr is None and result.arms[1].grr is None
    )
    (comparison,) = result.comparisons
    assert (
        comparison.uplift_abs is None
        and comparison.p_value is None
        and comparison.power_achieved is None
    )
    assert any("'treatment' has no accounts" in w for w in comparison.warnings)
    assert any("'treatment' has no accounts" in w for w in result.warnings)
    assert result.srm.flag and result.srm.observed == {"control": 400, "treatment": 0}
    assert comparison.verdict == "srm"
    assert "could not be computed" in summary_sentence(comparison, result.alpha)
    assert_json_safe(result)


def test_single_arm(make_rows):
    result = analyze(arms_of({"control": make_rows(1, 100)}), control="control")
    assert result.comparisons == ()
    assert result.srm.p_value is None and not result.srm.flag
    assert any("nothing to compare" in w for w in result.warnings)
    assert_json_safe(result)


def test_no_accounts_at_all():
    result = analyze({}, control="control", variants=["control", "treatment"])
    (comparison,) = result.comparisons
    # No accounts is below any required size (issue 13 item 9).
    assert comparison.uplift_abs is None and comparison.verdict == "underpowered"
    assert result.srm.p_value is None
    assert_json_safe(result)


def test_observed_variant_outside_the_plan_flags_srm(make_rows):
    rows = {"control": make_rows(1, 300), "treatment": make_rows(2, 300), "stray": make_rows(3, 5)}
    result = analyze(arms_of(rows), control="control", variants=["control", "treatment"])
    assert [arm.variant for arm in result.arms] == ["control", "treatment", "stray"]
    assert result.srm.flag and result.srm.p_value is None
    assert all(c.verdict == "srm" for c in result.comparisons)
    assert any("'stray'" in w and "plan does not include" in w for w in result.warnings)
    assert_json_safe(result)


def test_sums_only_arms_skip_mann_whitney(make_rows):
    rows = {"control": make_rows(1, 300), "treatment": make_rows(2, 300)}
    (comparison,) = analyze(arms_of(rows, sums_only=True), control="control").comparisons
    assert comparison.p_value_mwu is None
    assert any("p_value_mwu not computed" in w for w in comparison.warnings)
    assert comparison.p_value is not None


# --- argument validation ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_arms(make_rows):
    rng = np.random.default_rng(0)
    return arms_of({"control": make_rows(rng, 50), "treatment": make_rows(rng, 50)})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, r"alpha must be in \(0, 0.5\]; got 0.0"),
        ({"alpha": 0.7}, "alpha.*0.7"),
        ({"alpha": float("nan")}, "alpha.*nan"),
        ({"power": 0.4}, r"power must be in \[0.5, 0.99\]; got 0.4"),
        ({"power": 0.995}, "power.*0.995"),
        ({"mde": 0}, "mde.*0"),
        ({"mde": -0.02}, "mde.*-0.02"),
        ({"control": "baseline"}, "control 'baseline' is not one of the variants"),
        ({"weights": {"control": 1, "treatmnt": 1}}, r"unknown variant\(s\) \['treatmnt'\]"),
        ({"weights": {"control": 1}}, r"no weight for variant\(s\) \['treatment'\]"),
        ({"weights": {"control": 1, "treatment": 0}}, r"weights\['treatment'\].*0"),
        ({"weights": {"control": 1, "treatment": -2}}, "-2"),
        ({"variants": ["control", "treatment", "control"]}, "unique.*control"),
        ({"variants": ["treatment"]}, "control 'control' is not one of the variants"),
        ({"variants": "control"}, "not the string 'control'"),
    ],
)
def test_bad_arguments_raise_naming_the_value(two_arms, kwargs, message):
    arguments = {"control": "control"}
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        analyze(two_arms, **arguments)


def test_arms_must_be_arm_data():
    with pytest.raises(TypeError, match="arms\\['control'\\] must be an ArmData"):
        analyze({"control": {"start": [1.0]}}, control="control")


# --- report -----------------------------------------------------------------------------------


def test_report_round_trips_through_json(make_rows):
    rows = {"control": make_rows(1, 300), "a": make_rows(2, 280, lift=0.05), "b": make_rows(3, 1)}
    result = analyze(
        arms_of(rows),
        control="control",
        alpha=0.1,
        power=0.9,
        mde=0.03,
        weights={"control": 2, "a": 1, "b": 1},
        variants=["control", "a", "b"],
    )
    report = assert_json_safe(result)
    assert ExperimentResult.from_dict(report) == result
    assert report["alpha"] == 0.1 and report["control"] == "control"
    assert isinstance(report["comparisons"][0]["required_n_per_arm"], int)
    assert all(
        type(v) in (float, type(None))
        for v in report["comparisons"][0].values()
        if not isinstance(v, (str, list, int, dict))
    )


def test_from_dict_rejects_malformed_snapshots(make_rows):
    report = analyze(
        arms_of({"control": make_rows(1, 30), "t": make_rows(2, 30)}), control="control"
    ).to_dict()
    del report["srm"]["flag"]
    with pytest.raises(ValueError, match="srm is missing the key 'flag'"):
        ExperimentResult.from_dict(report)
    report = analyze(
        arms_of({"control": make_rows(1, 30), "t": make_rows(2, 30)}), control="control"
    ).to_dict()
    report["comparisons"][0]["verdict"] = "maybe"
    with pytest.raises(ValueError, match="'maybe'"):
        ExperimentResult.from_dict(report)


def test_exact_report_for_a_small_case():
    control = arm_from_arrays(
        [100.0, 200.0, 300.0], [10.0, 0.0, 30.0], [0.0, 20.0, 0.0], [0.0, 0.0, 0.0]
    )
    treatment = arm_from_arrays(
        [100.0, 100.0, 200.0], [20.0, 10.0, 40.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]
    )
    report = analyze({"control": control, "treatment": treatment}, control="control").to_dict()
    # Expected: DESIGN §4 by hand. Control NRR 620/600, treatment 470/400.
    assert report["arms"][0] == {
        "variant": "control",
        "accounts": 3,
        "start_mrr": 600.0,
        "expansion_mrr": 40.0,
        "contraction_mrr": 20.0,
        "churned_mrr": 0.0,
        "end_mrr": 620.0,
        "nrr": 620 / 600,
        "grr": 580 / 600,
    }
    comparison = report["comparisons"][0]
    assert comparison["uplift_abs"] == pytest.approx(470 / 400 - 620 / 600)
    assert comparison["uplift_rel"] == pytest.approx((470 / 400) / (620 / 600) - 1)
    assert report["srm"] == {
        "p_value": 1.0,
        "observed": {"control": 3, "treatment": 3},
        "expected_weights": {"control": 0.5, "treatment": 0.5},
        "flag": False,
    }


# --- summary sentence -------------------------------------------------------------------------


def _comparison(**changes):
    base = Comparison(
        "treatment",
        0.021,
        (0.004, 0.038),
        0.02,
        (0.004, 0.036),
        0.014,
        0.014,
        0.02,
        0.3,
        3500,
        0.6,
        "win",
    )
    return Comparison(**{**base.__dict__, **changes})


def test_summary_sentences():
    assert (
        summary_sentence(_comparison(), 0.05)
        == "Treatment raised NRR by 2.1 pts (95% CI 0.4 to 3.8), p = 0.014."
    )
    assert (
        summary_sentence(
            _comparison(uplift_abs=-0.021, ci_abs=(-0.038, -0.004), verdict="loss"), 0.05
        )
        == "Treatment lowered NRR by 2.1 pts (95% CI -3.8 to -0.4), p = 0.014."
    )
    assert (
        summary_sentence(
            _comparison(p_value=0.01, p_value_adjusted=0.03, ci_abs=(0.001, 0.041)), 0.1
        )
        == "Treatment raised NRR by 2.1 pts (90% CI 0.1 to 4.1), adjusted p = 0.03."
    )
    assert (
        summary_sentence(
            _comparison(
                uplift_abs=-0.004,
                ci_abs=(-0.02, 0.012),
                p_value=0.6,
                p_value_adjusted=0.6,
                verdict="inconclusive",
            ),
            0.05,
        )
        == "Treatment showed no detectable change in NRR: -0.4 pts (95% CI -2.0 to 1.2), p = 0.6."
    )
    assert (
        summary_sentence(_comparison(p_value=1e-9, p_value_adjusted=1e-9), 0.05)
        == "Treatment raised NRR by 2.1 pts (95% CI 0.4 to 3.8), p < 0.001."
    )
    assert (
        summary_sentence(
            _comparison(
                uplift_abs=None,
                ci_abs=(None, None),
                p_value=None,
                p_value_adjusted=None,
                verdict="inconclusive",
                warnings=(
                    "p_value_mwu not computed: ...",
                    "uplift not computed: 'treatment' has no accounts",
                ),
            ),
            0.05,
        )
        # issue 13 item 11: the reason is quoted once, not "could not be computed: … not computed"
        == "The NRR uplift of Treatment could not be computed: 'treatment' has no accounts."
    )
    with pytest.raises(ValueError, match="alpha"):
        summary_sentence(_comparison(), 5)
    # a change that rounds to zero reads as +0.0, never -0.0
    assert (
        summary_sentence(
            _comparison(
                uplift_abs=-0.00001,
                ci_abs=(-0.0004, 0.0003),
                p_value=0.9,
                p_value_adjusted=0.9,
                verdict="inconclusive",
            ),
            0.05,
        )
        == "Treatment showed no detectable change in NRR: +0.0 pts (95% CI 0.0 to 0.0), p = 0.9."
    )
