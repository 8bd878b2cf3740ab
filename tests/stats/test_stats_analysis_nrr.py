"""stats.analyze wires the NRR-native figures of DESIGN §4b into every comparison: each key
always present, null when its inputs are missing, and the numbers equal an independent
numpy/scipy computation on generated accounts (the figure functions have their own tests)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from stats import ArmData, ExperimentResult, analyze, arm_from_arrays
from stats.analysis import SMALL_SAMPLE_ACCOUNTS
from stats.levers import GuardrailSpec
from tests.experiments.nrr_figures_data import accounts

NEW_COMPARISON_KEYS = {
    "levers",
    "logo_churn",
    "expansion_incidence",
    "guardrails",
    "cuped",
    "velocity",
    "permutation",
    "sequential",
}
NEW_TOP_KEYS = {
    "guardrails_plan",
    "ttv_target_days",
    "velocity_curves",
    "velocity_cohorts",
    "required_n",
    "alpha_sizing",
}


def arms_of(columns, *, pre=True, days=True, observed=True) -> dict[str, ArmData]:
    arms = {}
    for variant in ("control", "treatment"):
        m = columns["variant"] == variant
        arms[variant] = arm_from_arrays(
            columns["start"][m] / 100,
            columns["expansion"][m] / 100,
            columns["contraction"][m] / 100,
            columns["churned"][m] / 100,
            pre_start=columns["pre_start"][m] / 100 if pre and "pre_start" in columns else None,
            pre_end=columns["pre_end"][m] / 100 if pre and "pre_end" in columns else None,
            days_to_value=columns["days_to_value"][m] if days else None,
            days_observed=(
                columns["days_observed"][m] if observed and "days_observed" in columns else None
            ),
        )
    return arms


@pytest.fixture(scope="module")
def columns():
    return accounts(4000, seed=21)


def welch_ratio_difference(x_t, y_t, x_c, y_c, alpha):
    """By hand: Σx/Σy per arm, delta-method variance var(x − R·y)/(n·ȳ²), Welch t."""
    out = {}
    parts = []
    for x, y in ((x_t, y_t), (x_c, y_c)):
        ratio = x.sum() / y.sum()
        var = np.var(x - ratio * y, ddof=1) / (len(x) * y.mean() ** 2)
        parts.append((ratio, var, len(x)))
    (r_t, v_t, n_t), (r_c, v_c, n_c) = parts
    diff, var = r_t - r_c, v_t + v_c
    df = var**2 / (v_t**2 / (n_t - 1) + v_c**2 / (n_c - 1))
    half = sps.t.ppf(1 - alpha / 2, df) * math.sqrt(var)
    out.update(
        control=r_c,
        treatment=r_t,
        uplift_abs=diff,
        ci_abs=[diff - half, diff + half],
        p_value=2 * sps.t.sf(abs(diff) / math.sqrt(var), df),
    )
    return out


def test_every_key_is_present_with_all_inputs(columns):
    result = analyze(
        arms_of(columns),
        control="control",
        guardrails=[GuardrailSpec("grr", 0.01), GuardrailSpec("logo_churn", 0.02)],
        ttv_target=10,
    )
    report = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert set(report) >= NEW_TOP_KEYS
    (comparison,) = report["comparisons"]
    assert set(comparison) >= NEW_COMPARISON_KEYS
    assert set(comparison["levers"]) == {"expansion", "contraction", "churn", "grr"}
    assert [g["metric"] for g in comparison["guardrails"]] == ["grr", "logo_churn"]
    assert all(g["status"] in ("pass", "fail", "inconclusive") for g in comparison["guardrails"])
    assert report["guardrails_plan"] == [
        {"metric": "grr", "margin": 0.01},
        {"metric": "logo_churn", "margin": 0.02},
    ]
    assert comparison["cuped"] is not None and comparison["velocity"] is not None
    assert comparison["velocity"]["target_days"] == 10
    assert set(report["velocity_curves"]) == {"control", "treatment"}
    assert [r["cohort"] for r in report["velocity_cohorts"]] == [
        "fast",
        "average",
        "slow",
        "not_reached",
    ]
    # 4,000 accounts: no small-sample permutation test
    assert comparison["permutation"] is None


def test_missing_inputs_give_null_keys_and_no_guardrails_give_an_empty_list(columns):
    result = analyze(
        arms_of(columns, pre=False, days=False, observed=False), control="control"
    ).to_dict()
    (comparison,) = result["comparisons"]
    assert set(comparison) >= NEW_COMPARISON_KEYS
    assert comparison["cuped"] is None  # no pre-period columns
    assert comparison["velocity"] is None  # no days_observed
    assert comparison["sequential"] is None  # not sequential
    assert comparison["guardrails"] == []
    assert result["guardrails_plan"] == []
    assert result["velocity_curves"] is None and result["velocity_cohorts"] is None
    assert result["ttv_target_days"] == 14
    # levers and incidences need only the four money columns
    assert comparison["levers"] is not None and comparison["logo_churn"] is not None


def test_sums_only_arms_keep_every_key_null():
    rng = np.random.default_rng(2)
    arms = {}
    for name in ("control", "treatment"):
        start = rng.lognormal(6, 1, 500)
        full = arm_from_arrays(start, 0.1 * start, 0 * start, 0 * start)
        arms[name] = ArmData(full.totals, full.sums)  # a warehouse's sums: no moments
    (comparison,) = analyze(arms, control="control").to_dict()["comparisons"]
    for key in ("levers", "logo_churn", "expansion_incidence", "cuped", "velocity"):
        assert comparison[key] is None, key
    assert comparison["guardrails"] == []


def test_velocity_needs_days_observed_not_just_days_to_value(columns):
    report = analyze(arms_of(columns, observed=False), control="control").to_dict()
    assert report["comparisons"][0]["velocity"] is None
    assert report["velocity_curves"] is None
    # the cohorts need only days_to_value per account
    assert report["velocity_cohorts"] is not None


def test_levers_and_logo_churn_equal_an_independent_computation(columns):
    alpha = 0.1
    report = analyze(arms_of(columns), control="control", alpha=alpha).to_dict()
    (comparison,) = report["comparisons"]
    t, c = columns["variant"] == "treatment", columns["variant"] == "control"
    cents = {k: columns[k].astype(float) / 100 for k in ("start", "expansion", "contraction",
                                                         "churned")}
    numerators = {
        "expansion": cents["expansion"],
        "contraction": cents["contraction"],
        "churn": cents["churned"],
        "grr": cents["start"] - cents["contraction"] - cents["churned"],
    }
    y = cents["start"]
    for lever, x in numerators.items():
        expected = welch_ratio_difference(x[t], y[t], x[c], y[c], alpha)
        got = comparison["levers"][lever]
        for key in ("control", "treatment", "uplift_abs", "p_value"):
            assert math.isclose(got[key], expected[key], rel_tol=1e-9, abs_tol=1e-12), (lever, key)
        np.testing.assert_allclose(got["ci_abs"], expected["ci_abs"], rtol=1e-9)
    # the identity of DESIGN §4c: NRR uplift = Δexpansion − Δcontraction − Δchurn
    levers = comparison["levers"]
    assert math.isclose(
        comparison["uplift_abs"],
        levers["expansion"]["uplift_abs"]
        - levers["contraction"]["uplift_abs"]
        - levers["churn"]["uplift_abs"],
        rel_tol=1e-9,
    )
    # logo churn: share with churned = start, unpooled Wald z (by hand with scipy's normal)
    lost = columns["churned"] == columns["start"]
    p_t, p_c = lost[t].mean(), lost[c].mean()
    se = math.sqrt(p_t * (1 - p_t) / t.sum() + p_c * (1 - p_c) / c.sum())
    churn = comparison["logo_churn"]
    assert math.isclose(churn["control"], p_c) and math.isclose(churn["treatment"], p_t)
    assert math.isclose(churn["diff"], p_t - p_c, rel_tol=1e-12)
    assert math.isclose(churn["p_value"], 2 * sps.norm.sf(abs(p_t - p_c) / se), rel_tol=1e-9)
    expanded = columns["expansion"] > 0
    incidence = comparison["expansion_incidence"]
    assert math.isclose(incidence["diff"], expanded[t].mean() - expanded[c].mean(), rel_tol=1e-12)


def test_velocity_counts_follow_the_rows(columns):
    report = analyze(arms_of(columns), control="control").to_dict()
    velocity = report["comparisons"][0]["velocity"]
    for variant in ("control", "treatment"):
        m = columns["variant"] == variant
        reached = ~np.isnan(columns["days_to_value"][m])
        assert velocity[variant]["reached"] == int(reached.sum())
        assert velocity[variant]["censored"] == int((~reached).sum())
    # every curve rises to the share reached, as a step list [[t, share]]
    curve = report["velocity_curves"]["treatment"]
    shares = [share for _, share in curve]
    assert shares == sorted(shares) and 0 < shares[-1] <= 1


def test_small_arms_get_a_reproducible_permutation_test():
    columns = accounts(2 * (SMALL_SAMPLE_ACCOUNTS - 40), seed=5)
    first = analyze(arms_of(columns), control="control").to_dict()["comparisons"][0]
    again = analyze(arms_of(columns), control="control").to_dict()["comparisons"][0]
    assert first["permutation"] is not None
    assert set(first["permutation"]) == {"p_value", "permutations", "seed"}
    assert first["permutation"] == again["permutation"]  # same seed, same p
    assert 0 < first["permutation"]["p_value"] <= 1


def test_from_dict_round_trips_and_old_snapshots_load(columns):
    result = analyze(
        arms_of(columns), control="control", guardrails=[GuardrailSpec("grr", 0.01)]
    )
    report = result.to_dict()
    assert ExperimentResult.from_dict(report).to_dict() == report
    old = json.loads(json.dumps(report))
    for key in ("guardrails_plan", "ttv_target_days", "velocity_curves", "velocity_cohorts"):
        del old[key]
    for comparison in old["comparisons"]:
        for key in NEW_COMPARISON_KEYS - {"sequential"}:
            del comparison[key]
    loaded = ExperimentResult.from_dict(old).to_dict()
    (comparison,) = loaded["comparisons"]
    assert comparison["levers"] is None and comparison["cuped"] is None
    assert comparison["guardrails"] == [] and comparison["permutation"] is None
    assert loaded["guardrails_plan"] == [] and loaded["velocity_curves"] is None
    assert loaded["ttv_target_days"] == 14
