"""Reading the experiment form: the analysis plan, its variants and the open fields.

Every problem is collected under its field name (variant rows as
``variants.<i>.<field>``) so that one answer lists all of them. Nothing here
writes: :mod:`experiments.registry` stores what :func:`read_plan` accepted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from experiments.access import check_team_choice, effective_role
from experiments.errors import NotFound
from experiments.form_choices import owner_problem
from experiments.input_rules import (
    LONG_TEXT_MAX,
    NAME_MAX,
    SLUG_PATTERN,
    FieldErrors,
    read_choice,
    read_date,
    read_id,
    read_int,
    read_number,
    read_text,
)
from experiments.models import Experiment, JourneyStage, User, Variant
from experiments.tree import get_node
from experiments.users import role_rank

#: The analysis plan, frozen at the start; later changes become amendments.
LOCKED_FIELDS: tuple[str, ...] = (
    "hypothesis",
    "variants",
    "control",
    "mde",
    "alpha",
    "power",
    "primary_metric",
    "guardrails",
    "ttv_target_days",
)

#: Fields that stay freely editable while the experiment runs.
OPEN_FIELDS: tuple[str, ...] = (
    "name",
    "node_id",
    "stage_id",
    "team_id",
    "owner_id",
    "planned_start",
    "planned_end",
)

#: The plan's single values (the variants and the control are read separately).
PLAN_VALUES: tuple[str, ...] = (
    "hypothesis", "mde", "alpha", "power", "primary_metric", "guardrails", "ttv_target_days",
)
#: Open fields that are part of the planned duration: moved after the start with a
#: reason, the change is kept as an amendment (shown on the page and in exports).
AMENDABLE_DATES: tuple[str, ...] = ("planned_start", "planned_end")
PRIMARY_METRICS: tuple[str, ...] = ("nrr",)

KEY_MAX = 64

MIN_VARIANTS = 2

MAX_VARIANTS = 10

MAX_WEIGHT = 1_000_000

#: Keys that would collide with the registry's own pages (/experiments/new, ...).
RESERVED_KEYS = frozenset({"new", "sample-size-hint", "variant-rows"})

VARIANT_KEY_HELP = "use lowercase letters, digits, - and _ (e.g. treatment-a)"


@dataclass(frozen=True)
class VariantInput:
    key: str
    name: str
    weight: float


@dataclass
class PlanInput:
    """A validated experiment form: the plan and the open fields."""

    values: dict[str, Any]
    variants: list[VariantInput]
    control: int

    def plan(self) -> dict[str, Any]:
        """The comparable plan: every field as the audit log and amendments show it."""
        return {
            **self.values,
            "guardrails": guardrails_text(self.values.get("guardrails")),
            "variants": describe_variants(self.variants),
            "control": self.variants[self.control].key,
        }


#: The time-to-value target of journey velocity when the form leaves it blank (days).
DEFAULT_TTV_TARGET_DAYS = 14
#: At most a year: a longer "time to value" is not a journey-velocity question.
MAX_TTV_TARGET_DAYS = 365
GUARDRAILS_MAX = 500
GUARDRAIL_HELP = (
    "one per line as metric:margin, e.g. grr:0.01 (GRR may fall at most 1 point) or "
    "logo_churn:0.005"
)


def guardrails_text(value: Any) -> str:
    """A plan's guardrails as the form and the amendments show them: ``grr:0.01, logo_churn:0.005``.

    ``value`` is the stored JSON list (``[{"metric", "margin"}]``) or already text.
    """
    if isinstance(value, str):
        return value
    return ", ".join(f"{g['metric']}:{float(g['margin']):g}" for g in value or ())


def read_guardrails(
    data: Mapping[str, Any], errors: FieldErrors, field: str = "guardrails"
) -> list[dict[str, Any]]:
    """The plan's non-inferiority guardrails as ``[{"metric", "margin"}]`` (DESIGN §4c).

    Text holds one ``metric:margin`` per line or comma (``grr:0.01``); a list from code may
    hold such strings or ``{"metric", "margin"}`` mappings. The first problem is the
    field's message, naming the entry (e.g. ``entry 2 "grr:x": margin 'x' is not a
    number``). A metric may appear once.
    """
    from stats.levers import GuardrailSpec

    raw = data.get(field)
    if raw is None:
        return []
    if isinstance(raw, str):
        text = read_text(data, field, errors, max_length=GUARDRAILS_MAX, multiline=True)
        if field in errors:
            return []
        entries: list[Any] = [p for p in re.split(r"[,\n]", text) if p.strip()]
    elif isinstance(raw, Sequence):
        entries = list(raw)
    else:
        errors.add(field, f"must be {GUARDRAIL_HELP}")
        return []
    specs: list[GuardrailSpec] = []
    for number, entry in enumerate(entries, start=1):
        try:
            if isinstance(entry, Mapping):
                spec = GuardrailSpec(entry.get("metric"), entry.get("margin"))  # type: ignore[arg-type]
            else:
                spec = GuardrailSpec.parse(str(entry))
        except (TypeError, ValueError) as exc:
            message = str(exc)
            # GuardrailSpec.parse already quotes the entry; say which line it is.
            errors.add(field, f"entry {number}: {message}" if len(entries) > 1
                       else f"{message}; write {GUARDRAIL_HELP}")
            return []
        if any(other.metric == spec.metric for other in specs):
            errors.add(field, f"{spec.metric} is given more than once; keep one margin per metric")
            return []
        specs.append(spec)
    return [spec.to_dict() for spec in specs]


def describe_variants(variants: Sequence[VariantInput | Variant]) -> str:
    """``control: weight 1; treatment: weight 2`` (a name in brackets when it is not the key)."""
    parts = []
    for v in variants:
        name = f" ({v.name})" if v.name and v.name != v.key else ""
        parts.append(f"{v.key}{name}: weight {v.weight:g}")
    return "; ".join(parts)


def read_variants(data: Mapping[str, Any], errors: FieldErrors) -> tuple[list[VariantInput], int]:
    """The variant rows and the index of the control row (``-1`` when none is valid)."""
    rows = data.get("variants") or []
    if not isinstance(rows, Sequence) or isinstance(rows, str):
        errors.add("variants", "must be a list of variants")
        rows = []
    if len(rows) < MIN_VARIANTS:
        errors.add("variants", f"add at least {MIN_VARIANTS} variants: a control and a treatment")
    if len(rows) > MAX_VARIANTS:
        errors.add("variants", f"at most {MAX_VARIANTS} variants")
    variants: list[VariantInput] = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows[:MAX_VARIANTS]):
        row = row if isinstance(row, Mapping) else {}
        prefix = f"variants.{index}."
        fields = {"key": row.get("key"), "name": row.get("name"), "weight": row.get("weight")}
        local = FieldErrors()
        key = read_text(fields, "key", local, max_length=KEY_MAX, required=True)
        if "key" not in local and not _variant_key_ok(key):
            local.add("key", VARIANT_KEY_HELP)
        if "key" not in local:
            if key in seen:
                local.add(
                    "key",
                    f"'{key}' is already the key of variant {seen[key] + 1}; keys must differ",
                )
            seen.setdefault(key, index)
        name = read_text(fields, "name", local, max_length=NAME_MAX) or default_variant_name(key)
        weight = read_number(fields, "weight", local, required=True, example="1")
        if weight is not None and weight <= 0:
            local.add("weight", "must be greater than 0")
        elif weight is not None and weight > MAX_WEIGHT:
            local.add("weight", f"must be at most {MAX_WEIGHT:,}")
        for name_, message in local.items():
            errors.add(prefix + name_, message)
        variants.append(
            VariantInput(key=key, name=name, weight=weight if weight is not None else 0.0)
        )
    control = _read_control(data, len(variants), errors)
    return variants, control


def default_variant_name(key: str) -> str:
    """``treatment-a`` → ``Treatment A``."""
    return key.replace("-", " ").replace("_", " ").title()


def _variant_key_ok(key: str) -> bool:
    return (
        bool(key)
        and key[0].isascii()
        and key[0].isalnum()
        and all(ch.isascii() and (ch.islower() or ch.isdigit() or ch in "-_") for ch in key)
    )


def _read_control(data: Mapping[str, Any], count: int, errors: FieldErrors) -> int:
    raw = data.get("control")
    choices = (
        raw
        if isinstance(raw, list | tuple)
        else ([] if raw is None or str(raw).strip() == "" else [raw])
    )
    if not choices:
        errors.add("control", "mark exactly one variant as the control")
        return -1
    if len(choices) > 1:
        errors.add("control", "mark exactly one variant as the control, not several")
        return -1
    text = str(choices[0]).strip()
    if not text.isascii() or not text.isdigit() or int(text) >= count:
        errors.add("control", "mark exactly one of the listed variants as the control")
        return -1
    return int(text)


#: The analysis methods a plan may choose (issue 13 item 5); new plans default to sequential.
ANALYSIS_METHODS: tuple[str, ...] = ("sequential", "fixed")


def read_plan(
    session: Session, data: Mapping[str, Any], *, actor: User, errors: FieldErrors,
    default_analysis: str = "sequential",
) -> PlanInput:
    """Check an experiment form. Every problem is added to ``errors`` under its field.

    ``analysis`` ("sequential" or "fixed") becomes ``values["sequential"]``; without it the
    ``default_analysis`` holds (sequential for a new plan, the current method on an edit).
    """
    values: dict[str, Any] = {}
    values["name"] = read_text(data, "name", errors, max_length=NAME_MAX, required=True)
    values["hypothesis"] = read_text(
        data, "hypothesis", errors, max_length=LONG_TEXT_MAX, required=True, multiline=True
    )
    values["primary_metric"] = read_choice(
        data, "primary_metric", errors, PRIMARY_METRICS, default="nrr"
    )

    node_id = read_id(data, "node_id", errors, required=True, what="driver node")
    if node_id is not None:
        try:
            get_node(session, actor, node_id, "viewer")
        except NotFound:
            errors.add("node_id", "unknown driver node")
    values["node_id"] = node_id

    stage_id = read_id(data, "stage_id", errors, required=True, what="journey stage")
    if stage_id is not None and session.get(JourneyStage, stage_id) is None:
        errors.add("stage_id", "unknown journey stage")
    values["stage_id"] = stage_id

    team_id = read_id(data, "team_id", errors, what="team")
    if team_id is not None:
        problem = check_team_choice(
            session, actor, team_id, needed="experimenter", purpose="run its experiments"
        )
        if problem:
            errors.add("team_id", problem)
    elif role_rank(effective_role(session, actor, None)) < role_rank("experimenter"):
        errors.add(
            "team_id",
            "choose one of your teams (an experiment without a team needs the global "
            "experimenter role)",
        )
    values["team_id"] = team_id

    owner_id = read_id(data, "owner_id", errors, required=True, what="owner")
    if owner_id is not None and (problem := owner_problem(
            session, owner_id, None if "team_id" in errors else team_id, what="experiment")):
        errors.add("owner_id", problem)
    values["owner_id"] = owner_id

    mde = read_number(data, "mde", errors, required=True, example="0.02")
    if mde is not None and mde <= 0:
        errors.add(
            "mde", "must be greater than 0 (an absolute NRR difference, e.g. 0.02 = 2 points)"
        )
    elif mde is not None and mde >= 1:
        errors.add("mde", "must be below 1: enter a fraction, e.g. 0.02 for 2 NRR points")
    values["mde"] = mde

    alpha = read_number(data, "alpha", errors, required=True, example="0.05")
    if alpha is not None and not 0 < alpha <= 0.5:
        errors.add("alpha", "must be greater than 0 and at most 0.5 (e.g. 0.05)")
    values["alpha"] = alpha

    power = read_number(data, "power", errors, required=True, example="0.8")
    if power is not None and not 0.5 <= power <= 0.99:
        errors.add("power", "must be between 0.5 and 0.99 (e.g. 0.8)")
    values["power"] = power

    values["planned_start"] = read_date(data, "planned_start", errors)
    values["planned_end"] = read_date(data, "planned_end", errors)
    if (
        values["planned_start"]
        and values["planned_end"]
        and values["planned_end"] < values["planned_start"]
    ):
        errors.add("planned_end", "must be on or after the planned start")

    analysis = read_choice(data, "analysis", errors, ANALYSIS_METHODS,
                           default=default_analysis)
    values["sequential"] = analysis == "sequential"
    values["guardrails"] = read_guardrails(data, errors)
    values["ttv_target_days"] = read_int(
        data, "ttv_target_days", errors, minimum=1, maximum=MAX_TTV_TARGET_DAYS,
        default=DEFAULT_TTV_TARGET_DAYS,
    )

    variants, control = read_variants(data, errors)
    return PlanInput(values=values, variants=variants, control=control)


def read_key(session: Session, data: Mapping[str, Any], errors: FieldErrors) -> str:
    key = read_text(data, "key", errors, max_length=KEY_MAX, required=True)
    if "key" in errors:
        return key
    if not SLUG_PATTERN.match(key):
        errors.add(
            "key", "use lowercase letters, digits and single hyphens, e.g. onboarding-checklist"
        )
    elif key in RESERVED_KEYS:
        errors.add("key", f"'{key}' is reserved by the registry's own pages; choose another key")
    elif session.exec(select(Experiment.id).where(Experiment.key == key)).first() is not None:
        errors.add("key", f"'{key}' is already the key of another experiment")
    return key


def read_reason(data: Mapping[str, Any], errors: FieldErrors) -> str:
    return read_text(data, "reason", errors, max_length=LONG_TEXT_MAX, multiline=True)
