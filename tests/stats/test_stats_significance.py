"""Multiplicity adjustment, SRM and Mann-Whitney against independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from stats import bh_adjust, holm_adjust, mann_whitney_p, srm_test


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
@pytest.mark.parametrize(("ours", "method"), [(holm_adjust, "holm"), (bh_adjust, "fdr_bh")])
def test_adjustment_matches_statsmodels(seed, ours, method):
    rng = np.random.default_rng(seed)
    pvalues = rng.uniform(0, 0.2, size=7) ** 2
    # Expected: statsmodels.stats.multitest.multipletests with the same method name.
    expected = multipletests(pvalues, method=method)[1]
    np.testing.assert_allclose(ours(list(pvalues)), expected, rtol=1e-12)


@pytest.mark.parametrize(("ours", "method"), [(holm_adjust, "holm"), (bh_adjust, "fdr_bh")])
def test_none_entries_pass_through_and_leave_the_family(ours, method):
    pvalues = [0.01, None, 0.04, None, 0.03]
    # Expected: multipletests on the three real p-values only, put back in place.
    family = multipletests([0.01, 0.04, 0.03], method=method)[1]
    adjusted = ours(pvalues)
    assert adjusted[1] is None and adjusted[3] is None
    np.testing.assert_allclose([adjusted[0], adjusted[2], adjusted[4]], family, rtol=1e-12)


def test_adjustment_edge_cases():
    assert holm_adjust([]) == []
    assert holm_adjust([None, None]) == [None, None]
    assert holm_adjust([0.2]) == [0.2]
    assert all(type(p) is float for p in holm_adjust([0.2, 0.01]))
    with pytest.raises(ValueError, match=r"1.5"):
        holm_adjust([0.1, 1.5])
    with pytest.raises(ValueError, match=r"-0.1"):
        bh_adjust([-0.1])


@pytest.mark.parametrize(
    ("observed", "weights"),
    [
        ({"control": 5000, "treatment": 5200}, None),
        ({"control": 5000, "treatment": 4700}, {"control": 1, "treatment": 1}),
        ({"control": 2000, "a": 1050, "b": 980}, {"control": 2, "a": 1, "b": 1}),
        ({"control": 300, "a": 310, "b": 290, "c": 350}, None),
    ],
)
def test_srm_matches_scipy_chisquare(observed, weights):
    total = sum(observed.values())
    raw = weights or dict.fromkeys(observed, 1.0)
    expected_counts = [total * raw[v] / sum(raw.values()) for v in observed]
    # Expected: scipy.stats.chisquare of the counts against total x normalised weight.
    expected = scipy_stats.chisquare(list(observed.values()), expected_counts).pvalue
    result = srm_test(observed, weights)
    assert result.p_value == pytest.approx(expected, rel=1e-12)
    assert result.flag == (expected < 0.001)
    assert sum(result.expected_weights.values()) == pytest.approx(1.0)
    assert result.observed == observed


def test_srm_flags_below_threshold_only():
    balanced = srm_test({"control": 1000, "treatment": 1000})
    assert balanced.p_value == 1.0 and not balanced.flag and balanced.warnings == ()
    broken = srm_test({"control": 1000, "treatment": 800})
    assert broken.flag and "sample ratio mismatch" in broken.warnings[0]
    assert not srm_test({"control": 1000, "treatment": 900}, threshold=1e-6).flag


def test_srm_planned_variant_without_accounts():
    result = srm_test({"control": 500}, {"control": 1, "treatment": 1})
    assert result.observed == {"control": 500, "treatment": 0}
    # Expected: scipy.stats.chisquare([500, 0], [250, 250]).
    assert result.p_value == pytest.approx(
        scipy_stats.chisquare([500, 0], [250, 250]).pvalue, rel=1e-9
    )
    assert result.flag


def test_srm_unplanned_variant_is_flagged_without_p_value():
    result = srm_test({"control": 500, "treatment": 480, "typo": 3}, {"control": 1, "treatment": 1})
    assert result.flag and result.p_value is None
    assert "'typo'" in result.warnings[0]
    assert list(result.observed) == ["control", "treatment", "typo"]
    assert result.expected_weights == {"control": 0.5, "treatment": 0.5}


def test_srm_cannot_run_without_two_variants_or_accounts():
    single = srm_test({"control": 500})
    assert single.p_value is None and not single.flag and "single variant" in single.warnings[0]
    nothing = srm_test({"control": 0, "treatment": 0})
    assert nothing.p_value is None and not nothing.flag and "no accounts" in nothing.warnings[0]


def test_srm_small_counts_warn_about_approximation():
    result = srm_test({"control": 3, "treatment": 4})
    assert result.p_value is not None
    assert any("approximate" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: srm_test({"control": -1, "treatment": 3}), "observed\\['control'\\].*-1"),
        (lambda: srm_test({"control": 1.5, "treatment": 3}), "1.5"),
        (
            lambda: srm_test({"control": 1, "treatment": 3}, {"control": 0, "treatment": 1}),
            "weights\\['control'\\].*0",
        ),
        (lambda: srm_test({"control": 1, "treatment": 3}, threshold=2), "threshold.*2"),
    ],
)
def test_srm_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize(("n_a", "n_b"), [(6, 5), (40, 25), (3000, 2500)])
def test_mann_whitney_matches_scipy(seed, n_a, n_b):
    rng = np.random.default_rng(seed)
    a = rng.lognormal(0, 0.3, n_a)
    b = np.concatenate(
        [rng.lognormal(0.1, 0.3, n_b - n_b // 5), np.zeros(n_b // 5)]
    )  # ties at full churn
    # Expected: scipy.stats.mannwhitneyu, two-sided, default method.
    expected = scipy_stats.mannwhitneyu(a, b, alternative="two-sided").pvalue
    assert mann_whitney_p(a, b) == pytest.approx(expected, rel=1e-12)


def test_mann_whitney_matches_normal_approximation_by_hand():
    rng = np.random.default_rng(9)
    a, b = rng.normal(0.1, 1, 300), rng.normal(0, 1, 250)
    ranks = scipy_stats.rankdata(np.concatenate([a, b]))
    u = ranks[: a.size].sum() - a.size * (a.size + 1) / 2
    mean = a.size * b.size / 2
    sd = np.sqrt(a.size * b.size * (a.size + b.size + 1) / 12)
    # Expected: Mann & Whitney's normal approximation with continuity correction (no ties), by hand.
    expected = 2 * scipy_stats.norm.sf((abs(u - mean) - 0.5) / sd)
    assert mann_whitney_p(a, b) == pytest.approx(expected, rel=1e-9)


def test_mann_whitney_degenerate():
    assert mann_whitney_p([], [1.0, 2.0]) is None
    assert mann_whitney_p([1.0], []) is None
    assert mann_whitney_p(np.ones(20), np.ones(30)) == 1.0
