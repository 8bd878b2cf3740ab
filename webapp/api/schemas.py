"""The JSON API's input and output models: what requests are validated with, what answers
are built with, and (through their JSON Schemas) the OpenAPI document's components.

Input models check the *shape* of a request (types, required members, no unknown
members); the rules of the domain (key format, ranges, team rights, the plan lock) stay
in the services the pages call (``experiments.plan_input``, ``experiments.tree``,
``experiments.decisions``, ``experiments.input_rules``), so the API and the forms refuse
the same things with the same messages. Output models are filled from the rows and
documents the services return and dumped in JSON mode.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from experiments.models import DECISIONS, EXPERIMENT_STATUSES, LEDGER_METRICS, NODE_STATUSES

ExperimentStatus = Literal[EXPERIMENT_STATUSES]  # type: ignore[valid-type]
Decision = Literal[DECISIONS]  # type: ignore[valid-type]
NodeStatus = Literal[NODE_STATUSES]  # type: ignore[valid-type]
LedgerMetric = Literal[LEDGER_METRICS]  # type: ignore[valid-type]
GuardrailMetric = Literal["grr", "logo_churn"]
#: Whole numbers an id column can hold (PostgreSQL ``integer``).
MAX_ID = 2**31 - 1
MAX_PER_PAGE = 200


class ApiInput(BaseModel):
    """A request body or query: unknown members are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")


class ApiOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OpenDocument(BaseModel):
    """A document whose full key list is the stored report's (DESIGN §4/§4b): the members
    named here are always present; the rest pass through as stored."""

    model_config = ConfigDict(extra="allow")


# ------------------------------------------------------------------ queries


class PageQuery(ApiInput):
    page: int = Field(1, ge=1, le=MAX_ID, description="1-based page number")
    per_page: int = Field(50, ge=1, le=MAX_PER_PAGE, description="items per page")


class ExperimentQuery(PageQuery):
    status: ExperimentStatus | None = None
    team_id: int | None = Field(None, ge=1, le=MAX_ID)
    owner_id: int | None = Field(None, ge=1, le=MAX_ID)
    node_id: int | None = Field(None, ge=1, le=MAX_ID, description="a branch: the node and "
                                "everything under it")
    stage_id: int | None = Field(None, ge=1, le=MAX_ID)
    q: str | None = Field(None, max_length=200, description="part of the key or the name")


class ReviewQuery(ApiInput):
    branch: int | None = Field(None, ge=1, le=MAX_ID, description="one branch of the tree")
    date_from: date | None = Field(None, alias="from", description="a date range instead of "
                                   "the week (with `to`)")
    date_to: date | None = Field(None, alias="to")


class LedgerUploadQuery(ApiInput):
    dimensions: str | None = Field(None, max_length=500, description="the file's dimension "
                                   "columns, comma separated (e.g. plan,region)")
    filename: str | None = Field(None, max_length=255,
                                 description="the file's name for the record (a CSV body)")


class UploadQuery(ApiInput):
    filename: str | None = Field(None, max_length=255,
                                 description="the file's name for the record (a CSV body)")


# ------------------------------------------------------------------ driver tree


class NodeCreate(ApiInput):
    parent_id: int = Field(description="the node to add it under")
    name: str = Field(max_length=200)
    kind: Literal["lever", "driver"] = "driver"
    team_id: int | None = Field(None, description="omit for a node every team shares")
    owner_id: int | None = None
    hypothesis: str = Field("", max_length=10_000)
    leading_metric: str = Field("", max_length=200)
    baseline: float | None = None
    target: float | None = None
    status: NodeStatus = "active"
    metric: LedgerMetric | None = Field(None, description="the ledger figure its actuals "
                                        "come from; omit to enter actuals by hand")


