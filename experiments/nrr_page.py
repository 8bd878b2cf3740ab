"""The NRR page as one view model: the company's retention from the stored ledger figures.

Every number on the page (and in its CSV, JSON and printable exports) is read from the
figures stored with the current ledger (:func:`experiments.ledger.stored_figures`,
computed by :func:`stats.ledger.ledger_figures` when the ledger was uploaded); this
module only selects, orders and words them, and lays out the charts
(:mod:`experiments.charts`). Targets come from the driver tree: the visible node tied
to ``nrr`` (the root by default) and the one tied to ``grr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, select

from experiments import ledger as ledger_module
from experiments.access import visible_team_ids
from experiments.charts import (
    LineChart,
    SeriesData,
    Waterfall,
    compact_money,
    line_chart,
    percent,
    percent2,
    small_multiples,
    waterfall,
)
from experiments.errors import ValidationFailed
from experiments.formatting import pct, pts
from experiments.ledger_models import LedgerVersion
from experiments.models import DriverNode, User
from experiments.tree_actuals import node_metric
from stats.ledger import LedgerFigures, PeriodFigures, TtmFigures

#: Velocity cohorts in reading order, with the words the page uses.
VELOCITY_LABELS: Mapping[str, str] = {
    "fast": "Fast to value",
    "average": "Average time to value",
    "slow": "Slow to value",
    "not_reached": "Value not reached",
}


def stored_ledger(session: Session) -> LedgerFigures | str | None:
    """The current ledger's figures; the reason as text when they could not be computed
    at import (or cannot be read); ``None`` before the first upload."""
    return ledger_module.stored_figures(session)


def current_ledger(session: Session) -> LedgerFigures | None:
    """The stored figures of the current ledger, or ``None`` (no ledger, or none computed)."""
    figures = stored_ledger(session)
    return figures if isinstance(figures, LedgerFigures) else None


@dataclass(frozen=True)
class Targets:
    """The tree's NRR and GRR targets and baselines (trailing twelve months, fractions)."""

    nrr: float | None = None
    grr: float | None = None
    nrr_baseline: float | None = None
    grr_baseline: float | None = None
    nrr_node: str | None = None
    grr_node: str | None = None


_TARGET_CANDIDATES = select(DriverNode).where(
    or_(DriverNode.parent_id.is_(None), DriverNode.metric.in_(("nrr", "grr")))
).order_by(DriverNode.id)


def tree_targets(session: Session, user: User,
                 nodes: Sequence[DriverNode] | None = None) -> Targets:
    """Targets of the visible nodes tied to ``nrr`` (the root by default) and ``grr``
    (``nodes``: every node of the tree, when the caller has read them already)."""
    teams = visible_team_ids(session, user)
    found: dict[str, DriverNode] = {}
    if nodes is None:
        # Only the root and nodes tied to nrr/grr can qualify (node_metric): read just
        # those, not the whole tree, on every page that shows the headline.
        nodes = session.exec(_TARGET_CANDIDATES).all()
    else:
        nodes = sorted(nodes, key=lambda n: n.id)
    for node in nodes:
        if teams is not None and node.team_id is not None and node.team_id not in teams:
            continue
        metric = node_metric(node)
        if metric in ("nrr", "grr") and metric not in found:
            found[metric] = node
    nrr, grr = found.get("nrr"), found.get("grr")
    return Targets(
        nrr=nrr.target if nrr else None,
        grr=grr.target if grr else None,
        nrr_baseline=nrr.baseline if nrr else None,
        grr_baseline=grr.baseline if grr else None,
        nrr_node=nrr.name if nrr else None,
        grr_node=grr.name if grr else None,
    )


