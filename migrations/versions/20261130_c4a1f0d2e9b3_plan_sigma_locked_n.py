"""The plan's sigma and its source, sequential testing, and each arm's locked required n.

Issue 13: planning states the sigma it used and where it came from; the required n per
arm is locked at start; sequential testing is chosen in the plan. Existing experiments
keep fixed-horizon analysis (server default false); new plans default to sequential in
the model.

Revision ID: c4a1f0d2e9b3
Revises: b7d4e2c91a05
Create Date: 2026-11-30 04:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'c4a1f0d2e9b3'
down_revision: str | None = 'b7d4e2c91a05'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sigma', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('sigma_source', sa.String(length=300),
                                      server_default='', nullable=False))
        batch_op.add_column(sa.Column('sequential', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.add_column(sa.Column('tuning', sa.Float(), nullable=True))
    with op.batch_alter_table('variant', schema=None) as batch_op:
        batch_op.add_column(sa.Column('required_n', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('variant', schema=None) as batch_op:
        batch_op.drop_column('required_n')
    with op.batch_alter_table('experiment', schema=None) as batch_op:
        batch_op.drop_column('tuning')
        batch_op.drop_column('sequential')
        batch_op.drop_column('sigma_source')
        batch_op.drop_column('sigma')
