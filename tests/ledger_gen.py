"""A synthetic revenue ledger (DESIGN §3b) with known monthly rates, for tests and benchmarks.

Each month every active account independently churns fully (probability ``churn``),
expands (``expansion``; by a uniform fraction of its start with mean ``expansion_size``),
contracts (``contraction``; mean fraction ``contraction_size``) or stays flat. Its next start
is this month's end. New business arrives every month; a churned account sometimes comes
back (``reactivation``) and sometimes leaves a start-0 row the month after it churned (which
means the same as no row). ``plan`` moves up on some expansions from the next month's row,
``region`` and ``size`` are fixed per account; ``customer_since`` and ``days_to_value`` are
account attributes (some blank). Money is generated in integer cents.

Because churn, expansion and contraction do not depend on the account's MRR, the
MRR-weighted monthly rates have the expectations in :meth:`LedgerRates.expected`.

Used by tests/stats/test_stats_ledger.py, the ledger import tests and
benchmarks/bench_ledger.py::

    from tests.ledger_gen import generate_ledger, write_csv
    ledger = generate_ledger(20_000, seed=1)
    write_csv(tmp_path / "ledger.csv", ledger)
    figures = stats.ledger.ledger_figures(ledger.to_arrays())
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stats.ledger import LedgerArrays, month_index

PLANS = ("basic", "pro", "enterprise")
REGIONS = ("na", "emea", "apac")
SIZES = ("smb", "mid", "large")
DIMENSIONS = ("plan", "region", "size")
HEADER = (
    "account_id",
    "period",
    "start_mrr",
    "expansion_mrr",
    "contraction_mrr",
    "churned_mrr",
    "customer_since",
    "days_to_value",
    *DIMENSIONS,
)


@dataclass(frozen=True)
class LedgerRates:
    """Monthly behaviour of the generated accounts (probabilities per active account)."""

    churn: float = 0.02
    expansion: float = 0.10
    contraction: float = 0.05
    expansion_size: float = 0.25  # mean fraction of start; uniform on (0, 2 × mean)
    contraction_size: float = 0.20  # mean fraction of start; must stay < 0.5
    reactivation: float = 0.03  # per month, for a churned account
    zero_row: float = 0.5  # a churned account leaves a start-0 row the next month
    new_share: float = 0.5  # share of the accounts acquired during the ledger
    upgrade: float = 0.4  # share of expansions that move the plan up
    blank_customer_since: float = 0.05  # of the accounts already customers at the start
    blank_days_to_value: float = 0.15
    mean_days_to_value: float = 20.0

    def __post_init__(self) -> None:
        if self.churn + self.expansion + self.contraction > 1:
            raise ValueError("churn + expansion + contraction must be <= 1")
        if not 0 < self.contraction_size < 0.5 or self.expansion_size <= 0:
            raise ValueError("contraction_size must be in (0, 0.5), expansion_size > 0")

    def expected(self) -> dict[str, float]:
        """Expected monthly figures of an active account base (MRR-weighted rates).

        ``logo_churn`` and ``churn_rate`` are both ``churn`` (churn is independent of MRR);
        ``expansion_rate`` = P(expansion) × mean fraction, likewise for contraction;
        ``nrr`` = 1 + expansion_rate − contraction_rate − churn_rate.
        """
        expansion = self.expansion * self.expansion_size
        contraction = self.contraction * self.contraction_size
        return {
            "logo_churn": self.churn,
            "churn_rate": self.churn,
            "expansion_rate": expansion,
            "contraction_rate": contraction,
            "nrr": 1 + expansion - contraction - self.churn,
            "grr": 1 - contraction - self.churn,
        }


@dataclass(frozen=True)
class GeneratedLedger:
    """Ledger rows as parallel arrays (one element per row) plus per-account attributes."""

    periods: tuple[str, ...]
    account: np.ndarray  # int codes 0..A-1 per row
    period: np.ndarray  # month index per row
    start_cents: np.ndarray
    expansion_cents: np.ndarray
    contraction_cents: np.ndarray
    churned_cents: np.ndarray
    plan: np.ndarray  # int code into PLANS per row
    region: np.ndarray  # per account, code into REGIONS
    size: np.ndarray  # per account, code into SIZES
    customer_since: tuple[dt.date | None, ...]  # per account
    days_to_value: np.ndarray  # per account, NaN = blank
    rates: LedgerRates = field(default_factory=LedgerRates)

    @property
    def rows(self) -> int:
        return int(self.account.size)

    def account_ids(self) -> np.ndarray:
        """``acct-0000001``-style ids per account code."""
        width = max(len(str(self.region.size)), 7)
        return np.array([f"acct-{i:0{width}d}" for i in range(self.region.size)])

    def customer_since_month(self) -> np.ndarray:
        """Per account: month index of customer_since relative to the first period (NaN blank)."""
        first = self.periods[0]
        return np.array(
            [
                np.nan if d is None else month_index(d.year, d.month, first)
                for d in self.customer_since
            ],
            dtype=np.float64,
        )

    def money(self, name: str) -> np.ndarray:
        """Money in currency units (cents / 100): start, expansion, contraction, churned."""
        return getattr(self, f"{name}_cents") / 100.0

    def to_arrays(self) -> LedgerArrays:
        """The :class:`stats.ledger.LedgerArrays` an importer would build from this ledger."""
        return LedgerArrays(
            account=self.account,
            period=self.period,
            start=self.money("start"),
            expansion=self.money("expansion"),
            contraction=self.money("contraction"),
            churned=self.money("churned"),
            customer_since=self.customer_since_month()[self.account],
            days_to_value=self.days_to_value[self.account],
            dimensions={
                "plan": (self.plan, PLANS),
                "region": (self.region[self.account], REGIONS),
                "size": (self.size[self.account], SIZES),
            },
            periods=self.periods,
        )

    def to_frame(self):
        """A pandas DataFrame with the §3b columns (money in currency units, labels as text)."""
        import pandas as pd

        since = np.array([d.isoformat() if d else "" for d in self.customer_since], dtype=object)
        return pd.DataFrame(
            {
                "account_id": self.account_ids()[self.account],
                "period": np.array(self.periods, dtype=object)[self.period],
                "start_mrr": self.money("start"),
                "expansion_mrr": self.money("expansion"),
                "contraction_mrr": self.money("contraction"),
                "churned_mrr": self.money("churned"),
                "customer_since": since[self.account],
                "days_to_value": self.days_to_value[self.account],
                "plan": np.array(PLANS, dtype=object)[self.plan],
                "region": np.array(REGIONS, dtype=object)[self.region[self.account]],
                "size": np.array(SIZES, dtype=object)[self.size[self.account]],
            }
        )


def _months(first_period: str, months: int) -> tuple[str, ...]:
    year, month = (int(part) for part in first_period.split("-"))
    base = year * 12 + month - 1
    return tuple(f"{(base + i) // 12:04d}-{(base + i) % 12 + 1:02d}" for i in range(months))


def _fraction(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    return rng.uniform(0.0, 2.0 * mean, n)


def generate_ledger(
    n_accounts: int = 20_000,
    *,
    months: int = 24,
    first_period: str = "2025-01",
    seed: int = 0,
    rates: LedgerRates | None = None,
) -> GeneratedLedger:
    """Simulate ``n_accounts`` accounts over ``months`` months (see the module docstring).

    About 16 rows per account with the default rates and 24 months; use
    :func:`accounts_for_rows` to size a ledger by rows.
    """
    rates = rates or LedgerRates()
    if n_accounts < 1 or months < 1:
        raise ValueError("n_accounts and months must be >= 1")
    rng = np.random.default_rng(seed)
    periods = _months(first_period, months)
    first_day = dt.date(int(periods[0][:4]), int(periods[0][5:]), 1)

    def initial_mrr(n: int) -> np.ndarray:
        return np.maximum(np.round(rng.lognormal(math.log(50_000), 1.0, n)), 1_000).astype(np.int64)

    is_new = rng.random(n_accounts) < rates.new_share
    acquired = np.where(is_new, rng.integers(0, months, n_accounts), 0)
    mrr = initial_mrr(n_accounts)
    size = np.digitize(mrr, np.quantile(mrr, [1 / 3, 2 / 3]), right=True)
    region = rng.integers(0, len(REGIONS), n_accounts)
    plan = rng.choice(len(PLANS), n_accounts, p=[0.5, 0.35, 0.15])
    days = np.round(rng.exponential(rates.mean_days_to_value, n_accounts))
    days[rng.random(n_accounts) < rates.blank_days_to_value] = np.nan

    since: list[dt.date | None] = []
    offsets_before = rng.integers(1, 36 * 30, n_accounts)
    day_in_month = rng.integers(0, 28, n_accounts)
    blank_since = rng.random(n_accounts) < rates.blank_customer_since
    for i in range(n_accounts):
        if is_new[i]:
            m = (first_day.year * 12 + first_day.month - 1) + int(acquired[i])
            since.append(dt.date(m // 12, m % 12 + 1, 1 + int(day_in_month[i])))
        elif blank_since[i]:
            since.append(None)
        else:
            since.append(first_day - dt.timedelta(days=int(offsets_before[i])))

    alive = np.zeros(n_accounts, dtype=bool)
    ever = np.zeros(n_accounts, dtype=bool)
    zero_next = np.zeros(n_accounts, dtype=bool)
    chunks: list[tuple[np.ndarray, ...]] = []
    for t in range(months):
        arriving = (acquired == t) & ~ever
        alive |= arriving
        ever |= arriving
        back = ever & ~alive & ~arriving & (rng.random(n_accounts) < rates.reactivation)
        mrr[back] = initial_mrr(int(back.sum()))
        alive |= back
        zero_next &= ~back

        zero_ids = np.flatnonzero(zero_next)
        zero_next[:] = False
        ids = np.flatnonzero(alive)
        n = ids.size
        start = mrr[ids]
        u = rng.random(n)
        churn = u < rates.churn
        expand = ~churn & (u < rates.churn + rates.expansion)
        contract = ~churn & ~expand & (u < rates.churn + rates.expansion + rates.contraction)
        expansion = np.where(
            expand, np.round(start * _fraction(rng, rates.expansion_size, n)), 0
        ).astype(np.int64)
        contraction = np.where(
            contract, np.round(start * _fraction(rng, rates.contraction_size, n)), 0
        ).astype(np.int64)
        churned = np.where(churn, start, 0)
        row_plan = plan[ids].copy()
        chunks.append((ids, np.full(n, t), start, expansion, contraction, churned, row_plan))
        if zero_ids.size:
            zeros = np.zeros(zero_ids.size, dtype=np.int64)
            chunks.append(
                (zero_ids, np.full(zero_ids.size, t), zeros, zeros, zeros, zeros, plan[zero_ids])
            )

        mrr[ids] = start + expansion - contraction - churned
        upgrade = expand & (rng.random(n) < rates.upgrade) & (plan[ids] < len(PLANS) - 1)
        plan[ids[upgrade]] += 1
        gone = ids[churn]
        alive[gone] = False
        zero_next[gone] = rng.random(gone.size) < rates.zero_row

    columns = [np.concatenate(parts) for parts in zip(*chunks, strict=True)]
    account, period, start, expansion, contraction, churned, row_plan = columns
    return GeneratedLedger(
        periods=periods,
        account=account.astype(np.int64),
        period=period.astype(np.int64),
        start_cents=start.astype(np.int64),
        expansion_cents=expansion.astype(np.int64),
        contraction_cents=contraction.astype(np.int64),
        churned_cents=churned.astype(np.int64),
        plan=row_plan.astype(np.int64),
        region=region.astype(np.int64),
        size=size.astype(np.int64),
        customer_since=tuple(since),
        days_to_value=days,
        rates=rates,
    )


def accounts_for_rows(rows: int, *, months: int = 24, rates: LedgerRates | None = None) -> int:
    """Number of accounts that gives about ``rows`` ledger rows (from a 2,000-account pilot)."""
    pilot = generate_ledger(2_000, months=months, seed=12345, rates=rates)
    return max(1, round(rows * 2_000 / pilot.rows))


def _money_text(cents: np.ndarray) -> list[str]:
    return [f"{c // 100}.{c % 100:02d}" for c in cents.tolist()]


def write_csv(
    path: str | Path,
    ledger: GeneratedLedger | None = None,
    *,
    shuffle_seed: int | None = None,
    **generate: object,
) -> GeneratedLedger:
    """Write ``ledger`` (or ``generate_ledger(**generate)``) as a §3b CSV file; return it.

    Columns: account_id, period, start_mrr, expansion_mrr, contraction_mrr, churned_mrr,
    customer_since (ISO date or blank), days_to_value (whole days or blank), plan, region,
    size. Rows are in generation order (by period) unless ``shuffle_seed`` is given.
    """
    if ledger is None:
        ledger = generate_ledger(**generate)  # type: ignore[arg-type]
    order = np.arange(ledger.rows)
    if shuffle_seed is not None:
        np.random.default_rng(shuffle_seed).shuffle(order)
    ids = ledger.account_ids()
    since = [d.isoformat() if d else "" for d in ledger.customer_since]
    days = ["" if math.isnan(d) else str(int(d)) for d in ledger.days_to_value.tolist()]
    account = ledger.account[order]
    columns = [
        ids[account].tolist(),
        np.array(ledger.periods, dtype=object)[ledger.period[order]].tolist(),
        _money_text(ledger.start_cents[order]),
        _money_text(ledger.expansion_cents[order]),
        _money_text(ledger.contraction_cents[order]),
        _money_text(ledger.churned_cents[order]),
        [since[a] for a in account.tolist()],
        [days[a] for a in account.tolist()],
        np.array(PLANS, dtype=object)[ledger.plan[order]].tolist(),
        np.array(REGIONS, dtype=object)[ledger.region[account]].tolist(),
        np.array(SIZES, dtype=object)[ledger.size[account]].tolist(),
    ]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(HEADER) + "\n")
        handle.writelines(",".join(row) + "\n" for row in zip(*columns, strict=True))
    return ledger
