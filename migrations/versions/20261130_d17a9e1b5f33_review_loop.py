"""Review loop (issue 17): actions, one decision record, quarterly review.

Placeholder in the wave-2 chain (filled in by its issue's work).

Revision ID: d17a9e1b5f33
Revises: d16a4b8f2c10
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

revision: str = 'd17a9e1b5f33'
down_revision: str | None = 'd16a4b8f2c10'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
