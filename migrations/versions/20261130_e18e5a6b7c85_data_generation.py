"""H6: data generation for the page cache (issue 18).

Placeholder revision: no schema change yet.

Revision ID: e18e5a6b7c85
Revises: e18d4f5a6b74
Create Date: 2026-11-30 10:00:00
"""
from collections.abc import Sequence

revision: str = 'e18e5a6b7c85'
down_revision: str | None = 'e18d4f5a6b74'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
