"""A verdict together with its guardrail status: the one rule behind every list that shows
a verdict (issue 15 item 2: a "win" with a failed guardrail is shown as such).

The results page puts the guardrail status beside the headline verdict ("▲ Win — guardrail
failed: GRR"); :func:`verdict_status` gives the same pair to the experiment list, the
dashboard, the weekly review (page and exports), /me and the quarterly review, so that no
page shows the bare verdict while another shows the failure.

Rules
-----
* The **guardrail status** beside a headline verdict is the results page's headline status
  (:func:`experiments.nrr_figures_view.guardrail_status`): the worst over every treatment's
  guardrails, fail › inconclusive › pass, a guardrail that could not be computed counting
  as inconclusive; with several treatments a failing guardrail names its treatment. An
  analysis without guardrails has no status (nothing extra is shown).
* Beside one **comparison's** verdict (the review's portfolio, the CSV rows) the status is
  that comparison's own guardrails'.
* **Won — guardrail failed** (the quarterly review's count): the headline verdict is
  ``win`` and *every* treatment whose verdict is ``win`` failed at least one guardrail. Such
  an experiment is not counted as won. A win with an inconclusive guardrail still counts
  as won (and is shown with "guardrail inconclusive"); a win of one treatment whose
  guardrails passed counts as won even if another treatment failed one.

Pure apart from :func:`latest_verdict_statuses`, which reads the newest snapshots.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, select

from experiments.models import AnalysisSnapshot
from experiments.nrr_figures_view import (
    GuardrailStatus,
    guardrail_rows,
    guardrail_status,
    report_dict,
)
from experiments.stored_analyses import snapshot_key, stored_parts

__all__ = ["GuardrailStatus", "VerdictStatus",
           "comparison_guardrail_status", "latest_verdict_statuses", "report_guardrail_status",
           "verdict_status"]


def _comparisons(report: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    return [c for c in (report or {}).get("comparisons") or [] if isinstance(c, Mapping)]


def report_guardrail_status(source: Any) -> GuardrailStatus | None:
    """The headline guardrail status of a stored DESIGN §4b report (or ``None``).

    ``source`` is the report dict (a snapshot's ``result``, or just its ``comparisons``
    under that key) or an object with ``to_dict()``.
    """
    comparisons = _comparisons(report_dict(source))
    rows = [row for c in comparisons for row in guardrail_rows(c)]
    return guardrail_status(rows, several=len(comparisons) > 1)


def comparison_guardrail_status(comparison: Mapping[str, Any] | None) -> GuardrailStatus | None:
    """One comparison's guardrail status (its own guardrails only), or ``None``."""
    if not isinstance(comparison, Mapping):
        return None
    return guardrail_status(guardrail_rows(comparison))


@dataclass(frozen=True)
class VerdictStatus:
    """A headline verdict and the guardrail status shown beside it."""

    verdict: str | None
    guardrail: GuardrailStatus | None = None
    #: Every treatment that won failed a guardrail (see the module docstring).
    wins_failed_guardrail: bool = False

    @property
    def guardrail_failed(self) -> bool:
        return self.guardrail is not None and self.guardrail.status == "fail"

    @property
    def won_guardrail_failed(self) -> bool:
        """A ``win`` whose every winning treatment failed a guardrail."""
        return self.verdict == "win" and self.wins_failed_guardrail

    @property
    def status(self) -> str | None:
        """``fail`` / ``inconclusive`` / ``pass``, or ``None`` without guardrails."""
        return self.guardrail.status if self.guardrail else None

    @property
    def text(self) -> str | None:
        """``win — guardrail failed: GRR`` (the verdict alone without guardrails)."""
        if self.verdict and self.guardrail is not None:
            return f"{self.verdict} — {self.guardrail.text}"
        return self.verdict

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "guardrail_status": self.status,
                "guardrail_text": self.guardrail.text if self.guardrail else None}


def _wins_failed(comparisons: Iterable[Mapping[str, Any]]) -> bool:
    wins = [c for c in comparisons if c.get("verdict") == "win"]
    return bool(wins) and all(
        any(r.status == "fail" for r in guardrail_rows(c)) for c in wins)


def verdict_status(verdict: str | None, report: Any) -> VerdictStatus:
    """``verdict`` (the stored headline) with the guardrail status of ``report``."""
    comparisons = _comparisons(report_dict(report))
    if not verdict or not comparisons:
        return VerdictStatus(verdict)
    return VerdictStatus(verdict, report_guardrail_status({"comparisons": comparisons}),
                         _wins_failed(comparisons))


def latest_verdict_statuses(session: Session,
                            experiment_ids: Iterable[int] | None = None
                            ) -> dict[int, VerdictStatus]:
    """``{experiment_id: VerdictStatus}`` of each experiment's newest snapshot with a
    verdict (the registry's "latest verdict"), in one statement.

    The snapshots' analyses come parsed from :mod:`experiments.stored_analyses` (read
    and parsed once per process); ``experiment_ids`` limits the rows.
    """
    ranked = select(
        AnalysisSnapshot.id.label("snapshot_id"),
        func.row_number().over(
            partition_by=AnalysisSnapshot.experiment_id,
            order_by=(AnalysisSnapshot.computed_at.desc(), AnalysisSnapshot.id.desc()),
        ).label("rank"),
    ).where(AnalysisSnapshot.verdict.is_not(None))
    if experiment_ids is not None:
        wanted = sorted(set(experiment_ids))
        if not wanted:
            return {}
        ranked = ranked.where(AnalysisSnapshot.experiment_id.in_(wanted))
    newest = ranked.subquery()
    rows = session.exec(
        select(AnalysisSnapshot.experiment_id, AnalysisSnapshot.verdict, AnalysisSnapshot.id,
               AnalysisSnapshot.computed_at, AnalysisSnapshot.dataset_id)
        .join(newest, newest.c.snapshot_id == AnalysisSnapshot.id)
        .where(newest.c.rank == 1)
    ).all()
    results = stored_parts(session, [snapshot_key(i, at, d) for _e, _v, i, at, d in rows])
    out = {}
    for experiment_id, verdict, snapshot_id, _at, _dataset in rows:
        comparisons = results.get(snapshot_id, {}).get("comparisons")
        report = {"comparisons": comparisons if isinstance(comparisons, list) else []}
        out[experiment_id] = verdict_status(verdict, report)
    return out
