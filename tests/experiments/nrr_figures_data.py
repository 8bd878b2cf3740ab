"""Generated account CSVs with issue 15's optional columns, for the nrr_figures tests."""

from __future__ import annotations

import numpy as np

HEADER = (
    "account_id,variant,start_mrr,expansion_mrr,contraction_mrr,churned_mrr,segment,"
    "days_to_value"
)


def accounts(
    n: int = 600,
    *,
    seed: int = 15,
    variants: tuple[str, ...] = ("control", "treatment"),
    observed: bool = True,
    pre: bool = True,
    enrolled: bool = True,
    lift: float = 0.05,
) -> dict[str, np.ndarray]:
    """Columns of ``n`` accounts: lognormal MRR in cents, churn, contraction, expansion,
    days to value censored at a follow-up time, a correlated pre-period and dates."""
    rng = np.random.default_rng(seed)
    variant = np.array(variants)[rng.integers(0, len(variants), n)]
    treated = variant != variants[0]
    start = np.maximum(np.round(np.exp(rng.normal(8.5, 1.0, n))), 100).astype(np.int64)
    churn = rng.random(n) < np.where(treated, 0.06, 0.09)
    contraction = np.where(
        ~churn & (rng.random(n) < 0.12), np.round(start * rng.uniform(0.05, 0.5, n)), 0
    ).astype(np.int64)
    expansion = np.where(
        ~churn & (rng.random(n) < 0.2 + lift * treated),
        np.round(start * rng.lognormal(-1.5, 0.6, n)),
        0,
    ).astype(np.int64)
    churned = np.where(churn, start, 0).astype(np.int64)
    out = {
        "account_id": np.array([f"acct-{i:06d}" for i in range(n)]),
        "variant": variant,
        "start": start,
        "expansion": expansion,
        "contraction": contraction,
        "churned": churned,
        "segment": np.array(["SMB", "Mid-Market", "Enterprise"])[rng.integers(0, 3, n)],
    }
    follow = rng.integers(10, 60, n).astype(np.float64)
    reach = np.round(rng.gamma(2.0, np.where(treated, 6.0, 8.0)), 1)
    out["days_to_value"] = np.where(reach <= follow, reach, np.nan)
    if observed:
        out["days_observed"] = follow
    if pre:
        out["pre_start"] = np.round(start * rng.uniform(0.8, 1.1, n)).astype(np.int64)
        out["pre_end"] = np.round(out["pre_start"] * rng.normal(1.0, 0.1, n).clip(0)).astype(
            np.int64
        )
    if enrolled:
        days = rng.integers(0, 60, n)
        out["enrolled_on"] = np.datetime64("2026-09-01") + days.astype("timedelta64[D]")
    return out


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def to_csv(columns: dict[str, np.ndarray]) -> bytes:
    """The columns as an account CSV (money in currency units, blanks empty)."""
    header = HEADER
    extra = [
        (name, title)
        for name, title in (
            ("days_observed", "days_observed"),
            ("pre_start", "pre_start_mrr"),
            ("pre_end", "pre_end_mrr"),
            ("enrolled_on", "enrolled_on"),
        )
        if name in columns
    ]
    header += "".join(f",{title}" for _, title in extra)
    lines = [header]
    n = len(columns["account_id"])
    for i in range(n):
        days = columns["days_to_value"][i]
        fields = [
            str(columns["account_id"][i]),
            str(columns["variant"][i]),
            _money(int(columns["start"][i])),
            _money(int(columns["expansion"][i])),
            _money(int(columns["contraction"][i])),
            _money(int(columns["churned"][i])),
            str(columns["segment"][i]),
            "" if np.isnan(days) else f"{days:g}",
        ]
        for name, _ in extra:
            value = columns[name][i]
            if name == "days_observed":
                fields.append("" if np.isnan(value) else f"{value:g}")
            elif name == "enrolled_on":
                fields.append(str(value))
            else:
                fields.append(_money(int(value)))
        lines.append(",".join(fields))
    return ("\n".join(lines) + "\n").encode()
