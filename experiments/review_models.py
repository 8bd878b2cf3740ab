"""Tables of the review loop (issue 17): actions that carry from week to week, the
quarter's objectives with key results linked to driver-tree nodes, and the driver-tree
actuals a week's review showed (kept with the week like its experiment rows).

Imported at the bottom of :mod:`experiments.models`, so every table is on the metadata.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, CheckConstraint, Column, ForeignKey, Text
from sqlmodel import Field, SQLModel

from experiments.models import _fk, _in, utcnow

ACTION_STATUSES: tuple[str, ...] = ("open", "done", "dropped")


class Action(SQLModel, table=True):
    """Something a review meeting asked someone to do by a date.

    An action is raised in one ISO week's meeting (``raised_week``) and stays on every
    later week's review while it is open; closing it (``done`` or ``dropped``) records
    the week whose meeting closed it (``closed_week``), where it stays visible.
    """

    __tablename__ = "review_action"
    __table_args__ = (
        CheckConstraint(_in("status", ACTION_STATUSES), name="status"),
        CheckConstraint(
            "(status = 'open' AND closed_week IS NULL) OR "
            "(status <> 'open' AND closed_week IS NOT NULL)",
            name="closed_week",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(sa_type=Text)
    # The experiment it is about (its team scopes it), or none for a team-wide action.
    experiment_id: int | None = _fk("experiment.id", ondelete="CASCADE")
    team_id: int | None = _fk("team.id", ondelete="RESTRICT")
    raised_week: str = Field(max_length=8, index=True)  # e.g. 2026-W45
    owner_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    due: date | None = None
    status: str = Field(default="open", max_length=20, index=True)
    closed_week: str | None = Field(default=None, max_length=8)
    closed_at: datetime | None = None
    closed_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    resolution: str = Field(default="", sa_type=Text)
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    created_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow)
    updated_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    updated_at: datetime = Field(default_factory=utcnow)


class Objective(SQLModel, table=True):
    """A quarter's objective (OKR): what the team wants, measured by its key results."""

    __tablename__ = "objective"

    id: int | None = Field(default=None, primary_key=True)
    quarter: str = Field(max_length=7, index=True)  # e.g. 2026-Q4
    title: str = Field(max_length=300)
    team_id: int | None = _fk("team.id", ondelete="RESTRICT")
    owner_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    created_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class KeyResult(SQLModel, table=True):
    """One measurable result of an objective, linked to the driver-tree node it moves."""

    __tablename__ = "key_result"

    id: int | None = Field(default=None, primary_key=True)
    objective_id: int = Field(
        sa_column=Column(ForeignKey("objective.id", ondelete="CASCADE"), nullable=False,
                         index=True)
    )
    node_id: int | None = _fk("driver_node.id", ondelete="SET NULL")
    title: str = Field(max_length=300)
    target: float | None = None
    actual: float | None = None
    owner_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
    updated_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    updated_at: datetime = Field(default_factory=utcnow)


class ReviewTreeSeen(SQLModel, table=True):
    """The driver-tree summary one week's review showed: every node's latest actual against
    its target, and the company start MRR its revenue impact used
    (:mod:`experiments.review_tree`).

    One row per meeting, refreshed by the views of the running week and final once the
    week is over, as the items' ``seen`` rows are: hand-entered actuals are corrected in
    place and the ledger's figures are only kept for its current version, so what the
    meeting saw cannot be recomputed later.
    """

    __tablename__ = "review_tree_seen"

    meeting_id: int = Field(
        sa_column=Column(ForeignKey("review_meeting.id", ondelete="CASCADE"), primary_key=True,
                         autoincrement=False)
    )
    # {"dated_by", "company_start_mrr", "reconstructed", "lines": [ActualLine.to_json()]}
    seen: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    # SHA-256 of ``seen`` (experiments.review_tree.tree_digest): a running week's view
    # compares it and rewrites the row only when the figures changed.
    seen_digest: str = Field(max_length=64)
    # The moment of the view that wrote it: an older view finishing later never overwrites.
    seen_at: datetime
