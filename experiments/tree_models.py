"""Tables of one area, kept out of :mod:`experiments.models` so areas can grow apart.

Imported at the bottom of :mod:`experiments.models`, so every table is on the metadata.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, ForeignKey, UniqueConstraint
from sqlmodel import Field, SQLModel

from experiments.models import _fk, utcnow


class DriverActual(SQLModel, table=True):
    """One dated actual of a driver-tree node's leading metric, entered by hand.

    Nodes tied to a ledger figure (``DriverNode.metric``) read their actuals from the
    ledger instead. One value per node and date: entering a date again changes that
    row by compare-and-set (``version``), so two owners typing at once cannot both win.
    """

    __tablename__ = "driver_actual"
    __table_args__ = (UniqueConstraint("node_id", "measured_on"),)

    id: int | None = Field(default=None, primary_key=True)
    node_id: int = Field(
        sa_column=Column(
            ForeignKey("driver_node.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )
    measured_on: date
    value: float
    entered_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    entered_at: datetime = Field(default_factory=utcnow)
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})
