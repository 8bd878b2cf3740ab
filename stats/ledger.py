"""Company retention figures from the revenue ledger (DESIGN §3b).

The ledger holds one row per account and month: start MRR and its expansion,
contraction and churn during the month. :func:`ledger_figures` turns those rows
(as numpy arrays, see :class:`LedgerArrays`) into every figure the NRR page,
the driver tree's actuals and planning read: period NRR/GRR, logo churn and
movement rates, trailing-twelve-month (TTM) NRR/GRR, the same per dimension
value, acquisition cohorts, velocity cohorts and the per-segment σ of
account-level NRR. Everything is vectorised (``bincount``/``searchsorted``) so
it runs over a million rows in a fraction of a second.

Definitions are listed in :data:`DEFINITIONS` and ``docs/LEDGER.md``.

References
----------
.. [1] SaaS Capital (2019, 2020). B2B SaaS Retention Benchmarks, "Definitions":
   net retention = MRR at month M from the customers of month M − 12 ÷ their
   MRR at M − 12; gross retention the same with each customer's MRR capped at
   its earlier value.
.. [2] KeyBanc Capital Markets & Sapphire Ventures. SaaS Survey: net dollar
   retention and gross dollar retention of a starting customer base.
.. [3] Hyndman, R. J. & Fan, Y. (1996). Sample quantiles in statistical
   packages. The American Statistician, 50(4), 361-365 (definition 7, linear
   interpolation; numpy's default).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np

from stats._checks import finite_or_none

#: Number of months in a trailing-twelve-month window.
TTM_MONTHS = 12

#: A ``customer_since`` month index below this (or NaN) means "blank".
BLANK_MONTH = -1e8

VelocityCohortName = Literal["fast", "average", "slow", "not_reached"]
VELOCITY_COHORTS: tuple[VelocityCohortName, ...] = ("fast", "average", "slow", "not_reached")

#: One line per figure: what it is and where the definition comes from.
DEFINITIONS: dict[str, str] = {
    "active_row": "A row with start_mrr > 0; a start-0 row and a missing row both mean "
    "'not a customer that month' (DESIGN §3b).",
    "end_mrr": "start + expansion - contraction - churned of the active rows.",
    "nrr": "Period NRR = Σ end / Σ start over the period's active rows (net dollar "
    "retention; SaaS Capital retention benchmarks; KeyBanc/Sapphire SaaS survey).",
    "grr": "Period GRR = Σ (start - contraction - churned) / Σ start over active rows "
    "(gross dollar retention: expansion left out; same sources as NRR).",
    "logo_churn": "Share of the period's active rows with churned_mrr = start_mrr "
    "(an account that reaches 0 partly through contraction is not counted).",
    "expansion_rate": "Σ expansion / Σ start over the period's active rows.",
    "contraction_rate": "Σ contraction / Σ start over the period's active rows.",
    "churn_rate": "Σ churned / Σ start over the period's active rows (revenue churn).",
    "new_mrr": "Σ start of the active rows that are their account's first active month "
    "in the ledger (new business; not expansion). In the ledger's first period every "
    "active account is in its first active month.",
    "ttm_nrr": "TTM NRR at month M = Σ end MRR at M / Σ start MRR at M - 11 over the "
    "accounts active in M - 11; an account not active at M counts 0 (SaaS Capital: "
    "MRR at M from the customers of M - 12 / their MRR then). From the 12th period on.",
    "ttm_grr": "TTM GRR at M = Σ min(end at M, start at M - 11) / Σ start at M - 11 "
    "over the accounts active in M - 11 (each account capped at its start; SaaS Capital).",
    "ttm_accounts": "Accounts active in M - 11, the base of the TTM window ending at M.",
    "dimension": "Breakdowns use each row's own dimension value (an upgraded account "
    "moves group from the period its row says so); TTM groups by the value on the "
    "window's base row (M - 11).",
    "cohort": "Accounts whose customer_since lies on or after the ledger's first period, "
    "grouped by the calendar quarter of customer_since.",
    "cohort_nrr": "Cohort NRR at age a = Σ end MRR of period first + a - 1 / Σ start MRR "
    "at age 0 (first = the account's first active period); only ages every member "
    "has reached.",
    "velocity_cohort": "Terciles of days_to_value among the accounts of the last TTM "
    "window that have one: q1, q2 = linear-interpolation quantiles 1/3, 2/3 (Hyndman & "
    "Fan 1996, def. 7); fast <= q1 < average <= q2 < slow; blank = not_reached; each "
    "group's figure is its TTM NRR at the last period.",
    "sigma": "Sample standard deviation (ddof = 1) of account-level NRR end/start over "
    "the last period's active rows, overall and per dimension value (descriptive). "
    "Null with fewer than 2 accounts.",
    "sigma_lin": "The planning σ (DESIGN §4, §4c): sd(end - R·start, ddof = 1) / mean(start) "
    "over the last period's active rows with R = Σ end / Σ start of the same rows, overall "
    "and per dimension value; the σ the power calculation's linearised NRR needs (it "
    "weights large accounts as the ratio NRR does; plain sd of end/start does not). "
    "Null with fewer than 2 accounts.",
}


def _num(value: Any) -> float | None:
    return None if value is None else finite_or_none(value)


@dataclass(frozen=True)
class PeriodFigures:
    """Movement totals and ratios of one period (company-wide or one dimension value).

    Attributes
    ----------
    period : str
        ``"YYYY-MM"``.
    accounts : int
        Active rows (start_mrr > 0).
    start_mrr, expansion_mrr, contraction_mrr, churned_mrr, end_mrr : float
        Sums over the active rows.
    nrr, grr, logo_churn, expansion_rate, contraction_rate, churn_rate : float or None
        Ratios over the active rows; ``None`` when there is none.
    new_mrr : float
        Σ start of the active rows that are their account's first active month.
    """

    period: str
    accounts: int
    start_mrr: float
    expansion_mrr: float
    contraction_mrr: float
    churned_mrr: float
    end_mrr: float
    nrr: float | None
    grr: float | None
    logo_churn: float | None
    expansion_rate: float | None
    contraction_rate: float | None
    churn_rate: float | None
    new_mrr: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe row of ``"monthly"``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PeriodFigures:
        """Inverse of :meth:`to_dict`."""
        return cls(
            period=str(data["period"]),
            accounts=int(data["accounts"]),
            **{
                name: _num(data[name])
                for name in (
                    "start_mrr",
                    "expansion_mrr",
                    "contraction_mrr",
                    "churned_mrr",
                    "end_mrr",
                    "nrr",
                    "grr",
                    "logo_churn",
                    "expansion_rate",
                    "contraction_rate",
                    "churn_rate",
                    "new_mrr",
                )
            },
        )


@dataclass(frozen=True)
class TtmFigures:
    """Trailing-twelve-month NRR/GRR of the window ending at ``period``.

    Attributes
    ----------
    period : str
        ``"YYYY-MM"``, the window's last month M.
    nrr, grr : float or None
        ``None`` before the 12th period or when the base has no start MRR.
    accounts : int or None
        Accounts active in M - 11 (the base); ``None`` before the 12th period.
    """

    period: str
    nrr: float | None
    grr: float | None
    accounts: int | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe row of ``"ttm"``."""
        return {"period": self.period, "nrr": self.nrr, "grr": self.grr, "accounts": self.accounts}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TtmFigures:
        """Inverse of :meth:`to_dict`."""
        accounts = data["accounts"]
        return cls(
            period=str(data["period"]),
            nrr=_num(data["nrr"]),
            grr=_num(data["grr"]),
            accounts=None if accounts is None else int(accounts),
        )