class NodeUpdate(ApiInput):
    """Members to change; members left out keep their value (send ``null`` to clear)."""

    name: str | None = Field(None, max_length=200)
    kind: Literal["lever", "driver"] | None = None
    team_id: int | None = None
    owner_id: int | None = None
    hypothesis: str | None = Field(None, max_length=10_000)
    leading_metric: str | None = Field(None, max_length=200)
    baseline: float | None = None
    target: float | None = None
    status: NodeStatus | None = None
    metric: LedgerMetric | None = None


class NodeOut(ApiOutput):
    id: int
    parent_id: int | None
    name: str
    kind: str
    team_id: int | None
    owner_id: int | None
    hypothesis: str
    leading_metric: str
    baseline: float | None
    target: float | None
    status: str
    metric: str | None
    position: int
    version: int


class NodePage(ApiOutput):
    items: list[NodeOut]
    page: int
    per_page: int
    total: int
    next: str | None = Field(description="the next page's URL, null on the last page")


# ------------------------------------------------------------------ experiments


class VariantIn(ApiInput):
    key: str = Field(max_length=64, description="lowercase letters, digits, - and _")
    name: str | None = Field(None, max_length=200)
    weight: float = Field(1.0, description="share of enrolment, relative to the others")


class GuardrailIn(ApiInput):
    metric: GuardrailMetric
    margin: float = Field(description="the largest acceptable loss, a fraction (0.01 = 1 point)")


class ExperimentCreate(ApiInput):
    key: str = Field(max_length=64, description="lowercase letters, digits and hyphens")
    name: str = Field(max_length=200)
    node_id: int = Field(description="the driver-tree node it moves")
    stage_id: int = Field(description="the journey stage it targets")
    team_id: int | None = None
    owner_id: int | None = Field(None, description="default: the token's user")
    hypothesis: str = Field(max_length=10_000)
    primary_metric: Literal["nrr"] = "nrr"
    mde: float = Field(description="minimum detectable effect, absolute NRR (0.02 = 2 points)")
    alpha: float = 0.05
    power: float = 0.8
    analysis: Literal["sequential", "fixed"] = "sequential"
    guardrails: list[GuardrailIn] = Field(default_factory=list)
    ttv_target_days: int | None = Field(None, description="time-to-value target (days)")
    planned_start: date | None = None
    planned_end: date | None = None
    variants: list[VariantIn] = Field(description="at least two; one is the control")
    control: str | None = Field(None, description="the control's variant key (default: the "
                                "first variant)")


class ExperimentUpdate(ApiInput):
    """Members to change; the rest keep their value. After the start a change to the locked
    plan (hypothesis, variants, control, mde, alpha, power, primary metric, guardrails,
    time-to-value target) or to a planned date needs ``reason`` and is kept as an amendment."""

    name: str | None = Field(None, max_length=200)
    node_id: int | None = None
    stage_id: int | None = None
    team_id: int | None = None
    owner_id: int | None = None
    hypothesis: str | None = Field(None, max_length=10_000)
    primary_metric: Literal["nrr"] | None = None
    mde: float | None = None
    alpha: float | None = None
    power: float | None = None
    analysis: Literal["sequential", "fixed"] | None = None
    guardrails: list[GuardrailIn] | None = None
    ttv_target_days: int | None = None
    planned_start: date | None = None
    planned_end: date | None = None
    variants: list[VariantIn] | None = None
    control: str | None = None
    reason: str | None = Field(None, max_length=10_000,
                               description="why a locked field changes (an amendment)")


class DecisionIn(ApiInput):
    decision: Decision
    rationale: str = Field(max_length=10_000)
    shipped_variant: str | None = Field(None, description="a ship: the treatment that ships")
    rollout_share: float | None = Field(None, description="a ship: share of the eligible base, "
                                        "above 0 and at most 1")
    eligible_base: float | None = Field(None, description="a ship: monthly MRR the rollout can "
                                        "reach (default: the revenue ledger's latest start MRR)")


class VariantOut(ApiOutput):
    key: str
    name: str
    weight: float
    is_control: bool
    required_n: int | None = Field(description="accounts needed, locked at the start")


class GuardrailOut(ApiOutput):
    metric: str
    margin: float


