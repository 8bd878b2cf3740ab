"""One decision record (issue 17, item 2): shipped variant, rollout share, reopening.

Placeholder in the wave-2 chain (filled in by its issue's work).

Revision ID: d17c6a2e4f71
Revises: d18a7e4b1c63
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

revision: str = 'd17c6a2e4f71'
down_revision: str | None = 'd18a7e4b1c63'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
