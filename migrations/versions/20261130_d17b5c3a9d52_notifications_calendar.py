"""Notifications and calendar feeds (issue 17, items 5-6).

Placeholder in the wave-2 chain (filled in by its issue's work).

Revision ID: d17b5c3a9d52
Revises: d19a2f6c8e40
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

revision: str = 'd17b5c3a9d52'
down_revision: str | None = 'd19a2f6c8e40'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
