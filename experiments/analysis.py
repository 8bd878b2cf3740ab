"""Analysing an experiment's datasets and keeping each result as a snapshot.

:func:`refresh_snapshot` runs :func:`stats.analyze` under the experiment's
*current* plan on sums pushed down into SQL (one ``GROUP BY``; rows are read
only for the Mann-Whitney check) and stores an :class:`AnalysisSnapshot`.
:func:`load_results` reads the newest snapshot back for the results page, so a
page view never recomputes anything.

The headline verdict (the ``verdict`` column, used by the registry and the
review) and the enrolment projection are the shared rules of :mod:`experiments.rules`.
The results view model carries the experiment document
(:mod:`experiments.documents`) the exports and the review also show.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlmodel import Session, select

from experiments import datasets as data
from experiments.audit import record_event
from experiments.documents import AmendmentInfo, ExperimentDocument, Facts, document_now
from experiments.errors import NotFound
from experiments.models import (
    AnalysisSnapshot,
    Dataset,
    Experiment,
    User,
    Variant,
    utcnow,
)
from experiments.planning import ASSUMED_SOURCE, DEFAULT_SIGMA
from experiments.review_weeks import parse_moment
from experiments.rules import UNDATED_ENROLMENT, headline_verdict, project_enrolment
from experiments.stored_analyses import snapshot_key, stored_parts
from experiments.warehouse_inputs import PushedInputs, stored_inputs
from stats import (
    ArmData,
    ArmTotals,
    ExperimentResult,
    SufficientStats,
    analyze,
    plan_sample_sizes,
    segment_adjust,
    summary_sentence,
)
from stats.analysis import DEFAULT_TTV_TARGET_DAYS
from stats.levers import GuardrailSpec
from stats.sums import sums_from_moments

#: At most this many segments (the largest by accounts) are analysed per dataset.
MAX_SEGMENTS = 20


# ------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Plan:
    """The analysis plan in force: what :func:`stats.analyze` is run under."""

    alpha: float
    power: float
    mde: float
    control: str
    variants: tuple[str, ...]
    weights: Mapping[str, float]
    names: Mapping[str, str]
    #: The plan's sigma (locked at start) and its source; ``None``: the control's sigma_lin.
    sigma: float | None = None
    sigma_source: str = ""
    sequential: bool = False
    tuning: float | None = None
    #: Accounts per arm locked at start (empty before the start).
    locked_n: Mapping[str, int] | None = None
    #: Non-inferiority guardrails and the time-to-value target (issue 15, DESIGN §4c).
    guardrails: tuple[GuardrailSpec, ...] = ()
    ttv_target_days: int = DEFAULT_TTV_TARGET_DAYS

    def to_dict(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "power": self.power,
            "mde": self.mde,
            "sigma": self.sigma,
            "sigma_source": self.sigma_source,
            "sequential": self.sequential,
            "tuning": self.tuning,
            "required_n": dict(self.locked_n or {}),
            "guardrails": [spec.to_dict() for spec in self.guardrails],
            "ttv_target_days": self.ttv_target_days,
            "control": self.control,
            "variants": [
                {"key": key, "name": self.names.get(key, ""), "weight": self.weights[key]}
                for key in self.variants
            ],
        }

    def same_as(self, stored: Mapping[str, Any] | None) -> bool:
        """Whether a snapshot's stored plan is this plan (else the snapshot is outdated)."""
        if not stored:
            return False
        try:
            stored_variants = [(v["key"], float(v["weight"])) for v in stored["variants"]]
            return (
                float(stored["alpha"]) == self.alpha
                and float(stored["power"]) == self.power
                and float(stored["mde"]) == self.mde
                and stored["control"] == self.control
                and stored.get("sigma") == self.sigma
                and bool(stored.get("sequential")) == self.sequential
                and stored.get("tuning") == self.tuning
                # Snapshots from before issue 15 were computed without guardrails at 14 days.
                and list(stored.get("guardrails") or [])
                == [spec.to_dict() for spec in self.guardrails]
                and int(stored.get("ttv_target_days") or DEFAULT_TTV_TARGET_DAYS)
                == self.ttv_target_days
                and stored_variants == [(k, self.weights[k]) for k in self.variants]
            )
        except (KeyError, TypeError, ValueError):
            return False


