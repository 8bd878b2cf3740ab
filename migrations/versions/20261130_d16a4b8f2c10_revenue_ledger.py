"""Revenue ledger (issue 16): ledger versions, rows and stored figures.

Placeholder in the wave-2 chain (filled in by its issue's work).

Revision ID: d16a4b8f2c10
Revises: d15a0c3e7b21
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

revision: str = 'd16a4b8f2c10'
down_revision: str | None = 'd15a0c3e7b21'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
