"""Heavier versions of the issue-13 simulation tests (minutes, not seconds).

Usage: python benchmarks/bench_issue13_simulations.py [--reps 4000]
Prints, with Monte Carlo standard errors:
- A/A false-positive rate and coverage (A/A and with a real effect) of the permutation
  test and of Welch's t, lognormal(σ = 2) MRR, 1:1 and 4:1, several sizes;
- power at the planned n for 2 and 3 arms (one real MDE-sized effect, Holm);
- 8-look sequential A/A false-positive rate against the fixed-horizon test at every look.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
from scipy import stats as scipy_stats

from stats.robust import permutation_test
from stats.sequential import sequential_p_value
from stats.sizing import plan_sample_sizes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo's tests/ package
from tests.stats.simulation import MEAN_MULTIPLIER, accounts, holm_by_hand
from tests.stats.simulation import welch_many as welch


def robust_block(reps: int) -> None:
    alpha = 0.05
    print("permutation vs Welch, lognormal(2) MRR; rate / coverage ± MC SE")
    for n_t, n_c in ((200, 200), (1000, 1000), (100, 400), (500, 2000), (400, 4000)):
        rng = np.random.default_rng(n_t + 3 * n_c)
        reps_here = max(200, reps * 400 // (n_t + n_c)) if n_t + n_c > 1000 else reps
        xt, yt = accounts(rng, (reps_here, n_t))
        xc, yc = accounts(rng, (reps_here, n_c))
        xe, ye = accounts(rng, (reps_here, n_t), lift=0.05)
        reject = cover_effect = 0
        for rep in range(reps_here):
            r = permutation_test(xt[rep], yt[rep], xc[rep], yc[rep], permutations=400, seed=rep)
            reject += r.p_value < alpha
            e = permutation_test(xe[rep], ye[rep], xc[rep], yc[rep], permutations=400, seed=rep)
            uplift = xe[rep].sum() / ye[rep].sum() - xc[rep].sum() / yc[rep].sum()
            half = e.critical[0] * abs(uplift / e.statistic)
            cover_effect += abs(uplift - 0.05 * MEAN_MULTIPLIER) <= half
        diff, se, df = welch(xt, yt, xc, yc)
        welch_rate = np.mean(2 * scipy_stats.t.sf(np.abs(diff) / se, df) < alpha)
        diff_e, se_e, df_e = welch(xe, ye, xc, yc)
        welch_cover = np.mean(
            np.abs(diff_e - 0.05 * MEAN_MULTIPLIER) <= scipy_stats.t.ppf(0.975, df_e) * se_e
        )
        mc = math.sqrt(alpha * (1 - alpha) / reps_here)
        print(f"  {n_t}:{n_c} reps {reps_here}: permutation A/A {reject / reps_here:.3f}, "
              f"coverage(effect) {cover_effect / reps_here:.3f}; Welch A/A {welch_rate:.3f}, "
              f"coverage(effect) {welch_cover:.3f}  (MC SE {mc:.3f})")


def power_block(reps: int) -> None:
    sigma, mde, alpha = 0.1, 0.02, 0.05
    for treatments in (1, 2, 3):
        weights = {"control": 1.0, **{f"t{i}": 1.0 for i in range(treatments)}}
        n = plan_sample_sizes(mde, sigma, control="control", weights=weights).required_n["control"]
        rng = np.random.default_rng(treatments)
        control = rng.normal(0, sigma, (reps, n))
        arms = [rng.normal(mde if i == 0 else 0, sigma, (reps, n)) for i in range(treatments)]
        p = np.stack([scipy_stats.ttest_ind(a, control, axis=1, equal_var=False).pvalue
                      for a in arms], axis=1)
        adjusted = holm_by_hand(p)
        win = np.mean((adjusted[:, 0] < alpha) & (arms[0].mean(1) > control.mean(1)))
        print(f"  {treatments + 1} arms, n = {n}/arm: P(win) {win:.3f} "
              f"± {math.sqrt(0.16 / reps):.3f} (plan 0.800)")


def sequential_block(reps: int) -> None:
    weeks, per_week, alpha = 8, 250, 0.05
    rng = np.random.default_rng(8)
    shape = (2, reps, weeks * per_week)
    start = rng.lognormal(5, 1, shape)
    end = start * rng.choice([0.0, 1.0, 1.2, 1.6], p=[0.08, 0.62, 0.2, 0.1], size=shape)
    n = per_week * np.arange(1, weeks + 1)

    def cum(v):
        return np.cumsum(v, axis=-1)[..., n - 1]

    sx, sy, sxx, syy, sxy = cum(end), cum(start), cum(end**2), cum(start**2), cum(end * start)
    r = sx / sy
    var = (sxx - 2 * r * sxy + r**2 * syy - (sx - r * sy) ** 2 / n) / (n - 1) / (n * (sy / n) ** 2)
    uplift, var_abs = r[1] - r[0], var[0] + var[1]
    seq = np.mean((sequential_p_value(uplift, var_abs, 2 * n, 2 * n[-1], alpha) < alpha).any(1))
    fixed = np.mean((2 * scipy_stats.norm.sf(np.abs(uplift) / np.sqrt(var_abs)) < alpha).any(1))
    print(f"  8 looks A/A: sequential {seq:.3f}, fixed-horizon at every look {fixed:.3f} "
          f"(MC SE {math.sqrt(alpha * (1 - alpha) / reps):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=4000)
    args = parser.parse_args()
    robust_block(args.reps)
    print("power at the planned n (Holm)")
    power_block(args.reps)
    print("sequential")
    sequential_block(args.reps)


if __name__ == "__main__":
    main()
