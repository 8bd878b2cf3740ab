"""Placeholder revision (wave 2, fourth session): filled in by whoever needs it, removed if unused.

Revision ID: e19b2d4f6a80
Revises: e18e5a6b7c85
Create Date: 2026-11-30 13:10:00
"""
from collections.abc import Sequence

revision: str = 'e19b2d4f6a80'
down_revision: str | None = 'e18e5a6b7c85'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