@dataclass(frozen=True)
class LedgerSource:
    """Which upload the page's figures come from (shown under the headline). The figures
    stored with a version cover the whole current ledger at its upload (a version may
    replace only some periods), so the periods are the figures' own."""

    version: int
    filename: str
    uploaded_at: datetime
    uploaded_by: str | None  # the uploader's name or email; None when the user is gone
    first_period: str | None = None
    last_period: str | None = None

    @property
    def text(self) -> str:
        """One sentence, e.g. "Computed at the upload of ledger version 3 (ledger.csv) on
        2026-11-29 by ana@example.com; the figures cover 2025-01 to 2026-10." """
        said = f"Computed at the upload of ledger version {self.version}"
        if self.filename:
            said += f" ({self.filename})"
        said += f" on {self.uploaded_at:%Y-%m-%d}"
        if self.uploaded_by:
            said += f" by {self.uploaded_by}"
        if self.first_period and self.last_period:
            said += f"; the figures cover {self.first_period} to {self.last_period}"
        return said + "."


def ledger_source(session: Session, figures: LedgerFigures | None = None) -> LedgerSource | None:
    """The current ledger version (the one :func:`stored_ledger` reads), or ``None``."""
    version = session.exec(
        select(LedgerVersion).where(LedgerVersion.status == "ready")
        .order_by(LedgerVersion.version.desc()).limit(1)
    ).first()
    if version is None or version.version is None:
        return None
    uploader = session.get(User, version.uploaded_by_id) if version.uploaded_by_id else None
    periods = list(figures.periods) if figures is not None else []
    return LedgerSource(
        version=version.version, filename=version.filename, uploaded_at=version.uploaded_at,
        uploaded_by=(uploader.name or uploader.email) if uploader else None,
        first_period=periods[0] if periods else None,
        last_period=periods[-1] if periods else None)


@dataclass(frozen=True)
class PeriodRow:
    """One period of the company table: the movements, the ratios and the TTM figures."""

    month: PeriodFigures
    ttm: TtmFigures | None

    @property
    def period(self) -> str:
        return self.month.period


@dataclass(frozen=True)
class GroupRow:
    """One value of a dimension in the selected period."""

    label: str
    month: PeriodFigures | None
    ttm: TtmFigures | None


@dataclass(frozen=True)
class Breakdown:
    dimension: str
    rows: tuple[GroupRow, ...]
    measure: str  # what the small multiples draw
    multiples: tuple[LineChart, ...]


@dataclass(frozen=True)
class CohortRow:
    cohort: str
    accounts: int
    start_mrr: float
    nrr_by_age: tuple[float | None, ...]


@dataclass(frozen=True)
class VelocityRow:
    cohort: str
    label: str
    accounts: int
    max_days: float | None
    ttm_nrr: float | None


@dataclass(frozen=True)
class NrrPage:
    """Everything the NRR page shows; ``figures is None`` is the empty state."""

    figures: LedgerFigures | None
    targets: Targets = field(default_factory=Targets)
    period: str | None = None  # the period the waterfall and the breakdown show
    rows: tuple[PeriodRow, ...] = ()
    sentences: tuple[str, ...] = ()
    trend: LineChart | None = None
    rates: LineChart | None = None
    waterfall: Waterfall | None = None
    dimensions: tuple[str, ...] = ()
    breakdown: Breakdown | None = None
    cohorts: tuple[CohortRow, ...] = ()
    cohort_ages: int = 0
    cohort_chart: LineChart | None = None
    velocity: tuple[VelocityRow, ...] = ()
    warnings: tuple[str, ...] = ()
    problem: str | None = None  # why a stored ledger has no figures
    source: LedgerSource | None = None  # the upload the figures come from

    @property
    def empty(self) -> bool:
        return self.figures is None or not self.figures.periods

    @property
    def selected(self) -> PeriodRow | None:
        return next((r for r in self.rows if r.period == self.period), None)

    @property
    def latest(self) -> PeriodRow | None:
        return self.rows[-1] if self.rows else None

    @property
    def has_ttm(self) -> bool:
        return any(r.ttm is not None and r.ttm.nrr is not None for r in self.rows)

    @property
    def definitions(self) -> Mapping[str, str]:
        return self.figures.definitions if self.figures is not None else {}


def _gap(actual: float | None, target: float | None) -> str:
    if actual is None or target is None:
        return ""
    diff = actual - target
    if abs(diff) < 5e-5:
        return " (on target)"
    return f" ({pts(abs(diff), 1).lstrip('+')} {'above' if diff > 0 else 'short of'} the " \
           f"target of {pct(target, 1)})"


