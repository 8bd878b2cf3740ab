"""Revenue impact of shipped experiments, honestly (issue 15 item 5).

It replaces "NRR points won this quarter", which added the raw test-group uplifts of the
quarter's ships. Two things were wrong with that sum: an uplift is a change in NRR *of the
test population*, not of the company, and the raw uplift of a winner overstates the truth
(the winner's curse: among many experiments, the ones that came out significant are, on
average, those whose noise pointed up — in simulation the mean uplift among wins was 0.057
against a true 0.030).

For every experiment decided ``ship`` in the quarter, with the decision record of
:mod:`experiments.decisions` (shipped variant, rollout share, eligible base):

* the shipped variant's comparison gives the raw uplift Δ and its interval;
* Δ is shrunk toward the portfolio's mean by :func:`stats.impact.shrink` (normal–normal
  empirical Bayes over every comparison shown with an interval, DerSimonian–Laird τ²),
  each comparison's standard error read from its interval as
  ``se = (hi − lo) / (2 · z(1 − α/2))`` with the analysis' α — the stored intervals use a
  Welch t (or permutation) critical value, so for small arms this overstates ``se``
  slightly, which shrinks a little more, never less;
* :func:`stats.impact.revenue_impact` turns each into money: monthly MRR
  ``Δ × eligible base × rollout share``, annualised × 12, with its interval carried through
  the same factors, and in company NRR points as ``monthly / company start MRR`` (the
  revenue ledger's latest period, :func:`company_start_mrr`; ``None`` without a ledger).

Quarter totals add the ships' figures; the interval of a total combines the ships'
half-widths in quadrature (independent experiments; each interval is symmetric).

References
----------
.. [1] Efron, B. & Morris, C. (1975). Data analysis using Stein's estimator and its
   generalizations. JASA, 70(350), 311-319.
.. [2] DerSimonian, R. & Laird, N. (1986). Meta-analysis in clinical trials. Controlled
   Clinical Trials, 7(3), 177-188.
.. [3] Kohavi, R., Tang, D. & Xu, Y. (2020). Trustworthy Online Controlled Experiments,
   ch. 7. Cambridge University Press.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from scipy import stats as scipy_stats
from sqlmodel import Session

from experiments.documents import ExperimentDocument
from experiments.review_weeks import parse_moment
from stats.impact import Impact, Shrinkage, revenue_impact, shrink

DEFAULT_ALPHA = 0.05
#: The interval level of the shrunk figures and of the totals.
INTERVAL_LEVEL = 0.95


def company_start_mrr(session: Session) -> float | None:
    """The company's start MRR (the revenue ledger's latest period), or ``None``."""
    from experiments.ledger import latest_start_mrr

    return _positive(latest_start_mrr(session))


def start_mrr_of(session: Session, figures: Any) -> float | None:
    """:func:`company_start_mrr` from the current ledger's figures already read
    (``stats.ledger.LedgerFigures``, or ``None``: no ledger, none usable): no second read."""
    from experiments.ledger import latest_start_mrr

    return _positive(latest_start_mrr(session, figures=figures))


def _positive(value: float | None) -> float | None:
    if value is None or not math.isfinite(value) or value <= 0:
        return None
    return float(value)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def standard_error(comparison: Mapping[str, Any], alpha: float) -> float | None:
    """The standard error of a comparison's uplift, read from its ``ci_abs`` at ``alpha``."""
    ci = comparison.get("ci_abs")
    if not isinstance(ci, Sequence) or isinstance(ci, str) or len(ci) != 2:
        return None
    lo, hi = _number(ci[0]), _number(ci[1])
    if lo is None or hi is None or hi <= lo:
        return None
    return (hi - lo) / (2.0 * _two_sided_z(alpha))


@lru_cache(maxsize=64)
def _two_sided_z(alpha: float) -> float:
    # One ppf per α, not per comparison: a review of 300 experiments asked scipy 300 times.
    return float(scipy_stats.norm.ppf(1.0 - alpha / 2.0))


def _alpha(document: ExperimentDocument) -> float:
    alpha = _number((document.result or {}).get("alpha"))
    return alpha if alpha is not None and 0 < alpha < 1 else DEFAULT_ALPHA


@dataclass(frozen=True)
class Estimate:
    """One comparison of the portfolio the prior is estimated from."""

    key: str
    variant: str
    uplift: float
    se: float


def portfolio_estimates(documents: Iterable[ExperimentDocument]) -> list[Estimate]:
    """Every comparison with an uplift and a proper interval (the shrinkage's portfolio)."""
    out = []
    for document in documents:
        alpha = _alpha(document)
        for comparison in document.comparisons:
            uplift = _number(comparison.get("uplift_abs"))
            se = standard_error(comparison, alpha)
            if uplift is not None and se is not None and se > 0:
                out.append(Estimate(document.key, str(comparison.get("variant")), uplift, se))
    return out


