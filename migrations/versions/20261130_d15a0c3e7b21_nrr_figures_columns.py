"""Account columns for NRR-native figures (issue 15) and plan guardrails.

Placeholder in the wave-2 chain (filled in by its issue's work).

Revision ID: d15a0c3e7b21
Revises: c4a1f0d2e9b3
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

revision: str = 'd15a0c3e7b21'
down_revision: str | None = 'c4a1f0d2e9b3'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
