"""The dashboard: the tree, the experiments that are live, and what needs attention now."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlmodel import Session

from experiments.models import User
from experiments.nrr_page import Headline, current_ledger, headline, tree_targets
from experiments.registry import ExperimentRow, list_experiments, registry_rows
from experiments.review import ReviewRow, build_review, week_of
from experiments.tree import TreeNode, attach_actuals, load_tree

#: How far back "recent changes" reach on the dashboard.
RECENT_DAYS = 7
_STATUS_ORDER = {"running": 0, "stopped": 1, "draft": 2, "decided": 3}


@dataclass(frozen=True)
class Dashboard:
    roots: list[TreeNode]
    experiments: list[ExperimentRow]
    needs_decision: list[ReviewRow]
    alerts: list[ReviewRow]
    changed: list[ReviewRow]
    nrr: Headline | None = None  # current NRR/GRR from the ledger (None: no ledger yet)


def dashboard(session: Session, user: User, *, today: date) -> Dashboard:
    """What ``user`` should see first: live experiments, alerts and pending decisions.

    The alerts and the decision list are the weekly review's own rules, evaluated
    read-only over the last ``RECENT_DAYS`` days (a date-range review freezes nothing).
    """
    review = build_review(
        session, user, week_of(today), date_from=today - timedelta(days=RECENT_DAYS),
        date_to=today, rows_only=True,
    )
    rows = registry_rows(session, list_experiments(session, user))
    rows.sort(key=lambda r: (_STATUS_ORDER.get(r.experiment.status, 9), r.experiment.key))
    figures = current_ledger(session)
    return Dashboard(
        roots=attach_actuals(session, load_tree(session, user), figures),
        experiments=rows,
        needs_decision=review.needs_decision,
        alerts=review.alerts,
        changed=review.changed,
        nrr=headline(figures, tree_targets(session, user)),
    )