def current_plan(session: Session, experiment: Experiment) -> Plan:
    """The experiment's plan now: alpha, power, MDE and its variants in position order.

    The control is the variant marked ``is_control`` (the first by position if none is).

    Raises
    ------
    ValueError
        If the experiment has no variants.
    """
    rows = session.exec(
        select(Variant)
        .where(Variant.experiment_id == experiment.id)
        .order_by(Variant.position, Variant.id)
    ).all()
    if not rows:
        raise ValueError(f"experiment {experiment.key!r} has no variants")
    control = next((v.key for v in rows if v.is_control), rows[0].key)
    locked = {v.key: int(v.required_n) for v in rows if v.required_n is not None}
    return Plan(
        alpha=float(experiment.alpha),
        power=float(experiment.power),
        mde=float(experiment.mde),
        control=control,
        variants=tuple(v.key for v in rows),
        weights={v.key: float(v.weight) for v in rows},
        names={v.key: v.name for v in rows},
        # The plan's sigma sizes the analysis once it is locked (at start); a draft's is the
        # registration's estimate, so a draft's analysis still measures its control arm.
        sigma=None if experiment.sigma is None or not locked else float(experiment.sigma),
        sigma_source=(experiment.sigma_source or "") if locked else "",
        sequential=bool(experiment.sequential),
        tuning=None if experiment.tuning is None else float(experiment.tuning),
        locked_n=locked if len(locked) == len(rows) else None,
        guardrails=stored_guardrails(experiment.guardrails),
        ttv_target_days=int(experiment.ttv_target_days or DEFAULT_TTV_TARGET_DAYS),
    )


def stored_guardrails(value: Any) -> tuple[GuardrailSpec, ...]:
    """The plan's guardrails from the experiment's JSON column (``[]`` when unset)."""
    return tuple(GuardrailSpec(g["metric"], float(g["margin"])) for g in value or ())


# -------------------------------------------------------------------- computation


def _arms(
    sums: Sequence[data.ArmSumsRow],
    ratios: Mapping[str, Any],
    rows: Mapping[str, Any] | None = None,
    extras: Mapping[str, data.ArmExtras] | None = None,
    times: Mapping[str, Any] | None = None,
    days: Mapping[str, Any] | None = None,
) -> dict[str, ArmData]:
    arms = {}
    for row in sums:
        totals = ArmTotals(row.n, row.start, row.expansion, row.contraction, row.churned)
        extra = (extras or {}).get(row.variant)
        if extra is not None:
            # Centred co-moments: the same construction as the file path (stats.arm_from_arrays).
            stats = sums_from_moments(extra.moments)
        else:
            stats = SufficientStats(
                row.n, row.sum_x, row.sum_y, row.sum_xx, row.sum_yy, row.sum_xy
            )
        arms[row.variant] = ArmData(
            totals,
            stats,
            ratios.get(row.variant),
            (rows or {}).get(row.variant),
            moments=None if extra is None else extra.moments,
            logo_churned=None if extra is None else extra.logo_churned,
            expanded=None if extra is None else extra.expanded,
            times=(times or {}).get(row.variant),
            days_to_value=(days or {}).get(row.variant),
        )
    return arms


def _analyze(plan: Plan, arms: Mapping[str, ArmData]) -> ExperimentResult:
    # The locked sigma sizes the arms (so "underpowered" is judged against the locked n).
    return analyze(
        arms,
        control=plan.control,
        alpha=plan.alpha,
        power=plan.power,
        mde=plan.mde,
        weights=plan.weights,
        variants=list(plan.variants),
        sigma=plan.sigma,
        sequential=plan.sequential,
        tuning=plan.tuning,
        guardrails=plan.guardrails,
        ttv_target=plan.ttv_target_days,
    )


def refresh_snapshot(
    session: Session,
    experiment: Experiment,
    dataset: Dataset,
    *,
    ratios: data.AccountRatios | None = None,
    pushed: PushedInputs | None = None,
) -> AnalysisSnapshot:
    """Analyse ``dataset`` under the experiment's current plan and store an AnalysisSnapshot.

    :func:`analyse_dataset`, then the snapshot added. Flushed, not committed.
    """
    snapshot = analyse_dataset(session, experiment, dataset, ratios=ratios, pushed=pushed)
    session.add(snapshot)
    session.flush()
    return snapshot


