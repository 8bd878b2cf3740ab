"""Sample-size planning: how many accounts, and how many weeks, an NRR test needs.

The sample size depends on the MDE and the per-account spread of the linearised
NRR metric, ``sigma_lin`` (DESIGN §4), through :func:`stats.required_sample_size`.
Where the spread comes from is always stated to the reader:

1. the revenue ledger (issue 16 item 5), when one has been uploaded: the last
   period's ``sigma_lin`` of one segment (a dimension value such as
   ``plan = enterprise``, chosen on the planner) or of every account (the
   registry's hint and the plan lock: experiments carry no segment), computed as
   DESIGN §4 does for a control arm (:meth:`stats.ledger.LedgerFigures.linearised_sigma`);
2. a past experiment's latest analysis snapshot (its control arm's ``sigma_lin``
   and NRR), when the planner is pointed at one (an explicit choice there wins
   over the ledger);
3. for the registry's hint, the newest snapshot on the experiment's branch (the
   chosen driver node and everything under it), else on its journey stage;
4. otherwise :data:`DEFAULT_SIGMA`, a stated default: 0.25 is a typical spread of
   monthly end/start MRR per account in a B2B SaaS book (most accounts flat, a
   minority expanding by a third or churning outright), and the demo data's own
   control arms land close to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from experiments.access import visible_team_ids
from experiments.input_rules import FieldErrors, parse_id, read_number, read_text
from experiments.ledger import readable_figures
from experiments.models import AnalysisSnapshot, Dataset, Experiment, User
from experiments.plan_input import MAX_WEIGHT
from experiments.tree import branch_ids
from stats import plan_sample_sizes, required_sample_size

#: The per-account spread assumed when no snapshot gives a measured one.
DEFAULT_SIGMA = 0.25
PLANNER_DEFAULTS: dict[str, str] = {
    "baseline_nrr": "1.0",
    "sigma": str(DEFAULT_SIGMA),
    "mde": "0.02",
    "alpha": "0.05",
    "power": "0.8",
    "treatment_share": "0.5",
    "weekly_enrolment": "250",
}
PLANNER_FIELDS: tuple[str, ...] = (*PLANNER_DEFAULTS, "experiment", "segment")

#: The planner's ``segment`` value for every account of the ledger.
ALL_ACCOUNTS = "all"


@dataclass(frozen=True)
class History:
    """A measured spread (and baseline NRR) taken from one experiment's latest snapshot."""

    experiment_key: str
    experiment_name: str
    sigma: float
    baseline_nrr: float | None
    computed_at: datetime


def _control_figures(result: Mapping[str, Any]) -> tuple[float | None, float | None]:
    """``(sigma_lin, control NRR)`` from a stored report; ``None`` where missing or unusable."""
    control = result.get("control")
    sigma = None
    for comparison in result.get("comparisons") or []:
        value = comparison.get("sigma_lin") if isinstance(comparison, Mapping) else None
        if isinstance(value, int | float) and math.isfinite(value) and value > 0:
            sigma = float(value)
            break
    nrr = None
    for arm in result.get("arms") or []:
        if isinstance(arm, Mapping) and arm.get("variant") == control:
            value = arm.get("nrr")
            if isinstance(value, int | float) and math.isfinite(value) and value > 0:
                nrr = float(value)
    return sigma, nrr


#: Stored results read per round trip while looking for the newest usable sigma.
_HISTORY_BATCH = 8


def _latest_history(session: Session, user: User, experiments: list[Experiment]) -> History | None:
    if not experiments:
        return None
    by_id = {e.id: e for e in experiments}
    snapshots = session.exec(
        select(AnalysisSnapshot.id, AnalysisSnapshot.experiment_id, AnalysisSnapshot.computed_at)
        .where(AnalysisSnapshot.experiment_id.in_(list(by_id)))
        .order_by(AnalysisSnapshot.computed_at.desc(), AnalysisSnapshot.id.desc())
    ).all()
    # The stored results are large documents: read them a few at a time, newest first,
    # and stop at the first with a usable sigma (almost always the first batch).
    for begin in range(0, len(snapshots), _HISTORY_BATCH):
        batch = snapshots[begin:begin + _HISTORY_BATCH]
        results = dict(session.exec(
            select(AnalysisSnapshot.id, AnalysisSnapshot.result)
            .where(AnalysisSnapshot.id.in_([row[0] for row in batch]))
        ).all())
        for snapshot_id, experiment_id, computed_at in batch:
            sigma, nrr = _control_figures(results.get(snapshot_id) or {})
            if sigma is not None:
                experiment = by_id[experiment_id]
                return History(experiment.key, experiment.name, sigma, nrr, computed_at)
    return None


