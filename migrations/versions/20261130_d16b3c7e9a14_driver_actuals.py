"""Dated actuals on driver-tree nodes (issue 16, item 3).

Placeholder in the wave-2 chain (filled in by its issue's work).

Revision ID: d16b3c7e9a14
Revises: d17c6a2e4f71
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

revision: str = 'd16b3c7e9a14'
down_revision: str | None = 'd17c6a2e4f71'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