def analyse_dataset(
    session: Session,
    experiment: Experiment,
    dataset: Dataset,
    *,
    ratios: data.AccountRatios | None = None,
    pushed: PushedInputs | None = None,
) -> AnalysisSnapshot:
    """The AnalysisSnapshot of ``dataset`` under the experiment's current plan, not yet added
    to the session (this only reads).

    Per-arm sufficient statistics come from one ``GROUP BY variant``, or, when the
    dataset has segments, from one ``GROUP BY segment, variant`` that also feeds the
    segment breakdown (pooled over segments it is the per-arm sums); the rows are read
    once, for the Mann-Whitney check — unless the caller still holds them and passes
    ``ratios`` (the import does: it has just written those very rows; then nothing is
    read back at all). Segments beyond the :data:`MAX_SEGMENTS` largest are counted but
    not analysed.

    Raises
    ------
    ValueError
        If the experiment has no variants or ``dataset`` belongs to another experiment.
    """
    if dataset.experiment_id != experiment.id:
        raise ValueError(f"dataset {dataset.id} does not belong to experiment {experiment.key!r}")
    plan = current_plan(session, experiment)
    # A warehouse dataset (issue 18) has no rows here: the warehouse computed the same
    # inputs (experiments.warehouse) and they were stored beside the dataset.
    if pushed is None and dataset.source == "warehouse":
        pushed = stored_inputs(session, dataset)
    if pushed is not None:
        by_segment, sums, ratios = pushed.sums_by_segment, pushed.sums, pushed.sample.ratios()
    elif ratios is not None and ratios.table is not None:
        # An import that has just written these rows: the same inputs from its arrays, not
        # GROUP BYs over a million fresh rows (seconds on SQLite, under the write lock).
        from_table = data.inputs_from_table(ratios.table)
        by_segment, sums = from_table.sums_by_segment, from_table.sums
    else:
        by_segment = (
            data.arm_sums_by_segment(session, dataset.id) if dataset.has_segment else None
        )
        # With segments, the one GROUP BY (segment, variant) pooled is the GROUP BY variant.
        sums = (
            data.pool_sums(by_segment.values()) if by_segment
            else data.arm_sums(session, dataset.id)
        )
    if ratios is None:
        ratios = data.account_ratio_rows(
            session, dataset.id, with_days=bool(dataset.has_days_to_value)
        )
    keys = [row.variant for row in sums]
    # Issue 15's inputs: moments and incidence counts (one GROUP BY of shifted sums) and
    # the time-to-value tables (GROUP BY variant, day), per segment when there are segments.
    if pushed is not None:
        extras, times = dict(pushed.extras), dict(pushed.times)
    elif ratios.table is not None:  # an import that still holds the rows: no SQL read-back
        extras, times = from_table.extras, from_table.times
    else:
        extras = data.arm_extras(session, dataset, by_segment=bool(by_segment))
        times = data.time_tables(session, dataset, by_segment=bool(by_segment))
    result = _analyze(
        plan,
        _arms(
            sums,
            ratios.by_variant(keys=keys),
            ratios.rows_by_variant(keys=keys),
            data.pool_extras(extras),
            data.pool_time_tables(times),
            ratios.days_by_variant(keys=keys),
        ),
    )
    if pushed is not None:  # the rank check on a partial sample says so
        result = pushed.label(result)

    segment_results: dict[str, Any] | None = None
    omitted: list[str] = []
    if by_segment:
        sizes = {
            name: sum(row.n for row in rows)
            for name, rows in by_segment.items()
            if name is not None
        }
        ranked = sorted(sizes, key=lambda name: (-sizes[name], name))
        shown, omitted = ranked[:MAX_SEGMENTS], ranked[MAX_SEGMENTS:]
        segment_results = {}
        for name in sorted(shown):
            segment_ratios = ratios.by_variant(ratios.segment == name, keys=keys)
            mask = ratios.segment == name
            segment_rows = ratios.rows_by_variant(mask, keys=keys)
            segment_results[name] = _analyze(
                plan,
                _arms(
                    by_segment[name],
                    segment_ratios,
                    segment_rows,
                    {v: e for (seg, v), e in extras.items() if seg == name},
                    {v: t for (seg, v), t in times.items() if seg == name},
                    ratios.days_by_variant(mask, keys=keys),
                ),
            ).to_dict()

    report = result.to_dict()
    report["plan"] = plan.to_dict()
    report["dataset"] = {
        "id": dataset.id,
        "version": dataset.version,
        "filename": dataset.filename,
        "sha256": dataset.sha256,
        "rows": dataset.row_count,
    }
    report["segments_omitted"] = len(omitted)
    report["enrolment"] = _enrolment_dates(session, experiment, dataset, result, ratios.table,
                                           pushed)
    return AnalysisSnapshot(
        experiment_id=experiment.id,
        dataset_id=dataset.id,
        computed_at=utcnow(),
        verdict=headline_verdict(result),
        result=report,
        segments=segment_results,
    )


