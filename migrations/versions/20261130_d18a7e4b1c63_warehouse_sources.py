"""Warehouse data sources (issue 18).

Placeholder in the wave-2 chain (filled in by its issue's work).

Revision ID: d18a7e4b1c63
Revises: d17b5c3a9d52
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

revision: str = 'd18a7e4b1c63'
down_revision: str | None = 'd17b5c3a9d52'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
