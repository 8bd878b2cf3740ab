"""One decision record (issue 17, item 2): shipped variant, rollout share, reopening.

The experiment row keeps the current decision with what was shipped (the variant, the
rollout's share of the eligible base and that base's monthly MRR in cents) and the last
reopening; ``decision_event`` keeps every decision and reopening. Older decided rows keep
NULL/empty values and still render.

Revision ID: d17c6a2e4f71
Revises: d18a7e4b1c63
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'd17c6a2e4f71'
down_revision: str | None = 'd18a7e4b1c63'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shipped_variant', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('rollout_share', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('eligible_base_cents', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('eligible_base_source', sa.String(length=40),
                                      server_default='', nullable=False))
        batch_op.add_column(sa.Column('decision_source', sa.String(length=40),
                                      server_default='', nullable=False))
        batch_op.add_column(sa.Column('reopened_at', sqlmodel.sql.sqltypes.UTCDateTime(),
                                      nullable=True))
        batch_op.add_column(sa.Column('reopened_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reopen_reason', sa.Text(), server_default='',
                                      nullable=False))
        batch_op.create_index(batch_op.f('ix_experiment_reopened_by_id'), ['reopened_by_id'],
                              unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_experiment_reopened_by_id_user_account'),
                                    'user_account', ['reopened_by_id'], ['id'],
                                    ondelete='SET NULL')
        batch_op.create_check_constraint(
            op.f('ck_experiment_rollout_share_range'),
            'rollout_share IS NULL OR (rollout_share > 0 AND rollout_share <= 1)')
        batch_op.create_check_constraint(
            op.f('ck_experiment_eligible_base_positive'),
            'eligible_base_cents IS NULL OR eligible_base_cents > 0')

    op.create_table(
        'decision_event',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('experiment_id', sa.Integer(), nullable=False),
        sa.Column('action', sa.String(length=20), nullable=False),
        sa.Column('decision', sa.String(length=20), nullable=True),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('shipped_variant', sa.String(length=64), nullable=True),
        sa.Column('rollout_share', sa.Float(), nullable=True),
        sa.Column('eligible_base_cents', sa.BigInteger(), nullable=True),
        sa.Column('eligible_base_source', sa.String(length=40), nullable=False),
        sa.Column('source', sa.String(length=40), nullable=False),
        sa.Column('actor_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint("action IN ('decide', 'reopen')", name=op.f('ck_decision_event_action')),
        sa.CheckConstraint('rollout_share IS NULL OR (rollout_share > 0 AND rollout_share <= 1)',
                           name=op.f('ck_decision_event_rollout_share_range')),
        sa.ForeignKeyConstraint(['actor_id'], ['user_account.id'],
                                name=op.f('fk_decision_event_actor_id_user_account'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['experiment_id'], ['experiment.id'],
                                name=op.f('fk_decision_event_experiment_id_experiment'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_decision_event')),
    )
    with op.batch_alter_table('decision_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_decision_event_actor_id'), ['actor_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_decision_event_experiment_id'), ['experiment_id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('decision_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_decision_event_experiment_id'))
        batch_op.drop_index(batch_op.f('ix_decision_event_actor_id'))
    op.drop_table('decision_event')
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_experiment_eligible_base_positive'),
                                 type_='check')
        batch_op.drop_constraint(batch_op.f('ck_experiment_rollout_share_range'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_experiment_reopened_by_id_user_account'),
                                 type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_experiment_reopened_by_id'))
        batch_op.drop_column('reopen_reason')
        batch_op.drop_column('reopened_by_id')
        batch_op.drop_column('reopened_at')
        batch_op.drop_column('decision_source')
        batch_op.drop_column('eligible_base_source')
        batch_op.drop_column('eligible_base_cents')
        batch_op.drop_column('rollout_share')
        batch_op.drop_column('shipped_variant')