def _smallest_arm(report: Mapping[str, Any], variants: Sequence[str]) -> int | None:
    counts = {
        a.get("variant"): a.get("accounts")
        for a in report.get("arms") or []
        if isinstance(a, Mapping)
    }
    values = [counts.get(v) or 0 for v in variants]
    return min(values) if values else None


def _enrolment_dates(
    session: Session,
    experiment: Experiment,
    dataset: Dataset,
    result: ExperimentResult,
    table: Any = None,
    pushed: PushedInputs | None = None,
) -> dict[str, Any]:
    """The dated enrolment the projection may use: this upload and the one before it.

    ``earlier_*`` are ``None`` for a first upload (its accounts carry no dates).
    """
    variants = [arm.variant for arm in result.arms]
    earlier = session.exec(
        select(Dataset, AnalysisSnapshot)
        .join(AnalysisSnapshot, AnalysisSnapshot.dataset_id == Dataset.id)
        .where(
            Dataset.experiment_id == experiment.id,
            Dataset.status == "ready",
            Dataset.version < dataset.version,
        )
        .order_by(
            Dataset.version.desc(), AnalysisSnapshot.computed_at.desc(), AnalysisSnapshot.id.desc()
        )
        .limit(1)
    ).first()
    earlier_at = earlier_smallest = None
    if earlier is not None:
        earlier_at = _aware(earlier[0].uploaded_at).isoformat()
        earlier_smallest = _smallest_arm(earlier[1].result or {}, variants)
    observed = _aware(dataset.uploaded_at)
    # Accounts dated by enrolled_on date the enrolment within one upload (DESIGN §3): the
    # smallest arm at the last enrolment day and a window before it.
    if pushed is not None:  # counted in the warehouse
        dated = pushed.dated_enrolment(variants)
    elif table is not None:
        dated = data.dated_enrolment_from_table(table, variants)
    else:
        dated = data.dated_enrolment(session, dataset, variants)
    if dated is not None:
        return {
            "observed_at": _midnight(dated.observed_on).isoformat(),
            "earlier_at": _midnight(dated.earlier_on).isoformat(),
            "earlier_smallest": dated.earlier_smallest,
            "observed_smallest": dated.smallest,
            "source": "enrolled_on",
        }
    return {
        "observed_at": observed.isoformat() if observed else None,
        "earlier_at": earlier_at,
        "earlier_smallest": earlier_smallest,
        "source": "uploads",
    }


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def active_dataset(session: Session, experiment: Experiment) -> Dataset | None:
    """The experiment's newest dataset version (the one that is analysed), if any."""
    return session.exec(
        select(Dataset)
        .where(Dataset.experiment_id == experiment.id, Dataset.status == "ready")
        .order_by(Dataset.version.desc())
        .limit(1)
    ).first()


def recompute(session: Session, experiment: Experiment, *, actor: User | None) -> AnalysisSnapshot:
    """Re-run :func:`refresh_snapshot` on the active dataset (after an amendment, say).

    Raises
    ------
    NotFound
        The experiment has no dataset yet.
    """
    dataset = active_dataset(session, experiment)
    if dataset is None:
        raise NotFound("this experiment has no data to analyse yet")
    snapshot = refresh_snapshot(session, experiment, dataset)
    record_event(
        session,
        "analysis.recompute",
        actor=actor,
        entity_type="experiment",
        entity_id=experiment.key,
        team_id=experiment.team_id,
        diff={"dataset_version": [None, dataset.version], "verdict": [None, snapshot.verdict]},
    )
    return snapshot


