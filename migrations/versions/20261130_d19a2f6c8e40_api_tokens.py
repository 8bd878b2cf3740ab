"""Personal API tokens (issue 19).

Placeholder in the wave-2 chain (filled in by its issue's work).

Revision ID: d19a2f6c8e40
Revises: d17a9e1b5f33
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

revision: str = 'd19a2f6c8e40'
down_revision: str | None = 'd17a9e1b5f33'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