def _sentences(latest: PeriodRow, targets: Targets) -> tuple[str, ...]:
    m, t = latest.month, latest.ttm
    said = []
    if t is not None and t.nrr is not None:
        said.append(
            f"Over the twelve months to {m.period}, net revenue retention was {pct(t.nrr, 1)}"
            f"{_gap(t.nrr, targets.nrr)} and gross revenue retention {pct(t.grr, 1)}"
            f"{_gap(t.grr, targets.grr)}, on the {t.accounts:,} accounts that were customers "
            "twelve months earlier."
        )
    else:
        said.append(
            "Trailing-twelve-month NRR and GRR need 12 periods of ledger; until then the "
            "page shows monthly figures."
        )
    if m.nrr is not None:
        said.append(
            f"In {m.period}, {m.accounts:,} accounts started with {compact_money(m.start_mrr)} "
            f"MRR: expansion added {compact_money(m.expansion_mrr)}, contraction took "
            f"{compact_money(m.contraction_mrr)} and churn {compact_money(m.churned_mrr)}, "
            f"ending at {compact_money(m.end_mrr)} — monthly NRR {pct(m.nrr, 1)}, GRR "
            f"{pct(m.grr, 1)}, logo churn {pct(m.logo_churn, 2)}."
        )
    if m.new_mrr:
        said.append(f"New business in {m.period}: {compact_money(m.new_mrr)} MRR from accounts "
                    "in their first month (not counted as expansion).")
    return tuple(said)


def _pick(options: Sequence[str], wanted: str | None, what: str) -> str | None:
    if wanted is None or wanted == "":
        return None
    if wanted not in options:
        known = ", ".join(options) if options else "none"
        raise ValidationFailed(
            {what: f"no {what} {wanted[:40]!r} in the current ledger (it has: {known})"})
    return wanted


def _breakdown(figures: LedgerFigures, name: str, index: int, periods: Sequence[str],
               targets: Targets) -> Breakdown:
    dim = next(d for d in figures.dimensions if d.name == name)
    rows = []
    for label in dim.values:
        monthly, ttm = dim.monthly.get(label, ()), dim.ttm.get(label, ())
        rows.append(GroupRow(label, monthly[index] if index < len(monthly) else None,
                             ttm[index] if index < len(ttm) else None))
    use_ttm = any(t.nrr is not None for values in dim.ttm.values() for t in values)
    groups = [
        SeriesData("nrr", label,
                   [t.nrr for t in dim.ttm.get(label, ())] if use_ttm
                   else [m.nrr for m in dim.monthly.get(label, ())])
        for label in dim.values
    ]
    measure = "TTM NRR" if use_ttm else "monthly NRR"
    refs = [("hundred", "100%", 1.0)]
    if use_ttm and targets.nrr is not None:
        refs.append(("target", "Target", targets.nrr))
    multiples = small_multiples(periods, groups, what=f"{measure} by {name}", references=refs)
    return Breakdown(name, tuple(rows), measure, multiples)