# ------------------------------------------------------------------ reading back


@dataclass(frozen=True)
class DatasetInfo:
    """One stored dataset version as the page lists it."""

    id: int
    version: int
    source: str
    filename: str
    sha256: str
    rows: int
    uploaded_by: str | None
    uploaded_at: datetime


@dataclass(frozen=True)
class ArmProgress:
    """Enrolment of one arm against the accounts per arm the plan needs."""

    variant: str
    accounts: int
    required: int | None

    @property
    def fraction(self) -> float | None:
        """Share of the required accounts enrolled, capped at 1."""
        if not self.required:
            return None
        return min(self.accounts / self.required, 1.0)

    @property
    def reached(self) -> bool:
        return self.required is not None and self.accounts >= self.required


@dataclass(frozen=True)
class SegmentRow:
    """One treatment of one segment in the breakdown table (exploratory, issue 13 item 7).

    ``p_value`` is the segment's Holm-adjusted p; ``p_value_bh`` adjusts it again across
    every segment-and-treatment row (Benjamini-Hochberg, :func:`stats.segment_adjust`);
    ``signal`` is whether that is below the plan's alpha. ``verdict`` is kept for the
    record only: a segment never gets a primary verdict on the page.
    """

    segment: str
    variant: str
    accounts: int
    uplift_abs: float | None
    ci_abs: tuple[float | None, float | None]
    p_value: float | None
    verdict: str
    p_value_bh: float | None = None
    signal: bool = False


@dataclass(frozen=True)
class Results:
    """Everything the results section of the experiment page shows.

    ``result`` is the selected segment's result when ``segment`` is set, else the
    whole dataset's; it is ``None`` when there is no data (or no snapshot yet).
    """

    experiment_key: str
    status: str
    plan: Plan | None
    dataset: DatasetInfo | None
    versions: tuple[DatasetInfo, ...]
    is_active_version: bool
    result: ExperimentResult | None
    verdict: str | None
    summaries: Mapping[str, str]
    segment: str | None
    segment_names: tuple[str, ...]
    segments_omitted: int
    segment_rows: tuple[SegmentRow, ...]
    progress: tuple[ArmProgress, ...]
    required_n: int | None
    assumed_sigma: float | None
    expected_date: date | None
    computed_at: datetime | None
    #: Why no date is projected while a running experiment is short of its n, else None.
    expected_note: str | None
    #: The planning sigma and its source as the page states it (None: the control's).
    sigma_note: str | None
    snapshot_plan: Mapping[str, Any] | None
    plan_outdated: bool
    amendments: tuple[AmendmentInfo, ...]
    document: ExperimentDocument

    @property
    def has_data(self) -> bool:
        return self.dataset is not None

    @property
    def warnings(self) -> tuple[str, ...]:
        """Experiment-level warnings followed by every comparison's, without repeats."""
        if self.result is None:
            return ()
        notes = list(self.result.warnings)
        for comparison in self.result.comparisons:
            notes += [f"{comparison.variant}: {w}" for w in comparison.warnings]
        return tuple(dict.fromkeys(notes))


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    return moment


def _dataset_infos(facts: Facts, experiment: Experiment) -> tuple[DatasetInfo, ...]:
    """The experiment's ready data versions, newest first (read with its document)."""
    infos = []
    for d in reversed(facts.datasets_of.get(experiment.id, [])):
        user = facts.users.get(d.uploaded_by_id)
        label = (user.name or user.email) if user is not None else None
        infos.append(DatasetInfo(d.id, d.version, d.source, d.filename, d.sha256, d.row_count,
                                 label or None, _aware(d.uploaded_at)))
    return tuple(infos)


