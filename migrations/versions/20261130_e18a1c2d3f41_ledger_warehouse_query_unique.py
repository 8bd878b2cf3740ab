"""H5: one warehouse query per ledger (unique constraint).

Placeholder revision: no schema change yet.

Revision ID: e18a1c2d3f41
Revises: d16b3c7e9a14
Create Date: 2026-11-30 10:00:00
"""
from collections.abc import Sequence

revision: str = 'e18a1c2d3f41'
down_revision: str | None = 'd16b3c7e9a14'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