class AmendmentOut(ApiOutput):
    """A change to the locked plan after the start, with its reason."""

    field: str
    old_value: str
    new_value: str
    reason: str
    actor_id: int | None
    created_at: datetime


class ExperimentOut(ApiOutput):
    key: str
    name: str
    status: ExperimentStatus
    node_id: int
    stage_id: int | None
    team_id: int | None
    owner_id: int | None
    hypothesis: str
    primary_metric: str
    mde: float
    alpha: float
    power: float
    analysis: Literal["sequential", "fixed"]
    guardrails: list[GuardrailOut]
    ttv_target_days: int
    planned_start: date | None
    planned_end: date | None
    started_at: datetime | None
    stopped_at: datetime | None
    decided_at: datetime | None
    decision: Decision | None
    decision_rationale: str
    variants: list[VariantOut]
    amendments: list[AmendmentOut] = Field(description="changes to the locked plan, oldest "
                                           "first")
    version: int = Field(description="the compare-and-set version (also the ETag)")
    links: dict[str, str]


class ExperimentPage(ApiOutput):
    items: list[ExperimentOut]
    page: int
    per_page: int
    total: int
    next: str | None


class Results(OpenDocument):
    """The experiment document: the DESIGN §4 report at the top level (with §4b's figures in
    each comparison) plus ``experiment``, ``plan``, ``amendments`` and ``dataset``."""

    alpha: float | None
    power: float | None
    mde: float | None
    control: str | None
    srm: dict[str, Any] | None
    arms: list[dict[str, Any]]
    comparisons: list[dict[str, Any]]
    verdict: str | None
    experiment: dict[str, Any]
    plan: dict[str, Any]
    amendments: list[dict[str, Any]]
    dataset: dict[str, Any] | None


# ------------------------------------------------------------------ uploads


class RowProblem(ApiOutput):
    line: int = Field(description="the file's line (the header is line 1)")
    last_line: int | None = Field(description="the last line with the same problem")
    count: int = Field(description="how many lines have it")
    column: str | None
    message: str


class UploadJobOut(ApiOutput):
    id: int
    experiment: str
    state: Literal["queued", "running", "done", "duplicate", "failed", "refused"]
    phase: str
    filename: str
    rows_read: int
    rows_stored: int
    message: str
    error_total: int = Field(description="every problem found (errors lists the first 50)")
    errors: list[RowProblem]
    notes: list[str]
    dataset_version: int | None
    links: dict[str, str]


# ------------------------------------------------------------------ review, ledger, me


class ReviewWeek(OpenDocument):
    """One week's review, as its JSON export (``review`` names the week and its window)."""

    review: dict[str, Any]


class LedgerFigures(OpenDocument):
    """The current revenue ledger's stored figures (company NRR/GRR by period and
    dimension), as the NRR page reads them."""


class LedgerVersionOut(ApiOutput):
    version: int
    filename: str
    uploaded_by: str
    uploaded_at: datetime
    activated_at: datetime | None
    periods: list[str]
    current_periods: list[str]
    rows: int
    accounts: int
    dimensions: list[str]
    notes: list[str]
    status: str


class LedgerVersionList(ApiOutput):
    items: list[LedgerVersionOut]


class TokenInfo(ApiOutput):
    name: str
    prefix: str
    scope: Literal["read", "write"]
    expires_at: datetime


class Me(ApiOutput):
    id: int
    email: str
    name: str
    role: str = Field(description="the global role")
    teams: dict[str, str] = Field(description="team id → role in that team")
    token: TokenInfo


# ------------------------------------------------------------------ problems


class ProblemDetail(ApiOutput):
    field: str | None = Field(None, description="the member (dotted path) it is about")
    line: int | None = Field(None, description="an upload's line (the header is line 1)")
    last_line: int | None = None
    count: int | None = None
    column: str | None = None
    message: str


class Problem(BaseModel):
    """RFC 9457 problem details (``application/problem+json``)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemDetail] | None = None
