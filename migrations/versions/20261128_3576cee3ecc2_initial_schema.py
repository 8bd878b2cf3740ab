"""Initial schema: the whole domain of DESIGN §2.

Revision ID: 3576cee3ecc2
Revises: (none, the first revision)
Create Date: 2026-11-28 06:40:14.049432
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "3576cee3ecc2"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "journey",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey")),
        sa.UniqueConstraint("name", name=op.f("uq_journey_name")),
    )
    op.create_table(
        "review_meeting",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("iso_week", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_meeting")),
        sa.UniqueConstraint("iso_week", name=op.f("uq_review_meeting_iso_week")),
    )
    op.create_table(
        "team",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team")),
        sa.UniqueConstraint("slug", name=op.f("uq_team_slug")),
    )
    op.create_table(
        "user_account",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sqlmodel.sql.sqltypes.AutoString(length=254), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=512), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("session_version", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("last_login_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("password_changed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "role IN ('viewer', 'analyst', 'experimenter', 'admin')",
            name=op.f("ck_user_account_role"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user_account")),
        sa.UniqueConstraint("email", name=op.f("uq_user_account_email")),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("entity_type", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("entity_id", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("diff", sa.JSON(), nullable=False),
        sa.Column("ip", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["user_account.id"],
            name=op.f("fk_audit_event_actor_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_audit_event_team_id_team"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_event")),
    )
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_event_action"), ["action"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_event_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index("ix_audit_event_entity", ["entity_type", "entity_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_audit_event_occurred_at"), ["occurred_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_audit_event_team_id"), ["team_id"], unique=False)

    op.create_table(
        "driver_node",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("hypothesis", sa.Text(), nullable=False),
        sa.Column("leading_metric", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("baseline", sa.Float(), nullable=True),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('root', 'lever', 'driver')", name=op.f("ck_driver_node_kind")),
        sa.CheckConstraint(
            "status IN ('active', 'paused', 'retired')", name=op.f("ck_driver_node_status")
        ),
        sa.CheckConstraint(
            "parent_id IS NULL OR parent_id <> id", name=op.f("ck_driver_node_not_own_parent")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user_account.id"],
            name=op.f("fk_driver_node_owner_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["driver_node.id"],
            name=op.f("fk_driver_node_parent_id_driver_node"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_driver_node_team_id_team"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_driver_node")),
    )
    with op.batch_alter_table("driver_node", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_driver_node_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_driver_node_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_driver_node_team_id"), ["team_id"], unique=False)

    op.create_table(
        "journey_stage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("journey_id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["journey_id"],
            ["journey.id"],
            name=op.f("fk_journey_stage_journey_id_journey"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_stage")),
        sa.UniqueConstraint("journey_id", "name", name=op.f("uq_journey_stage_journey_id_name")),
    )
    with op.batch_alter_table("journey_stage", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_journey_stage_journey_id"), ["journey_id"], unique=False
        )

    op.create_table(
        "team_membership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.CheckConstraint(
            "role IN ('viewer', 'analyst', 'experimenter', 'admin')",
            name=op.f("ck_team_membership_role"),
        ),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["team.id"],
            name=op.f("fk_team_membership_team_id_team"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user_account.id"],
            name=op.f("fk_team_membership_user_id_user_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_team_membership")),
        sa.UniqueConstraint("user_id", "team_id", name=op.f("uq_team_membership_user_id_team_id")),
    )
    with op.batch_alter_table("team_membership", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_team_membership_team_id"), ["team_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_team_membership_user_id"), ["user_id"], unique=False)

    op.create_table(
        "experiment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("stage_id", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("hypothesis", sa.Text(), nullable=False),
        sa.Column("primary_metric", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("mde", sa.Float(), nullable=False),
        sa.Column("alpha", sa.Float(), nullable=False),
        sa.Column("power", sa.Float(), nullable=False),
        sa.Column("planned_start", sa.Date(), nullable=True),
        sa.Column("planned_end", sa.Date(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("stopped_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("decided_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("decision_rationale", sa.Text(), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "decision IS NULL OR decision IN ('ship', 'iterate', 'kill')",
            name=op.f("ck_experiment_decision"),
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'running', 'stopped', 'decided')",
            name=op.f("ck_experiment_status"),
        ),
        sa.CheckConstraint("alpha > 0 AND alpha <= 0.5", name=op.f("ck_experiment_alpha_range")),
        sa.CheckConstraint("mde > 0", name=op.f("ck_experiment_mde_positive")),
        sa.CheckConstraint(
            "planned_end IS NULL OR planned_start IS NULL OR planned_end >= planned_start",
            name=op.f("ck_experiment_planned_dates"),
        ),
        sa.CheckConstraint(
            "power >= 0.5 AND power <= 0.99", name=op.f("ck_experiment_power_range")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"],
            ["user_account.id"],
            name=op.f("fk_experiment_created_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_id"],
            ["user_account.id"],
            name=op.f("fk_experiment_decided_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["driver_node.id"],
            name=op.f("fk_experiment_node_id_driver_node"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["user_account.id"],
            name=op.f("fk_experiment_owner_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["stage_id"],
            ["journey_stage.id"],
            name=op.f("fk_experiment_stage_id_journey_stage"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["team_id"], ["team.id"], name=op.f("fk_experiment_team_id_team"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experiment")),
        sa.UniqueConstraint("key", name=op.f("uq_experiment_key")),
    )
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_experiment_created_by_id"), ["created_by_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_experiment_decided_by_id"), ["decided_by_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_experiment_node_id"), ["node_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_experiment_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_experiment_stage_id"), ["stage_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_experiment_team_id"), ["team_id"], unique=False)

    op.create_table(
        "amendment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("field", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("old_value", sa.Text(), nullable=False),
        sa.Column("new_value", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["user_account.id"],
            name=op.f("fk_amendment_actor_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_amendment_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_amendment")),
    )
    with op.batch_alter_table("amendment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_amendment_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_amendment_experiment_id"), ["experiment_id"], unique=False
        )

    op.create_table(
        "dataset",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("filename", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("has_segment", sa.Boolean(), nullable=False),
        sa.Column("has_days_to_value", sa.Boolean(), nullable=False),
        sa.Column("uploaded_by_id", sa.Integer(), nullable=True),
        sa.Column("uploaded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint("source IN ('upload', 'warehouse')", name=op.f("ck_dataset_source")),
        sa.CheckConstraint("row_count >= 0", name=op.f("ck_dataset_row_count")),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_dataset_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["uploaded_by_id"],
            ["user_account.id"],
            name=op.f("fk_dataset_uploaded_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset")),
        sa.UniqueConstraint(
            "experiment_id", "version", name=op.f("uq_dataset_experiment_id_version")
        ),
    )
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dataset_experiment_id"), ["experiment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_dataset_sha256"), ["sha256"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_dataset_uploaded_by_id"), ["uploaded_by_id"], unique=False
        )

    op.create_table(
        "review_item",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("action_owner_id", sa.Integer(), nullable=True),
        sa.Column("action_due", sa.Date(), nullable=True),
        sa.Column("decision", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("decision_rationale", sa.Text(), nullable=False),
        sa.Column("seen", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "decision IS NULL OR decision IN ('ship', 'iterate', 'kill')",
            name=op.f("ck_review_item_decision"),
        ),
        sa.ForeignKeyConstraint(
            ["action_owner_id"],
            ["user_account.id"],
            name=op.f("fk_review_item_action_owner_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_review_item_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["review_meeting.id"],
            name=op.f("fk_review_item_meeting_id_review_meeting"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["updated_by_id"],
            ["user_account.id"],
            name=op.f("fk_review_item_updated_by_id_user_account"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_item")),
        sa.UniqueConstraint(
            "meeting_id", "experiment_id", name=op.f("uq_review_item_meeting_id_experiment_id")
        ),
    )
    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_review_item_action_owner_id"), ["action_owner_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_review_item_experiment_id"), ["experiment_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_review_item_meeting_id"), ["meeting_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_review_item_updated_by_id"), ["updated_by_id"], unique=False
        )

    op.create_table(
        "variant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("is_control", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.CheckConstraint("weight > 0", name=op.f("ck_variant_weight_positive")),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_variant_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_variant")),
        sa.UniqueConstraint("experiment_id", "key", name=op.f("uq_variant_experiment_id_key")),
    )
    with op.batch_alter_table("variant", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_variant_experiment_id"), ["experiment_id"], unique=False
        )

    op.create_table(
        "account_row",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("variant", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("start_cents", sa.BigInteger(), nullable=False),
        sa.Column("expansion_cents", sa.BigInteger(), nullable=False),
        sa.Column("contraction_cents", sa.BigInteger(), nullable=False),
        sa.Column("churned_cents", sa.BigInteger(), nullable=False),
        sa.Column("segment", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("days_to_value", sa.Float(), nullable=True),
        sa.CheckConstraint(
            "contraction_cents + churned_cents <= start_cents",
            name=op.f("ck_account_row_loss_within_start"),
        ),
        sa.CheckConstraint(
            "days_to_value IS NULL OR days_to_value >= 0",
            name=op.f("ck_account_row_days_nonnegative"),
        ),
        sa.CheckConstraint(
            "expansion_cents >= 0 AND contraction_cents >= 0 AND churned_cents >= 0",
            name=op.f("ck_account_row_money_nonnegative"),
        ),
        sa.CheckConstraint("start_cents > 0", name=op.f("ck_account_row_start_positive")),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset.id"],
            name=op.f("fk_account_row_dataset_id_dataset"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_account_row")),
        sa.UniqueConstraint(
            "dataset_id", "account_id", name=op.f("uq_account_row_dataset_id_account_id")
        ),
    )
    op.create_table(
        "analysis_snapshot",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("computed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("verdict", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "verdict IS NULL OR verdict IN ('srm', 'win', 'loss', 'underpowered', 'inconclusive')",
            name=op.f("ck_analysis_snapshot_verdict"),
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["dataset.id"],
            name=op.f("fk_analysis_snapshot_dataset_id_dataset"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["experiment.id"],
            name=op.f("fk_analysis_snapshot_experiment_id_experiment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_analysis_snapshot")),
    )
    with op.batch_alter_table("analysis_snapshot", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_analysis_snapshot_dataset_id"), ["dataset_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_analysis_snapshot_experiment_id"), ["experiment_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("analysis_snapshot", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_analysis_snapshot_experiment_id"))
        batch_op.drop_index(batch_op.f("ix_analysis_snapshot_dataset_id"))

    op.drop_table("analysis_snapshot")
    op.drop_table("account_row")
    with op.batch_alter_table("variant", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_variant_experiment_id"))

    op.drop_table("variant")
    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_item_updated_by_id"))
        batch_op.drop_index(batch_op.f("ix_review_item_meeting_id"))
        batch_op.drop_index(batch_op.f("ix_review_item_experiment_id"))
        batch_op.drop_index(batch_op.f("ix_review_item_action_owner_id"))

    op.drop_table("review_item")
    with op.batch_alter_table("dataset", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dataset_uploaded_by_id"))
        batch_op.drop_index(batch_op.f("ix_dataset_sha256"))
        batch_op.drop_index(batch_op.f("ix_dataset_experiment_id"))

    op.drop_table("dataset")
    with op.batch_alter_table("amendment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_amendment_experiment_id"))
        batch_op.drop_index(batch_op.f("ix_amendment_actor_id"))

    op.drop_table("amendment")
    with op.batch_alter_table("experiment", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_experiment_team_id"))
        batch_op.drop_index(batch_op.f("ix_experiment_stage_id"))
        batch_op.drop_index(batch_op.f("ix_experiment_owner_id"))
        batch_op.drop_index(batch_op.f("ix_experiment_node_id"))
        batch_op.drop_index(batch_op.f("ix_experiment_decided_by_id"))
        batch_op.drop_index(batch_op.f("ix_experiment_created_by_id"))

    op.drop_table("experiment")
    with op.batch_alter_table("team_membership", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_team_membership_user_id"))
        batch_op.drop_index(batch_op.f("ix_team_membership_team_id"))

    op.drop_table("team_membership")
    with op.batch_alter_table("journey_stage", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_journey_stage_journey_id"))

    op.drop_table("journey_stage")
    with op.batch_alter_table("driver_node", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_driver_node_team_id"))
        batch_op.drop_index(batch_op.f("ix_driver_node_parent_id"))
        batch_op.drop_index(batch_op.f("ix_driver_node_owner_id"))

    op.drop_table("driver_node")
    with op.batch_alter_table("audit_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_event_team_id"))
        batch_op.drop_index(batch_op.f("ix_audit_event_occurred_at"))
        batch_op.drop_index("ix_audit_event_entity")
        batch_op.drop_index(batch_op.f("ix_audit_event_actor_id"))
        batch_op.drop_index(batch_op.f("ix_audit_event_action"))

    op.drop_table("audit_event")
    op.drop_table("user_account")
    op.drop_table("team")
    op.drop_table("review_meeting")
    op.drop_table("journey")
