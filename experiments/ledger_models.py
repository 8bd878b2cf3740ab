"""Tables of one area, kept out of :mod:`experiments.models` so areas can grow apart.

Imported at the bottom of :mod:`experiments.models`, so every table is on the metadata.

The revenue ledger (DESIGN §3b, issue 16):

* ``ledger_version`` — one upload: who, when, which file, which periods, which dimensions.
  Written with ``status = 'importing'`` and no version number; the one transaction that
  makes it current gives it the next number (under the ledger lock), so versions are
  numbered in the order they became current.
* ``ledger_row`` — the rows of a version, money in integer cents. ``period`` is a month
  number (``year * 12 + month - 1``) so that joins and arrays stay integers; the
  dimension values sit in the fixed slots ``dim_1 … dim_6`` whose names the version
  lists in ``dimensions``.
* ``ledger_period`` — the current pointer: for each period the version whose rows are
  current. Replacing periods rewrites these rows in the transaction that activates the
  new version, so no reader ever sees half a ledger.
* ``ledger_figures`` — the figures of the whole current ledger (``stats.ledger``'s JSON)
  computed right after a version became current; the NRR page reads them, not the rows.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
)
from sqlmodel import Field, SQLModel

from experiments.models import _fk, _in, utcnow

LEDGER_STATUSES: tuple[str, ...] = ("importing", "ready")
#: Dimension columns one upload may declare (the slots dim_1 … dim_6 of ledger_row).
MAX_DIMENSIONS = 6
DIMENSION_SLOTS: tuple[str, ...] = tuple(f"dim_{i}" for i in range(1, MAX_DIMENSIONS + 1))


class LedgerVersion(SQLModel, table=True):
    """One ledger upload; current for the periods whose pointer names it."""

    __tablename__ = "ledger_version"
    __table_args__ = (
        CheckConstraint(_in("status", LEDGER_STATUSES), name="status"),
        CheckConstraint("row_count >= 0", name="row_count"),
        CheckConstraint("(status = 'ready') = (version IS NOT NULL)", name="numbered_when_ready"),
    )

    id: int | None = Field(default=None, primary_key=True)
    # NULL while importing; numbered when it becomes current (unique: the last word).
    version: int | None = Field(default=None, unique=True)
    status: str = Field(default="importing", max_length=20)
    filename: str = Field(default="", max_length=255)
    sha256: str = Field(max_length=64, index=True)
    row_count: int = Field(default=0)
    account_count: int = Field(default=0)
    # ["2025-01", ...] in order: the periods this upload covers (and replaces)
    periods: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # the declared dimension names, in slot order (dim_1 is the first)
    dimensions: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    notes: list = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    uploaded_by_id: int | None = _fk("user_account.id", ondelete="SET NULL")
    uploaded_at: datetime = Field(default_factory=utcnow)
    activated_at: datetime | None = None
    # Every row of this version has first_row_id <= ledger_row.id <= last_row_id (other
    # versions' rows may lie between): finds its rows through the primary key, so
    # ledger_row needs no index of its own.
    first_row_id: int | None = Field(default=None, sa_type=BigInteger)
    last_row_id: int | None = Field(default=None, sa_type=BigInteger)


class LedgerRow(SQLModel, table=True):
    """One account's MRR movements in one period of one version; money in integer cents."""

    __tablename__ = "ledger_row"
    __table_args__ = (
        CheckConstraint("start_cents >= 0", name="start_nonnegative"),
        CheckConstraint(
            "expansion_cents >= 0 AND contraction_cents >= 0 AND churned_cents >= 0",
            name="money_nonnegative",
        ),
        CheckConstraint(
            "contraction_cents + churned_cents <= start_cents", name="loss_within_start"
        ),
        CheckConstraint("days_to_value IS NULL OR days_to_value >= 0", name="days_nonnegative"),
        # No index: a version's rows are found by its row-id range (ledger_version); the
        # reader guarantees (version, period, account) unique. An index cost ~1 s of CPU
        # per million rows on every upload.
    )

    # BIGINT on PostgreSQL; INTEGER on SQLite, where only INTEGER PRIMARY KEY is the rowid.
    id: int | None = Field(
        default=None,
        sa_column=Column(
            BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
    )
    # No foreign key, on purpose: PostgreSQL checks one per copied row, which doubled the
    # COPY time of a million rows (BENCHMARKS.md). Rows are written only for a version
    # just reserved, and a version is deleted only by ledger.discard_version, which
    # deletes its rows first.
    version_id: int
    period: int  # year * 12 + month - 1
    account_id: str = Field(max_length=255)
    start_cents: int = Field(sa_type=BigInteger)
    expansion_cents: int = Field(default=0, sa_type=BigInteger)
    contraction_cents: int = Field(default=0, sa_type=BigInteger)
    churned_cents: int = Field(default=0, sa_type=BigInteger)
    customer_since: date | None = None
    days_to_value: float | None = None
    dim_1: str | None = Field(default=None, max_length=255)
    dim_2: str | None = Field(default=None, max_length=255)
    dim_3: str | None = Field(default=None, max_length=255)
    dim_4: str | None = Field(default=None, max_length=255)
    dim_5: str | None = Field(default=None, max_length=255)
    dim_6: str | None = Field(default=None, max_length=255)


class LedgerPeriod(SQLModel, table=True):
    """The current pointer: period → the version whose rows are current for it."""

    __tablename__ = "ledger_period"

    period: int = Field(
        sa_column=Column(Integer, primary_key=True, autoincrement=False)
    )
    version_id: int = Field(
        sa_column=Column(
            ForeignKey("ledger_version.id", ondelete="CASCADE"), nullable=False, index=True
        )
    )


class LedgerFigures(SQLModel, table=True):
    """The figures of the whole current ledger right after ``version_id`` became current."""

    __tablename__ = "ledger_figures"

    id: int | None = Field(default=None, primary_key=True)
    version_id: int = Field(
        sa_column=Column(
            ForeignKey("ledger_version.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        )
    )
    computed_at: datetime = Field(default_factory=utcnow)
    row_count: int = Field(default=0)  # rows of the current ledger
    # stats.ledger.LedgerFigures.to_dict(), or {"error": ...} when they could not be computed
    figures: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