def _visible_experiments(session: Session, user: User, query) -> list[Experiment]:
    teams = visible_team_ids(session, user)
    return [
        e
        for e in session.exec(query).all()
        if teams is None or e.team_id is None or e.team_id in teams
    ]


def experiment_history(session: Session, user: User, key: str) -> History | None:
    """The spread measured by experiment ``key`` (``None``: unknown, hidden, or no usable
    snapshot)."""
    return _latest_history(
        session,
        user,
        _visible_experiments(session, user, select(Experiment).where(Experiment.key == key)),
    )


def branch_history(session: Session, user: User, node_id: int) -> History | None:
    """The newest spread measured on the branch of ``node_id`` (the node and its descendants)."""
    nodes = branch_ids(session, node_id)
    return _latest_history(
        session,
        user,
        _visible_experiments(
            session, user, select(Experiment).where(Experiment.node_id.in_(nodes))
        ),
    )


def stage_history(session: Session, user: User, stage_id: int) -> History | None:
    """The newest spread measured by an experiment on journey stage ``stage_id``."""
    return _latest_history(
        session,
        user,
        _visible_experiments(
            session, user, select(Experiment).where(Experiment.stage_id == stage_id)
        ),
    )


#: How an assumed sigma is labelled wherever it is shown or stored.
ASSUMED_SOURCE = "assumed — no measurement yet"


@dataclass(frozen=True)
class LedgerSegment:
    """The planning σ (and baseline NRR) of one ledger segment in its last period.

    ``dimension``/``value`` are ``None`` for every account of the ledger.
    """

    dimension: str | None
    value: str | None
    sigma: float
    baseline_nrr: float | None
    accounts: int
    period: str

    @property
    def key(self) -> str:
        """The planner's ``segment`` value: ``"all"`` or ``"dimension=value"``."""
        return ALL_ACCOUNTS if self.dimension is None else f"{self.dimension}={self.value}"

    @property
    def label(self) -> str:
        if self.dimension is None:
            return "all accounts"
        value = str(self.value)
        return f"{self.dimension} = {value if len(value) <= 80 else value[:79] + '…'}"

    @property
    def source(self) -> str:
        """Where the σ comes from, as the planner, the hint and the stored plan state it."""
        return (
            f"measured on the revenue ledger: {self.label}, {self.period}, "
            f"{self.accounts:,} account{'' if self.accounts == 1 else 's'}"
        )


def _segment(figures, dimension: str | None, value: str | None) -> LedgerSegment | None:
    sigma = figures.linearised_sigma(dimension, value)
    last = figures.last_period(dimension, value)
    if sigma is None or sigma <= 0 or last is None:
        return None
    return LedgerSegment(dimension, value, sigma, last.nrr, last.accounts, last.period)


def ledger_segment(
    session: Session, dimension: str | None = None, value: str | None = None, *, figures=None
) -> LedgerSegment | None:
    """The ledger's planning σ for ``dimension = value`` (every account when ``dimension``
    is ``None``); ``None`` without a ledger, for an unknown segment, one with fewer than
    2 accounts in the last period, or figures stored before ``sigma_lin`` existed."""
    figures = readable_figures(session) if figures is None else figures
    return None if figures is None else _segment(figures, dimension, value)


def ledger_segments(session: Session, *, figures=None) -> list[LedgerSegment]:
    """Every segment the planner can take σ from: all accounts first, then each dimension's
    values in the ledger's order (only those with a measured σ)."""
    figures = readable_figures(session) if figures is None else figures
    if figures is None:
        return []
    found = [_segment(figures, None, None)]
    for dimension in figures.dimensions:
        found.extend(_segment(figures, dimension.name, value) for value in dimension.values)
    return [segment for segment in found if segment is not None]


@dataclass(frozen=True)
class PlanningSigma:
    """The sigma a plan is sized with and where it came from (``measured`` or assumed)."""

    sigma: float
    source: str
    measured: bool


def planning_sigma(
    session: Session, user: User, node_id: int | None, stage_id: int | None = None
) -> PlanningSigma:
    """The measured sigma for a plan: the revenue ledger's ``sigma_lin`` over every account
    of its last period; else the control arms of earlier experiments on the same branch,
    else on the same journey stage; else :data:`DEFAULT_SIGMA`, flagged as assumed.
    """
    segment = ledger_segment(session)
    branch = branch_history(session, user, node_id) if node_id and segment is None else None
    return _measured_sigma(session, user, segment, branch, stage_id)