def build_page(figures: LedgerFigures | None, targets: Targets = Targets(), *,
               dimension: str | None = None, period: str | None = None) -> NrrPage:
    """The page for ``figures`` (``None``: the empty state).

    Raises
    ------
    ValidationFailed
        ``dimension`` or ``period`` is not in the ledger (the message lists what is).
    """
    if figures is None or not figures.periods:
        return NrrPage(figures=figures, targets=targets)
    periods = figures.periods
    ttm_by_period = {t.period: t for t in figures.ttm}
    rows = tuple(PeriodRow(m, ttm_by_period.get(m.period)) for m in figures.monthly)
    chosen = _pick(periods, period, "period") or periods[-1]
    index = periods.index(chosen)
    names = tuple(d.name for d in figures.dimensions)
    chosen_dim = _pick(names, dimension, "dimension")
    has_ttm = any(t.nrr is not None for t in figures.ttm)
    series = [
        SeriesData("nrr", "NRR (monthly)", [r.month.nrr for r in rows]),
        SeriesData("grr", "GRR (monthly)", [r.month.grr for r in rows]),
    ]
    if has_ttm:
        series += [
            SeriesData("ttm-nrr", "NRR (TTM)", [r.ttm.nrr if r.ttm else None for r in rows]),
            SeriesData("ttm-grr", "GRR (TTM)", [r.ttm.grr if r.ttm else None for r in rows]),
        ]
    refs: list[tuple[str, str, float | None]] = [("hundred", "100%", 1.0)]
    if has_ttm:
        refs += [("target", "NRR target", targets.nrr), ("target-grr", "GRR target", targets.grr)]
    trend = line_chart(periods, series, title="NRR and GRR by month and trailing twelve months",
                       references=refs)
    rates = line_chart(
        periods,
        [SeriesData("expansion", "Expansion rate", [r.month.expansion_rate for r in rows]),
         SeriesData("contraction", "Contraction rate", [r.month.contraction_rate for r in rows]),
         SeriesData("churn", "Churn rate", [r.month.churn_rate for r in rows]),
         SeriesData("logo-churn", "Logo churn", [r.month.logo_churn for r in rows])],
        title="Monthly movement rates (share of start MRR; logo churn: share of accounts)",
        value_format=percent2,
    )
    month = rows[index].month
    flow = waterfall(month.period, month.start_mrr, month.expansion_mrr, month.contraction_mrr,
                     month.churned_mrr) if month.accounts else None
    cohorts = tuple(CohortRow(c.cohort, c.accounts, c.start_mrr, c.nrr_by_age)
                    for c in figures.cohorts)
    ages = max((len(c.nrr_by_age) for c in cohorts), default=0)
    cohort_chart = line_chart(
        [f"{a}" for a in range(1, ages + 1)],
        [SeriesData(f"cohort-{i % 6}", c.cohort, c.nrr_by_age) for i, c in enumerate(cohorts)],
        title="Cohort NRR by age in months (cohorts by customer-since quarter)",
        references=[("hundred", "100%", 1.0)], value_format=percent, x_labels=12,
    ) if ages else None
    velocity = tuple(
        VelocityRow(v.cohort, VELOCITY_LABELS.get(v.cohort, v.cohort), v.accounts, v.max_days,
                    v.ttm_nrr)
        for v in figures.velocity_cohorts
    )
    return NrrPage(
        figures=figures,
        targets=targets,
        period=chosen,
        rows=rows,
        sentences=_sentences(rows[-1], targets),
        trend=trend,
        rates=rates,
        waterfall=flow,
        dimensions=names,
        breakdown=_breakdown(figures, chosen_dim, index, periods, targets) if chosen_dim else None,
        cohorts=cohorts,
        cohort_ages=ages,
        cohort_chart=cohort_chart,
        velocity=velocity,
        warnings=figures.warnings,
    )


def nrr_page(session: Session, user: User, *, dimension: str | None = None,
             period: str | None = None) -> NrrPage:
    """The NRR page of the current ledger as ``user`` sees it (targets from visible nodes).

    Raises
    ------
    ValidationFailed
        An unknown dimension or period.
    """
    stored = stored_ledger(session)
    source = ledger_source(session, stored if isinstance(stored, LedgerFigures) else None)
    if isinstance(stored, str):
        return NrrPage(figures=None, problem=stored, source=source)
    page = build_page(stored, tree_targets(session, user), dimension=dimension, period=period)
    return replace(page, source=source)


@dataclass(frozen=True)
class Headline:
    """Current NRR and GRR with their trend and targets (the dashboard's top line)."""

    period: str
    basis: str  # "trailing twelve months" or "monthly" (before the 12th period)
    nrr: float | None
    grr: float | None
    targets: Targets
    trend: LineChart

    @property
    def ttm(self) -> bool:
        """The targets are trailing-twelve-month figures: a monthly one is not held to them."""
        return self.basis != "monthly"

    @property
    def nrr_gap(self) -> str:
        return _gap(self.nrr, self.targets.nrr) if self.ttm else ""

    @property
    def grr_gap(self) -> str:
        return _gap(self.grr, self.targets.grr) if self.ttm else ""


