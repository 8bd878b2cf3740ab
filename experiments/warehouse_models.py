"""Tables of the warehouse area (issue 18 item 1), kept out of :mod:`experiments.models`
so areas can grow apart.

Imported at the bottom of :mod:`experiments.models`, so every table is on the metadata.

* :class:`DataSource` — a named warehouse: the *name of an environment variable* that
  holds its SQLAlchemy URL, and the dialect it must be. No URL or secret is stored.
* :class:`WarehouseQuery` — the SQL an experiment's dataset (or the revenue ledger) is
  read with, its refresh schedule and the outcome of its last refresh.
* :class:`WarehouseResult` — the sums one refresh brought back for one dataset version
  (and the bounded random sample for the rank checks), so the analysis can be re-run
  after an amendment without asking the warehouse again.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, CheckConstraint, Column, ForeignKey, Index, Text, text
from sqlmodel import Field, SQLModel

#: Dialects a data source may use (the URL's backend must be the one chosen).
DIALECTS: tuple[str, ...] = ("postgresql", "duckdb", "bigquery", "snowflake", "trino")
#: What a query feeds: an experiment's dataset or the company revenue ledger.
TARGETS: tuple[str, ...] = ("experiment", "ledger")
#: Refresh schedules (``manual``: only the refresh button).
SCHEDULES: tuple[str, ...] = ("manual", "hourly", "daily")
#: Outcome of the last refresh.
REFRESH_STATUSES: tuple[str, ...] = ("never", "queued", "ok", "unchanged", "failed")
#: The rows of the partial unique index that allows one ledger query.
LEDGER_ONLY = "target = 'ledger'"


def _now() -> datetime:
    from experiments.models import utcnow

    return utcnow()


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _fk(target: str, ondelete: str, *, nullable: bool = True, unique: bool = False):
    return Field(default=None, sa_column=Column(
        ForeignKey(target, ondelete=ondelete), nullable=nullable, index=True, unique=unique))


class DataSource(SQLModel, table=True):
    """A warehouse the app may read: its URL lives in the environment variable ``url_env``."""

    __tablename__ = "data_source"
    __table_args__ = (CheckConstraint(_in("dialect", DIALECTS), name="dialect"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100, sa_column_kwargs={"unique": True})
    url_env: str = Field(max_length=100)
    dialect: str = Field(max_length=20)
    created_by_id: int | None = _fk("user_account.id", "SET NULL")
    created_at: datetime = Field(default_factory=_now)
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})


class WarehouseQuery(SQLModel, table=True):
    """The SQL one experiment's dataset (or the ledger) is read with, and its refreshes."""

    __tablename__ = "warehouse_query"
    __table_args__ = (
        CheckConstraint(_in("target", TARGETS), name="target"),
        CheckConstraint(_in("schedule", SCHEDULES), name="schedule"),
        CheckConstraint(_in("last_status", REFRESH_STATUSES), name="last_status"),
        CheckConstraint(
            "(target = 'experiment' AND experiment_id IS NOT NULL)"
            " OR (target = 'ledger' AND experiment_id IS NULL)",
            name="target_experiment",
        ),
        # At most one ledger query: NULL experiment ids never collide in a unique index,
        # so the ledger's row is made unique by a partial index on its target.
        Index("uq_warehouse_query_ledger", "target", unique=True,
              sqlite_where=text(LEDGER_ONLY), postgresql_where=text(LEDGER_ONLY)),
    )

    id: int | None = Field(default=None, primary_key=True)
    source_id: int = _fk("data_source.id", "RESTRICT", nullable=False)
    target: str = Field(default="experiment", max_length=20)
    # One query per experiment; the ledger's has none (at most one: uq_warehouse_query_ledger).
    experiment_id: int | None = _fk("experiment.id", "CASCADE", unique=True)
    sql_text: str = Field(sa_type=Text)
    schedule: str = Field(default="manual", max_length=20)
    last_refresh_at: datetime | None = None
    last_status: str = Field(default="never", max_length=20)
    last_message: str = Field(default="", sa_type=Text)
    last_dataset_id: int | None = _fk("dataset.id", "SET NULL")
    created_by_id: int | None = _fk("user_account.id", "SET NULL")
    updated_at: datetime = Field(default_factory=_now)
    version: int = Field(default=1, sa_column_kwargs={"server_default": "1"})


class WarehouseResult(SQLModel, table=True):
    """What one refresh brought back for one dataset version: sums, never account rows
    (apart from the bounded random sample of the rank checks, labelled as such)."""

    __tablename__ = "warehouse_result"
    __table_args__ = (
        CheckConstraint("total_rows >= 0 AND sample_rows >= 0", name="rows_nonnegative"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dataset_id: int = _fk("dataset.id", "CASCADE", nullable=False, unique=True)
    query_id: int | None = _fk("warehouse_query.id", "SET NULL")
    total_rows: int = Field(default=0)
    sample_rows: int = Field(default=0)
    inputs: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    computed_at: datetime = Field(default_factory=_now)