def _measured_sigma(
    session: Session, user: User, segment: LedgerSegment | None, branch: History | None,
    stage_id: int | None,
) -> PlanningSigma:
    """:func:`planning_sigma` from the ledger's ``segment`` and the ``branch``'s history
    already read (the stage's is read only when both are missing)."""
    if segment is not None:
        return PlanningSigma(segment.sigma, segment.source, True)
    history = branch
    where = "this branch"
    if history is None and stage_id:
        history = stage_history(session, user, stage_id)
        where = "this journey stage"
    if history is None:
        return PlanningSigma(DEFAULT_SIGMA, ASSUMED_SOURCE, False)
    return PlanningSigma(
        history.sigma,
        (
            f"measured: the control arm of '{history.experiment_key}' on {where} "
            f"({history.computed_at:%Y-%m-%d})"
        ),
        True,
    )


def experiments_with_history(session: Session, user: User) -> list[Experiment]:
    """Visible experiments that have at least one snapshot, newest first (the planner's picker)."""
    with_snapshots = select(AnalysisSnapshot.experiment_id).distinct()
    return _visible_experiments(
        session,
        user,
        select(Experiment)
        .where(Experiment.id.in_(with_snapshots))
        .order_by(Experiment.created_at.desc(), Experiment.id.desc()),
    )


@dataclass(frozen=True)
class Allocation:
    """Accounts needed per arm; ``None`` figures when the test cannot be sized."""

    control: int | None
    treatments: tuple[int, ...]
    ratios: tuple[float, ...]

    @property
    def total(self) -> int | None:
        if self.control is None:
            return None
        return self.control + sum(self.treatments)


def size_arms(
    mde: float, sigma: float, *, alpha: float, power: float, weights: tuple[float, ...]
) -> Allocation:
    """Accounts per arm for a control and treatments planned at ``weights`` (control first).

    Each treatment is compared with the control; the control must be large
    enough for the hardest of those comparisons, and every treatment then gets
    its planned share relative to it.
    """
    control_weight, *treatment_weights = weights
    ratios = tuple(w / control_weight for w in treatment_weights)
    needs = [required_sample_size(mde, sigma, alpha=alpha, power=power, ratio=r) for r in ratios]
    if not needs or any(n is None for n in needs):
        return Allocation(None, (), ratios)
    control = max(needs)
    return Allocation(control, tuple(math.ceil(control * r) for r in ratios), ratios)


# ---------------------------------------------------------------------------
# The planner page


