"""Data generators and by-hand references shared by the simulation tests and their heavier
versions in ``benchmarks/bench_issue13_simulations.py``."""

from __future__ import annotations

import numpy as np

#: Expected per-account multiplier of :func:`accounts` (0.1·0 + 0.2·1.25 + 0.1·0.75 + 0.6).
MEAN_MULTIPLIER = 0.925


def accounts(rng, shape, lift=0.0):
    """(end, start) MRR of accounts: lognormal(5, 2) start; 10 % churn, 20 % expansion,
    10 % contraction; ``shape`` an int or (replicates, accounts)."""
    start = rng.lognormal(5.0, 2.0, shape)
    u = rng.random(shape)
    multiplier = np.select(
        [u < 0.1, u < 0.3, u < 0.4],
        [0.0, 1.0 + 0.5 * rng.random(shape), 1.0 - 0.5 * rng.random(shape)],
        default=1.0,
    )
    return start * multiplier * (1.0 + lift), start


def welch_many(xt, yt, xc, yc):
    """Delta-method NRR uplift, its SE and Welch df by hand, vectorised over replicates (rows)."""

    def arm(x, y):
        r = x.sum(axis=1) / y.sum(axis=1)
        v = np.var(x - r[:, None] * y, axis=1, ddof=1) / (x.shape[1] * y.mean(axis=1) ** 2)
        return r, v

    (rt, vt), (rc, vc) = arm(xt, yt), arm(xc, yc)
    df = (vt + vc) ** 2 / (vt**2 / (xt.shape[1] - 1) + vc**2 / (xc.shape[1] - 1))
    return rt - rc, np.sqrt(vt + vc), df


def holm_by_hand(p):
    """Holm-adjusted p-values across columns, per row (replicate), written out by hand."""
    k = p.shape[1]
    order = np.argsort(p, axis=1)
    ranked = np.take_along_axis(p, order, axis=1)
    holm = np.maximum.accumulate(ranked * (k - np.arange(k)), axis=1)
    adjusted = np.empty_like(p)
    np.put_along_axis(adjusted, order, np.minimum(holm, 1.0), axis=1)
    return adjusted
