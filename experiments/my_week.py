"""My week: one person's branches, experiments with their next step, open actions and
the decisions they owe — the landing page after sign-in for everyone but admins.

The experiment rows are this week's review rows (:func:`experiments.review_rows.review_rows`
over the running ISO week, as of now), so "needs a decision" and the alerts are the
review's own rules, not a second copy: an experiment *owes a decision* exactly when this
week's review lists it under "Needs a decision".
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from experiments.access import visible_team_ids
from experiments.actions import ActionView, open_actions_of
from experiments.models import DriverNode, Experiment, User, utcnow
from experiments.reference_rows import all_rows
from experiments.review_rows import ReviewRow, review_rows
from experiments.review_weeks import Week, Window, aware, current_week


@dataclass(frozen=True)
class MyExperiment:
    """One of my experiments with what happens next."""

    row: ReviewRow
    next_step: str
    owes_decision: bool

    @property
    def key(self) -> str:
        return self.row.key


@dataclass(frozen=True)
class MyBranch:
    """A driver-tree node I own, with how many experiments sit under it by status."""

    node: DriverNode
    counts: dict[str, int]


@dataclass(frozen=True)
class MyWeek:
    user: User
    week: Week
    branches: list[MyBranch]
    experiments: list[MyExperiment]
    actions: list[ActionView]

    @property
    def decisions_owed(self) -> list[MyExperiment]:
        return [e for e in self.experiments if e.owes_decision]

    @property
    def overdue_actions(self) -> list[ActionView]:
        return [a for a in self.actions if a.overdue]


def next_step(row: ReviewRow) -> str:
    """What the owner of ``row``'s experiment should do next, in a sentence."""
    info, flags = row.experiment, row.review
    if flags.needs_decision:
        return "Decide ship, iterate or kill: " + "; ".join(flags.needs_decision)
    if info.status == "draft":
        return "Finish the plan and start it"
    if info.status == "running":
        if flags.alerts:
            return "Look into it: " + "; ".join(a.text for a in flags.alerts)
        if row.document.dataset is None:
            return "Upload the first account data"
        if flags.required_n is not None and flags.smallest_arm is not None:
            return (f"Keep collecting: {flags.smallest_arm:,} of {flags.required_n:,} accounts "
                    "in the smallest arm")
        return "Keep collecting data and upload new versions as they come"
    if info.status == "decided":
        return f"Decided {info.decision}: nothing to do" if info.decision else "Decided"
    return "Review the results"


def my_week(session: Session, user: User, *, now: datetime | None = None) -> MyWeek:
    """``user``'s week: branches they own, experiments they own (with this week's review
    flags), their open actions and the decisions they owe, all within what they may see."""
    now = aware(now) or utcnow()
    week = current_week(now)
    teams = visible_team_ids(session, user)

    def visible(team_id: int | None) -> bool:
        return teams is None or team_id is None or team_id in teams

    mine = [e for e in session.exec(select(Experiment).where(Experiment.owner_id == user.id)
                                    .order_by(Experiment.key)).all() if visible(e.team_id)]
    window = Window(week.previous.start, week.end, now)
    rows = review_rows(session, window, mine)
    experiments = [MyExperiment(row, next_step(row), bool(row.review.needs_decision))
                   for row in rows]
    experiments.sort(key=lambda e: (not e.owes_decision, e.row.experiment.status, e.key))

    nodes = all_rows(session, DriverNode)
    parent = {n.id: n.parent_id for n in nodes}
    owned = [n for n in nodes if n.owner_id == user.id and visible(n.team_id)]
    counts: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    owned_ids = {n.id for n in owned}
    for node_id, status, team_id in session.exec(
            select(Experiment.node_id, Experiment.status, Experiment.team_id)).all():
        if not visible(team_id):
            continue
        seen: set[int] = set()
        current = node_id
        while current is not None and current not in seen:
            seen.add(current)
            if current in owned_ids:
                counts[current][status] += 1
            current = parent.get(current)
    branches = [MyBranch(n, dict(counts[n.id]))
                for n in sorted(owned, key=lambda n: (n.position, n.name.casefold()))]
    return MyWeek(user=user, week=week, branches=branches, experiments=experiments,
                  actions=open_actions_of(session, user, user, now=now))
