"""The one decision record of an experiment (issue 17 item 2; issue 15 items 2 and 5).

A decision — ``ship``, ``iterate`` or ``kill`` with its rationale — is made on the
experiment page or in the weekly review; both call :func:`decide`, so both write the
same record (the experiment row), the same history (:class:`DecisionEvent`) and the same
audit events (``experiment.decide``, ``experiment.reopen``), each as one compare-and-set
on the experiment's version (:mod:`experiments.versioning`): of two people deciding at
once, the second gets one conflict naming the first.

A ``ship`` records what ships to whom:

* ``shipped_variant`` — one of the treatments (not the control);
* ``rollout_share`` — the share of the eligible base the rollout will reach, in (0, 1]
  (``0.25`` or ``25%``);
* the eligible base — the monthly starting MRR of the population the rollout can reach,
  entered at the decision, or, when left blank, the revenue ledger's latest starting MRR
  (:func:`ledger_start_mrr_cents`; the record says which). Revenue impact
  (:mod:`experiments.impact`) is ``uplift × base × share``.

A ship over a failed guardrail (DESIGN §4b ``"guardrails"`` of the shipped variant's
comparison, ``status == "fail"``) is refused unless the rationale names the guardrail.

A decided experiment is closed: its plan cannot change and new data is refused
(:func:`upload_refusal`) until the decision is reopened with a reason (:func:`reopen`),
which moves it back to ``stopped`` and clears the record (the history keeps it).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import bindparam
from sqlmodel import Session, select

from experiments import notify
from experiments.access import require
from experiments.audit import record_event
from experiments.decision_models import DecisionEvent
from experiments.documents import document_now, user_label
from experiments.errors import Conflict, ValidationFailed
from experiments.input_rules import (
    CONTROL_MESSAGE,
    LONG_TEXT_MAX,
    FieldErrors,
    control_character,
    read_choice,
    read_text,
)
from experiments.models import DECISIONS, Experiment, User, Variant, utcnow
from experiments.reference_rows import by_id
from experiments.versioning import check_version, compare_and_set, expected_version

#: Where a decision was made (``DecisionEvent.source``, ``Experiment.decision_source``).
SOURCE_PAGE = "experiment page"
SOURCE_CLI = "command line"
#: The largest eligible base accepted, in cents (a trillion in the ledger's currency).
MAX_BASE_CENTS = 10**14
SHARE_EXAMPLE = "0.25, or 25%"
BASE_EXAMPLE = "125000.00"
#: Words that name each guardrail metric in a rationale (lower case, '_'/'-' read as spaces).
GUARDRAIL_NAMES: dict[str, tuple[str, ...]] = {
    "grr": ("grr", "gross revenue retention", "gross retention"),
    "logo_churn": ("logo churn", "logo-churn", "logochurn", "churned logos", "logo retention"),
}
GUARDRAIL_LABELS: dict[str, str] = {"grr": "GRR", "logo_churn": "logo churn"}
#: The fields of a decision form (the review prefixes nothing; its rationale is
#: ``decision_rationale``, mapped by the caller).
DECISION_FIELDS: tuple[str, ...] = ("decision", "rationale", "shipped_variant", "rollout_share",
                                    "eligible_base")


def review_source(week: str) -> str:
    """The source label of a decision made in the review of ``week``."""
    return f"review {week}"[:40]


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class DecisionRecord:
    """The experiment's current decision as every page shows it."""

    decision: str | None
    rationale: str
    decided_by: str | None
    decided_at: datetime | None
    source: str
    shipped_variant: str | None
    rollout_share: float | None
    eligible_base_cents: int | None
    eligible_base_source: str
    reopened_at: datetime | None
    reopened_by: str | None
    reopen_reason: str
    version: int

    @property
    def decided(self) -> bool:
        return self.decision is not None

    @property
    def eligible_base(self) -> float | None:
        """The eligible base's monthly MRR in currency units (for display; the JSON keeps
        the exact decimal)."""
        if self.eligible_base_cents is None:
            return None
        return self.eligible_base_cents / 100

    def to_json(self) -> dict[str, Any]:
        return {
            "decision": self.decision, "rationale": self.rationale,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "source": self.source or None, "shipped_variant": self.shipped_variant,
            "rollout_share": self.rollout_share,
            "eligible_base_mrr": (str(Decimal(self.eligible_base_cents) / 100)
                                  if self.eligible_base_cents is not None else None),
            "eligible_base_source": self.eligible_base_source or None,
            "reopened_at": self.reopened_at.isoformat() if self.reopened_at else None,
            "reopened_by": self.reopened_by, "reopen_reason": self.reopen_reason or None,
        }