def _expected_date(
    experiment: Experiment, progress: Sequence[ArmProgress], report: Mapping[str, Any]
) -> date | None:
    """When the slowest arm reaches its required n, from dated enrolment only (running)."""
    if experiment.status != "running" or not progress:
        return None
    if any(p.required is None for p in progress):
        return None
    slowest = min(progress, key=lambda p: p.accounts / p.required if p.required else 1.0)
    dates = report.get("enrolment") if isinstance(report.get("enrolment"), Mapping) else {}
    projection = project_enrolment(
        earlier_at=parse_moment(dates.get("earlier_at")),
        earlier_smallest=dates.get("earlier_smallest"),
        observed_at=parse_moment(dates.get("observed_at")),
        smallest=slowest.accounts,
        required=slowest.required,
    )
    return projection.expected_date if projection is not None else None


def _expected_note(
    experiment: Experiment,
    progress: Sequence[ArmProgress],
    expected: date | None,
    report: Mapping[str, Any] | None,
) -> str | None:
    if expected is not None or experiment.status != "running" or report is None:
        return None
    if (
        not progress
        or all(p.reached for p in progress)
        or any(p.required is None for p in progress)
    ):
        return None
    dates = report.get("enrolment") if isinstance(report.get("enrolment"), Mapping) else {}
    if not dates.get("earlier_at"):
        return UNDATED_ENROLMENT
    return "unknown: the smallest arm did not grow between the last two uploads"