@dataclass(frozen=True)
class DimensionFigures:
    """Monthly and TTM figures per value of one dimension column.

    Attributes
    ----------
    name : str
        Dimension column, e.g. ``"plan"``.
    values : tuple of str
        Its labels, in the order given by the caller.
    monthly : mapping of str to tuple of PeriodFigures
        Per label, one row per period.
    ttm : mapping of str to tuple of TtmFigures
        Per label, one row per period.
    """

    name: str
    values: tuple[str, ...]
    monthly: Mapping[str, tuple[PeriodFigures, ...]]
    ttm: Mapping[str, tuple[TtmFigures, ...]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe value of ``"dimensions"[name]``."""
        return {
            "values": list(self.values),
            "monthly": {k: [row.to_dict() for row in self.monthly[k]] for k in self.values},
            "ttm": {k: [row.to_dict() for row in self.ttm[k]] for k in self.values},
        }

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any]) -> DimensionFigures:
        """Inverse of :meth:`to_dict`."""
        values = tuple(str(v) for v in data["values"])
        return cls(
            name=name,
            values=values,
            monthly={
                k: tuple(PeriodFigures.from_dict(r) for r in data["monthly"][k]) for k in values
            },
            ttm={k: tuple(TtmFigures.from_dict(r) for r in data["ttm"][k]) for k in values},
        )


@dataclass(frozen=True)
class CohortFigures:
    """NRR by age of one acquisition cohort (calendar quarter of customer_since).

    Attributes
    ----------
    cohort : str
        ``"YYYY-Qn"``.
    accounts : int
        Members with at least one active period.
    start_mrr : float
        Σ start MRR at age 0 (each member's first active period).
    nrr_by_age : tuple of float or None
        NRR at ages 1, 2, ... up to the age every member has reached.
    """

    cohort: str
    accounts: int
    start_mrr: float
    nrr_by_age: tuple[float | None, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe row of ``"cohorts"``."""
        return {
            "cohort": self.cohort,
            "accounts": self.accounts,
            "start_mrr": self.start_mrr,
            "nrr_by_age": list(self.nrr_by_age),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CohortFigures:
        """Inverse of :meth:`to_dict`."""
        return cls(
            cohort=str(data["cohort"]),
            accounts=int(data["accounts"]),
            start_mrr=float(data["start_mrr"]),
            nrr_by_age=tuple(_num(v) for v in data["nrr_by_age"]),
        )


@dataclass(frozen=True)
class VelocityCohort:
    """TTM NRR at the last period of one days-to-value tercile.

    Attributes
    ----------
    cohort : {"fast", "average", "slow", "not_reached"}
    accounts : int
        Accounts of the last TTM window's base in this group.
    max_days : float or None
        Largest days_to_value in the group (``None`` for ``not_reached`` or empty).
    ttm_nrr : float or None
        The group's TTM NRR at the last period.
    """

    cohort: VelocityCohortName
    accounts: int
    max_days: float | None
    ttm_nrr: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe row of ``"velocity_cohorts"``."""
        return {
            "cohort": self.cohort,
            "accounts": self.accounts,
            "max_days": self.max_days,
            "ttm_nrr": self.ttm_nrr,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VelocityCohort:
        """Inverse of :meth:`to_dict`."""
        name = str(data["cohort"])
        if name not in VELOCITY_COHORTS:
            raise ValueError(f"unknown velocity cohort {name!r}")
        return cls(
            cohort=name,  # type: ignore[arg-type]
            accounts=int(data["accounts"]),
            max_days=_num(data["max_days"]),
            ttm_nrr=_num(data["ttm_nrr"]),
        )


@dataclass(frozen=True)
class LedgerSigma:
    """A spread of account-level NRR in the last period, overall and per dimension value.

    Stored twice in :class:`LedgerFigures`: ``sigma`` (plain sd of end/start) and
    ``sigma_lin`` (the linearised planning σ of DESIGN §4).

    Attributes
    ----------
    overall : float or None
    by_dimension : mapping of str to mapping of str to float or None
        ``{dimension: {label: σ}}``.
    """

    overall: float | None
    by_dimension: Mapping[str, Mapping[str, float | None]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe value of ``"sigma"`` (or ``"sigma_lin"``)."""
        return {
            "overall": self.overall,
            "by_dimension": {k: dict(v) for k, v in self.by_dimension.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerSigma:
        """Inverse of :meth:`to_dict`."""
        return cls(
            overall=_num(data["overall"]),
            by_dimension={
                str(k): {str(label): _num(s) for label, s in v.items()}
                for k, v in data["by_dimension"].items()
            },
        )


@dataclass(frozen=True)
class LedgerFigures:
    """Every figure of one ledger; :meth:`to_dict` is the stored (JSON) form.

    Attributes
    ----------
    periods : tuple of str
        ``"YYYY-MM"`` labels, consecutive months.
    monthly : tuple of PeriodFigures
        One per period.
    ttm : tuple of TtmFigures
        One per period; figures ``None`` before the 12th.
    dimensions : tuple of DimensionFigures
    cohorts : tuple of CohortFigures
    velocity_cohorts : tuple of VelocityCohort
        Empty without days_to_value or before the 12th period.
    sigma : LedgerSigma
        Plain sd (ddof 1) of account-level end/start in the last period.
    sigma_lin : LedgerSigma or None
        The linearised σ of DESIGN §4 in the last period (the planning σ);
        ``None`` when read from a document stored before it existed.
    warnings : tuple of str
        Degenerate-data notes for the page (e.g. "fewer than 12 periods").
    definitions : mapping of str to str
    """

    periods: tuple[str, ...]
    monthly: tuple[PeriodFigures, ...]
    ttm: tuple[TtmFigures, ...]
    dimensions: tuple[DimensionFigures, ...]
    cohorts: tuple[CohortFigures, ...]
    velocity_cohorts: tuple[VelocityCohort, ...]
    sigma: LedgerSigma
    sigma_lin: LedgerSigma | None = None
    warnings: tuple[str, ...] = ()
    definitions: Mapping[str, str] = field(default_factory=lambda: dict(DEFINITIONS))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe stored form (keys as in the issue-16 interface)."""
        return {
            "periods": list(self.periods),
            "monthly": [row.to_dict() for row in self.monthly],
            "ttm": [row.to_dict() for row in self.ttm],
            "dimensions": {d.name: d.to_dict() for d in self.dimensions},
            "cohorts": [c.to_dict() for c in self.cohorts],
            "velocity_cohorts": [v.to_dict() for v in self.velocity_cohorts],
            "sigma": self.sigma.to_dict(),
            "sigma_lin": None if self.sigma_lin is None else self.sigma_lin.to_dict(),
            "warnings": list(self.warnings),
            "definitions": dict(self.definitions),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LedgerFigures:
        """Inverse of :meth:`to_dict`.

        A document stored before ``warnings`` or ``sigma_lin`` existed is accepted: no
        warnings, and ``sigma_lin`` is ``None`` (it cannot be recomputed from the stored
        figures; planning then falls back to its other sources).
        """
        sigma_lin = data.get("sigma_lin")
        return cls(
            periods=tuple(str(p) for p in data["periods"]),
            monthly=tuple(PeriodFigures.from_dict(r) for r in data["monthly"]),
            ttm=tuple(TtmFigures.from_dict(r) for r in data["ttm"]),
            dimensions=tuple(
                DimensionFigures.from_dict(str(name), d) for name, d in data["dimensions"].items()
            ),
            cohorts=tuple(CohortFigures.from_dict(c) for c in data["cohorts"]),
            velocity_cohorts=tuple(VelocityCohort.from_dict(v) for v in data["velocity_cohorts"]),
            sigma=LedgerSigma.from_dict(data["sigma"]),
            sigma_lin=None if sigma_lin is None else LedgerSigma.from_dict(sigma_lin),
            warnings=tuple(str(w) for w in data.get("warnings", ())),
            definitions={str(k): str(v) for k, v in data.get("definitions", DEFINITIONS).items()},
        )

    def last_period(
        self, dimension: str | None = None, value: str | None = None
    ) -> PeriodFigures | None:
        """The last period's figures, company-wide or of one dimension value.

        Returns ``None`` for an empty ledger, an unknown dimension or value.
        """
        if not self.monthly:
            return None
        if dimension is None:
            return self.monthly[-1]
        for dim in self.dimensions:
            if dim.name == dimension:
                rows = dim.monthly.get(value) if value is not None else None
                return rows[-1] if rows else None
        return None

    def plain_sigma(
        self, dimension: str | None = None, value: str | None = None
    ) -> float | None:
        """Plain sd of account-level end/start in the last period (overall or of one
        dimension value); descriptive. The power calculation needs :meth:`linearised_sigma`.
        """
        if dimension is None:
            return self.sigma.overall
        return self.sigma.by_dimension.get(dimension, {}).get(value or "")

    def linearised_sigma(
        self, dimension: str | None = None, value: str | None = None
    ) -> float | None:
        """The planning σ (DESIGN §4's sigma_lin) of the last period, overall or of one
        dimension value; ``None`` for an unknown dimension or value, fewer than 2 accounts,
        or a document stored before ``sigma_lin`` existed.
        """
        if self.sigma_lin is None:
            return None
        if dimension is None:
            return self.sigma_lin.overall
        return self.sigma_lin.by_dimension.get(dimension, {}).get(value or "")


@dataclass(frozen=True)
class LedgerArrays:
    """The ledger as parallel arrays, one element per row (active or not).

    Attributes
    ----------
    account : ndarray of int
        Account codes ``0 .. A - 1``.
    period : ndarray of int
        Month index ``0 .. P - 1`` (0 = ``periods[0]``).
    start, expansion, contraction, churned : ndarray of float
        Currency units (not cents).
    customer_since : ndarray of float or None
        Per row, the month index of the account's customer_since relative to
        ``periods[0]`` (may be negative); NaN or below ``-1e8`` = blank.
    days_to_value : ndarray of float or None
        Per row, NaN = blank.
    dimensions : mapping of str to (ndarray of int, tuple of str)
        Per dimension column, the label code of each row and the labels.
        A negative code leaves the row out of that dimension's breakdown.
    periods : tuple of str
        ``"YYYY-MM"`` labels of months ``0 .. P - 1``, consecutive.

    Raises
    ------
    ValueError
        Arrays of different lengths, codes out of range, non-finite or
        negative money, or period labels that are not consecutive months.
    """

    account: np.ndarray
    period: np.ndarray
    start: np.ndarray
    expansion: np.ndarray
    contraction: np.ndarray
    churned: np.ndarray
    customer_since: np.ndarray | None = None
    days_to_value: np.ndarray | None = None
    dimensions: Mapping[str, tuple[np.ndarray, tuple[str, ...]]] = field(default_factory=dict)
    periods: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        periods = tuple(str(p) for p in self.periods)
        _check_consecutive(periods)
        object.__setattr__(self, "periods", periods)
        n = None
        for name in ("account", "period"):
            values = np.asarray(getattr(self, name))
            if values.size and not np.issubdtype(values.dtype, np.integer):
                raise ValueError(f"{name} must hold integer codes; got dtype {values.dtype}")
            values = values.astype(np.int64, copy=False).ravel()
            n = values.size if n is None else n
            if values.size != n:
                raise ValueError(f"{name} has {values.size} rows; expected {n}")
            object.__setattr__(self, name, values)
        if n and self.account.min() < 0:
            raise ValueError("account codes must be >= 0")
        if n and (self.period.min() < 0 or self.period.max() >= len(periods)):
            raise ValueError(f"period codes must lie in 0..{len(periods) - 1} (one label each)")
        for name in ("start", "expansion", "contraction", "churned"):
            values = np.asarray(getattr(self, name), dtype=np.float64).ravel()
            if values.size != n:
                raise ValueError(f"{name} has {values.size} rows; expected {n}")
            if not np.all(np.isfinite(values)) or (values.size and values.min() < 0):
                raise ValueError(f"{name} must be finite and >= 0")
            object.__setattr__(self, name, values)
        for name in ("customer_since", "days_to_value"):
            raw = getattr(self, name)
            if raw is None:
                continue
            values = np.asarray(raw, dtype=np.float64).ravel()
            if values.size != n:
                raise ValueError(f"{name} has {values.size} rows; expected {n}")
            object.__setattr__(self, name, values)
        dims: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
        for dim_name, (codes, labels) in self.dimensions.items():
            labels = tuple(str(label) for label in labels)
            codes = np.asarray(codes)
            if codes.size and not np.issubdtype(codes.dtype, np.integer):
                raise ValueError(f"dimension {dim_name!r} must hold integer codes")
            codes = codes.astype(np.int64, copy=False).ravel()
            if codes.size != n:
                raise ValueError(f"dimension {dim_name!r} has {codes.size} rows; expected {n}")
            if codes.size and codes.max() >= len(labels):
                raise ValueError(f"dimension {dim_name!r} has a code without a label")
            dims[str(dim_name)] = (codes, labels)
        object.__setattr__(self, "dimensions", dims)


_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def _month_number(label: str) -> int:
    match = _PERIOD.match(label)
    if match is None:
        raise ValueError(f"period label {label!r} is not YYYY-MM")
    return int(match.group(1)) * 12 + int(match.group(2)) - 1


def _check_consecutive(periods: tuple[str, ...]) -> None:
    months = [_month_number(p) for p in periods]
    for before, after, label in zip(months, months[1:], periods[1:], strict=False):
        if after != before + 1:
            raise ValueError(f"period labels must be consecutive months; {label!r} breaks the run")


def month_index(year: int, month: int, first_period: str) -> int:
    """Month index of ``year-month`` relative to the ledger's first period.

    Examples
    --------
    >>> month_index(2024, 11, "2025-01")
    -2
    """
    return year * 12 + month - 1 - _month_number(first_period)


def quarter_label(month_number: int) -> str:
    """``"YYYY-Qn"`` of an absolute month number ``year * 12 + month - 1``.

    Examples
    --------
    >>> quarter_label(2025 * 12 + 4)  # May 2025
    '2025-Q2'
    """
    return f"{month_number // 12}-Q{month_number % 12 // 3 + 1}"


MOVEMENTS = (
    "accounts",
    "start",
    "expansion",
    "contraction",
    "churned",
    "end",
    "kept",
    "logo",
    "new",
)


def _ratio(numerator: float, denominator: float) -> float | None:
    return finite_or_none(numerator / denominator) if denominator > 0 else None


def _group_sums(group: np.ndarray, n_groups: int, rows: Mapping[str, np.ndarray]) -> dict:
    """Per-group count and sums of the active-row measures (one ``bincount`` each)."""
    sums = {"accounts": np.bincount(group, minlength=n_groups)}
    for name in MOVEMENTS[1:]:
        sums[name] = np.bincount(group, weights=rows[name], minlength=n_groups)
    return sums


def _period_figures(sums: Mapping[str, np.ndarray], periods: tuple[str, ...], offset: int = 0):
    rows = []
    for p, label in enumerate(periods):
        i = offset + p
        start = float(sums["start"][i])
        accounts = int(sums["accounts"][i])
        rows.append(
            PeriodFigures(
                period=label,
                accounts=accounts,
                start_mrr=start,
                expansion_mrr=float(sums["expansion"][i]),
                contraction_mrr=float(sums["contraction"][i]),
                churned_mrr=float(sums["churned"][i]),
                end_mrr=float(sums["end"][i]),
                nrr=_ratio(sums["end"][i], start),
                grr=_ratio(sums["kept"][i], start),
                logo_churn=_ratio(sums["logo"][i], accounts),
                expansion_rate=_ratio(sums["expansion"][i], start),
                contraction_rate=_ratio(sums["contraction"][i], start),
                churn_rate=_ratio(sums["churned"][i], start),
                new_mrr=float(sums["new"][i]),
            )
        )
    return tuple(rows)


def _ttm_figures(window, periods: tuple[str, ...], offset: int = 0):
    """TTM rows for every period from the window sums of bases ``0 .. P - 12``."""
    rows = []
    for m, label in enumerate(periods):
        b = m - (TTM_MONTHS - 1)
        if b < 0:
            rows.append(TtmFigures(period=label, nrr=None, grr=None, accounts=None))
            continue
        i = offset + b
        start = float(window["start"][i])
        rows.append(
            TtmFigures(
                period=label,
                nrr=_ratio(window["end"][i], start),
                grr=_ratio(window["capped"][i], start),
                accounts=int(window["accounts"][i]),
            )
        )
    return tuple(rows)


def _window_sums(group: np.ndarray, n_groups: int, start, end_at_m) -> dict:
    return {
        "accounts": np.bincount(group, minlength=n_groups),
        "start": np.bincount(group, weights=start, minlength=n_groups),
        "end": np.bincount(group, weights=end_at_m, minlength=n_groups),
        "capped": np.bincount(group, weights=np.minimum(end_at_m, start), minlength=n_groups),
    }


def _sample_sd(group: np.ndarray, n_groups: int, values: np.ndarray) -> list[float | None]:
    """Two-pass sample standard deviation (ddof = 1) per group; ``None`` below 2 values."""
    counts = np.bincount(group, minlength=n_groups)
    means = np.bincount(group, weights=values, minlength=n_groups) / np.maximum(counts, 1)
    squares = np.bincount(group, weights=(values - means[group]) ** 2, minlength=n_groups)
    return [
        finite_or_none(math.sqrt(squares[g] / (counts[g] - 1))) if counts[g] >= 2 else None
        for g in range(n_groups)
    ]


def _linearised_sd(
    group: np.ndarray, n_groups: int, start: np.ndarray, end: np.ndarray
) -> list[float | None]:
    """Per group, sd(end - R·start, ddof = 1) / mean(start) with R = Σ end / Σ start of the
    group (DESIGN §4's sigma_lin); ``None`` below 2 rows. Every row has start > 0."""
    counts = np.bincount(group, minlength=n_groups)
    start_sums = np.bincount(group, weights=start, minlength=n_groups)
    ratio = np.bincount(group, weights=end, minlength=n_groups) / np.where(
        start_sums > 0, start_sums, 1.0
    )
    sds = _sample_sd(group, n_groups, end - ratio[group] * start)
    return [
        None if sd is None else finite_or_none(sd / (start_sums[g] / counts[g]))
        for g, sd in enumerate(sds)
    ]


def _velocity_cohorts(days, start, end_at_m) -> tuple[VelocityCohort, ...]:
    """Tercile groups of days_to_value over the last TTM window's base rows."""
    reached = ~np.isnan(days)
    group = np.full(days.shape, 3, dtype=np.int64)
    if reached.any():
        q1, q2 = np.quantile(days[reached], [1.0 / 3.0, 2.0 / 3.0])
        group[reached] = np.where(days[reached] <= q1, 0, np.where(days[reached] <= q2, 1, 2))
    sums = _window_sums(group, 4, start, end_at_m)
    result = []
    for g, name in enumerate(VELOCITY_COHORTS):
        members = group == g
        max_days = float(days[members].max()) if g < 3 and members.any() else None
        result.append(
            VelocityCohort(
                cohort=name,
                accounts=int(sums["accounts"][g]),
                max_days=max_days,
                ttm_nrr=_ratio(sums["end"][g], float(sums["start"][g])),
            )
        )
    return tuple(result)


def _cohorts(
    customer_since, account, period, start, end, first, first_month: int, n_periods: int
) -> tuple[CohortFigures, ...]:
    """Acquisition cohorts by customer_since quarter, NRR by age (active rows only)."""
    n_accounts = first.size
    since = np.full(n_accounts, np.nan)
    np.fmax.at(since, account, customer_since)  # an account attribute: the same on each row
    member = np.isfinite(since) & (since >= 0) & (first < n_periods)
    if not member.any():
        return ()
    quarter = (first_month + np.floor(since[member]).astype(np.int64)) // 3
    labels, code = np.unique(quarter, return_inverse=True)
    cohort_of = np.full(n_accounts, -1, dtype=np.int64)
    cohort_of[member] = code
    n_cohorts = labels.size
    row_cohort = cohort_of[account]
    keep = row_cohort >= 0
    c, age = row_cohort[keep], period[keep] - first[account[keep]] + 1
    start0 = np.bincount(c[age == 1], weights=start[keep][age == 1], minlength=n_cohorts)
    end_by_age = np.bincount(
        c * (n_periods + 1) + age, weights=end[keep], minlength=n_cohorts * (n_periods + 1)
    ).reshape(n_cohorts, n_periods + 1)
    reached = np.full(n_cohorts, n_periods, dtype=np.int64)
    np.minimum.at(reached, code, n_periods - first[member])
    accounts = np.bincount(code, minlength=n_cohorts)
    return tuple(
        CohortFigures(
            cohort=quarter_label(int(labels[k]) * 3),
            accounts=int(accounts[k]),
            start_mrr=float(start0[k]),
            nrr_by_age=tuple(
                _ratio(end_by_age[k, a], float(start0[k])) for a in range(1, int(reached[k]) + 1)
            ),
        )
        for k in range(n_cohorts)
    )


def ledger_figures(arrays: LedgerArrays) -> LedgerFigures:
    r"""Every figure of a revenue ledger (DESIGN §3b).

    Parameters
    ----------
    arrays : LedgerArrays
        One element per ledger row; ``(account, period)`` unique.

    Returns
    -------
    LedgerFigures
        Figures that cannot be computed (no active row, fewer than 12 periods,
        fewer than 2 accounts for σ) are ``None`` and explained in ``warnings``.

    Raises
    ------
    ValueError
        An ``(account, period)`` pair appears twice.

    Notes
    -----
    Active rows have :math:`s > 0`; per row :math:`e = s + x - c - h`
    (start, expansion, contraction, churned). Over the active rows of period
    :math:`t`:

    .. math::
        \mathrm{NRR}_t = \frac{\sum e}{\sum s}, \quad
        \mathrm{GRR}_t = \frac{\sum (s - c - h)}{\sum s}, \quad
        \text{logo churn}_t = \frac{\#\{h = s\}}{\#\{s > 0\}}

    With :math:`B_M` the accounts active in :math:`M - 11` and :math:`e_{i,M}`
    account :math:`i`'s end MRR at :math:`M` (0 if not active then):

    .. math::
        \mathrm{NRR}^{TTM}_M = \frac{\sum_{i \in B_M} e_{i,M}}{\sum_{i \in B_M} s_{i,M-11}},
        \quad
        \mathrm{GRR}^{TTM}_M = \frac{\sum_{i \in B_M} \min(e_{i,M}, s_{i,M-11})}
                                    {\sum_{i \in B_M} s_{i,M-11}}

    Cohort NRR at age :math:`a` sums :math:`e` of period
    :math:`f_i + a - 1` over the members (:math:`f_i` = first active period)
    and divides by their start at :math:`f_i`. Velocity terciles use
    linear-interpolation quantiles [3]_. σ is the sample standard deviation
    (ddof = 1) of :math:`e/s` over the last period's active rows, computed in
    two passes. The planning σ (``sigma_lin``, DESIGN §4) over the same rows
    :math:`i = 1..n` of a group is

    .. math::
        \sigma_{lin} = \frac{\mathrm{sd}(e_i - R s_i)}{\bar s}, \quad
        R = \frac{\sum e_i}{\sum s_i}

    (ddof = 1): the delta-method linearisation of the ratio :math:`R`, whose
    variance is :math:`\sigma_{lin}^2 / n` [4]_.

    References
    ----------
    .. [1] SaaS Capital (2019, 2020). B2B SaaS Retention Benchmarks, definitions
       of net and gross revenue retention.
    .. [2] KeyBanc Capital Markets & Sapphire Ventures. SaaS Survey, net and
       gross dollar retention.
    .. [3] Hyndman, R. J. & Fan, Y. (1996). Sample quantiles in statistical
       packages. The American Statistician, 50(4), 361-365.
    .. [4] Deng, A., Knoblich, U. & Lu, J. (2018). Applying the delta method in
       metric analytics: a practical guide with novel ideas. KDD '18, section 3
       (ratio metrics).

    Examples
    --------
    >>> arrays = LedgerArrays(
    ...     account=np.array([0, 1, 0]), period=np.array([0, 0, 1]),
    ...     start=np.array([100.0, 50.0, 110.0]), expansion=np.array([10.0, 0.0, 0.0]),
    ...     contraction=np.array([0.0, 0.0, 0.0]), churned=np.array([0.0, 50.0, 0.0]),
    ...     periods=("2025-01", "2025-02"))
    >>> figures = ledger_figures(arrays)
    >>> figures.monthly[0].nrr, figures.monthly[0].logo_churn
    (0.7333333333333333, 0.5)
    """
    periods = arrays.periods
    n_periods = len(periods)
    warnings: list[str] = []
    all_keys = arrays.account * max(n_periods, 1) + arrays.period
    order = np.argsort(all_keys, kind="stable")
    sorted_keys = all_keys[order]
    duplicate = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if duplicate.size:
        row = int(order[duplicate[0] + 1])
        raise ValueError(
            f"account code {int(arrays.account[row])} appears twice in period "
            f"{periods[int(arrays.period[row])]}"
        )

    active = arrays.start > 0
    idx = np.flatnonzero(active)
    account, period = arrays.account[idx], arrays.period[idx]
    start = arrays.start[idx]
    churned = arrays.churned[idx]
    rows = {
        "start": start,
        "expansion": arrays.expansion[idx],
        "contraction": arrays.contraction[idx],
        "churned": churned,
        "kept": start - arrays.contraction[idx] - churned,
    }
    rows["end"] = rows["kept"] + rows["expansion"]
    # churned <= start holds by contract; >= also absorbs a float that lands a hair above.
    rows["logo"] = (churned >= start).astype(np.float64)
    n_accounts = int(arrays.account.max()) + 1 if arrays.account.size else 0
    first = np.full(n_accounts, n_periods, dtype=np.int64)
    np.minimum.at(first, account, period)
    rows["new"] = np.where(period == first[account], start, 0.0)
    if not idx.size:
        warnings.append("The ledger has no active rows (start_mrr > 0): every ratio is null.")

    monthly = _period_figures(_group_sums(period, n_periods, rows), periods)

    # TTM: pair each active row at M - 11 with the same account's active row at M.
    n_bases = max(n_periods - (TTM_MONTHS - 1), 0)
    active_sorted = order[active[order]]
    active_keys = all_keys[active_sorted]
    base = period < n_bases
    target = all_keys[idx[base]] + (TTM_MONTHS - 1)
    pos = np.minimum(np.searchsorted(active_keys, target), max(active_keys.size - 1, 0))
    found = active_keys[pos] == target if active_keys.size else np.zeros(0, dtype=bool)
    end_all = rows["end"]
    end_at_row = np.empty(arrays.start.size)
    end_at_row[idx] = end_all
    end_at_m = np.where(found, end_at_row[active_sorted[pos]] if pos.size else 0.0, 0.0)
    base_period, base_start = period[base], start[base]
    ttm = _ttm_figures(_window_sums(base_period, n_bases, base_start, end_at_m), periods)
    if n_periods < TTM_MONTHS:
        warnings.append(
            f"The ledger covers {n_periods} period(s); TTM figures and velocity cohorts "
            f"need {TTM_MONTHS}."
        )

    dimensions = []
    by_dimension: dict[str, dict[str, float | None]] = {}
    lin_by_dimension: dict[str, dict[str, float | None]] = {}
    last = period == n_periods - 1
    account_nrr = end_all[last] / start[last]
    last_start, last_end = start[last], end_all[last]
    for name, (codes_all, labels) in arrays.dimensions.items():
        n_labels = len(labels)
        # A row without a value (negative code) goes to one extra, unreported label.
        codes = np.where(codes_all[idx] < 0, n_labels, codes_all[idx])
        sums = _group_sums(codes * n_periods + period, (n_labels + 1) * n_periods, rows)
        window = _window_sums(
            codes[base] * max(n_bases, 1) + base_period,
            (n_labels + 1) * max(n_bases, 1),
            base_start,
            end_at_m,
        )
        dimensions.append(
            DimensionFigures(
                name=name,
                values=labels,
                monthly={
                    label: _period_figures(sums, periods, offset=k * n_periods)
                    for k, label in enumerate(labels)
                },
                ttm={
                    label: _ttm_figures(window, periods, offset=k * max(n_bases, 1))
                    for k, label in enumerate(labels)
                },
            )
        )
        sds = _sample_sd(codes[last], n_labels + 1, account_nrr)
        by_dimension[name] = dict(zip(labels, sds[:n_labels], strict=True))
        lins = _linearised_sd(codes[last], n_labels + 1, last_start, last_end)
        lin_by_dimension[name] = dict(zip(labels, lins[:n_labels], strict=True))
    everyone = np.zeros(account_nrr.size, dtype=np.int64)
    overall = _sample_sd(everyone, 1, account_nrr)[0]
    overall_lin = _linearised_sd(everyone, 1, last_start, last_end)[0]
    if overall is None:
        warnings.append("Fewer than 2 active accounts in the last period: σ is null.")

    cohorts: tuple[CohortFigures, ...] = ()
    if arrays.customer_since is not None and n_periods:
        cohorts = _cohorts(
            arrays.customer_since[idx],
            account,
            period,
            start,
            end_all,
            first,
            _month_number(periods[0]),
            n_periods,
        )
    velocity: tuple[VelocityCohort, ...] = ()
    if arrays.days_to_value is not None and n_bases:
        in_last_window = base_period == n_bases - 1
        velocity = _velocity_cohorts(
            arrays.days_to_value[idx][base][in_last_window],
            base_start[in_last_window],
            end_at_m[in_last_window],
        )

    return LedgerFigures(
        periods=periods,
        monthly=monthly,
        ttm=ttm,
        dimensions=tuple(dimensions),
        cohorts=cohorts,
        velocity_cohorts=velocity,
        sigma=LedgerSigma(overall=overall, by_dimension=by_dimension),
        sigma_lin=LedgerSigma(overall=overall_lin, by_dimension=lin_by_dimension),
        warnings=tuple(warnings),
    )


__all__ = [
    "DEFINITIONS",
    "CohortFigures",
    "DimensionFigures",
    "LedgerArrays",
    "LedgerFigures",
    "LedgerSigma",
    "PeriodFigures",
    "TtmFigures",
    "VelocityCohort",
    "ledger_figures",
    "month_index",
    "quarter_label",
]
