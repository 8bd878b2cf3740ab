"""stats.cuped against a by-hand numpy/scipy computation, statsmodels OLS, and a coverage
simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from stats.cuped import cuped
from stats.moments import Moments


def simulate(rng, n, *, lift=0.0, health_sd=0.15, noise_sd=0.08, reps=None):
    """Accounts whose NRR now and in the pre-period share a per-account 'health' term.

    The population NRR of an arm is exactly ``1 + lift`` (every term is independent of start
    MRR), and the pre-period NRR has the same expectation in both arms.
    """
    shape = n if reps is None else (reps, n)
    start = rng.lognormal(6.0, 0.8, shape) + 1.0
    health = rng.normal(0.0, health_sd, shape)
    pre_start = start * rng.uniform(0.85, 1.15, shape)
    pre_end = pre_start * (1.0 + health + rng.normal(0.0, noise_sd, shape))
    end = start * (1.0 + lift + health + rng.normal(0.0, noise_sd, shape))
    delta = end - start
    churned = np.zeros(shape)
    return {
        "start": start,
        "expansion": np.maximum(delta, 0.0),
        "contraction": np.maximum(-delta, 0.0),
        "churned": churned,
        "pre_start": pre_start,
        "pre_end": pre_end,
    }


def end_of(arm):
    return arm["start"] + arm["expansion"] - arm["contraction"] - arm["churned"]


def by_hand(control, treatment, alpha):
    """DESIGN §4c CUPED written out with numpy arrays and scipy.stats.t."""

    def zw(arm):
        end, start = end_of(arm), arm["start"]
        r = end.sum() / start.sum()
        q = arm["pre_end"].sum() / arm["pre_start"].sum()
        z = (end - r * start) / start.mean()
        w = (arm["pre_end"] - q * arm["pre_start"]) / arm["pre_start"].mean()
        return r, q, z, w

    rc, qc, zc, wc = zw(control)
    rt, qt, zt, wt = zw(treatment)
    theta = (
        np.sum((zc - zc.mean()) * (wc - wc.mean())) + np.sum((zt - zt.mean()) * (wt - wt.mean()))
    ) / (np.sum((wc - wc.mean()) ** 2) + np.sum((wt - wt.mean()) ** 2))
    uplift = (rt - rc) - theta * (qt - qc)
    vc = np.var(zc - theta * wc, ddof=1) / len(zc)
    vt = np.var(zt - theta * wt, ddof=1) / len(zt)
    var = vc + vt
    df = var**2 / (vt**2 / (len(zt) - 1) + vc**2 / (len(zc) - 1))
    q = sps.t.ppf(1 - alpha / 2, df)
    se = math.sqrt(var)
    var_abs = np.var(zc, ddof=1) / len(zc) + np.var(zt, ddof=1) / len(zt)
    return {
        "theta": theta,
        "uplift": uplift,
        "ci": (uplift - q * se, uplift + q * se),
        "p": 2 * sps.t.sf(abs(uplift) / se, df),
        "reduction": 1 - var / var_abs,
        "sigma_adjusted": np.std(zc - theta * wc, ddof=1),
        "z": (zc, zt),
        "w": (wc, wt),
    }


def test_cuped_equals_the_by_hand_computation():
    rng = np.random.default_rng(101)
    control, treatment = simulate(rng, 500), simulate(rng, 420, lift=0.02)
    result = cuped(Moments.from_arrays(control), Moments.from_arrays(treatment), alpha=0.05)
    expected = by_hand(control, treatment, 0.05)
    assert result.theta == pytest.approx(expected["theta"], rel=1e-10)
    assert result.uplift_abs == pytest.approx(expected["uplift"], rel=1e-10)
    assert result.ci_abs == pytest.approx(expected["ci"], rel=1e-9)
    assert result.p_value == pytest.approx(expected["p"], rel=1e-8)
    assert result.variance_reduction == pytest.approx(expected["reduction"], rel=1e-10)
    assert result.sigma_adjusted == pytest.approx(expected["sigma_adjusted"], rel=1e-10)
    assert result.to_dict()["ci_abs"] == list(result.ci_abs)

    # θ pooled within arms is the OLS slope of z on w with an arm effect (statsmodels)
    z = np.concatenate(expected["z"])
    w = np.concatenate(expected["w"])
    arm = np.r_[np.zeros(500), np.ones(420)]
    fit = sm.OLS(z, sm.add_constant(np.column_stack([w, arm]))).fit()
    assert result.theta == pytest.approx(fit.params[1], rel=1e-9)


def test_cuped_pools_over_chunks():
    rng = np.random.default_rng(7)
    control, treatment = simulate(rng, 300), simulate(rng, 300, lift=0.01)
    whole = cuped(Moments.from_arrays(control), Moments.from_arrays(treatment), alpha=0.05)
    parts = [
        Moments.from_arrays({k: v[s] for k, v in control.items()})
        for s in (slice(0, 120), slice(120, None))
    ]
    pooled = cuped(parts[0] + parts[1], Moments.from_arrays(treatment), alpha=0.05)
    assert pooled.p_value == pytest.approx(whole.p_value, rel=1e-9)
    assert pooled.ci_abs == pytest.approx(whole.ci_abs, rel=1e-9)


def test_null_without_pre_columns_or_pre_period_revenue():
    rng = np.random.default_rng(3)
    control, treatment = simulate(rng, 50), simulate(rng, 50)
    four = ("start", "expansion", "contraction", "churned")
    no_pre = Moments.from_arrays({k: control[k] for k in four})
    assert cuped(no_pre, Moments.from_arrays(treatment), alpha=0.05) is None
    zero_pre = dict(treatment, pre_start=np.zeros(50), pre_end=np.zeros(50))
    assert cuped(Moments.from_arrays(control), Moments.from_arrays(zero_pre), alpha=0.05) is None
    single = Moments.from_arrays({k: v[:1] for k, v in control.items()})
    assert cuped(single, Moments.from_arrays(treatment), alpha=0.05) is None


def test_constant_pre_period_gives_the_unadjusted_figures():
    # every account's pre-period NRR equals its arm's: nothing to adjust with, θ = 0
    rng = np.random.default_rng(5)
    control, treatment = simulate(rng, 80), simulate(rng, 80, lift=0.05)
    for arm in (control, treatment):
        arm["pre_end"] = arm["pre_start"] * 1.1
    result = cuped(Moments.from_arrays(control), Moments.from_arrays(treatment), alpha=0.05)
    r = [end_of(a).sum() / a["start"].sum() for a in (control, treatment)]
    assert result.theta == 0.0
    assert result.uplift_abs == pytest.approx(r[1] - r[0], rel=1e-12)
    assert result.variance_reduction == pytest.approx(0.0, abs=1e-12)


def test_coverage_and_width_in_simulation():
    # 1,000 replicates of 300 accounts per arm, true uplift 0.02. Monte Carlo standard error
    # of a 95 % coverage estimate: sqrt(0.95·0.05/1000) ≈ 0.7 points; we allow ± 2.5 points.
    reps, n, lift, alpha = 1_000, 300, 0.02, 0.05
    rng = np.random.default_rng(2026)
    control = simulate(rng, n, reps=reps)
    treatment = simulate(rng, n, lift=lift, reps=reps)
    covered = 0
    widths, plain_widths = np.empty(reps), np.empty(reps)
    for i in range(reps):
        arm_c = {k: v[i] for k, v in control.items()}
        arm_t = {k: v[i] for k, v in treatment.items()}
        result = cuped(Moments.from_arrays(arm_c), Moments.from_arrays(arm_t), alpha=alpha)
        lo, hi = result.ci_abs
        covered += lo <= lift <= hi
        widths[i] = hi - lo
        # unadjusted delta-method Welch interval, by hand
        ends = [end_of(a) for a in (arm_c, arm_t)]
        starts = [a["start"] for a in (arm_c, arm_t)]
        v = [
            np.var(e - e.sum() / s.sum() * s, ddof=1) / (n * s.mean() ** 2)
            for e, s in zip(ends, starts, strict=True)
        ]
        df = sum(v) ** 2 / (v[0] ** 2 / (n - 1) + v[1] ** 2 / (n - 1))
        plain_widths[i] = 2 * sps.t.ppf(1 - alpha / 2, df) * math.sqrt(sum(v))
    coverage = covered / reps
    print(f"CUPED coverage {coverage:.3f}, width ratio {widths.mean() / plain_widths.mean():.3f}")
    assert abs(coverage - 0.95) <= 0.025, coverage
    assert np.all(widths < plain_widths)
    # health explains ~ 0.15²/(0.15² + 0.08²) ≈ 78 % of the per-account variance
    assert widths.mean() < 0.75 * plain_widths.mean()
