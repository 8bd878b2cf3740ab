"""Sign-in throttle counters: one row per account, account-and-address, and address.

The login limiter bumps a row with one ``INSERT … ON CONFLICT DO UPDATE … RETURNING``
so parallel attempts cannot all read the same count (issue 12, item 6). The rows are
transient: dropping the table on downgrade only forgets recent attempt counts.

Revision ID: b7d4e2c91a05
Revises: f88bcfae690c
Create Date: 2026-11-30 03:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'b7d4e2c91a05'
down_revision: str | None = 'f88bcfae690c'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'login_throttle',
        sa.Column('key', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('window_start', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('key', name=op.f('pk_login_throttle')),
    )


def downgrade() -> None:
    op.drop_table('login_throttle')