@dataclass(frozen=True)
class Total:
    """A sum of ships' figures with its interval (half-widths in quadrature)."""

    ships: int = 0
    monthly: float = 0.0
    annual: float = 0.0
    annual_half: float = 0.0
    points: float | None = 0.0
    points_half: float | None = 0.0

    @property
    def annual_ci(self) -> tuple[float | None, float | None]:
        if not self.ships:
            return (None, None)
        return (self.annual - self.annual_half, self.annual + self.annual_half)

    @property
    def points_ci(self) -> tuple[float | None, float | None]:
        if not self.ships or self.points is None or self.points_half is None:
            return (None, None)
        return (self.points - self.points_half, self.points + self.points_half)

    def plus(self, impact: Impact) -> Total:
        lo, hi = impact.annual_ci
        half = (hi - lo) / 2.0 if lo is not None and hi is not None else 0.0
        points = None if self.points is None or impact.company_points is None \
            else self.points + impact.company_points
        plo, phi = impact.company_points_ci
        points_half = None
        if points is not None and self.points_half is not None:
            step = (phi - plo) / 2.0 if plo is not None and phi is not None else 0.0
            points_half = math.hypot(self.points_half, step)
        return Total(self.ships + 1, self.monthly + (impact.monthly_mrr or 0.0),
                     self.annual + (impact.annual or 0.0), math.hypot(self.annual_half, half),
                     points, points_half)

    def to_json(self) -> dict[str, Any]:
        return {"ships": self.ships, "monthly_mrr": self.monthly if self.ships else None,
                "annual": self.annual if self.ships else None,
                "annual_ci": list(self.annual_ci),
                "company_points": self.points if self.ships else None,
                "company_points_ci": list(self.points_ci)}


@dataclass(frozen=True)
class ShippedImpact:
    """One ship of the quarter: what shipped to whom, its raw and shrunk impact."""

    key: str
    name: str
    branch_id: int | None
    branch: str | None
    decided_at: str | None
    shipped_variant: str | None
    rollout_share: float | None
    eligible_base: float | None
    uplift: float | None = None
    uplift_ci: tuple[float | None, float | None] = (None, None)
    shrunk: float | None = None
    shrunk_ci: tuple[float | None, float | None] = (None, None)
    raw_impact: Impact | None = None
    shrunk_impact: Impact | None = None
    missing: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "name": self.name, "branch": self.branch,
            "decided_at": self.decided_at, "shipped_variant": self.shipped_variant,
            "rollout_share": self.rollout_share, "eligible_base_mrr": self.eligible_base,
            "uplift_abs": self.uplift, "ci_abs": list(self.uplift_ci),
            "uplift_shrunk": self.shrunk, "ci_shrunk": list(self.shrunk_ci),
            "raw": self.raw_impact.to_dict() if self.raw_impact else None,
            "shrunk": self.shrunk_impact.to_dict() if self.shrunk_impact else None,
            "missing": self.missing,
        }


@dataclass(frozen=True)
class PortfolioImpact:
    """The quarter's ships with raw and shrunk impact, and their totals."""

    since: str
    ships: list[ShippedImpact]
    shrinkage: Shrinkage | None
    estimates: int
    company_start_mrr: float | None
    raw: Total = field(default_factory=Total)
    shrunk: Total = field(default_factory=Total)
    by_branch: dict[int | None, tuple[Total, Total]] = field(default_factory=dict)

    def branch_totals(self, branch_id: int | None) -> tuple[Total, Total]:
        return self.by_branch.get(branch_id, (Total(), Total()))

    def to_json(self) -> dict[str, Any]:
        s = self.shrinkage
        return {
            "since": self.since,
            "method": {"shrinkage": s.method if s else None,
                       "prior_mean": s.prior_mean if s else None,
                       "prior_var": s.prior_var if s else None,
                       "note": s.note if s else None, "estimates": self.estimates,
                       "interval_level": INTERVAL_LEVEL},
            "company_start_mrr": self.company_start_mrr,
            "ships": [ship.to_json() for ship in self.ships],
            "total_raw": self.raw.to_json(), "total_shrunk": self.shrunk.to_json(),
        }