def _segment_rows(segments: Mapping[str, Any] | None, alpha: float) -> tuple[SegmentRow, ...]:
    found = []
    for name, report in sorted((segments or {}).items()):
        counts = {arm["variant"]: arm["accounts"] for arm in report.get("arms", [])}
        for c in report.get("comparisons", []):
            ci = c.get("ci_abs") or [None, None]
            found.append((name, c, counts.get(c["variant"], 0), (ci[0], ci[1])))
    adjusted = segment_adjust(
        {f"{name}/{c['variant']}": c.get("p_value_adjusted") for name, c, _, _ in found}
    )
    rows = []
    for name, c, accounts, ci in found:
        bh = adjusted[f"{name}/{c['variant']}"]
        rows.append(
            SegmentRow(
                name,
                c["variant"],
                accounts,
                c.get("uplift_abs"),
                ci,
                c.get("p_value_adjusted"),
                c["verdict"],
                bh,
                bh is not None and bh < alpha,
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class _StoredSnapshot:
    """A snapshot as the results section reads it; the JSON parts come parsed from
    :mod:`experiments.stored_analyses` (shared: never changed here)."""

    id: int
    computed_at: datetime
    verdict: str | None
    result: Mapping[str, Any]
    segments: Mapping[str, Any] | None


def _newest_snapshot(session: Session, facts: Facts, experiment: Experiment,
                     dataset_id: int) -> _StoredSnapshot | None:
    heads = [h for h in facts.snapshots.get(experiment.id, ()) if h[2] == dataset_id]
    if not heads:
        return None
    computed_at, snapshot_id, _dataset, verdict = max(heads, key=lambda h: (h[0], h[1]))
    key = snapshot_key(snapshot_id, computed_at, dataset_id)
    result = stored_parts(session, [key], "result").get(snapshot_id, {})
    segments = stored_parts(session, [key], "segments").get(snapshot_id)
    return _StoredSnapshot(snapshot_id, computed_at, verdict, result, segments)


def load_results(
    session: Session,
    experiment: Experiment,
    *,
    dataset_version: int | None = None,
    segment: str | None = None,
) -> Results:
    """Everything the results section shows, read from the newest stored snapshot.

    Without data the result is empty and ``required_n`` is sized on
    :data:`DEFAULT_SIGMA` (``assumed_sigma`` says so). Nothing is recomputed.

    Raises
    ------
    NotFound
        ``dataset_version`` is not one of the experiment's versions, or
        ``segment`` is not one of the analysed segments of that version.
    """
    try:
        plan: Plan | None = current_plan(session, experiment)
    except ValueError:
        plan = None
    facts = Facts(session, [experiment])
    versions = _dataset_infos(facts, experiment)
    document = document_now(session, experiment, facts=facts)
    chosen = versions[0] if versions else None
    if dataset_version is not None:
        chosen = next((v for v in versions if v.version == dataset_version), None)
        if chosen is None:
            raise NotFound(
                f"experiment {experiment.key!r} has no dataset version {dataset_version}"
            )

    snapshot = _newest_snapshot(session, facts, experiment, chosen.id) \
        if chosen is not None else None

    result = None
    verdict = None
    segment_names: tuple[str, ...] = ()
    if snapshot is not None:
        segment_names = tuple(sorted(snapshot.segments or {}))
        if segment is not None:
            if segment not in segment_names:
                raise NotFound(f"dataset version {chosen.version} has no segment {segment!r}")
            result = ExperimentResult.from_dict(snapshot.segments[segment])
            verdict = headline_verdict(result)
        else:
            result = ExperimentResult.from_dict(snapshot.result)
            # Snapshots stored before the column was filled get the same one rule.
            verdict = snapshot.verdict if snapshot.verdict is not None else headline_verdict(result)
    elif segment is not None:
        raise NotFound(f"no segment {segment!r} has been analysed")

    # Progress is judged against the n locked at start (issue 13 item 3); before the start,
    # against the analysis's sizes, or the plan's sigma (assumed when it has none).
    per_arm: dict[str, int | None] = {}
    assumed_sigma = None
    if plan is not None and plan.locked_n:
        per_arm = dict(plan.locked_n)
    elif result is not None and any(result.required_n.values()):
        per_arm = dict(result.required_n)
    elif plan is not None:
        # Before the start: the sigma the plan was registered with, else the assumption.
        sigma = experiment.sigma if experiment.sigma is not None else DEFAULT_SIGMA
        measured = experiment.sigma is not None and experiment.sigma_source != ASSUMED_SOURCE
        assumed_sigma = None if measured else DEFAULT_SIGMA
        per_arm = dict(
            plan_sample_sizes(
                plan.mde,
                sigma,
                control=plan.control,
                weights=plan.weights,
                alpha=plan.alpha,
                power=plan.power,
            ).required_n
        )
    required_n = max((n for n in per_arm.values() if n), default=None)
    sigma_note = None
    if plan is not None and plan.sigma is not None:
        sigma_note = f"σ = {plan.sigma:.3f}, {plan.sigma_source or 'given in the plan'}"
    elif assumed_sigma is None and experiment.sigma is not None and result is None:
        sigma_note = (
            f"σ = {experiment.sigma:.3f}, {experiment.sigma_source} "
            "(locked when the experiment starts)"
        )

    if result is not None:
        progress = tuple(
            ArmProgress(arm.variant, arm.accounts, per_arm.get(arm.variant)) for arm in result.arms
        )
    elif plan is not None:
        progress = tuple(ArmProgress(key, 0, per_arm.get(key)) for key in plan.variants)
    else:
        progress = ()

    expected_date = (
        _expected_date(experiment, progress, snapshot.result or {})
        if result is not None and snapshot is not None
        else None
    )
    summaries = (
        {c.variant: summary_sentence(c, result.alpha) for c in result.comparisons} if result else {}
    )
    stored_plan = snapshot.result.get("plan") if snapshot is not None else None
    return Results(
        experiment_key=experiment.key,
        status=experiment.status,
        plan=plan,
        dataset=chosen,
        versions=versions,
        is_active_version=chosen is not None and bool(versions) and chosen.id == versions[0].id,
        result=result,
        verdict=verdict,
        summaries=summaries,
        segment=segment,
        segment_names=segment_names,
        segments_omitted=int(snapshot.result.get("segments_omitted", 0))
        if snapshot is not None
        else 0,
        segment_rows=_segment_rows(
            snapshot.segments if snapshot is not None else None,
            float(snapshot.result.get("alpha") or 0.05) if snapshot is not None else 0.05,
        ),
        progress=progress,
        required_n=required_n,
        assumed_sigma=assumed_sigma,
        expected_date=expected_date,
        sigma_note=sigma_note,
        expected_note=_expected_note(
            experiment, progress, expected_date, snapshot.result if snapshot is not None else None
        ),
        computed_at=_aware(snapshot.computed_at) if snapshot is not None else None,
        snapshot_plan=stored_plan,
        plan_outdated=snapshot is not None and plan is not None and not plan.same_as(stored_plan),
        amendments=document.amendments,
        document=document,
    )
