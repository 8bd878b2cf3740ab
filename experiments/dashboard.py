"""The dashboard: the tree, the experiments that are live, and what needs attention now.

The page stays the same size whatever the number of experiments (issue 18): it lists at
most :data:`SHOWN` experiments (live ones first) with the count of each status and a link
to the full list, and at most :data:`SHOWN` alerts and pending decisions with the count of
the rest and a link to the weekly review, where every one of them is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta

from sqlmodel import Session

from experiments.documents import ExperimentInfo
from experiments.models import DriverNode, User
from experiments.nrr_page import Headline, current_ledger, headline, tree_targets
from experiments.reference_rows import all_rows
from experiments.review import build_review, week_of
from experiments.review_rows import ReviewRow
from experiments.tree import TreeNode, attach_actuals, load_tree
from experiments.verdict_status import GuardrailStatus

#: How far back "recent changes" reach on the dashboard.
RECENT_DAYS = 7
#: The most experiments, alerts and pending decisions the page lists (each; the rest
#: are counted and linked).
SHOWN = 10
STATUS_ORDER = ("running", "stopped", "draft", "decided")


@dataclass(frozen=True)
class DashboardRow:
    """One experiment in the dashboard's table."""

    experiment: ExperimentInfo
    branch: str | None  # the driver-tree node it sits on
    verdict: str | None
    guardrail: GuardrailStatus | None


@dataclass(frozen=True)
class Dashboard:
    roots: list[TreeNode]
    experiments: list[DashboardRow]  # the first SHOWN, live ones first
    experiment_count: int  # every experiment the user may see
    status_counts: list[tuple[str, int]]  # (status, count) in lifecycle order, non-zero only
    needs_decision: list[ReviewRow]  # the first SHOWN
    alerts: list[ReviewRow]  # the first SHOWN
    changed: list[ReviewRow]
    needs_decision_count: int = 0
    alerts_count: int = 0
    nrr: Headline | None = None  # current NRR/GRR from the ledger (None: no ledger yet)

    @property
    def more_experiments(self) -> int:
        return self.experiment_count - len(self.experiments)

    @property
    def more_alerts(self) -> int:
        return self.alerts_count - len(self.alerts)

    @property
    def more_decisions(self) -> int:
        return self.needs_decision_count - len(self.needs_decision)


def _rank(row: ReviewRow) -> tuple[int, str]:
    status = row.experiment.status
    return (STATUS_ORDER.index(status) if status in STATUS_ORDER else len(STATUS_ORDER),
            row.experiment.key)


def dashboard(session: Session, user: User, *, today: date,
              keep_rows: bool = False) -> Dashboard:
    """What ``user`` should see first: live experiments, alerts and pending decisions.

    The alerts and the decision list are the weekly review's own rules, evaluated
    read-only over the last ``RECENT_DAYS`` days (a date-range review freezes nothing);
    the experiments' table is made from the same rows (no second read of the registry).
    ``keep_rows`` is :func:`experiments.review.build_review`'s: only for a caller whose
    transaction has written nothing yet (then the rows kept per process may serve while
    no write has been committed).
    """
    review = build_review(
        session, user, week_of(today), date_from=today - timedelta(days=RECENT_DAYS),
        date_to=today, rows_only=True, keep_rows=keep_rows,
    )
    ranked = sorted(review.rows, key=_rank)
    counts = Counter(r.experiment.status for r in ranked)
    figures = current_ledger(session)
    return Dashboard(
        roots=attach_actuals(session, load_tree(session, user), figures),
        experiments=[
            DashboardRow(r.experiment, r.experiment.driver.name if r.experiment.driver else None,
                         r.verdict, r.guardrail)
            for r in ranked[:SHOWN]
        ],
        experiment_count=len(ranked),
        status_counts=[(s, counts[s]) for s in (*STATUS_ORDER, *sorted(set(counts) - set(
            STATUS_ORDER))) if counts[s]],
        needs_decision=review.needs_decision[:SHOWN],
        needs_decision_count=len(review.needs_decision),
        alerts=review.alerts[:SHOWN],
        alerts_count=len(review.alerts),
        changed=review.changed,
        # every node, as the review's branch list read them (the transaction's copy)
        nrr=headline(figures, tree_targets(session, user, all_rows(
            session, DriverNode, DriverNode.position, DriverNode.id))),
    )
