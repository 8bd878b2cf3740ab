"""The NRR Lab domain schema (DESIGN §2) as SQLModel tables.

Alembic is the only author of the schema in a real database (``migrations/``);
these models are its source of truth and ``create_all`` is used only in tests.
Vocabularies are stored as short strings guarded by CHECK constraints, which both
SQLite and PostgreSQL enforce, instead of database enum types that make every
later vocabulary change a migration of its own.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy import false as sa_false
from sqlmodel import Field, SQLModel

from experiments import account_row_link

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ROLES: tuple[str, ...] = ("viewer", "analyst", "experimenter", "admin")
NODE_KINDS: tuple[str, ...] = ("root", "lever", "driver")
NODE_STATUSES: tuple[str, ...] = ("active", "paused", "retired")
EXPERIMENT_STATUSES: tuple[str, ...] = ("draft", "running", "stopped", "decided")
DECISIONS: tuple[str, ...] = ("ship", "iterate", "kill")
VERDICTS: tuple[str, ...] = ("srm", "win", "loss", "underpowered", "inconclusive")
#: Ledger figures a driver-tree node can be tied to (its actuals come from the ledger);
#: the NRR root without one reads "nrr". Labels in experiments.tree_actuals.
LEDGER_METRICS: tuple[str, ...] = (
    "nrr", "grr", "nrr_monthly", "grr_monthly", "expansion_rate", "contraction_rate",
    "churn_rate", "logo_churn",
)


def utcnow() -> datetime:
    """Aware UTC, the one timestamp convention of the schema (stored as UTC, read back aware)."""
    return datetime.now(UTC)


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({quoted})"


def _fk(
    target: str, *, ondelete: str | None = None, nullable: bool = True, index: bool = True
) -> Any:
    return Field(
        default=None,
        sa_column=Column(ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index),
    )


class Team(SQLModel, table=True):
    __tablename__ = "team"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class User(SQLModel, table=True):
    __tablename__ = "user_account"
    __table_args__ = (CheckConstraint(_in("role", ROLES), name="role"),)

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=254, unique=True)
    name: str = Field(default="", max_length=200)
    password_hash: str = Field(max_length=512)
    role: str = Field(default="viewer", max_length=20)
    is_active: bool = Field(default=True)
    # Bumped on logout, password change and disabling: every session cookie
    # carries the version it was issued under and dies when they differ.
    session_version: int = Field(default=1)
    created_at: datetime = Field(default_factory=utcnow)
    last_login_at: datetime | None = None
    password_changed_at: datetime | None = None


class TeamMembership(SQLModel, table=True):
    __tablename__ = "team_membership"
    __table_args__ = (
        UniqueConstraint("user_id", "team_id"),
        CheckConstraint(_in("role", ROLES), name="role"),
    )

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(
        sa_column=Column(
            ForeignKey("user_account.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    team_id: int = Field(
        sa_column=Column(ForeignKey("team.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    role: str = Field(default="viewer", max_length=20)


class DriverNode(SQLModel, table=True):
    """One node of the NRR driver tree: the root, a lever or a driver, any depth."""

    __tablename__ = "driver_node"
    __table_args__ = (
        CheckConstraint(_in("kind", NODE_KINDS), name="kind"),
        CheckConstraint(_in("status", NODE_STATUSES), name="status"),
        CheckConstraint("parent_id IS NULL OR parent_id <> id", name="not_own_parent"),
        CheckConstraint("metric IS NULL OR " + _in("metric", LEDGER_METRICS), name="metric"),
    )

    id: int | None = Field(default=None, primary_key=True)
    parent_id: int | None = _fk("driver_node.id", ondelete="RESTRICT")
    team_id: int | None = _fk("team.id", ondelete="RESTRICT")
    owner_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    name: str = Field(max_length=200)
    kind: str = Field(default="driver", max_length=20)
    hypothesis: str = Field(default="", sa_type=Text)
    leading_metric: str = Field(default="", max_length=200)
    baseline: float | None = None
    target: float | None = None
    status: str = Field(default="active", max_length=20)
    # The ledger figure this node's actuals come from (None: entered by hand).
    metric: str | None = Field(default=None, max_length=30)
    position: int = Field(default=0)
    # Compare-and-set: a write names the version it was made on (see experiments.versioning).
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Journey(SQLModel, table=True):
    __tablename__ = "journey"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True)
    description: str = Field(default="", sa_type=Text)
    is_default: bool = Field(default=False)
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    created_at: datetime = Field(default_factory=utcnow)


class JourneyStage(SQLModel, table=True):
    __tablename__ = "journey_stage"
    __table_args__ = (UniqueConstraint("journey_id", "name"),)

    id: int | None = Field(default=None, primary_key=True)
    journey_id: int = Field(
        sa_column=Column(ForeignKey("journey.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    name: str = Field(max_length=200)
    position: int = Field(default=0)
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})


class Experiment(SQLModel, table=True):
    """A pre-registered A/B experiment on one journey stage, under one driver node."""

    __tablename__ = "experiment"
    __table_args__ = (
        CheckConstraint(_in("status", EXPERIMENT_STATUSES), name="status"),
        CheckConstraint("decision IS NULL OR " + _in("decision", DECISIONS), name="decision"),
        CheckConstraint("alpha > 0 AND alpha <= 0.5", name="alpha_range"),
        CheckConstraint("power >= 0.5 AND power <= 0.99", name="power_range"),
        CheckConstraint("mde > 0", name="mde_positive"),
        CheckConstraint("ttv_target_days >= 1", name="ttv_target_positive"),
        CheckConstraint(
            "planned_end IS NULL OR planned_start IS NULL OR planned_end >= planned_start",
            name="planned_dates",
        ),
        CheckConstraint(
            "rollout_share IS NULL OR (rollout_share > 0 AND rollout_share <= 1)",
            name="rollout_share_range",
        ),
        CheckConstraint(
            "eligible_base_cents IS NULL OR eligible_base_cents > 0", name="eligible_base_positive"
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, unique=True)
    name: str = Field(max_length=200)
    node_id: int = Field(
        sa_column=Column(
            ForeignKey("driver_node.id", ondelete="RESTRICT"), nullable=False, index=True
        )
    )
    stage_id: int | None = _fk("journey_stage.id", ondelete="RESTRICT")
    team_id: int | None = _fk("team.id", ondelete="RESTRICT")
    owner_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    hypothesis: str = Field(default="", sa_type=Text)
    primary_metric: str = Field(default="nrr", max_length=40)
    mde: float = Field(default=0.02)
    alpha: float = Field(default=0.05)
    power: float = Field(default=0.8)
    # The plan's sigma of the linearised NRR and where it came from (issue 13 item 1);
    # at start it is locked with each arm's required n (Variant.required_n).
    sigma: float | None = None
    sigma_source: str = Field(default="", max_length=300, sa_column_kwargs={"server_default": ""})
    # Sequential testing: the registration form's default for new plans (plan_input);
    # rows from before it, and rows made without a plan form, keep fixed-horizon.
    sequential: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    tuning: float | None = None
    # Issue 15: non-inferiority guardrails [{"metric": "grr"|"logo_churn", "margin": 0.01}]
    # and the time-to-value target of journey velocity; both part of the locked plan.
    guardrails: list = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False, server_default="[]"),
    )
    ttv_target_days: int = Field(default=14, sa_column_kwargs={"server_default": "14"})
    planned_start: date | None = None
    planned_end: date | None = None
    status: str = Field(default="draft", max_length=20)
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    decided_at: datetime | None = None
    decision: str | None = Field(default=None, max_length=20)
    decision_rationale: str = Field(default="", sa_type=Text)
    decided_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    # The one decision record (issue 17 item 2, experiments.decisions): what was shipped to
    # whom, where the decision was made, and the last reopening (history: DecisionEvent).
    shipped_variant: str | None = Field(default=None, max_length=64)
    rollout_share: float | None = None
    eligible_base_cents: int | None = Field(default=None, sa_type=BigInteger)
    eligible_base_source: str = Field(default="", max_length=40,
                                      sa_column_kwargs={"server_default": ""})
    decision_source: str = Field(default="", max_length=40,
                                 sa_column_kwargs={"server_default": ""})
    reopened_at: datetime | None = None
    reopened_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    reopen_reason: str = Field(default="", sa_type=Text, sa_column_kwargs={"server_default": ""})
    # Optimistic locking: an edit names the version it was made on.
    version: int = Field(default=1)
    created_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Variant(SQLModel, table=True):
    __tablename__ = "variant"
    __table_args__ = (
        UniqueConstraint("experiment_id", "key"),
        CheckConstraint("weight > 0", name="weight_positive"),
    )

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(
        sa_column=Column(
            ForeignKey("experiment.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    key: str = Field(max_length=64)
    name: str = Field(default="", max_length=200)
    weight: float = Field(default=1.0)
    is_control: bool = Field(default=False)
    position: int = Field(default=0)
    # Accounts this arm needs, locked when the experiment starts (issue 13 item 3).
    required_n: int | None = None


class Amendment(SQLModel, table=True):
    """A recorded change to a locked plan field after the experiment started."""

    __tablename__ = "amendment"

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(
        sa_column=Column(
            ForeignKey("experiment.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    field: str = Field(max_length=60)
    old_value: str = Field(default="", sa_type=Text)
    new_value: str = Field(default="", sa_type=Text)
    reason: str = Field(sa_type=Text)
    actor_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow)


DATASET_STATUSES: tuple[str, ...] = ("importing", "ready")
UPLOAD_JOB_STATES: tuple[str, ...] = ("queued", "running", "done", "duplicate", "failed", "refused")


class Dataset(SQLModel, table=True):
    """One uploaded (or warehouse-read) version of an experiment's account rows."""

    __tablename__ = "dataset"
    __table_args__ = (
        UniqueConstraint("experiment_id", "version"),
        # One dataset per file content and experiment: the same bytes uploaded twice,
        # even at the same moment, are one version.
        UniqueConstraint("experiment_id", "content_sha256"),
        CheckConstraint("row_count >= 0", name="row_count"),
        CheckConstraint(_in("source", ("upload", "warehouse")), name="source"),
        CheckConstraint(_in("status", DATASET_STATUSES), name="status"),
    )

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(
        sa_column=Column(
            ForeignKey("experiment.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    version: int
    source: str = Field(default="upload", max_length=20)
    filename: str = Field(default="", max_length=255)
    sha256: str = Field(max_length=64, index=True)
    # The sha256 again, as the per-experiment unique key; NULL only on an older copy of
    # the same bytes stored before the key existed.
    content_sha256: str | None = Field(default=None, max_length=64)
    # "importing" while a background upload writes its rows: invisible to every reader
    # until one short transaction flips it to "ready".
    status: str = Field(
        default="ready", max_length=20, sa_column_kwargs={"server_default": "ready"}
    )
    row_count: int = Field(default=0)
    has_segment: bool = Field(default=False)
    has_days_to_value: bool = Field(default=False)
    # Issue 15's optional columns (DESIGN §3): which of them the file had.
    has_days_observed: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    has_pre_period: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    has_enrolled_on: bool = Field(default=False, sa_column_kwargs={"server_default": sa_false()})
    uploaded_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    uploaded_at: datetime = Field(default_factory=utcnow)


class UploadJob(SQLModel, table=True):
    """One account-CSV upload handled in the background: its state and progress."""

    __tablename__ = "upload_job"
    __table_args__ = (CheckConstraint(_in("state", UPLOAD_JOB_STATES), name="state"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(
        sa_column=Column(
            ForeignKey("experiment.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    filename: str = Field(default="", max_length=255)
    state: str = Field(default="queued", max_length=20)
    phase: str = Field(default="", max_length=40)
    rows_read: int = Field(default=0)
    rows_stored: int = Field(default=0)
    error_total: int = Field(default=0)
    # [[line, column, message], ...]: the first 50 problems
    errors: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    notes: list | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    message: str = Field(default="", sa_type=Text)
    dataset_id: int | None = _fk("dataset.id", ondelete="SET NULL")
    created_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class AccountRow(SQLModel, table=True):
    """One enrolled account of a dataset; money in integer cents, exactly."""

    __tablename__ = "account_row"
    __table_args__ = (
        # A real key on SQLite only; PostgreSQL keeps it by statement-level triggers
        # (experiments.account_row_link: a per-row check cost ~3.5 s per million rows).
        ForeignKeyConstraint(["dataset_id"], ["dataset.id"], ondelete="CASCADE")
        .ddl_if(dialect="sqlite"),
        UniqueConstraint("dataset_id", "account_id"),
        CheckConstraint("start_cents > 0", name="start_positive"),
        CheckConstraint(
            "expansion_cents >= 0 AND contraction_cents >= 0 AND churned_cents >= 0",
            name="money_nonnegative",
        ),
        CheckConstraint(
            "contraction_cents + churned_cents <= start_cents", name="loss_within_start"
        ),
        CheckConstraint("days_to_value IS NULL OR days_to_value >= 0", name="days_nonnegative"),
        CheckConstraint(
            "days_observed IS NULL OR days_observed >= 0", name="observed_nonnegative"
        ),
        CheckConstraint(
            "(pre_start_cents IS NULL OR pre_start_cents >= 0)"
            " AND (pre_end_cents IS NULL OR pre_end_cents >= 0)",
            name="pre_period_nonnegative",
        ),
        # No (dataset_id, variant) index: the unique (dataset_id, account_id) index
        # already finds a dataset's rows, and a second index costs ~3 s per million
        # rows on every PostgreSQL upload.
    )

    # BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    dataset_id: int = Field(sa_column=Column(Integer, nullable=False))
    account_id: str = Field(max_length=255)  # MAX_TEXT_LENGTH (DESIGN §3)
    variant: str = Field(max_length=64)
    start_cents: int = Field(sa_type=BigInteger)
    expansion_cents: int = Field(default=0, sa_type=BigInteger)
    contraction_cents: int = Field(default=0, sa_type=BigInteger)
    churned_cents: int = Field(default=0, sa_type=BigInteger)
    segment: str | None = Field(default=None, max_length=255)
    days_to_value: float | None = None
    # Issue 15 (DESIGN §3): follow-up days, the pre-period MRR (CUPED) and the enrolment date.
    days_observed: float | None = None
    pre_start_cents: int | None = Field(default=None, sa_type=BigInteger)
    pre_end_cents: int | None = Field(default=None, sa_type=BigInteger)
    enrolled_on: date | None = None


@event.listens_for(AccountRow.__table__, "after_create")
def _link_rows_to_datasets(_table, connection, **_kw) -> None:
    # create_all (tests) installs what the migration e19b2d4f6a80 installs.
    if connection.dialect.name == "postgresql":
        for statement in account_row_link.INSTALL:
            connection.exec_driver_sql(statement)


class AnalysisSnapshot(SQLModel, table=True):
    """The stored result of analysing one dataset under the plan in force then."""

    __tablename__ = "analysis_snapshot"
    __table_args__ = (
        CheckConstraint("verdict IS NULL OR " + _in("verdict", VERDICTS), name="verdict"),
    )

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(
        sa_column=Column(
            ForeignKey("experiment.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    dataset_id: int = Field(
        sa_column=Column(ForeignKey("dataset.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    computed_at: datetime = Field(default_factory=utcnow)
    # The headline verdict: the first treatment's, or srm. Kept as a column so the
    # registry and the review can filter without parsing the JSON.
    verdict: str | None = Field(default=None, max_length=20)
    result: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    segments: dict | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class ReviewMeeting(SQLModel, table=True):
    __tablename__ = "review_meeting"

    id: int | None = Field(default=None, primary_key=True)
    iso_week: str = Field(max_length=8, unique=True)  # e.g. 2026-W48
    notes: str = Field(default="", sa_type=Text)
    created_at: datetime = Field(default_factory=utcnow)


class ReviewItem(SQLModel, table=True):
    """What the meeting saw and decided about one experiment."""

    __tablename__ = "review_item"
    __table_args__ = (
        UniqueConstraint("meeting_id", "experiment_id"),
        CheckConstraint("decision IS NULL OR " + _in("decision", DECISIONS), name="decision"),
    )

    id: int | None = Field(default=None, primary_key=True)
    meeting_id: int = Field(
        sa_column=Column(
            ForeignKey("review_meeting.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    experiment_id: int = Field(
        sa_column=Column(
            ForeignKey("experiment.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    note: str = Field(default="", sa_type=Text)
    # Actions are rows of their own (experiments.review_models.Action), carried across weeks.
    decision: str | None = Field(default=None, max_length=20)
    decision_rationale: str = Field(default="", sa_type=Text)
    # Frozen copy of the experiment and its results as the meeting saw them.
    seen: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # SHA-256 of ``seen`` without its moment and analysis (experiments.review_rows.seen_digest):
    # a running week's view compares it instead of loading and re-serialising every copy.
    seen_digest: str | None = Field(default=None, max_length=64)
    version: int = Field(default=1)
    updated_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    updated_at: datetime = Field(default_factory=utcnow)


class AuditEvent(SQLModel, table=True):
    """Append-only record of who changed what: ``entity.verb`` with a before/after diff."""

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_event_entity", "entity_type", "entity_id"),)

    id: int | None = Field(default=None, primary_key=True)
    occurred_at: datetime = Field(default_factory=utcnow, index=True)
    actor_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    team_id: int | None = _fk("team.id", ondelete="SET NULL")
    action: str = Field(max_length=60, index=True)
    entity_type: str = Field(max_length=40)
    entity_id: str = Field(default="", max_length=64)
    diff: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    ip: str = Field(default="", max_length=64)


class LoginThrottle(SQLModel, table=True):
    """Sign-in attempts per key (an account, an account and address, an address) in a window.

    One row per key, bumped with a single ``INSERT … ON CONFLICT DO UPDATE … RETURNING``,
    so parallel attempts each see their own count (``experiments.signin``).
    """

    __tablename__ = "login_throttle"

    key: str = Field(primary_key=True, max_length=200)
    window_start: datetime
    attempts: int = Field(default=0)


# Tables of later areas live in their own modules; importing them here registers them on
# the metadata wherever the models are loaded (the app, Alembic, the tests).
from experiments import (  # noqa: E402, F401
    api_models,
    decision_models,
    ledger_models,
    notify_models,
    review_models,
    tree_models,
    warehouse_models,
)
