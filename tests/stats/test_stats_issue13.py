"""Issue 13 items 4, 7, 8, 9: adjusted intervals, segments, Mann–Whitney, numerics.

Expected values by hand with numpy/scipy/statsmodels, never with stats/ itself.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from stats import SufficientStats, analyze, arm_from_arrays, sigma_lin, summary_sentence
from stats.significance import mann_whitney, segment_adjust


def arm(end, start):
    end, start = np.asarray(end, float), np.asarray(start, float)
    return arm_from_arrays(start, np.maximum(end - start, 0), np.maximum(start - end, 0),
                           np.zeros(start.size))


def welch_by_hand(xt, yt, xc, yc):
    def one(x, y):
        r = x.sum() / y.sum()
        return r, np.var(x - r * y, ddof=1) / (x.size * y.mean() ** 2)

    (rt, vt), (rc, vc) = one(xt, yt), one(xc, yc)
    df = (vt + vc) ** 2 / (vt**2 / (xt.size - 1) + vc**2 / (xc.size - 1))
    return rt - rc, math.sqrt(vt + vc), df


# --- item 4: intervals consistent with the decision rule -----------------------------------


def test_k_arms_get_a_bonferroni_interval_beside_the_raw_one():
    rng = np.random.default_rng(8)
    rows = {}
    for name, lift in (("control", 0.0), ("a", 0.031), ("b", 0.0), ("c", 0.01)):
        start = rng.lognormal(6, 0.8, 4000)
        rows[name] = (start * (1 + lift + rng.normal(0, 0.5, 4000).clip(-1, None)), start)
    arms = {name: arm(*r) for name, r in rows.items()}
    result = analyze(arms, control="control", robust=False)
    for comparison in result.comparisons:
        uplift, se, df = welch_by_hand(*rows[comparison.variant], *rows["control"])
        raw = scipy_stats.t.ppf(0.975, df)
        adjusted = scipy_stats.t.ppf(1 - 0.05 / 6, df)  # α/k two-sided, k = 3
        assert comparison.ci_abs == pytest.approx((uplift - raw * se, uplift + raw * se))
        assert comparison.ci_abs_adjusted == pytest.approx(
            (uplift - adjusted * se, uplift + adjusted * se))
        assert comparison.ci_method == "bonferroni"
        low, high = comparison.ci_abs_adjusted
        # Bonferroni is Holm's conservative side: excluding 0 implies a Holm win/loss.
        if not low <= 0 <= high:
            assert comparison.verdict in ("win", "loss")
        report = comparison.to_dict()
        assert report["ci_abs_adjusted"] == list(comparison.ci_abs_adjusted)
        assert report["ci_method"] == "bonferroni"
        sentence = summary_sentence(comparison, 0.05)
        if comparison.verdict not in ("win", "loss"):
            assert "Bonferroni-adjusted CI" in sentence


def test_one_treatment_interval_is_unadjusted():
    rng = np.random.default_rng(1)
    start = rng.lognormal(6, 0.8, (2, 3000))
    arms = {"control": arm(start[0] * 1.01, start[0]), "t": arm(start[1] * 1.02, start[1])}
    (c,) = analyze(arms, control="control", robust=False).comparisons
    assert c.ci_method == "unadjusted" and c.ci_abs_adjusted == c.ci_abs


# --- item 7: BH across segments -------------------------------------------------------------


def test_segments_are_adjusted_by_benjamini_hochberg():
    pvalues = {"smb": 0.001, "mid": 0.02, "ent": None, "edu": 0.04, "gov": 0.3}
    present = [k for k, v in pvalues.items() if v is not None]
    expected = multipletests([pvalues[k] for k in present], method="fdr_bh")[1]
    adjusted = segment_adjust(pvalues)
    assert adjusted["ent"] is None
    assert [adjusted[k] for k in present] == pytest.approx(expected)


# --- item 8: Mann–Whitney direction and size ------------------------------------------------


def test_mann_whitney_has_a_direction_and_the_probability_of_superiority():
    rng = np.random.default_rng(4)
    a, b = rng.normal(1.05, 0.1, 300).round(2), rng.normal(1.0, 0.1, 200).round(2)
    result = mann_whitney(a, b)
    # P(A > B) + ½ P(A = B) over all pairs, by broadcasting
    pairs = a[:, None] - b[None, :]
    expected = np.mean(pairs > 0) + 0.5 * np.mean(pairs == 0)
    assert result.prob_superiority == pytest.approx(expected, rel=1e-12)
    assert result.p_value == pytest.approx(
        scipy_stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert result.direction == "higher"
    assert mann_whitney(b, a).direction == "lower"


def test_disagreement_with_the_t_test_is_explained():
    # Most treatment accounts grow 5 %, but the biggest accounts churn: NRR falls.
    rng = np.random.default_rng(6)
    start_c = rng.lognormal(5, 1, 3000)
    start_t = rng.lognormal(5, 1, 3000)
    end_c = start_c * rng.normal(1.0, 0.05, 3000)
    end_t = start_t * rng.normal(1.05, 0.05, 3000)
    end_t[start_t > np.quantile(start_t, 0.97)] = 0.0
    arms = {"control": arm(end_c, start_c), "t": arm(end_t, start_t)}
    (c,) = analyze(arms, control="control", robust=False).comparisons
    assert c.uplift_abs < 0 and c.verdict == "loss"
    assert c.mann_whitney["direction"] == "treatment"
    assert c.mann_whitney["prob_superiority"] > 0.5
    assert "largest accounts" in c.mann_whitney["note"]
    assert any(w.startswith("Mann-Whitney:") for w in c.warnings)


# --- item 9: numerics and degenerate data ---------------------------------------------------


def test_a_tiny_real_spread_is_not_snapped_to_zero():
    rng = np.random.default_rng(2)
    start = rng.uniform(1000, 2000, 5000)
    end = start * (1.05 + 1e-6 * rng.standard_normal(5000))
    sums = SufficientStats.from_arrays(end, start)
    ratio = end.sum() / start.sum()
    expected = np.std(end - ratio * start, ddof=1) / start.mean()  # two-pass numpy
    assert sigma_lin(sums) == pytest.approx(expected, rel=1e-3)
    # Raw sums alone (the old path) lose it: this is the defect.
    raw = SufficientStats(sums.n, sums.sum_x, sums.sum_y, sums.sum_xx, sums.sum_yy, sums.sum_xy)
    assert sigma_lin(raw) == 0.0
    # Chan's parallel pooling keeps it too, and so do centred sums from SQL.
    pooled = SufficientStats.from_arrays(end[:1234], start[:1234]) + SufficientStats.from_arrays(
        end[1234:], start[1234:])
    assert sigma_lin(pooled) == pytest.approx(expected, rel=1e-3)
    dx, dy = end - end.mean(), start - start.mean()
    centred = SufficientStats.from_comoments(5000, end.mean(), start.mean(), dx @ dx, dy @ dy,
                                             dx @ dy)
    assert sigma_lin(centred) == pytest.approx(expected, rel=1e-3)
    arms = {"control": arm(end, start), "t": arm(end * 1.0000001, start)}
    result = analyze(arms, control="control", robust=False)
    assert not any("same end/start ratio" in w for w in result.warnings)


def test_both_arms_without_variance_but_different_nrr_get_a_verdict_that_says_so():
    start = np.array([100.0, 200.0, 300.0, 50.0])
    arms = {"control": arm(start * 1.0, start), "t": arm(start * 1.1, start)}
    (c,) = analyze(arms, control="control", sigma=0.2).comparisons
    assert c.verdict == "win" and c.p_value == 0.0
    assert c.ci_abs == pytest.approx((0.1, 0.1))
    sentence = summary_sentence(c, 0.05)
    assert "raised NRR by 10.0 pts" in sentence and "the gap is exact" in sentence


def test_an_arm_with_one_account_is_underpowered_and_the_sentence_says_why_once():
    rng = np.random.default_rng(3)
    start = rng.lognormal(6, 1, 300)
    arms = {"control": arm(start * 1.02, start), "t": arm([120.0], [100.0])}
    (c,) = analyze(arms, control="control", weights={"control": 300, "t": 1}).comparisons
    assert c.verdict == "underpowered"
    sentence = summary_sentence(c, 0.05)
    assert "'t' has a single account" in sentence
    assert sentence.count("not computed") + sentence.count("could not be computed") == 1
