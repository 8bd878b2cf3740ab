"""Version columns on driver nodes, journeys and stages (compare-and-set writes).

Experiments already carry ``version``; every other editable entity gets one, so a
save made on a stale page is refused instead of silently overwriting.

Revision ID: 7c1e2a9d4b10
Revises: 3576cee3ecc2
Create Date: 2026-11-30 03:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7c1e2a9d4b10"
down_revision: str | None = "3576cee3ecc2"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("driver_node", "journey", "journey_stage")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("version", sa.Integer(), server_default="1", nullable=False)
            )


def downgrade() -> None:
    for table in reversed(_TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("version")
