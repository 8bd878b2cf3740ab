"""The quarterly business review (QBR): per quarter and branch, target against actual and
what the experiments did; and the quarter's objectives with key results on tree nodes.

Time model
----------
A quarter is made of ISO weeks, so that it is exactly the sum of its weekly reviews: the
weeks whose Thursday falls in the calendar quarter (the ISO 8601 rule that assigns a week
to a year, applied to quarters). ``2026-Q4`` therefore runs from Monday 2026-09-28 to
Monday 2027-01-04. Every count is an event in that span, attributed to the week it
happened in:

* **run** — experiments started (``started_at``);
* **won** / **lost** — experiments decided whose headline verdict at the moment of the
  decision (the newest analysis computed by then, else the one in force now) was
  ``win`` / ``loss``;
* **won — guardrail failed** — a ``win`` in that analysis whose every winning treatment
  failed a guardrail (issue 15; the rule is :mod:`experiments.verdict_status`'s): counted
  here and *not* under won. A win with an inconclusive guardrail is still won;
* **shipped** — experiments decided ``ship``; their annual revenue impact, raw and shrunk,
  comes from :func:`shipped_impact`, i.e. :func:`experiments.impact.portfolio_impact` (the
  one computation, also behind the weekly review's figures), and adds up like the counts.

The quarter's totals are counted over the whole span, independently of the weekly rows;
the two agree by construction of the span, and a test holds them to it.

A branch is the top-level lever an experiment sits under (as in the weekly review). Its
target is the node's target, its actual the node's latest actual on or before the
quarter's last day (or today, while it runs): the revenue ledger's figure when the node is
tied to one, else the hand-entered one (:func:`experiments.tree_actuals.actuals_summary`).

OKRs: an :class:`~experiments.review_models.Objective` belongs to a quarter (and
optionally a team); its :class:`~experiments.review_models.KeyResult` rows link a tree
node, with a target, an actual (typed, or else the node's actual) and an owner.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlmodel import Session, select

from experiments.access import can, check_team_choice, require, visible_team_ids
from experiments.actions import editor_check
from experiments.audit import diff_fields, record_event
from experiments.documents import ExperimentDocument, user_label
from experiments.errors import NotFound
from experiments.impact import PortfolioImpact, ShippedImpact, company_start_mrr, portfolio_impact
from experiments.input_rules import FieldErrors, read_id, read_number, read_text
from experiments.models import AnalysisSnapshot, DriverNode, Experiment, Team, User, utcnow
from experiments.review_items import owner_choices
from experiments.review_models import KeyResult, Objective
from experiments.review_rows import review_rows
from experiments.review_weeks import Week, Window, aware, iso, week_of
from experiments.tree_actuals import ActualLine, actuals_summary
from experiments.verdict_status import VerdictStatus, verdict_status
from experiments.versioning import compare_and_set, parse_version

_QUARTER = re.compile(r"(\d{4})-Q([1-4])", re.ASCII)
MAX_TITLE = 300
MAX_ID = 2**31 - 1


# ------------------------------------------------------------------ quarters


@dataclass(frozen=True)
class Quarter:
    """A calendar quarter as a run of ISO weeks (see the module docstring)."""

    label: str
    first_day: date  # the calendar quarter's first day
    next_first_day: date  # the next calendar quarter's first day
    weeks: tuple[Week, ...]

    @property
    def start(self) -> datetime:
        return self.weeks[0].start

    @property
    def end(self) -> datetime:
        return self.weeks[-1].end

    @property
    def previous(self) -> str:
        day = self.first_day - timedelta(days=1)
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"

    @property
    def next(self) -> str:
        day = self.next_first_day
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def _first_days(year: int, number: int) -> tuple[date, date]:
    first = date(year, 3 * (number - 1) + 1, 1)
    following = date(year + 1, 1, 1) if number == 4 else date(year, 3 * number + 1, 1)
    return first, following


def _quarter(year: int, number: int) -> Quarter:
    first, following = _first_days(year, number)
    # The first week whose Thursday is on or after the quarter's first day.
    monday = first - timedelta(days=first.weekday())
    if monday + timedelta(days=3) < first:
        monday += timedelta(days=7)
    weeks = []
    while monday + timedelta(days=3) < following:
        weeks.append(week_of(monday))
        monday += timedelta(days=7)
    return Quarter(f"{year}-Q{number}", first, following, tuple(weeks))


def parse_quarter(label: str) -> Quarter:
    """The quarter named ``label`` (``2026-Q4``).

    Raises
    ------
    ValueError
        Not of the form ``YYYY-Qn`` with n in 1-4, or a year outside 1900-9998.
    """
    match = _QUARTER.fullmatch(label or "")
    if not match:
        raise ValueError(f"quarter must look like 2026-Q4, not {(label or '')[:20]!r}")
    year, number = int(match.group(1)), int(match.group(2))
    if not 1900 <= year <= 9998:
        raise ValueError(f"quarter year must be between 1900 and 9998, not {year}")
    return _quarter(year, number)


def quarter_of(day: date) -> Quarter:
    """The quarter whose weeks include ``day`` (by its ISO week's Thursday)."""
    thursday = week_of(day).start.date() + timedelta(days=3)
    return _quarter(thursday.year, (thursday.month - 1) // 3 + 1)


def current_quarter(now: datetime | None = None) -> Quarter:
    return quarter_of((aware(now) or utcnow()).date())


# ------------------------------------------------------------------ tallies


@dataclass
class Tally:
    """What experiments did in a span: started, won, won with a failed guardrail, lost,
    shipped (with impact)."""

    run: list[str] = field(default_factory=list)
    won: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    shipped: list[str] = field(default_factory=list)
    impact_raw: float | None = None
    impact_shrunk: float | None = None
    won_guardrail_failed: list[str] = field(default_factory=list)

    def add_impact(self, raw: float | None, shrunk: float | None) -> None:
        if raw is not None:
            self.impact_raw = (self.impact_raw or 0.0) + raw
        if shrunk is not None:
            self.impact_shrunk = (self.impact_shrunk or 0.0) + shrunk

    def counts(self) -> dict[str, int]:
        return {"run": len(self.run), "won": len(self.won),
                "won_guardrail_failed": len(self.won_guardrail_failed), "lost": len(self.lost),
                "shipped": len(self.shipped)}

    def to_json(self) -> dict[str, Any]:
        return {**self.counts(), "run_keys": self.run, "won_keys": self.won,
                "won_guardrail_failed_keys": self.won_guardrail_failed,
                "lost_keys": self.lost, "shipped_keys": self.shipped,
                "impact_raw": self.impact_raw, "impact_shrunk": self.impact_shrunk}


def shipped_impact(session: Session, documents: Sequence[ExperimentDocument], *,
                   since: datetime, until: datetime,
                   branch_of: Callable[[ExperimentDocument], tuple[int | None, str | None]]
                   ) -> PortfolioImpact:
    """Raw and shrunk revenue impact of the ships decided in ``[since, until]``: the one
    computation of the decision record (:func:`experiments.impact.portfolio_impact`), over
    the ``documents`` shown (the shrinkage prior is estimated across all of them)."""
    return portfolio_impact(documents, since=since, until=until,
                            company_mrr=company_start_mrr(session), branch_of=branch_of)


@dataclass(frozen=True)
class Event:
    experiment: Experiment
    kind: str  # run / won / won_guardrail_failed / lost / shipped
    at: datetime
    branch_id: int | None


def _verdicts_at_decision(session: Session, experiments: Sequence[Experiment]
                          ) -> dict[int, VerdictStatus]:
    """Each decided experiment's headline verdict as of its decision: the newest analysis
    computed by then; when none was (a decision recorded with an earlier date than its
    analysis, as imported histories have), the analysis in force now. A win comes with
    its guardrail status (its snapshot's comparisons are read in one more statement)."""
    decided = {e.id: aware(e.decided_at) for e in experiments if e.decided_at is not None}
    if not decided:
        return {}
    before: dict[int, tuple[datetime, int, str | None]] = {}
    latest: dict[int, tuple[datetime, int, str | None]] = {}
    for experiment_id, computed_at, snapshot_id, verdict in session.exec(
            select(AnalysisSnapshot.experiment_id, AnalysisSnapshot.computed_at,
                   AnalysisSnapshot.id, AnalysisSnapshot.verdict)
            .where(AnalysisSnapshot.experiment_id.in_(list(decided)))).all():
        entry = (aware(computed_at), snapshot_id, verdict)
        if entry[:2] > latest.get(experiment_id, entry)[:2] or experiment_id not in latest:
            latest[experiment_id] = entry
        if entry[0] <= decided[experiment_id] and (
                experiment_id not in before or entry[:2] > before[experiment_id][:2]):
            before[experiment_id] = entry
    chosen = {k: before.get(k) or latest[k] for k in latest}
    wins = [entry[1] for entry in chosen.values() if entry[2] == "win"]
    comparisons = dict(session.exec(
        select(AnalysisSnapshot.id, AnalysisSnapshot.result["comparisons"])
        .where(AnalysisSnapshot.id.in_(wins))).all()) if wins else {}
    return {k: verdict_status(entry[2], {"comparisons": comparisons.get(entry[1]) or []})
            for k, entry in chosen.items()}


def _branch_of(node_id: int, parents: Mapping[int, int | None]) -> int:
    """The top-level node above ``node_id`` (the node itself on or just under the root)."""
    path = [node_id]
    seen = {node_id}
    while parents.get(path[-1]) is not None and parents[path[-1]] not in seen:
        path.append(parents[path[-1]])
        seen.add(path[-1])
    return path[-2] if len(path) > 1 else path[-1]


def _events(experiments: Sequence[Experiment], verdicts: Mapping[int, VerdictStatus],
            parents: Mapping[int, int | None]) -> list[Event]:
    events = []
    for e in experiments:
        branch = _branch_of(e.node_id, parents)
        if e.started_at is not None:
            events.append(Event(e, "run", aware(e.started_at), branch))
        if e.decided_at is not None:
            at = aware(e.decided_at)
            status = verdicts.get(e.id) or VerdictStatus(None)
            if status.won_guardrail_failed:
                events.append(Event(e, "won_guardrail_failed", at, branch))
            elif status.verdict == "win":
                events.append(Event(e, "won", at, branch))
            elif status.verdict == "loss":
                events.append(Event(e, "lost", at, branch))
            if e.decision == "ship":
                events.append(Event(e, "shipped", at, branch))
    return sorted(events, key=lambda ev: (ev.at, ev.experiment.key, ev.kind))


def _tally(events: Iterable[Event], impacts: Mapping[str, ShippedImpact]) -> Tally:
    """The events' keys by kind; ships add their annual impact (raw and shrunk)."""
    tally = Tally()
    for event in events:
        getattr(tally, event.kind).append(event.experiment.key)
        ship = impacts.get(event.experiment.key) if event.kind == "shipped" else None
        if ship is not None:
            tally.add_impact(ship.raw_impact.annual if ship.raw_impact else None,
                             ship.shrunk_impact.annual if ship.shrunk_impact else None)
    return tally


# ------------------------------------------------------------------ the review


@dataclass(frozen=True)
class BranchQuarter:
    """One branch's quarter: its target and actual, each week's tally and the total."""

    branch_id: int | None
    branch: str
    target: float | None
    actual: ActualLine | None
    weeks: tuple[tuple[Week, Tally], ...]
    total: Tally

    def to_json(self) -> dict[str, Any]:
        return {"branch_id": self.branch_id, "branch": self.branch, "target": self.target,
                "actual": self.actual.to_json() if self.actual else None,
                "weeks": [{"week": w.label, **t.to_json()} for w, t in self.weeks],
                "total": self.total.to_json()}


@dataclass
class KeyResultView:
    key_result: KeyResult
    node_name: str | None
    owner_label: str | None
    node_actual: ActualLine | None  # the node's own actual, when the KR has none typed
    can_edit: bool
    errors: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] | None = None
    message: str | None = None

    @property
    def actual(self) -> float | None:
        if self.key_result.actual is not None:
            return self.key_result.actual
        return self.node_actual.actual if self.node_actual else None

    @property
    def actual_source(self) -> str:
        if self.key_result.actual is not None:
            return "entered"
        return f"node ({self.node_actual.source})" if self.node_actual else "none"

    def value(self, name: str) -> str:
        if self.values is not None and name in self.values:
            return self.values[name]
        current = getattr(self.key_result, name)
        return "" if current is None else (f"{current:g}" if isinstance(current, float)
                                           else str(current))

    def to_json(self) -> dict[str, Any]:
        kr = self.key_result
        return {"id": kr.id, "title": kr.title, "node_id": kr.node_id, "node": self.node_name,
                "target": kr.target, "actual": self.actual, "actual_source": self.actual_source,
                "owner": self.owner_label, "version": kr.version}


@dataclass
class ObjectiveView:
    objective: Objective
    team: str | None
    owner_label: str | None
    key_results: list[KeyResultView]
    can_edit: bool

    def to_json(self) -> dict[str, Any]:
        return {"id": self.objective.id, "title": self.objective.title, "team": self.team,
                "owner": self.owner_label,
                "key_results": [kr.to_json() for kr in self.key_results]}


@dataclass
class QuarterlyReview:
    quarter: Quarter
    as_of: datetime
    branches: list[BranchQuarter]
    weeks: list[tuple[Week, Tally]]  # every branch together, week by week
    total: Tally  # counted over the whole quarter at once
    objectives: list[ObjectiveView]
    impact_note: str | None
    node_choices: list[tuple[int, str]]
    owner_choices: list[tuple[int, str]]
    team_choices: list[tuple[int | None, str]]
    can_plan: bool  # may add objectives

    @property
    def title(self) -> str:
        return f"Quarterly business review {self.quarter.label}"

    def to_dict(self) -> dict[str, Any]:
        q = self.quarter
        return {
            "quarter": {"label": q.label, "title": self.title, "from": iso(q.start),
                        "to": iso(q.end), "weeks": [w.label for w in q.weeks],
                        "as_of": iso(self.as_of)},
            "totals": self.total.to_json(),
            "weeks": [{"week": w.label, **t.to_json()} for w, t in self.weeks],
            "branches": [b.to_json() for b in self.branches],
            "objectives": [o.to_json() for o in self.objectives],
            "impact_note": self.impact_note,
        }


def _visible(session: Session, user: User):
    teams = visible_team_ids(session, user)
    return lambda team_id: teams is None or team_id is None or team_id in teams


def build_quarterly(session: Session, user: User, quarter: str | Quarter, *,
                    now: datetime | None = None) -> QuarterlyReview:
    """The QBR of ``quarter`` as ``user`` may see it (their teams' experiments and OKRs).

    Raises
    ------
    NotFound
        ``quarter`` is not of the form ``2026-Q4``.
    """
    try:
        the_quarter = quarter if isinstance(quarter, Quarter) else parse_quarter(quarter)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    now = aware(now) or utcnow()
    as_of = min(now, the_quarter.end)
    visible = _visible(session, user)
    nodes = session.exec(select(DriverNode).order_by(DriverNode.position, DriverNode.id)).all()
    parents = {n.id: n.parent_id for n in nodes}
    by_id = {n.id: n for n in nodes}
    experiments = [e for e in session.exec(select(Experiment)).all() if visible(e.team_id)]
    by_key = {e.key: e for e in experiments}
    events = [ev for ev in _events(experiments, _verdicts_at_decision(session, experiments),
                                   parents)
              if the_quarter.start <= ev.at < the_quarter.end and ev.at <= as_of]
    documents = [row.document for row in review_rows(
        session, Window(the_quarter.start, the_quarter.end, as_of), experiments)]
    portfolio = shipped_impact(
        session, documents, since=the_quarter.start, until=as_of,
        branch_of=lambda d: (_branch_of(by_key[d.key].node_id, parents), None))
    impacts = {ship.key: ship for ship in portfolio.ships if ship.missing is None}

    def in_week(week: Week, items: Iterable[Event]) -> list[Event]:
        return [ev for ev in items if week.start <= ev.at < week.end]

    by_branch: dict[int | None, list[Event]] = defaultdict(list)
    for ev in events:
        by_branch[ev.branch_id].append(ev)
    branch_ids = [n.id for n in nodes if n.parent_id is not None and n.parent_id in by_id
                  and by_id[n.parent_id].parent_id is None and visible(n.team_id)]
    branch_ids += [b for b in by_branch if b not in branch_ids]
    last_day = (as_of - timedelta(microseconds=1)).date()
    actual_nodes = [by_id[b] for b in branch_ids if b in by_id]
    lines = {line.node_id: line for line in actuals_summary(
        session, actual_nodes, _ledger(session), last_day)}
    branches = []
    for branch_id in branch_ids:
        node = by_id.get(branch_id)
        mine = by_branch.get(branch_id, [])
        branches.append(BranchQuarter(
            branch_id=branch_id, branch=node.name if node else "(no branch)",
            target=node.target if node else None, actual=lines.get(branch_id),
            weeks=tuple((w, _tally(in_week(w, mine), impacts)) for w in the_quarter.weeks),
            total=_tally(mine, impacts)))
    weeks = [(w, _tally(in_week(w, events), impacts)) for w in the_quarter.weeks]
    # Counted once over the whole span, not summed from the weeks above.
    total = _tally(events, impacts)
    missing = [f"{ship.key} ({ship.missing})" for ship in portfolio.ships if ship.missing]
    note = None
    if missing:
        more = f"; and {len(missing) - 5} more" if len(missing) > 5 else ""
        note = f"Impact left out for {len(missing)} ship(s): " + "; ".join(missing[:5]) + more

    node_choices = [(n.id, n.name) for n in nodes if visible(n.team_id)]
    teams = _team_choices(session, user)
    return QuarterlyReview(
        quarter=the_quarter, as_of=as_of, branches=branches, weeks=weeks, total=total,
        objectives=_objectives(session, user, the_quarter, by_id, last_day),
        impact_note=note, node_choices=node_choices,
        owner_choices=owner_choices(session, [None])[None],
        team_choices=teams, can_plan=bool(teams))


def _ledger(session: Session):
    from experiments.nrr_page import current_ledger

    return current_ledger(session)


def _team_choices(session: Session, user: User) -> list[tuple[int | None, str]]:
    """Where ``user`` may put an objective: no team (global experimenters) or their teams."""
    choices: list[tuple[int | None, str]] = []
    if can(session, user, None, "experimenter"):
        choices.append((None, "Whole company"))
    for team in session.exec(select(Team).order_by(Team.name)).all():
        if can(session, user, team.id, "experimenter"):
            choices.append((team.id, team.name))
    return choices


def _objectives(session: Session, user: User, quarter: Quarter, nodes: Mapping[int, DriverNode],
                last_day: date) -> list[ObjectiveView]:
    visible = _visible(session, user)
    objectives = [o for o in session.exec(select(Objective).where(Objective.quarter
                                                                  == quarter.label)
                                          .order_by(Objective.id)).all() if visible(o.team_id)]
    if not objectives:
        return []
    krs: dict[int, list[KeyResult]] = defaultdict(list)
    for kr in session.exec(select(KeyResult).where(KeyResult.objective_id.in_(
            [o.id for o in objectives])).order_by(KeyResult.id)).all():
        krs[kr.objective_id].append(kr)
    user_ids = {o.owner_id for o in objectives} | {k.owner_id for g in krs.values() for k in g}
    users = {u.id: u for u in session.exec(select(User).where(User.id.in_(
        [i for i in user_ids if i]))).all()}
    teams = {t.id: t.name for t in session.exec(select(Team)).all()}
    linked = [nodes[k.node_id] for g in krs.values() for k in g if k.node_id in nodes]
    lines = {line.node_id: line for line in actuals_summary(
        session, list({n.id: n for n in linked}.values()), _ledger(session), last_day)} \
        if linked else {}
    may_edit = editor_check(session, user)
    out = []
    for o in objectives:
        editable = may_edit(o.team_id)
        out.append(ObjectiveView(
            objective=o, team=teams.get(o.team_id), owner_label=user_label(users.get(o.owner_id)),
            can_edit=editable,
            key_results=[KeyResultView(
                key_result=k, node_name=nodes[k.node_id].name if k.node_id in nodes else None,
                owner_label=user_label(users.get(k.owner_id)),
                node_actual=lines.get(k.node_id), can_edit=editable) for k in krs[o.id]]))
    return out


# ------------------------------------------------------------------ OKR edits


def _read_owner(session: Session, data: Mapping[str, Any], team_id: int | None,
                errors: FieldErrors) -> int | None:
    owner_id = read_id(data, "owner_id", errors, what="owner")
    if owner_id is not None and owner_id not in {
            uid for uid, _ in owner_choices(session, [team_id]).get(team_id, [])}:
        errors.add("owner_id", "must be an active member of the objective's team")
        return None
    return owner_id


def _read_node(session: Session, user: User, data: Mapping[str, Any],
               errors: FieldErrors) -> int | None:
    node_id = read_id(data, "node_id", errors, required=True, what="driver-tree node")
    if node_id is not None:
        node = session.get(DriverNode, node_id)
        if node is None or not can(session, user, node.team_id, "viewer"):
            errors.add("node_id", "unknown driver-tree node")
            return None
    return node_id


def create_objective(session: Session, user: User, quarter: str, data: Mapping[str, Any], *,
                     ip: str = "") -> Objective:
    """Add an objective to ``quarter``: ``title``, optional ``team_id`` and ``owner_id``.

    Raises
    ------
    NotFound
        Bad quarter.
    ValidationFailed
        Missing or hostile title, a team the user may not plan for, an owner outside it.
    """
    try:
        the_quarter = parse_quarter(quarter)
    except ValueError as exc:
        raise NotFound(str(exc)) from None
    errors = FieldErrors()
    title = read_text(data, "title", errors, max_length=MAX_TITLE, required=True)
    team_id = read_id(data, "team_id", errors, what="team")
    if team_id is not None:
        problem = check_team_choice(session, user, team_id, needed="experimenter",
                                    purpose="set its objectives")
        if problem:
            errors.add("team_id", problem)
            team_id = None
    elif "team_id" not in errors and not can(session, user, None, "experimenter"):
        errors.add("team_id", "choose one of your teams")
    owner_id = _read_owner(session, data, team_id, errors)
    errors.raise_if_any()
    objective = Objective(quarter=the_quarter.label, title=title, team_id=team_id,
                          owner_id=owner_id, created_by_id=user.id)
    session.add(objective)
    session.flush()
    record_event(session, "objective.create", actor=user, entity_type="objective",
                 entity_id=objective.id, team_id=team_id,
                 diff={"quarter": [None, the_quarter.label], "title": [None, title],
                       "owner_id": [None, owner_id]}, ip=ip)
    return objective


def _objective(session: Session, user: User, objective_id: int, needed: str,
               quarter: str | None = None) -> Objective:
    objective = session.get(Objective, objective_id) if 0 < objective_id <= MAX_ID else None
    if objective is None:
        raise NotFound(f"no objective {objective_id}")
    if quarter is not None and objective.quarter != quarter:
        # A form posted under another quarter's address (its page would not show it).
        raise NotFound(f"objective {objective_id} belongs to {objective.quarter}, not {quarter}")
    require(session, user, objective.team_id, needed)
    return objective


def _key_result_values(session: Session, user: User, objective: Objective,
                       data: Mapping[str, Any]) -> dict[str, Any]:
    errors = FieldErrors()
    values = {
        "title": read_text(data, "title", errors, max_length=MAX_TITLE, required=True),
        "node_id": _read_node(session, user, data, errors),
        "target": read_number(data, "target", errors, example="1.05"),
        "actual": read_number(data, "actual", errors, example="1.02"),
        "owner_id": _read_owner(session, data, objective.team_id, errors),
    }
    errors.raise_if_any()
    return values


def add_key_result(session: Session, user: User, objective_id: int, data: Mapping[str, Any],
                   *, ip: str = "", quarter: str | None = None) -> KeyResult:
    """Add a key result (``title``, ``node_id``, ``target``, ``actual``, ``owner_id``).

    Raises
    ------
    NotFound, PermissionDenied
        No such objective (or not in ``quarter`` when given), another team's, or below
        experimenter in its team.
    ValidationFailed
        Malformed fields, an unknown node.
    """
    objective = _objective(session, user, objective_id, "experimenter", quarter)
    values = _key_result_values(session, user, objective, data)
    kr = KeyResult(objective_id=objective.id, updated_by_id=user.id, **values)
    session.add(kr)
    session.flush()
    record_event(session, "key_result.create", actor=user, entity_type="key_result",
                 entity_id=kr.id, team_id=objective.team_id,
                 diff={k: [None, v] for k, v in values.items()}, ip=ip)
    return kr


def get_key_result(session: Session, user: User, key_result_id: int, *,
                   needed: str = "viewer",
                   quarter: str | None = None) -> tuple[KeyResult, Objective]:
    """A key result and its objective, checked against the user's role in its team.

    Raises
    ------
    NotFound, PermissionDenied
    """
    kr = session.get(KeyResult, key_result_id) if 0 < key_result_id <= MAX_ID else None
    if kr is None:
        raise NotFound(f"no key result {key_result_id}")
    return kr, _objective(session, user, kr.objective_id, needed, quarter)


def update_key_result(session: Session, user: User, key_result_id: int,
                      data: Mapping[str, Any], *, now: datetime | None = None,
                      ip: str = "", quarter: str | None = None) -> KeyResult:
    """Change a key result (its form carries the ``version`` it was made on).

    Raises
    ------
    NotFound, PermissionDenied
        As :func:`get_key_result` with the experimenter role.
    ValidationFailed
        Malformed fields or version.
    StaleVersion
        Someone else saved it since ``version`` (409).
    """
    kr, objective = get_key_result(session, user, key_result_id, needed="experimenter",
                                   quarter=quarter)
    seen = parse_version(data.get("version"))
    values = _key_result_values(session, user, objective, data)
    changed = diff_fields({k: getattr(kr, k) for k in values}, values)
    compare_and_set(session, kr, seen, {**values, "updated_by_id": user.id,
                                        "updated_at": aware(now) or utcnow()},
                    what="This key result", entity_type="key_result", entity_id=kr.id)
    record_event(session, "key_result.update", actor=user, entity_type="key_result",
                 entity_id=kr.id, team_id=objective.team_id, diff=changed, ip=ip)
    return kr


__all__ = ["BranchQuarter", "KeyResultView", "ObjectiveView", "Quarter", "QuarterlyReview",
           "Tally", "add_key_result", "build_quarterly", "create_objective",
           "current_quarter", "get_key_result", "parse_quarter", "quarter_of", "shipped_impact",
           "update_key_result"]
