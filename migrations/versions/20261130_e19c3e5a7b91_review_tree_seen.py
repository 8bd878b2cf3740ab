"""H6: a week's review keeps the driver-tree summary its meeting saw (review_tree_seen).

One row per review meeting: every node's latest actual against its target and the
company start MRR the revenue impact used, as the week's views showed them; refreshed
while the week runs, final once it is over (``experiments.review_tree``). Hand-entered
actuals are corrected in place and only the current ledger's figures are kept, so a past
week's summary cannot be recomputed: meetings frozen before this revision have no row and
get one, reconstructed from the data of that moment, at their first view after it.

Revision ID: e19c3e5a7b91
Revises: e19b2d4f6a80
Create Date: 2026-11-30 13:10:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'e19c3e5a7b91'
down_revision: str | None = 'e19b2d4f6a80'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'review_tree_seen',
        sa.Column('meeting_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('seen', sa.JSON(), nullable=False),
        sa.Column('seen_digest', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('seen_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['meeting_id'], ['review_meeting.id'],
                                name=op.f('fk_review_tree_seen_meeting_id_review_meeting'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('meeting_id', name=op.f('pk_review_tree_seen')),
    )


def downgrade() -> None:
    op.drop_table('review_tree_seen')