def headline(figures: LedgerFigures | None, targets: Targets) -> Headline | None:
    """The latest TTM NRR and GRR (monthly ones before the 12th period), or ``None``
    without a ledger; the trend draws them over the last 24 periods with the targets."""
    if figures is None or not figures.periods:
        return None
    recent = slice(-24, None)
    periods = figures.periods[recent]
    ttm = figures.ttm[recent]
    if ttm and ttm[-1].nrr is not None:
        basis, nrr, grr = "trailing twelve months", ttm[-1].nrr, ttm[-1].grr
        series = [SeriesData("ttm-nrr", "NRR (TTM)", [t.nrr for t in ttm]),
                  SeriesData("ttm-grr", "GRR (TTM)", [t.grr for t in ttm])]
        refs = [("hundred", "100%", 1.0), ("target", "NRR target", targets.nrr),
                ("target-grr", "GRR target", targets.grr)]
    else:
        last = figures.monthly[-1]
        basis, nrr, grr = "monthly", last.nrr, last.grr
        monthly = figures.monthly[recent]
        series = [SeriesData("nrr", "NRR (monthly)", [m.nrr for m in monthly]),
                  SeriesData("grr", "GRR (monthly)", [m.grr for m in monthly])]
        refs = [("hundred", "100%", 1.0)]
    trend = line_chart(periods, series, title=f"NRR and GRR ({basis}), last {len(periods)} "
                       "periods", references=refs, width=560, height=200, x_labels=6)
    return Headline(figures.periods[-1], basis, nrr, grr, targets, trend)


# ------------------------------------------------------------------ exports

#: Columns of the NRR CSV: one row per scope × group × period (or cohort age).
CSV_COLUMNS: tuple[str, ...] = (
    "scope", "dimension", "group", "period", "accounts", "start_mrr", "expansion_mrr",
    "contraction_mrr", "churned_mrr", "end_mrr", "new_mrr", "nrr", "grr", "logo_churn",
    "expansion_rate", "contraction_rate", "churn_rate", "ttm_nrr", "ttm_grr", "ttm_accounts",
    "age_months", "max_days_to_value",
)


def _month_cells(m: PeriodFigures | None, t: TtmFigures | None) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    if m is not None:
        cells.update({k: v for k, v in m.to_dict().items() if k != "period"})
    if t is not None:
        cells.update(ttm_nrr=t.nrr, ttm_grr=t.grr, ttm_accounts=t.accounts)
    return cells


def csv_rows(figures: LedgerFigures) -> list[dict[str, Any]]:
    """The stored figures as long-format rows (company, every dimension value, cohorts,
    velocity cohorts), in the column names of :data:`CSV_COLUMNS`."""
    out: list[dict[str, Any]] = []
    ttm = {t.period: t for t in figures.ttm}
    for m in figures.monthly:
        out.append({"scope": "company", "period": m.period,
                    **_month_cells(m, ttm.get(m.period))})
    for dim in figures.dimensions:
        for label in dim.values:
            dim_ttm = {t.period: t for t in dim.ttm.get(label, ())}
            for m in dim.monthly.get(label, ()):
                out.append({"scope": "dimension", "dimension": dim.name, "group": label,
                            "period": m.period, **_month_cells(m, dim_ttm.get(m.period))})
    for c in figures.cohorts:
        for age, value in enumerate(c.nrr_by_age, start=1):
            out.append({"scope": "cohort", "group": c.cohort, "accounts": c.accounts,
                        "start_mrr": c.start_mrr, "age_months": age, "nrr": value})
    last = figures.periods[-1] if figures.periods else None
    for v in figures.velocity_cohorts:
        out.append({"scope": "velocity", "group": v.cohort, "period": last,
                    "accounts": v.accounts, "max_days_to_value": v.max_days,
                    "ttm_nrr": v.ttm_nrr})
    return out