@dataclass
class PlannerResult:
    """The planner's answer, with the inputs as understood and where sigma came from."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)
    history: History | None = None
    history_missing: bool = False
    #: The ledger segment sigma and the baseline came from (``None``: not from the ledger).
    segment: LedgerSegment | None = None
    #: Every ledger segment on offer (empty without a ledger): the form's choices.
    segments: list[LedgerSegment] = field(default_factory=list)
    baseline_nrr: float | None = None
    sigma: float | None = None
    mde: float | None = None
    treatment_share: float | None = None
    allocation: Allocation | None = None
    weeks: int | None = None
    weekly_enrolment: float | None = None

    @property
    def relative_mde(self) -> float | None:
        if self.mde is None or not self.baseline_nrr:
            return None
        return self.mde / self.baseline_nrr


def plan(session: Session, user: User, args: Mapping[str, Any]) -> PlannerResult:
    """Answer the planner form (``args``: its GET values; a missing one takes its default).

    Inputs: ``baseline_nrr`` (fraction, 1.02 = 102%), ``sigma`` (per-account
    spread), ``experiment`` (a key whose latest snapshot supplies both instead),
    ``segment`` (``"all"`` or ``"dimension=value"``: the revenue ledger's last period
    supplies both instead, unless an experiment is chosen; when absent it is ``"all"``
    while a ledger with a measured sigma exists, blank = use the typed numbers), ``mde``,
    ``alpha``, ``power``, ``treatment_share`` (the treatment's share of enrolments, in
    (0, 1)) and ``weekly_enrolment`` (accounts entering per week;
    blank = no duration).

    Bad inputs come back as ``errors`` per field (never raised): the planner
    shows them while the user types.
    """
    # A field missing from the query (a shared link such as ?mde=0.03) takes its
    # default; a field sent blank stays blank, so clearing it is answered, not undone.
    values = {
        k: str(args.get(k) or "") if k in args else PLANNER_DEFAULTS.get(k, "")
        for k in PLANNER_FIELDS
    }
    segments = ledger_segments(session)
    if "segment" not in args and segments:
        values["segment"] = ALL_ACCOUNTS
    result = PlannerResult(values=values, segments=segments)
    errors = FieldErrors()
    key = read_text(values, "experiment", errors, max_length=64)
    if key and "experiment" not in errors:
        result.history = experiment_history(session, user, key)
        if result.history is None:
            result.history_missing = True
            errors.add(
                "experiment", "has no analysis results to take the spread from; enter sigma instead"
            )
    wanted = read_text(values, "segment", errors, max_length=500)
    if wanted and result.history is None and not key and "segment" not in errors:
        result.segment = next((s for s in segments if s.key == wanted), None)
        if result.segment is None:
            errors.add(
                "segment",
                "is not a segment of the revenue ledger with a measured spread (it needs 2 or "
                "more accounts in the last period); choose one from the list or 'No'",
            )
    if result.history is not None:
        result.sigma = result.history.sigma
        result.baseline_nrr = result.history.baseline_nrr
    elif result.segment is not None:
        result.sigma = result.segment.sigma
        result.baseline_nrr = result.segment.baseline_nrr
    else:
        result.sigma = read_number(values, "sigma", errors, required=True, example="0.25")
        if result.sigma is not None and not 0 < result.sigma <= 100:
            errors.add("sigma", "must be greater than 0 (a spread such as 0.25)")
        result.baseline_nrr = read_number(values, "baseline_nrr", errors, example="1.02")
        if result.baseline_nrr is not None and not 0 < result.baseline_nrr <= 10:
            errors.add("baseline_nrr", "must be a fraction greater than 0, e.g. 1.02 for 102%")
    result.mde = read_number(values, "mde", errors, required=True, example="0.02")
    if result.mde is not None and not 0 < result.mde < 1:
        errors.add("mde", "must be greater than 0 and below 1 (0.02 = 2 NRR points)")
    alpha = read_number(values, "alpha", errors, required=True, example="0.05")
    if alpha is not None and not 0 < alpha <= 0.5:
        errors.add("alpha", "must be greater than 0 and at most 0.5 (e.g. 0.05)")
    power = read_number(values, "power", errors, required=True, example="0.8")
    if power is not None and not 0.5 <= power <= 0.99:
        errors.add("power", "must be between 0.5 and 0.99 (e.g. 0.8)")
    share = read_number(values, "treatment_share", errors, required=True, example="0.5")
    if share is not None and not 0.01 <= share <= 0.99:
        errors.add("treatment_share", "must be between 0.01 and 0.99 (0.5 = an even split)")
    result.treatment_share = share
    weekly = read_number(values, "weekly_enrolment", errors, example="250")
    if weekly is not None and not 0 < weekly <= 10_000_000:
        errors.add("weekly_enrolment", "must be greater than 0 (accounts enrolled per week)")
    result.weekly_enrolment = weekly
    result.errors = dict(errors)
    if (
        errors
        or result.sigma is None
        or result.mde is None
        or alpha is None
        or power is None
        or share is None
    ):
        return result
    result.allocation = size_arms(
        result.mde, result.sigma, alpha=alpha, power=power, weights=(1 - share, share)
    )
    if result.allocation.total is not None and weekly:
        result.weeks = math.ceil(result.allocation.total / weekly)
    return result


# ---------------------------------------------------------------------------
# The registry form's live hint


@dataclass(frozen=True)
class SampleSizeHint:
    """The sample size the registry form's plan implies, or why it cannot say yet.

    ``allocation`` is sized for each arm's weight at ``alpha / k`` (DESIGN §4c);
    ``weeks`` is ``None`` when the branch has no dated enrolment to measure a rate from.
    """

    allocation: Allocation | None
    sigma: float
    #: The branch's history, read only when the ledger gives no sigma (else ``None``).
    history: History | None
    message: str = ""
    variant_keys: tuple[str, ...] = ()
    mde: float | None = None
    source: str = ASSUMED_SOURCE
    measured: bool = False
    alpha_sizing: float | None = None
    weekly_enrolment: float | None = None
    weeks: int | None = None

    @property
    def sigma_source(self) -> str:
        return f"sigma = {self.sigma:.3f}, {self.source}"


def branch_enrolment_rate(session: Session, user: User, node_id: int) -> float | None:
    """Accounts enrolled per week on the branch, from its newest dated enrolment.

    Dated enrolment is the growth in rows between an experiment's last two uploads over the
    time between them (a single upload carries no dates); ``None`` when no experiment on
    the branch has two uploads with growth.
    """
    nodes = branch_ids(session, node_id)
    experiments = _visible_experiments(
        session, user, select(Experiment).where(Experiment.node_id.in_(nodes))
    )
    if not experiments:
        return None
    last_two: dict[int, list[tuple[datetime, int]]] = {}
    for experiment_id, uploaded_at, rows in session.exec(  # one query, not one per experiment
        select(Dataset.experiment_id, Dataset.uploaded_at, Dataset.row_count)
        .where(Dataset.experiment_id.in_([e.id for e in experiments]),
               Dataset.status == "ready")
        .order_by(Dataset.experiment_id, Dataset.version.desc())
    ).all():
        found = last_two.setdefault(experiment_id, [])
        if len(found) < 2:
            found.append((uploaded_at, rows))
    best: tuple[datetime, float] | None = None
    for experiment in experiments:
        uploads = last_two.get(experiment.id, [])
        if len(uploads) < 2:
            continue
        (last_at, last_rows), (prev_at, prev_rows) = uploads
        days = (last_at - prev_at).total_seconds() / 86400
        if days <= 0 or last_rows <= prev_rows:
            continue
        if best is None or last_at > best[0]:
            best = (last_at, (last_rows - prev_rows) / days * 7)
    return best[1] if best else None


def sample_size_hint(session: Session, user: User, data: Mapping[str, Any]) -> SampleSizeHint:
    """The accounts per arm for the plan on the experiment form (read leniently: it is a hint).

    ``data``: ``mde``, ``alpha``, ``power``, ``node_id``, ``stage_id`` and the form's
    variant rows (``variants`` with ``weight``, ``control`` as their index). Sigma is
    measured on the revenue ledger, else on the branch, else on the journey stage, else
    assumed and flagged as such (:func:`planning_sigma`).
    """
    node_id = parse_id(data.get("node_id"))
    stage_id = parse_id(data.get("stage_id"))
    segment = ledger_segment(session)
    # The branch's stored results are read only when the ledger gives no sigma (the hint
    # runs on every keystroke of the form).
    history = branch_history(session, user, node_id) if node_id and segment is None else None
    found = _measured_sigma(session, user, segment, history, stage_id)
    common = {"source": found.source, "measured": found.measured}
    errors = FieldErrors()
    mde = read_number(data, "mde", errors, required=True)
    alpha = read_number(data, "alpha", errors, required=True)
    power = read_number(data, "power", errors, required=True)
    if (
        errors
        or mde is None
        or alpha is None
        or power is None
        or not (0 < mde < 1 and 0 < alpha <= 0.5 and 0.5 <= power <= 0.99)
    ):
        return SampleSizeHint(
            None,
            found.sigma,
            history,
            "Enter an MDE between 0 and 1, alpha in (0, 0.5] and power in "
            "[0.5, 0.99] to see the sample size.",
            **common,
        )
    keys, weights = _weights(data)
    names = [f"{i}:{key}" for i, key in enumerate(keys)]  # unique even while keys repeat
    sizes = plan_sample_sizes(
        mde,
        found.sigma,
        control=names[0],
        weights=dict(zip(names, weights, strict=True)),
        alpha=alpha,
        power=power,
    )
    needs = [sizes.required_n[name] for name in names]
    ratios = tuple(w / weights[0] for w in weights[1:])
    if any(n is None for n in needs):
        allocation = Allocation(None, (), ratios)
        message = "More than ten million accounts per arm: the MDE is too small for this spread."
    else:
        allocation = Allocation(needs[0], tuple(needs[1:]), ratios)
        message = ""
    weekly = branch_enrolment_rate(session, user, node_id) if node_id else None
    weeks = (
        math.ceil(allocation.total / weekly) if weekly and allocation.total is not None else None
    )
    return SampleSizeHint(
        allocation,
        found.sigma,
        history,
        message,
        keys,
        mde,
        **common,
        alpha_sizing=sizes.alpha_sizing,
        weekly_enrolment=weekly,
        weeks=weeks,
    )


def _weights(data: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Variant keys and weights, control first; equal weights when the rows are not usable yet."""
    rows = [r for r in (data.get("variants") or []) if isinstance(r, Mapping)]
    raw = str(data.get("control") or "").strip()
    index = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 4 else None
    weights = []
    for row in rows:
        weight = read_number(row, "weight", FieldErrors())
        # A weight the form would refuse is not usable yet (1e308 overflowed the sizing).
        weights.append(weight if weight is not None and 0 < weight <= MAX_WEIGHT else None)
    if len(rows) < 2 or index is None or index >= len(rows) or any(w is None for w in weights):
        count = max(len(rows), 2)
        return tuple(f"arm {i + 1}" for i in range(count)), (1.0,) * count
    order = [index] + [i for i in range(len(rows)) if i != index]
    keys = tuple(str(rows[i].get("key") or f"arm {i + 1}") for i in order)
    return keys, tuple(float(weights[i]) for i in order)
