"""H6: data generation for the page cache (issue 18).

One row, ``data_generation(id = 1, n)``, that every writing transaction adds one to at
commit (``experiments.generation``); the page cache keys rendered pages by it.

Revision ID: e18e5a6b7c85
Revises: e18c3e4f5a63
Create Date: 2026-11-30 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e18e5a6b7c85'
down_revision: str | None = 'e18c3e4f5a63'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        'data_generation',
        sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('n', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_data_generation')),
    )
    op.bulk_insert(table, [{'id': 1, 'n': 1}])


def downgrade() -> None:
    op.drop_table('data_generation')
