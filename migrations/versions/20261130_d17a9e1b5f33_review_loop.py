"""Review loop (issue 17): actions that carry over, objectives and key results.

Actions become rows of their own (``review_action``): each existing review item's
action text, owner and due date is copied into an open action raised in that item's
week, and the three columns leave ``review_item``. The downgrade puts the first action
raised in each item's week for its experiment back into the item (later actions of the
same item, actions without an experiment and close states cannot be expressed by the
old columns and are dropped with the table).

Revision ID: d17a9e1b5f33
Revises: d16a4b8f2c10
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'd17a9e1b5f33'
down_revision: str | None = 'd16a4b8f2c10'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Title given to an old item that had an owner or a due date but no action text.
UNTITLED = "(action without text)"


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"],
                                   name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete)


def _indexes(table: str, columns: Sequence[str]) -> None:
    with op.batch_alter_table(table, schema=None) as batch_op:
        for column in columns:
            batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=False)


_ACTION_INDEXES = ("closed_by_id", "created_by_id", "experiment_id", "owner_id", "raised_week",
                   "status", "team_id", "updated_by_id")
_OBJECTIVE_INDEXES = ("created_by_id", "owner_id", "quarter", "team_id")
_KEY_RESULT_INDEXES = ("node_id", "objective_id", "owner_id", "updated_by_id")

_item = sa.table(
    "review_item", sa.column("id", sa.Integer), sa.column("meeting_id", sa.Integer),
    sa.column("experiment_id", sa.Integer), sa.column("action", sa.Text),
    sa.column("action_owner_id", sa.Integer), sa.column("action_due", sa.Date),
    sa.column("updated_by_id", sa.Integer), sa.column("updated_at", sa.DateTime),
)
_meeting = sa.table("review_meeting", sa.column("id", sa.Integer),
                    sa.column("iso_week", sa.String))
_experiment = sa.table("experiment", sa.column("id", sa.Integer), sa.column("team_id", sa.Integer))
_action = sa.table(
    "review_action", sa.column("id", sa.Integer), sa.column("title", sa.Text),
    sa.column("experiment_id", sa.Integer), sa.column("team_id", sa.Integer),
    sa.column("raised_week", sa.String), sa.column("owner_id", sa.Integer),
    sa.column("due", sa.Date), sa.column("status", sa.String), sa.column("resolution", sa.Text),
    sa.column("version", sa.Integer), sa.column("created_by_id", sa.Integer),
    sa.column("created_at", sa.DateTime), sa.column("updated_by_id", sa.Integer),
    sa.column("updated_at", sa.DateTime),
)


def upgrade() -> None:
    op.create_table(
        "review_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("raised_week", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("due", sa.Date(), nullable=True),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("closed_week", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True),
        sa.Column("closed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("closed_by_id", sa.Integer(), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(status = 'open' AND closed_week IS NULL) OR "
            "(status <> 'open' AND closed_week IS NOT NULL)",
            name=op.f("ck_review_action_closed_week"),
        ),
        sa.CheckConstraint("status IN ('open', 'done', 'dropped')",
                           name=op.f("ck_review_action_status")),
        _fk("review_action", "closed_by_id", "user_account", "SET NULL"),
        _fk("review_action", "created_by_id", "user_account", "SET NULL"),
        _fk("review_action", "experiment_id", "experiment", "CASCADE"),
        _fk("review_action", "owner_id", "user_account", "SET NULL"),
        _fk("review_action", "team_id", "team", "RESTRICT"),
        _fk("review_action", "updated_by_id", "user_account", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_action")),
    )
    _indexes("review_action", _ACTION_INDEXES)

    op.create_table(
        "objective",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("quarter", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        _fk("objective", "created_by_id", "user_account", "SET NULL"),
        _fk("objective", "owner_id", "user_account", "SET NULL"),
        _fk("objective", "team_id", "team", "RESTRICT"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_objective")),
    )
    _indexes("objective", _OBJECTIVE_INDEXES)

    op.create_table(
        "key_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("objective_id", sa.Integer(), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("title", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("target", sa.Float(), nullable=True),
        sa.Column("actual", sa.Float(), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        _fk("key_result", "node_id", "driver_node", "SET NULL"),
        _fk("key_result", "objective_id", "objective", "CASCADE"),
        _fk("key_result", "owner_id", "user_account", "SET NULL"),
        _fk("key_result", "updated_by_id", "user_account", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_result")),
    )
    _indexes("key_result", _KEY_RESULT_INDEXES)

    # Data: every item's action becomes an open action raised in the item's week.
    has_action = sa.or_(sa.func.trim(_item.c.action) != "", _item.c.action_owner_id.isnot(None),
                        _item.c.action_due.isnot(None))
    title = sa.case((sa.func.trim(_item.c.action) == "", sa.literal(UNTITLED)),
                    else_=_item.c.action)
    source = (
        sa.select(title, _item.c.experiment_id, _experiment.c.team_id, _meeting.c.iso_week,
                  _item.c.action_owner_id, _item.c.action_due, sa.literal("open"),
                  sa.literal(""), sa.literal(1), _item.c.updated_by_id, _item.c.updated_at,
                  _item.c.updated_by_id, _item.c.updated_at)
        .select_from(_item.join(_meeting, _meeting.c.id == _item.c.meeting_id)
                     .join(_experiment, _experiment.c.id == _item.c.experiment_id))
        .where(has_action)
        .order_by(_item.c.id)
    )
    op.execute(_action.insert().from_select(
        ["title", "experiment_id", "team_id", "raised_week", "owner_id", "due", "status",
         "resolution", "version", "created_by_id", "created_at", "updated_by_id", "updated_at"],
        source))

    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_item_action_owner_id"))
        batch_op.drop_constraint(batch_op.f("fk_review_item_action_owner_id_user_account"),
                                 type_="foreignkey")
        batch_op.drop_column("action_owner_id")
        batch_op.drop_column("action")
        batch_op.drop_column("action_due")


def downgrade() -> None:
    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("action", sa.Text(), server_default="", nullable=False))
        batch_op.add_column(sa.Column("action_owner_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("action_due", sa.Date(), nullable=True))
        batch_op.create_foreign_key(batch_op.f("fk_review_item_action_owner_id_user_account"),
                                    "user_account", ["action_owner_id"], ["id"],
                                    ondelete="SET NULL")
        batch_op.create_index(batch_op.f("ix_review_item_action_owner_id"), ["action_owner_id"],
                              unique=False)
    with op.batch_alter_table("review_item", schema=None) as batch_op:
        batch_op.alter_column("action", server_default=None, existing_type=sa.Text(),
                              existing_nullable=False)

    # Data: the first action raised in each item's week for its experiment goes back.
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(_item.c.id, _action.c.title, _action.c.owner_id, _action.c.due)
        .select_from(_item.join(_meeting, _meeting.c.id == _item.c.meeting_id)
                     .join(_action, sa.and_(_action.c.experiment_id == _item.c.experiment_id,
                                            _action.c.raised_week == _meeting.c.iso_week)))
        .order_by(_item.c.id, _action.c.id)
    ).all()
    restored: set[int] = set()
    for item_id, title, owner_id, due in rows:
        if item_id in restored:
            continue
        restored.add(item_id)
        bind.execute(_item.update().where(_item.c.id == item_id).values(
            action="" if title == UNTITLED else title, action_owner_id=owner_id,
            action_due=due))

    for table, columns in (("key_result", _KEY_RESULT_INDEXES),
                           ("objective", _OBJECTIVE_INDEXES),
                           ("review_action", _ACTION_INDEXES)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in reversed(columns):
                batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
        op.drop_table(table)
