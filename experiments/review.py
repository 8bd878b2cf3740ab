"""The weekly review meeting: what needs a decision, what changed, what is alarming,
the driver-tree summary and the portfolio — and the meeting's notes, actions and
decisions, one item per experiment.

This module builds the review. Its parts live beside it: ISO weeks and windows in
:mod:`experiments.review_weeks`, each experiment's frozen as-of row (over the one
experiment document of :mod:`experiments.documents`) and the meeting's copy of them in
:mod:`experiments.review_rows`, and item edits in :mod:`experiments.review_items`.

Time model
----------
A review covers the ISO week ``YYYY-Www``, Monday 00:00 UTC to the next Monday.
Everything is evaluated *as of* the end of that week, or *now* while the week is
still running: an experiment's status comes from its started/stopped/decided
timestamps (capped by its current status), its results from the newest analysis
snapshot computed by then, and experiments created later do not exist yet.

"Changed since last review" looks at the window **from the start of the previous
ISO week to the end of this one**. The previous meeting was held some day last week;
starting the window at that week's Monday means nothing that happened after it is
ever missed, whatever day it was held — at the price that a change can be listed on
two consecutive weeks' pages. The verdict change compares the snapshot in force at
the window start with the one in force now (e.g. ``underpowered → win``).

The driver-tree summary (each node's latest actual against its target, and the company
start MRR the revenue impact uses) is kept with the week on the same terms as its rows
(:mod:`experiments.review_tree`): a past week shows what its views showed, not today's
corrected actuals or ledger.

A review for a date range (``date_from``/``date_to``) is a read-only report built
the same way as of the end of the range; it is neither frozen nor editable.

The agenda
----------
One item per experiment in the three action sections or already noted/decided: those
that need a decision first, then the rest, each group in page order. The page shows
:data:`AGENDA_PAGE_SIZE` items at a time (``agenda_page``); every item also has a page of
its own, which the sections link to. Exports and the API get the whole agenda.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.orm import defer
from sqlmodel import Session, select

from experiments.access import visible_team_ids
from experiments.actions import ActionView, action_form_choices, week_actions
from experiments.documents import STATUS_ORDER
from experiments.errors import NotFound
from experiments.impact import PortfolioImpact, portfolio_impact
from experiments.input_rules import FieldErrors, read_date_range, read_id, read_page
from experiments.models import DriverNode, Experiment, ReviewItem, ReviewMeeting, User, utcnow
from experiments.reference_rows import all_rows
from experiments.review_items import ItemView, get_item, item_views, update_item
from experiments.review_rows import (
    ReviewRow,
    every_review_row,
    meeting_state,
)
from experiments.review_tree import TreeCopy, tree_now, week_tree
from experiments.review_weeks import (
    Week,
    Window,
    aware,
    current_week,
    iso,
    midnight,
    parse_moment,
    parse_week,
    quarter_start,
    week_of,
)
from experiments.tree import branch_ids
from experiments.tree_actuals import ActualLine
from experiments.verdict_status import comparison_guardrail_status
from stats import bh_adjust

#: Agenda items (each a form) on one page of the review; the rest are a pager away, and
#: each has a page of its own (issue 18: 300 forms made the page take a second).
AGENDA_PAGE_SIZE = 10

__all__ = ["AGENDA_PAGE_SIZE", "ItemView", "Review", "ReviewRow", "Week", "Window",
           "build_review", "current_week", "get_item", "parse_week", "update_item", "week_of"]


# Statements every view sends, built once (issue 18: building a statement per view cost
# about as much as running it on the demo).
#: Every experiment's id, key, name and team now.
_CATALOGUE = select(Experiment.id, Experiment.key, Experiment.name,
                    Experiment.team_id).order_by(Experiment.key)
#: The shown agenda items (``ids``) with their experiments.
_SHOWN_ITEMS = (select(ReviewItem, Experiment)
                .outerjoin(Experiment, Experiment.id == ReviewItem.experiment_id)
                .where(ReviewItem.id.in_(bindparam("ids", expanding=True)))
                .options(defer(ReviewItem.seen)))
#: Each item of a meeting (``meeting_id``): experiment, id, note and decision.
_ITEM_HEADS = select(ReviewItem.experiment_id, ReviewItem.id, ReviewItem.note,
                     ReviewItem.decision).where(ReviewItem.meeting_id == bindparam("meeting_id"))


@dataclass
class Review:
    """A weekly (or date-range) review as one user may see it."""

    week: Week
    window: Window
    mode: str  # "week" | "range"
    frozen: bool
    editable: bool
    date_from: date | None
    date_to: date | None
    branch: dict[str, Any] | None
    branch_choices: list[tuple[int, str]]
    rows: list[ReviewRow]
    needs_decision: list[ReviewRow]
    changed: list[ReviewRow]
    alerts: list[ReviewRow]
    summary: list[dict[str, Any]]
    portfolio: list[dict[str, Any]]
    agenda: list[ItemView]
    meeting_id: int | None
    actions: list[ActionView] = field(default_factory=list)  # carried in, raised, closed
    # What the "raise an action" form offers, once the week has begun (None: no form).
    action_choices: dict[str, Any] | None = None
    # Tree nodes' latest actuals as of the review against their targets (issue 16).
    tree_actuals: list[ActualLine] = field(default_factory=list)
    # A week's kept tree summary (experiments.review_tree): the day its actuals are dated
    # by, and whether it was reconstructed after the week (None: a range or a preview).
    tree_kept: TreeCopy | None = None
    # The quarter's ships: raw and shrunk revenue impact (experiments.impact, issue 15).
    impact: PortfolioImpact | None = None
    # The meeting's item id of each experiment shown (key → id), for links to item pages.
    item_ids: dict[str, int] = field(default_factory=dict)
    # The whole agenda's size, and which page of it ``agenda`` is (1-based) of how many.
    agenda_size: int = 0
    agenda_page: int = 1
    agenda_pages: int = 1

    @property
    def agenda_keys(self) -> set[str]:
        """Keys of the experiments whose items are on this page of the agenda."""
        return {view.key for view in self.agenda}

    @property
    def quarter_start(self) -> date:
        return quarter_start(self.point_in_time.date())

    @property
    def point_in_time(self) -> datetime:
        if self.window.closed:
            return self.window.as_of - timedelta(microseconds=1)
        return self.window.as_of

    @property
    def title(self) -> str:
        if self.mode == "range":
            return f"Review {self.date_from.isoformat()} to {self.date_to.isoformat()}"
        return f"Weekly review {self.week.label}"

    def to_dict(self) -> dict[str, Any]:
        """The review as plain JSON (the export's source); each experiment is its
        document's :meth:`~experiments.documents.ExperimentDocument.to_json` plus
        ``"review"``."""
        return {
            "review": {
                "week": self.week.label,
                "mode": self.mode,
                "title": self.title,
                "from": self.date_from.isoformat() if self.date_from else None,
                "to": self.date_to.isoformat() if self.date_to else None,
                "changes_window": {"from": iso(self.window.changes_from),
                                   "to": iso(self.window.changes_to)},
                "as_of": iso(self.window.as_of),
                "frozen": self.frozen,
                "branch": self.branch,
                "quarter_start": self.quarter_start.isoformat(),
            },
            "needs_decision": [{"key": r.key, "reasons": list(r.review.needs_decision)}
                               for r in self.needs_decision],
            "changed": [{"key": r.key, "changes": [c.to_json() for c in r.review.changes],
                         "verdict_before": r.review.verdict_before,
                         "verdict_now": r.review.verdict_now,
                         "guardrail_status": r.verdict_status.status,
                         "guardrail_text": r.verdict_status.to_json()["guardrail_text"]}
                        for r in self.changed],
            "alerts": [{"key": r.key, "alerts": [a.to_json() for a in r.review.alerts]}
                       for r in self.alerts],
            "driver_tree_summary": self.summary,
            "impact": self.impact.to_json() if self.impact else None,
            "driver_tree_actuals": [line.to_json() for line in self.tree_actuals],
            "driver_tree_actuals_kept": self.tree_kept.kept_json() if self.tree_kept else None,
            "portfolio": [{"key": line["row"].key, "branch": line["branch"],
                           "variant": line["comparison"].get("variant"),
                           "uplift_abs": line["comparison"].get("uplift_abs"),
                           "ci_abs": line["comparison"].get("ci_abs"),
                           "p_value": line["comparison"].get("p_value"),
                           "p_value_adjusted": line["comparison"].get("p_value_adjusted"),
                           "p_value_bh_portfolio": line["p_value_bh"],
                           "verdict": line["comparison"].get("verdict"),
                           "guardrail_status": line["guardrail"].status
                           if line["guardrail"] else None,
                           "guardrail_text": line["guardrail"].text
                           if line["guardrail"] else None}
                          for line in self.portfolio],
            "items": {view.key: view.to_json() for view in self.agenda},
            "actions": [view.to_json() for view in self.actions],
            # issue 15: the headline guardrail status beside each experiment's verdict, with
            # the review's other annotations (the experiment document itself stays one shape)
            "experiments": [_with_guardrail_status(row) for row in self.rows],
        }


def _with_guardrail_status(row: ReviewRow) -> dict[str, Any]:
    data = row.to_json()
    status = row.verdict_status.to_json()
    data["review"] = {**(data.get("review") or {}), "guardrail_status": status["guardrail_status"],
                      "guardrail_text": status["guardrail_text"]}
    return data


def _branch_sort_key(row: ReviewRow) -> tuple[str, str]:
    branch = row.experiment.branch
    return (((branch.name if branch else None) or "").casefold(), row.key)


def _summary(rows: Sequence[ReviewRow], impact: PortfolioImpact) -> list[dict[str, Any]]:
    """Per branch: experiments by status, and the raw and shrunk annual revenue impact of
    this quarter's ship decisions (:mod:`experiments.impact`)."""
    groups: dict[Any, dict[str, Any]] = {}
    for row in sorted(rows, key=_branch_sort_key):
        info = row.experiment
        branch_id, name = (info.branch.id, info.branch.name) if info.branch \
            else (None, "(no branch)")
        group = groups.get(branch_id)
        if group is None:  # once per branch, not per experiment
            raw, shrunk = impact.branch_totals(branch_id)
            group = groups[branch_id] = {
                "branch_id": branch_id, "branch": name,
                "counts": dict.fromkeys(STATUS_ORDER, 0), "total": 0,
                "shipped": [s.key for s in impact.ships if s.branch_id == branch_id],
                "impact_raw": raw.to_json(), "impact_shrunk": shrunk.to_json(),
            }
        group["counts"][info.status] = group["counts"].get(info.status, 0) + 1
        group["total"] += 1
    return list(groups.values())


def _portfolio(rows: Sequence[ReviewRow]) -> list[dict[str, Any]]:
    """Every comparison with results, sorted by branch, with BH across the lot."""
    lines = []
    for row in sorted(rows, key=_branch_sort_key):
        for comparison in row.document.comparisons:
            branch = row.experiment.branch
            lines.append({"row": row, "comparison": comparison,
                          "branch": branch.name if branch else None})
    pvalues = []
    for line in lines:
        p = line["comparison"].get("p_value")
        ok = isinstance(p, int | float) and not isinstance(p, bool) and 0.0 <= p <= 1.0
        pvalues.append(float(p) if ok else None)
    for line, adjusted in zip(lines, bh_adjust(pvalues), strict=True):
        line["p_value_bh"] = adjusted
        line["guardrail"] = comparison_guardrail_status(line["comparison"])
    return lines


def _in_branch(row: ReviewRow, branch_id: int | None) -> bool:
    return branch_id is None or branch_id in row.experiment.path_ids


def _tree_nodes(session: Session, user: User) -> tuple[list[DriverNode], list[DriverNode]]:
    """Every driver-tree node and those ``user`` may see, in tree order (position, id): the
    tree's own read of the table (:func:`experiments.reference_rows.all_rows`), shared with
    the branch filter, the branch lookup and the tree actuals (a week keeps every node's)."""
    teams = visible_team_ids(session, user)
    nodes = all_rows(session, DriverNode, DriverNode.position, DriverNode.id)
    return nodes, [n for n in nodes if teams is None or n.team_id is None or n.team_id in teams]


def _branch_choices(nodes: Sequence[DriverNode]) -> list[tuple[int, str]]:
    """``(id, indented name)`` of ``nodes`` depth first; a node whose parent is not among
    them starts a tree of its own."""
    visible = {n.id: n for n in nodes}
    children: dict[int | None, list[DriverNode]] = defaultdict(list)
    for node in visible.values():
        parent = node.parent_id if node.parent_id in visible else None
        children[parent].append(node)
    out: list[tuple[int, str]] = []
    seen: set[int] = set()

    def walk(parent: int | None, depth: int) -> None:
        for node in children.get(parent, []):
            if node.id in seen:
                continue
            seen.add(node.id)
            out.append((node.id, "— " * depth + node.name))
            walk(node.id, depth + 1)

    walk(None, 0)
    return out


def build_review(
    session: Session,
    user: User,
    week: str | Week,
    *,
    branch_id: int | str | None = None,
    date_from: date | str | None = None,
    date_to: date | str | None = None,
    now: datetime | None = None,
    rows_only: bool = False,
    agenda_page: int | str | None = None,
    keep_rows: bool = False,
) -> Review:
    """The review of ``week`` (or of the date range) as ``user`` may see it.

    ``rows_only`` stops once the rows and the three action sections are known (no revenue
    impact, summary, portfolio, tree actuals, actions or agenda): what the dashboard shows.
    ``agenda_page`` (1-based; past the last gives the last) limits the agenda to that page
    of :data:`AGENDA_PAGE_SIZE` items; ``None`` gives the whole agenda. ``keep_rows`` reuses
    the rows kept per process while no write happened
    (:func:`experiments.review_rows.every_review_row`): only for a transaction that has
    written nothing yet.

    Opening a week freezes what it shows (see the module docstring); the caller
    commits. Only experiments ``user`` may see are shown, and with ``branch_id`` only
    those under that driver-tree node. The portfolio's Benjamini-Hochberg p-values
    are adjusted across the comparisons shown.

    Raises
    ------
    NotFound
        ``week`` is not an ISO week, or ``branch_id`` is no node the user may see.
    ValidationFailed
        ``date_from``/``date_to``/``branch_id``/``agenda_page`` are malformed, or the range
        is reversed.
    """
    try:
        the_week = week if isinstance(week, Week) else parse_week(week)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    now = aware(now) or utcnow()
    errors = FieldErrors()
    query = {"from": date_from, "to": date_to, "branch": branch_id, "page": agenda_page}
    first, last = read_date_range(query, "from", "to", errors)
    branch = read_id(query, "branch", errors, what="driver-tree node")
    page = read_page(query, errors) if agenda_page is not None else None
    for name, day in (("from", first), ("to", last)):
        if day is not None and not 1900 <= day.year <= 9998:
            errors.add(name, "must be a date between 1900 and 9998")
    errors.raise_if_any()

    every_node, nodes = _tree_nodes(session, user)
    choices = _branch_choices(nodes)
    branch_info = None
    if branch is not None:
        node = next((n for n in nodes if n.id == branch), None)
        if node is None or branch not in {c[0] for c in choices}:
            raise NotFound(f"no driver-tree node {branch}")
        branch_info = {"id": node.id, "name": node.name}

    mode = "range" if (first or last) else "week"
    meeting = None
    items = heads = None  # what meeting_state knows of the items (None: the agenda reads it)
    if mode == "range":
        first = first or the_week.start.date()
        last = last or the_week.last_day
        end = midnight(last + timedelta(days=1))
        window = Window(midnight(first), end, min(now, end))
        rows = every_review_row(session, window, keep=keep_rows)
        frozen = False
    elif now < the_week.start:
        # A week that has not begun is a preview, stored nowhere: a GET must not create
        # meetings for every week anyone can type.
        window = Window(the_week.previous.start, the_week.end, now)
        rows = every_review_row(session, window, keep=keep_rows)
        frozen = False
    else:
        state = meeting_state(session, the_week, now, keep=keep_rows)
        meeting, rows, frozen, items, heads = (state.meeting, state.rows, state.frozen,
                                               state.items, state.heads)
        window = Window(the_week.previous.start, the_week.end, min(now, the_week.end))
        if frozen:
            moments = [parse_moment(r.document.as_of) for r in rows]
            moments = [m for m in moments if m is not None]
            if moments:
                window = Window(window.changes_from, window.changes_to,
                                min(max(moments), the_week.end))

    tree = None
    if meeting is not None:  # the week keeps the tree summary its views show (review_tree)
        point = window.as_of - timedelta(microseconds=1) if window.closed else window.as_of
        tree = week_tree(session, meeting.id, frozen=frozen, stored=state.tree_seen,
                         stored_digest=state.tree_digest, stored_at=state.tree_at,
                         nodes=every_node, dated_by=point.date(), now=now)
    memo = getattr(rows, "memo", None)  # figures kept with the rows (KeptRows)
    # Every experiment's id, key, name and team now: which rows still exist and may be
    # seen, and what the "raise an action" form offers (one read for both).
    catalogue = session.exec(_CATALOGUE).all()
    rows = _visible_rows(session, user, rows, catalogue)
    rows = sorted((r for r in rows if _in_branch(r, branch)), key=_branch_sort_key)
    review = Review(
        week=the_week, window=window, mode=mode, frozen=frozen,
        editable=mode == "week" and meeting is not None,
        date_from=first, date_to=last, branch=branch_info, branch_choices=choices, rows=rows,
        needs_decision=[r for r in rows if r.review.needs_decision],
        changed=[r for r in rows if r.review.changes],
        alerts=[r for r in rows if r.review.alerts],
        summary=[], portfolio=[] if rows_only else _portfolio(rows), agenda=[],
        meeting_id=meeting.id if meeting else None,
    )
    if rows_only:  # the dashboard: only the rows and their flags (no impact, actuals)
        return review
    ids = _shown_node_ids(session, choices, branch)
    if tree is None:  # a range or a preview: today's actuals as of its point in time
        by_id = {n.id: n for n in nodes}
        tree = tree_now(session, [by_id[i] for i in ids if i in by_id],
                        review.point_in_time.date())
    else:
        review.tree_kept = tree
    review.tree_actuals = tree.shown(ids)
    since = midnight(review.quarter_start)
    company_mrr = tree.company_start_mrr  # the ledger's, read once with the actuals
    impact_key = ("impact", tuple(r.key for r in rows), since, company_mrr)
    review.impact = memo.get(impact_key) if memo is not None else None
    if review.impact is None:
        review.impact = portfolio_impact([r.document for r in rows], since=since,
                                         until=review.point_in_time, company_mrr=company_mrr)
        if memo is not None:  # same rows, no write since: the same ships and estimates
            memo[impact_key] = review.impact
    review.summary = _summary(rows, review.impact)
    if mode == "week":
        review.actions = week_actions(session, user, the_week)
        if now >= the_week.start:
            review.action_choices = action_form_choices(
                session, user, {r.key: r.experiment.name for r in rows}, catalogue)
    if meeting is not None:
        _agenda(session, user, meeting, review, items, heads, page)
    return review


def _shown_node_ids(session: Session, choices: Sequence[tuple[int, str]],
                    branch: int | None) -> list[int]:
    """The visible nodes' (or the branch's) ids in tree order: whose actuals are shown."""
    ids = [node_id for node_id, _label in choices]
    if branch is not None:
        inside = branch_ids(session, branch)
        ids = [node_id for node_id in ids if node_id in inside]
    return ids


def _visible_rows(session: Session, user: User, rows: Sequence[ReviewRow],
                  catalogue: Sequence[Any]) -> list[ReviewRow]:
    """Rows of experiments that still exist (in ``catalogue``: every experiment's id and
    team now) and that ``user`` may see (by their team *now*)."""
    current = {e.id: e.team_id for e in catalogue}
    teams = visible_team_ids(session, user)
    return [r for r in rows if r.experiment.id in current
            and (teams is None or current[r.experiment.id] is None
                 or current[r.experiment.id] in teams)]


def _agenda(session: Session, user: User, meeting: ReviewMeeting, review: Review,
            items: dict[int, ReviewItem] | None = None,
            heads: dict[int, tuple[int, bool]] | None = None, page: int | None = None) -> None:
    """Set the review's agenda: items of experiments in the three action sections, or
    already noted/decided, those needing a decision first, then in page order; with
    ``page`` only that page of them (the last when ``page`` is past it). ``items`` (a frozen
    week's, loaded) or ``heads`` (each item's id and whether it holds a note or decision,
    from meeting_state's read) spare reading them again."""
    if items is not None:
        heads = {experiment_id: (item.id, _has_content(item))
                 for experiment_id, item in items.items()}
    elif heads is None:  # each item's id and whether it holds a note or decision, then
        # only the shown items in full (not hundreds of ORM objects per view)
        heads = {experiment_id: (item_id, bool(note or decision))
                 for experiment_id, item_id, note, decision in session.exec(
                     _ITEM_HEADS, params={"meeting_id": meeting.id})}
    review.item_ids = {r.key: heads[r.experiment.id][0] for r in review.rows
                       if r.experiment.id in heads}
    due = {r.experiment.id for r in review.needs_decision}
    flagged = {r.experiment.id for r in (*review.needs_decision, *review.changed, *review.alerts)}
    rows = [r for r in review.rows if r.experiment.id in heads and (
        r.experiment.id in flagged or heads[r.experiment.id][1])]
    rows.sort(key=lambda r: r.experiment.id not in due)  # stable: page order within each
    review.agenda_size = len(rows)
    if page is not None:
        review.agenda_pages = max(1, -(-len(rows) // AGENDA_PAGE_SIZE))
        review.agenda_page = min(page, review.agenda_pages)
        start = (review.agenda_page - 1) * AGENDA_PAGE_SIZE
        rows = rows[start:start + AGENDA_PAGE_SIZE]
    experiments = None
    if items is None:  # the shown items with their experiments, in one statement
        ids = [heads[r.experiment.id][0] for r in rows]
        shown, experiments = {}, {}
        for item, experiment in session.exec(_SHOWN_ITEMS, params={"ids": ids}):
            shown[item.experiment_id] = item
            if experiment is not None:
                experiments[experiment.id] = experiment
    else:
        shown = items
    review.agenda = item_views(session, user, [(shown[r.experiment.id], r) for r in rows],
                               experiments)


def _has_content(item: ReviewItem) -> bool:
    return bool(item.note or item.decision)
