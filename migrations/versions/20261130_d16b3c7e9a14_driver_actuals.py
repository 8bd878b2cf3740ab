"""Dated actuals on driver-tree nodes (issue 16, item 3).

A node can be tied to a ledger figure (``driver_node.metric``: its actuals come from the
revenue ledger); the other nodes' owners enter dated actuals of their leading metric
(``driver_actual``, one per node and date, versioned for compare-and-set).

Revision ID: d16b3c7e9a14
Revises: d17c6a2e4f71
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'd16b3c7e9a14'
down_revision: str | None = 'd17c6a2e4f71'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_METRICS = ("nrr", "grr", "nrr_monthly", "grr_monthly", "expansion_rate", "contraction_rate",
            "churn_rate", "logo_churn")


def upgrade() -> None:
    with op.batch_alter_table('driver_node', schema=None) as batch_op:
        batch_op.add_column(sa.Column('metric', sa.String(length=30), nullable=True))
        batch_op.create_check_constraint(
            'metric', "metric IS NULL OR metric IN ("
            + ", ".join(f"'{m}'" for m in _METRICS) + ")")
    op.create_table(
        'driver_actual',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('node_id', sa.Integer(), nullable=False),
        sa.Column('measured_on', sa.Date(), nullable=False),
        sa.Column('value', sa.Float(), nullable=False),
        sa.Column('entered_by_id', sa.Integer(), nullable=True),
        sa.Column('entered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        sa.ForeignKeyConstraint(['node_id'], ['driver_node.id'], ondelete='CASCADE',
                                name=op.f('fk_driver_actual_node_id_driver_node')),
        sa.ForeignKeyConstraint(['entered_by_id'], ['user_account.id'], ondelete='SET NULL',
                                name=op.f('fk_driver_actual_entered_by_id_user_account')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_driver_actual')),
        sa.UniqueConstraint('node_id', 'measured_on',
                            name=op.f('uq_driver_actual_node_id_measured_on')),
    )
    with op.batch_alter_table('driver_actual', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_driver_actual_node_id'), ['node_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_driver_actual_entered_by_id'), ['entered_by_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('driver_actual', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_driver_actual_entered_by_id'))
        batch_op.drop_index(batch_op.f('ix_driver_actual_node_id'))
    op.drop_table('driver_actual')
    with op.batch_alter_table('driver_node', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_driver_node_metric'), type_='check')
        batch_op.drop_column('metric')
