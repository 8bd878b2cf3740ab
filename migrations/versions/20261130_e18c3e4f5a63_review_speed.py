"""H3: review page speed (issue 18).

Placeholder revision: no schema change yet.

Revision ID: e18c3e4f5a63
Revises: e18b2d3e4f52
Create Date: 2026-11-30 10:00:00
"""
from collections.abc import Sequence

revision: str = 'e18c3e4f5a63'
down_revision: str | None = 'e18b2d3e4f52'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
