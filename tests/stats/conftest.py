"""Data factories for the statistics tests.

Account rows are simulated the way NRR data looks in practice: heavy-tailed
(lognormal) start MRR, a minority of accounts expanding, some contracting
partially, some churning completely.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest


@dataclass(frozen=True)
class Rows:
    """Account rows of one arm, as plain arrays."""

    start: np.ndarray
    expansion: np.ndarray
    contraction: np.ndarray
    churned: np.ndarray

    @property
    def end(self) -> np.ndarray:
        return self.start + self.expansion - self.contraction - self.churned

    def scaled(self, factor: float) -> Rows:
        return Rows(
            self.start * factor,
            self.expansion * factor,
            self.contraction * factor,
            self.churned * factor,
        )

    def as_args(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.start, self.expansion, self.contraction, self.churned


def simulate_rows(
    rng: np.random.Generator,
    n: int,
    *,
    lift: float = 0.0,
    churn_rate: float = 0.06,
    contraction_rate: float = 0.10,
    expansion_rate: float = 0.20,
    tail: float = 1.2,
) -> Rows:
    """Simulate ``n`` accounts; ``lift`` adds ``lift * start`` of expansion to every account.

    Because the lift is proportional to start MRR and independent of the rest,
    the population NRR of the arm is exactly ``lift`` higher than without it.
    """
    start = np.round(rng.lognormal(mean=6.0, sigma=tail, size=n), 2) + 1.0
    expands = rng.random(n) < expansion_rate
    expansion = (
        np.where(expands, start * rng.gamma(shape=1.0, scale=0.4, size=n), 0.0) + lift * start
    )
    contracts = rng.random(n) < contraction_rate
    contraction = np.where(contracts, start * rng.uniform(0.05, 0.6, size=n), 0.0)
    churns = rng.random(n) < churn_rate
    # A churned account loses everything it had left and does not expand.
    churned = np.where(churns, start - contraction, 0.0)
    expansion = np.where(churns, 0.0, expansion)
    return Rows(start, expansion, contraction, churned)


@pytest.fixture(scope="session")
def make_rows():
    """Factory ``make_rows(seed_or_rng, n, **options) -> Rows`` (session-scoped for hypothesis)."""

    def make(seed: int | np.random.Generator, n: int, **options: float) -> Rows:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return simulate_rows(rng, n, **options)

    return make
