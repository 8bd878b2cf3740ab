"""Tables of one area, kept out of :mod:`experiments.models` so areas can grow apart.

Imported at the bottom of :mod:`experiments.models`, so every table is on the metadata.

The decision area (issue 17 item 2, :mod:`experiments.decisions`): the experiment row
holds the one current decision record; :class:`DecisionEvent` keeps every decision and
every reopening, whichever page they were made on.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Column, ForeignKey, Text
from sqlmodel import Field, SQLModel

#: What happened to the decision record.
DECISION_ACTIONS: tuple[str, ...] = ("decide", "reopen")


def _now() -> datetime:
    from experiments.models import utcnow

    return utcnow()


class DecisionEvent(SQLModel, table=True):
    """One decision or reopening of an experiment, as it was recorded (append-only)."""

    __tablename__ = "decision_event"
    __table_args__ = (
        CheckConstraint("action IN ('decide', 'reopen')", name="action"),
        CheckConstraint(
            "rollout_share IS NULL OR (rollout_share > 0 AND rollout_share <= 1)",
            name="rollout_share_range",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(
        sa_column=Column(
            ForeignKey("experiment.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    action: str = Field(max_length=20)
    decision: str | None = Field(default=None, max_length=20)
    # The decision's rationale, or the reason for reopening.
    text: str = Field(default="", sa_type=Text)
    shipped_variant: str | None = Field(default=None, max_length=64)
    rollout_share: float | None = None
    eligible_base_cents: int | None = Field(default=None, sa_type=BigInteger)
    eligible_base_source: str = Field(default="", max_length=40)
    # "experiment page", "review 2026-W48", "cli", …
    source: str = Field(default="", max_length=40)
    actor_id: int | None = Field(
        default=None,
        sa_column=Column(ForeignKey("user_account.id", ondelete="SET NULL"), nullable=True,
                         index=True),
    )
    created_at: datetime = Field(default_factory=_now)