def _base(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = Decimal(str(text))
    except InvalidOperation:
        return None
    return float(value) if value.is_finite() and value > 0 else None


def _missing(document: ExperimentDocument, comparison: Mapping[str, Any] | None,
             base: float | None) -> str | None:
    info = document.experiment
    if not info.shipped_variant or info.rollout_share is None:
        return ("decided before the decision record kept the shipped variant and rollout "
                "share: reopen and decide again to record them")
    if base is None:
        return "no eligible base recorded"
    if comparison is None:
        return f"no results for the shipped variant {info.shipped_variant!r}"
    if _number(comparison.get("uplift_abs")) is None:
        return "the shipped variant's uplift could not be computed"
    return None


def portfolio_impact(
    documents: Sequence[ExperimentDocument],
    *,
    since: datetime,
    until: datetime,
    company_mrr: float | None,
    branch_of: Callable[[ExperimentDocument], tuple[int | None, str | None]] | None = None,
) -> PortfolioImpact:
    """Raw and shrunk revenue impact of the ships decided in ``[since, until]``.

    ``documents`` are the experiments shown (the prior is estimated over all their
    comparisons); ``company_mrr`` the company's start MRR for NRR points (or ``None``);
    ``branch_of`` gives each document's branch (default: its own ``branch``).
    """
    def default_branch(document: ExperimentDocument) -> tuple[int | None, str | None]:
        branch = document.experiment.branch
        return (branch.id, branch.name) if branch else (None, None)

    branch_of = branch_of or default_branch
    estimates = portfolio_estimates(documents)
    shrinkage = shrink([e.uplift for e in estimates], [e.se for e in estimates]) \
        if estimates else None
    posterior = {}
    if shrinkage is not None:
        for estimate, value, sd in zip(estimates, shrinkage.shrunk, shrinkage.shrunk_se,
                                       strict=True):
            posterior[(estimate.key, estimate.variant)] = (value, sd)
    z = float(scipy_stats.norm.ppf(0.5 + INTERVAL_LEVEL / 2.0))

    ships: list[ShippedImpact] = []
    raw_total, shrunk_total = Total(), Total()
    by_branch: dict[int | None, tuple[Total, Total]] = {}
    for document in documents:
        info = document.experiment
        decided_at = parse_moment(info.decided_at)
        if info.decision != "ship" or decided_at is None or not since <= decided_at <= until:
            continue
        branch_id, branch_name = branch_of(document)
        comparison = next((c for c in document.comparisons
                           if c.get("variant") == info.shipped_variant), None) \
            if info.shipped_variant else None
        base = _base(info.eligible_base_mrr)
        ship = ShippedImpact(info.key, info.name, branch_id, branch_name, info.decided_at,
                             info.shipped_variant, info.rollout_share, base)
        missing = _missing(document, comparison, base)
        if missing is not None:
            ships.append(replace(ship, missing=missing))
            continue
        uplift = _number(comparison.get("uplift_abs"))
        ci = comparison.get("ci_abs") or (None, None)
        ci_raw = (_number(ci[0]), _number(ci[1])) if len(ci) == 2 else (None, None)
        raw = revenue_impact(uplift, ci_raw, base, float(info.rollout_share), company_mrr)
        shrunk_value, sd = posterior.get((info.key, info.shipped_variant), (None, None))
        shrunk_ci = (None, None)
        shrunk = None
        if shrunk_value is not None and sd is not None:
            shrunk_ci = (shrunk_value - z * sd, shrunk_value + z * sd)
            shrunk = revenue_impact(shrunk_value, shrunk_ci, base, float(info.rollout_share),
                                    company_mrr)
        ship = replace(ship, uplift=uplift, uplift_ci=ci_raw, shrunk=shrunk_value,
                        shrunk_ci=shrunk_ci, raw_impact=raw, shrunk_impact=shrunk)
        ships.append(ship)
        raw_total = raw_total.plus(raw)
        branch_raw, branch_shrunk = by_branch.get(branch_id, (Total(), Total()))
        branch_raw = branch_raw.plus(raw)
        if shrunk is not None:
            shrunk_total = shrunk_total.plus(shrunk)
            branch_shrunk = branch_shrunk.plus(shrunk)
        by_branch[branch_id] = (branch_raw, branch_shrunk)
    if company_mrr is None:
        raw_total = _no_points(raw_total)
        shrunk_total = _no_points(shrunk_total)
        by_branch = {k: (_no_points(a), _no_points(b)) for k, (a, b) in by_branch.items()}
    return PortfolioImpact(since=since.date().isoformat(), ships=ships, shrinkage=shrinkage,
                           estimates=len(estimates), company_start_mrr=company_mrr,
                           raw=raw_total, shrunk=shrunk_total, by_branch=by_branch)


def _no_points(total: Total) -> Total:
    return Total(total.ships, total.monthly, total.annual, total.annual_half, None, None)
