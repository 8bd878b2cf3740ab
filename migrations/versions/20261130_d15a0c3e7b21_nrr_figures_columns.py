"""Account columns for NRR-native figures (issue 15) and plan guardrails.

Account rows gain the optional columns of DESIGN §3 (days_observed, the pre-period MRR
for CUPED, enrolled_on); datasets record which of them the file had; the plan gains its
non-inferiority guardrails and the time-to-value target of journey velocity (existing
experiments: no guardrails, 14 days).

Revision ID: d15a0c3e7b21
Revises: c4a1f0d2e9b3
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'd15a0c3e7b21'
down_revision: str | None = 'c4a1f0d2e9b3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('guardrails', sa.JSON(), server_default='[]',
                                      nullable=False))
        batch_op.add_column(sa.Column('ttv_target_days', sa.Integer(), server_default='14',
                                      nullable=False))
        batch_op.create_check_constraint('ttv_target_positive', 'ttv_target_days >= 1')
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        for name in ('has_days_observed', 'has_pre_period', 'has_enrolled_on'):
            batch_op.add_column(sa.Column(name, sa.Boolean(), server_default=sa.false(),
                                          nullable=False))
    with op.batch_alter_table('account_row', schema=None) as batch_op:
        batch_op.add_column(sa.Column('days_observed', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('pre_start_cents', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('pre_end_cents', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('enrolled_on', sa.Date(), nullable=True))
        batch_op.create_check_constraint(
            'observed_nonnegative', 'days_observed IS NULL OR days_observed >= 0'
        )
        batch_op.create_check_constraint(
            'pre_period_nonnegative',
            '(pre_start_cents IS NULL OR pre_start_cents >= 0)'
            ' AND (pre_end_cents IS NULL OR pre_end_cents >= 0)',
        )


def downgrade() -> None:
    with op.batch_alter_table('account_row', schema=None) as batch_op:
        for name in ('ck_account_row_pre_period_nonnegative',
                     'ck_account_row_observed_nonnegative'):
            batch_op.drop_constraint(batch_op.f(name), type_='check')
        batch_op.drop_column('enrolled_on')
        batch_op.drop_column('pre_end_cents')
        batch_op.drop_column('pre_start_cents')
        batch_op.drop_column('days_observed')
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        for name in ('has_enrolled_on', 'has_pre_period', 'has_days_observed'):
            batch_op.drop_column(name)
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_experiment_ttv_target_positive'), type_='check')
        batch_op.drop_column('ttv_target_days')
        batch_op.drop_column('guardrails')