def decision_record(session: Session, experiment: Experiment) -> DecisionRecord:
    """The current decision record of ``experiment`` (rows decided before the record had
    its ship fields read with them empty)."""
    users = {uid: session.get(User, uid) for uid in
             {experiment.decided_by_id, experiment.reopened_by_id} if uid}
    return DecisionRecord(
        decision=experiment.decision,
        rationale=experiment.decision_rationale or "",
        decided_by=user_label(users.get(experiment.decided_by_id)),
        decided_at=experiment.decided_at,
        source=experiment.decision_source or "",
        shipped_variant=experiment.shipped_variant,
        rollout_share=experiment.rollout_share,
        eligible_base_cents=experiment.eligible_base_cents,
        eligible_base_source=experiment.eligible_base_source or "",
        reopened_at=experiment.reopened_at,
        reopened_by=user_label(users.get(experiment.reopened_by_id)),
        reopen_reason=experiment.reopen_reason or "",
        version=experiment.version,
    )


def decision_history(session: Session, experiment: Experiment
                     ) -> list[tuple[DecisionEvent, str | None]]:
    """Every decision and reopening of ``experiment``, oldest first, with who made it."""
    events = session.exec(select(DecisionEvent)
                          .where(DecisionEvent.experiment_id == experiment.id)
                          .order_by(DecisionEvent.created_at, DecisionEvent.id)).all()
    ids = {e.actor_id for e in events if e.actor_id}
    users = {u.id: u for u in session.exec(select(User).where(User.id.in_(ids))).all()} \
        if ids else {}
    return [(e, user_label(users.get(e.actor_id))) for e in events]


def treatment_keys(session: Session, experiment: Experiment) -> list[str]:
    """The variants a ship may name: every variant but the control, in plan order."""
    from experiments.registry import variants_of

    variants = variants_of(session, experiment)
    return [v.key for v in variants if not v.is_control]


def shipped_comparison(session: Session, experiment: Experiment,
                       variant: str | None) -> Mapping[str, Any] | None:
    """The stored comparison (DESIGN §4) of ``variant`` against the control, if any."""
    if not variant:
        return None
    document = document_now(session, experiment)
    return next((c for c in document.comparisons if c.get("variant") == variant), None)


