"""Placeholder revision (wave 2, fourth session): filled in by whoever needs it, removed if unused.

Revision ID: e19c3e5a7b91
Revises: e19b2d4f6a80
Create Date: 2026-11-30 13:10:00
"""
from collections.abc import Sequence

revision: str = 'e19c3e5a7b91'
down_revision: str | None = 'e19b2d4f6a80'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
