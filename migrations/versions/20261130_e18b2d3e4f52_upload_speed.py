"""H2: 1M-row upload storage changes (issue 18).

Placeholder revision: no schema change yet.

Revision ID: e18b2d3e4f52
Revises: e18a1c2d3f41
Create Date: 2026-11-30 10:00:00
"""
from collections.abc import Sequence

revision: str = 'e18b2d3e4f52'
down_revision: str | None = 'e18a1c2d3f41'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