def failed_guardrails(comparison: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The comparison's guardrails (DESIGN §4b) whose status is ``fail``."""
    if not comparison:
        return []
    guardrails = comparison.get("guardrails")
    if not isinstance(guardrails, Sequence) or isinstance(guardrails, str):
        return []
    return [g for g in guardrails if isinstance(g, Mapping) and g.get("status") == "fail"]


def _plain_words(text: str) -> str:
    return " " + re.sub(r"[\s_\-/.,;:()!?'\"]+", " ", text.casefold()) + " "


def mentions_guardrail(rationale: str, metric: str) -> bool:
    """Whether ``rationale`` names the guardrail ``metric`` (``grr``, ``logo_churn``, …),
    as a whole word, in any case, with ``_``/``-`` read as spaces."""
    words = _plain_words(rationale)
    names = (*GUARDRAIL_NAMES.get(metric, ()), metric)
    return any(_plain_words(name) in words for name in names)


def _guardrail_text(guardrail: Mapping[str, Any]) -> str:
    metric = str(guardrail.get("metric") or "guardrail")
    label = GUARDRAIL_LABELS.get(metric, metric)
    parts = []
    margin, diff = guardrail.get("margin"), guardrail.get("diff")
    if isinstance(margin, int | float) and not isinstance(margin, bool):
        parts.append(f"margin {margin * 100:.2f} pts")
    if isinstance(diff, int | float) and not isinstance(diff, bool):
        parts.append(f"difference {diff * 100:+.2f} pts")
    return label + (f" ({', '.join(parts)})" if parts else "")


# ---------------------------------------------------------------- the ledger hook


def ledger_start_mrr_cents(session: Session, *, dimension: str | None = None,
                           value: str | None = None) -> int | None:
    """The revenue ledger's Σ start MRR of its latest period, in cents, or ``None``.

    The hook between decisions and the revenue ledger (issue 16): it reads
    :func:`experiments.ledger.latest_start_mrr` (company-wide, or one dimension value) and
    answers ``None`` when there is no ledger (or no positive start MRR), so a ship then
    needs its eligible base entered.
    """
    from experiments.ledger import latest_start_mrr

    mrr = latest_start_mrr(session, dimension=dimension, value=value)
    if mrr is None or not math.isfinite(mrr) or mrr <= 0:
        return None
    return int(Decimal(repr(float(mrr))).quantize(Decimal("0.01")) * 100)


def ledger_base_source(session: Session) -> str:
    """Where a defaulted eligible base came from, kept with the decision: "revenue ledger
    v3, 2026-10" (the ledger version and the period whose start MRR it is), so the record
    still says which upload it was after the next one; "revenue ledger" when the version
    is not known."""
    from experiments.nrr_page import current_ledger, ledger_source

    found = ledger_source(session, current_ledger(session))
    if found is None:
        return "revenue ledger"
    said = f"revenue ledger v{found.version}"
    if found.last_period:
        said += f", {found.last_period}"
    return said[:40]


# ---------------------------------------------------------------- the form


@dataclass(frozen=True)
class DecisionInput:
    """A decision form read through the validation kit."""

    decision: str
    rationale: str
    shipped_variant: str | None
    rollout_share: float | None
    eligible_base_cents: int | None
    eligible_base_source: str


def _filled_text(data: Mapping[str, Any], field: str, errors: FieldErrors) -> str | None:
    """The trimmed text of ``field``; ``None`` when blank or (with an error) control characters."""
    raw = data.get(field)
    text = "" if raw is None else str(raw).strip()
    if not text:
        return None
    if control_character(text):
        errors.add(field, CONTROL_MESSAGE)
        return None
    return text


def read_share(data: Mapping[str, Any], field: str, errors: FieldErrors) -> float | None:
    """A share in (0, 1]: ``0.25`` or ``25%``; ``None`` when blank."""
    text = _filled_text(data, field, errors)
    if text is None:
        return None
    percent = text.endswith("%")
    try:
        value = Decimal(text.rstrip("%").strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite():
        errors.add(field, f"must be a share of the eligible base such as {SHARE_EXAMPLE}")
        return None
    if percent:
        value /= 100
    if not Decimal(0) < value <= Decimal(1):
        errors.add(field, "must be above 0 and at most 1 (100%): the share of the eligible "
                          f"base the rollout reaches, such as {SHARE_EXAMPLE}")
        return None
    return float(value)


def read_money_cents(data: Mapping[str, Any], field: str, errors: FieldErrors) -> int | None:
    """An amount of money (``125000``, ``125,000.50``) as whole cents; ``None`` when blank."""
    text = _filled_text(data, field, errors)
    if text is None:
        return None
    cleaned = text.replace(",", "").replace("_", "").replace(" ", "")
    message = f"must be an amount of money such as {BASE_EXAMPLE} (at most 2 decimals)"
    if not re.fullmatch(r"\d+(\.\d{1,2})?", cleaned):
        errors.add(field, message)
        return None
    cents = int(Decimal(cleaned) * 100)
    if cents <= 0:
        errors.add(field, "must be more than 0: the monthly MRR of the eligible accounts")
        return None
    if cents > MAX_BASE_CENTS:
        errors.add(field, f"must be at most {MAX_BASE_CENTS // 100:,}")
        return None
    return cents


def read_decision(session: Session, experiment: Experiment,
                  data: Mapping[str, Any]) -> DecisionInput:
    """The decision form of ``experiment``: ``decision``, ``rationale`` and, for a ship,
    ``shipped_variant``, ``rollout_share`` and ``eligible_base``.

    Raises
    ------
    ValidationFailed
        Per field, saying why: an unknown decision, no rationale, a ship without a
        treatment, a share outside (0, 1], no eligible base (when the ledger has none),
        or a failed guardrail the rationale does not name.
    """
    errors = FieldErrors()
    decision = read_choice(data, "decision", errors, DECISIONS)
    rationale = read_text(data, "rationale", errors, max_length=LONG_TEXT_MAX, required=True,
                          multiline=True)
    if decision != "ship":
        errors.raise_if_any()
        return DecisionInput(decision, rationale, None, None, None, "")

    treatments = treatment_keys(session, experiment)
    choice = str(data.get("shipped_variant") or "").strip()
    shipped: str | None = None
    if not choice:
        errors.add("shipped_variant", "a ship names the variant that ships: one of "
                                      f"{', '.join(treatments) or '(no treatment)'}")
    elif choice not in treatments:
        errors.add("shipped_variant", f"must be one of the treatments: "
                                      f"{', '.join(treatments) or '(none)'} (not the control)")
    else:
        shipped = choice
    share = read_share(data, "rollout_share", errors)
    if share is None and "rollout_share" not in errors:
        errors.add("rollout_share", "a ship needs the rollout's share of the eligible base, "
                                    f"above 0 and at most 1, such as {SHARE_EXAMPLE}")
    base = read_money_cents(data, "eligible_base", errors)
    source = "entered"
    if base is None and "eligible_base" not in errors:
        base = ledger_start_mrr_cents(session)
        source = ledger_base_source(session)
        if base is None:
            errors.add("eligible_base", "a ship needs the eligible base: the monthly MRR of the "
                                        "accounts the rollout can reach, such as "
                                        f"{BASE_EXAMPLE} (there is no revenue ledger to take "
                                        "it from)")
    if shipped and "rationale" not in errors:
        for guardrail in failed_guardrails(shipped_comparison(session, experiment, shipped)):
            metric = str(guardrail.get("metric") or "")
            if not mentions_guardrail(rationale, metric):
                label = GUARDRAIL_LABELS.get(metric, metric)
                errors.add("rationale", (
                    f"'{shipped}' failed its {_guardrail_text(guardrail)} guardrail: a ship "
                    f"over a failed guardrail needs a rationale that names it — say why "
                    f"shipping is right despite the {label} result"))
    errors.raise_if_any()
    return DecisionInput(decision, rationale, shipped, share, base, source)


# ---------------------------------------------------------------- writing


def _what(experiment: Experiment) -> str:
    return f"'{experiment.key}'"


def _seen(session: Session, experiment: Experiment, raw: Any) -> int:
    seen = expected_version(experiment, raw)
    check_version(session, experiment, seen, what=_what(experiment), entity_type="experiment",
                  entity_id=experiment.key)
    return seen


def _cas(session: Session, experiment: Experiment, seen: int, values: Mapping[str, Any]) -> None:
    compare_and_set(session, experiment, seen, {**values, "updated_at": utcnow()},
                    what=_what(experiment), entity_type="experiment", entity_id=experiment.key)


def decide(
    session: Session,
    experiment: Experiment,
    data: Mapping[str, Any],
    *,
    actor: User,
    source: str,
    expected: Any = None,
    stop_running: bool = False,
    ip: str = "",
) -> Experiment:
    """Record the decision in ``data`` on ``experiment`` (see :func:`read_decision`).

    ``expected`` is the experiment version the form was made on (``None``: the loaded
    row's, for internal callers). With ``stop_running`` a running experiment is stopped
    first (the review). Writes the record, a :class:`DecisionEvent` and the audit
    event ``experiment.decide``; flushed, not committed.

    Raises
    ------
    PermissionDenied
        The actor is not an experimenter (or above) in the experiment's team.
    ValidationFailed
        As :func:`read_decision`; ``version`` malformed.
    Conflict
        The experiment changed since ``expected`` (:class:`~experiments.versioning.
        StaleVersion`), is already decided (reopen it first) or is not stopped.
    """
    from experiments.registry import stop_experiment

    require(session, actor, experiment.team_id, "experimenter")
    seen = _seen(session, experiment, expected)
    if experiment.status == "decided":
        raise Conflict(
            f"{_what(experiment)} is already decided ({experiment.decision}). To change the "
            "decision, reopen it with a reason on the experiment page, then decide again.")
    if experiment.status not in ("running", "stopped"):
        raise Conflict(f"{_what(experiment)} is {experiment.status}; only a stopped experiment "
                       "can be decided. Reload the page to see its current state.")
    clean = read_decision(session, experiment, data)
    if experiment.status == "running":
        if not stop_running:
            raise Conflict(f"{_what(experiment)} is running; stop it before deciding.")
        stop_experiment(session, experiment.key, actor=actor, expected_version=seen)
        seen = experiment.version
    now = utcnow()
    values = {
        "status": "decided", "decision": clean.decision, "decision_rationale": clean.rationale,
        "decided_at": now, "decided_by_id": actor.id, "decision_source": source[:40],
        "shipped_variant": clean.shipped_variant, "rollout_share": clean.rollout_share,
        "eligible_base_cents": clean.eligible_base_cents,
        "eligible_base_source": clean.eligible_base_source,
    }
    _cas(session, experiment, seen, values)
    session.add(DecisionEvent(
        experiment_id=experiment.id, action="decide", decision=clean.decision,
        text=clean.rationale, shipped_variant=clean.shipped_variant,
        rollout_share=clean.rollout_share, eligible_base_cents=clean.eligible_base_cents,
        eligible_base_source=clean.eligible_base_source, source=source[:40], actor_id=actor.id,
        created_at=now))
    diff: dict[str, list[Any]] = {
        "status": ["stopped", "decided"], "decision": [None, clean.decision],
        "rationale": [None, clean.rationale], "source": [None, source],
    }
    if clean.decision == "ship":
        diff.update(shipped_variant=[None, clean.shipped_variant],
                    rollout_share=[None, clean.rollout_share],
                    eligible_base_cents=[None, clean.eligible_base_cents],
                    eligible_base_source=[None, clean.eligible_base_source])
    record_event(session, "experiment.decide", actor=actor, entity_type="experiment",
                 entity_id=experiment.key, team_id=experiment.team_id, diff=diff, ip=ip)
    # Webhooks and emails go out after the commit (experiments.notify), never before.
    notify.emit(session, notify.decision_event(session, experiment, actor=actor))
    return experiment


def reopen(
    session: Session,
    experiment: Experiment,
    data: Mapping[str, Any],
    *,
    actor: User,
    source: str = SOURCE_PAGE,
    expected: Any = None,
    ip: str = "",
) -> Experiment:
    """Reopen a decided experiment with ``data['reason']``: it is ``stopped`` again, takes
    new data, and can be decided anew. The cleared decision stays in the history and
    the audit log (``experiment.reopen``). Flushed, not committed.

    Raises
    ------
    PermissionDenied
        The actor is not an experimenter (or above) in the experiment's team.
    ValidationFailed
        No reason, or one that is too long or holds control characters; ``version``.
    Conflict
        Stale version, or the experiment is not decided.
    """
    require(session, actor, experiment.team_id, "experimenter")
    seen = _seen(session, experiment, expected)
    if experiment.status != "decided":
        raise Conflict(f"{_what(experiment)} is {experiment.status}, not decided: there is no "
                       "decision to reopen. Reload the page to see its current state.")
    errors = FieldErrors()
    reason = read_text(data, "reason", errors, max_length=LONG_TEXT_MAX, multiline=True)
    if not reason and "reason" not in errors:
        errors.add("reason", "say why the decision is reopened (e.g. late data arrived)")
    errors.raise_if_any()
    before = {"decision": experiment.decision, "rationale": experiment.decision_rationale,
              "shipped_variant": experiment.shipped_variant,
              "rollout_share": experiment.rollout_share}
    now = utcnow()
    _cas(session, experiment, seen, {
        "status": "stopped", "decision": None, "decision_rationale": "", "decided_at": None,
        "decided_by_id": None, "decision_source": "", "shipped_variant": None,
        "rollout_share": None, "eligible_base_cents": None, "eligible_base_source": "",
        "reopened_at": now, "reopened_by_id": actor.id, "reopen_reason": reason,
    })
    session.add(DecisionEvent(experiment_id=experiment.id, action="reopen",
                              decision=before["decision"], text=reason, source=source[:40],
                              actor_id=actor.id, created_at=now))
    record_event(session, "experiment.reopen", actor=actor, entity_type="experiment",
                 entity_id=experiment.key, team_id=experiment.team_id,
                 diff={"status": ["decided", "stopped"], "reason": [None, reason],
                       **{name: [value, None] for name, value in before.items()}}, ip=ip)
    return experiment


# ---------------------------------------------------------------- uploads


def upload_refusal(experiment: Experiment) -> str | None:
    """Why ``experiment`` takes no new data now (it is decided), or ``None``."""
    if experiment.status != "decided":
        return None
    when = f" on {experiment.decided_at:%Y-%m-%d}" if experiment.decided_at else ""
    return (f"This experiment was decided ({experiment.decision}{when}), so its results are "
            "closed and no new data is accepted. To add data, reopen the decision with a reason "
            "on the experiment page (Decision → Reopen), then upload again.")


# ---------------------------------------------------------------- the review's side

#: The review item's names of the decision form's fields (its rationale is
#: ``decision_rationale``; the rest are shared with the experiment page).
REVIEW_FIELDS: dict[str, str] = {"rationale": "decision_rationale"}


#: Some experiments' (``ids``) variant keys in form order, built once (the review's
#: agenda asks on every view).
_VARIANT_KEYS = (select(Variant.experiment_id, Variant.key, Variant.is_control)
                 .where(Variant.experiment_id.in_(bindparam("ids", expanding=True)))
                 .order_by(Variant.position, Variant.id))


def attach_records(session: Session, views: Sequence[Any],
                   experiments: Mapping[int, Experiment] | None = None,
                   users: Mapping[int, User] | None = None) -> None:
    """Give each review item view (``.item.experiment_id``) the experiment's decision
    record, the treatments a ship may name and the experiment's version (``experiments``
    and ``users``: the views' experiments and the users by id, when the caller has read
    them already)."""
    ids = {view.item.experiment_id for view in views}
    if not ids:
        return
    if experiments is None:
        experiments = {e.id: e for e in session.exec(select(Experiment)
                                                     .where(Experiment.id.in_(ids))).all()}
    # One query for every item's variants (not one per item).
    treatments: dict[int, list[str]] = {i: [] for i in experiments}
    for experiment_id, key, is_control in session.exec(
            _VARIANT_KEYS, params={"ids": list(ids)}).all():
        if not is_control and experiment_id in treatments:
            treatments[experiment_id].append(key)
    # The transaction's copy of the users (experiments.reference_rows), held here so the
    # identity map (weak) still has them when decision_record asks: one read whichever
    # items the review's agenda page holds (tests/webapp/test_query_counts.py), shared
    # with the page's other lookups of people.
    deciders = users if users is not None else by_id(session, User)
    for view in views:
        experiment = experiments.get(view.item.experiment_id)
        if experiment is None:
            continue
        view.record = decision_record(session, experiment)
        view.treatments = treatments[experiment.id]
        view.experiment_version = experiment.version
    del deciders


def review_wants_decision(session: Session, experiment: Experiment, item: Any,
                          clean: dict[str, Any], data: Mapping[str, Any]) -> bool:
    """Whether a review item (``item``) save decides ``experiment`` now; adjusts ``clean``.

    A decided experiment's record is shown read-only in the review: the item keeps what
    it holds, and a form naming another decision is refused (a stale form naming the
    experiment version it saw is a conflict). An undecided experiment is decided when
    the form names a decision.

    Raises
    ------
    StaleVersion
        The form's ``experiment_version`` is older than the experiment's.
    ValidationFailed
        Another decision than the recorded one, or a draft.
    """
    decision = clean.get("decision")
    if experiment.status == "decided":
        if decision is not None and decision != experiment.decision:
            raw = data.get("experiment_version")
            if raw not in (None, ""):
                _seen(session, experiment, raw)
            raise ValidationFailed({"decision": (
                f"the experiment is already decided as {experiment.decision!r}; a decision "
                "cannot be changed or withdrawn here — reopen it with a reason on the "
                "experiment page (Decision → Reopen), then decide again")})
        clean["decision"] = item.decision
        clean["decision_rationale"] = item.decision_rationale
        return False
    if decision is None:
        return False
    if experiment.status == "draft":
        raise ValidationFailed({"decision": "a draft experiment cannot be decided; start it "
                                            "first"})
    return True


def decide_in_review(session: Session, experiment: Experiment, data: Mapping[str, Any], *,
                     actor: User, week: str, ip: str = "") -> Experiment:
    """:func:`decide` from a review item's form (stopping a running experiment first);
    field errors come back under the review form's names."""
    form = {name: data.get(REVIEW_FIELDS.get(name, name)) for name in DECISION_FIELDS}
    raw = data.get("experiment_version")
    try:
        return decide(session, experiment, form, actor=actor, source=review_source(week),
                      expected=None if raw in (None, "") else raw, stop_running=True, ip=ip)
    except ValidationFailed as exc:
        raise ValidationFailed({REVIEW_FIELDS.get(k, k): v for k, v in exc.errors.items()}
                               ) from None


# ---------------------------------------------------------------- the experiment page's side


@dataclass(frozen=True)
class DecisionPanel:
    """What the experiment page's decision part shows: the record, its history, the
    treatments a ship may name, the ledger's default eligible base and, per treatment,
    the guardrails it failed (a ship of it must name them)."""

    record: DecisionRecord
    history: list[tuple[DecisionEvent, str | None]]
    treatments: list[str]
    ledger_base_cents: int | None
    failed: dict[str, list[str]]

    @property
    def ledger_base(self) -> float | None:
        return None if self.ledger_base_cents is None else self.ledger_base_cents / 100


def decision_panel(session: Session, experiment: Experiment) -> DecisionPanel:
    """The decision part of ``experiment``'s page (the ledger and the stored analysis are
    read only while a decision can be made, i.e. the experiment is stopped)."""
    treatments = treatment_keys(session, experiment)
    failed: dict[str, list[str]] = {}
    ledger_base = None
    if experiment.status == "stopped":
        comparisons = {c.get("variant"): c
                       for c in document_now(session, experiment).comparisons}
        failed = {t: texts for t in treatments
                  if (texts := [_guardrail_text(g)
                                for g in failed_guardrails(comparisons.get(t))])}
        ledger_base = ledger_start_mrr_cents(session)
    return DecisionPanel(
        record=decision_record(session, experiment),
        history=decision_history(session, experiment),
        treatments=treatments,
        ledger_base_cents=ledger_base,
        failed=failed,
    )
