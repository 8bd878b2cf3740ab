"""DESIGN §4 defines sample size, power and the p-value adjustments by pingouin's
functions. NRR Lab computes them without importing pingouin (its import alone costs
more than the CLI's budget); these tests hold the figures to pingouin's own, and to
statsmodels as a second, independent implementation."""

from __future__ import annotations

import math

import numpy as np
import pingouin
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower

import stats
from stats.power import two_sample_power


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
@pytest.mark.parametrize("power", [0.5, 0.8, 0.9, 0.99])
def test_required_sample_size_is_ceil_of_pingouin_power_ttest(alpha, power):
    # 30 effect sizes per (alpha, power), 360 in all: each pingouin call solves for n.
    for d in np.geomspace(0.005, 2.0, 30):
        expected = pingouin.power_ttest(d=d, power=power, alpha=alpha, contrast="two-samples")
        got = stats.required_sample_size(float(d), 1.0, alpha=alpha, power=power)
        if math.isnan(expected):  # pingouin's bracket starts at n = 2
            assert got == 2
        else:
            assert got == max(2, math.ceil(expected)), (d, alpha, power)


@pytest.mark.parametrize("ratio", [0.5, 1.5, 2.0, 3.0])
def test_unequal_allocation_matches_statsmodels(ratio):
    # statsmodels: nobs1 is the first group, ratio = nobs2 / nobs1.
    for d in (0.02, 0.05, 0.1, 0.3):
        n = TTestIndPower().solve_power(effect_size=d, alpha=0.05, power=0.8, ratio=ratio)
        assert stats.required_sample_size(d, 1.0, ratio=ratio) == max(2, math.ceil(n - 1e-9)), (
            d,
            ratio,
        )


def test_power_equals_pingouin_power_ttest2n_and_statsmodels():
    rng = np.random.default_rng(11)
    for _ in range(300):
        d = float(rng.uniform(0.005, 1.5))
        n_c, n_t = (int(v) for v in rng.integers(2, 200_000, 2))
        alpha = float(rng.choice([0.01, 0.05, 0.1]))
        ours = two_sample_power(d, n_c, n_t, alpha=alpha)
        theirs = pingouin.power_ttest2n(n_c, n_t, d=d, alpha=alpha)
        if math.isfinite(theirs):
            assert ours == pytest.approx(theirs, abs=1e-10)
        models = TTestIndPower().power(effect_size=d, nobs1=n_c, alpha=alpha, ratio=n_t / n_c)
        if math.isfinite(models):  # statsmodels, too, hits scipy's NaN tail at large δ
            assert ours == pytest.approx(models, abs=1e-7)


def test_power_stays_defined_where_scipy_nct_answers_nan():
    # Around n = 480k per arm with d = 0.08 scipy's noncentral-t lower tail is NaN;
    # pingouin then returns NaN, NRR Lab the limit (power 1).
    assert two_sample_power(0.08, 483_855, 483_855) == 1.0
    assert stats.required_sample_size(0.02, 0.25) == 2454


#: statsmodels' ``multipletests`` runs ``gc.collect()`` on every call, which costs seconds
#: per call late in a full run (267 s for 500 calls): it checks the first cases only,
#: pingouin checks all of them.
STATSMODELS_CASES = 10


@pytest.mark.parametrize("method", ["holm", "fdr_bh"])
def test_adjustments_equal_pingouin_multicomp_and_statsmodels(method):
    adjust = stats.holm_adjust if method == "holm" else stats.bh_adjust
    rng = np.random.default_rng(5)
    tied = 0
    for case in range(500):
        m = int(rng.integers(1, 15))
        p = rng.random(m) ** rng.uniform(0.2, 3)
        if m > 2 and (case < STATSMODELS_CASES or rng.random() < 0.3):
            p[1] = p[0]  # ties
            tied += 1
        got = adjust(list(p))
        expected = pingouin.multicomp(p.copy(), method=method)[1]
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        if case < STATSMODELS_CASES:
            np.testing.assert_allclose(got, multipletests(p, method=method)[1], rtol=1e-12)
    assert tied > 100  # the ties the adjustments must handle did come up


def test_unavailable_p_values_stay_out_of_the_family_as_in_pingouin():
    p = [0.01, None, 0.04]
    expected = pingouin.multicomp(np.array([0.01, np.nan, 0.04]), method="holm")[1]
    got = stats.holm_adjust(p)
    assert got[1] is None
    assert got[0] == pytest.approx(expected[0]) and got[2] == pytest.approx(expected[2])
