"""H5: one warehouse query per ledger (unique constraint).

An experiment's query was unique by its ``experiment_id``; the ledger's has none (NULLs
never collide), so two first saves at once stored two ledger queries. A partial unique
index on ``target`` over the ledger's rows allows one. Existing duplicates are removed
first, keeping the newest (latest ``updated_at``, then highest id); results that pointed
at a removed duplicate are pointed at the kept query. The downgrade drops the index (the
removed duplicates are not restored: they were copies of a query superseded by the kept
one).

Revision ID: e18a1c2d3f41
Revises: d16b3c7e9a14
Create Date: 2026-11-30 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'e18a1c2d3f41'
down_revision: str | None = 'd16b3c7e9a14'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LEDGER_ONLY = "target = 'ledger'"


def _remove_duplicate_ledger_queries() -> None:
    connection = op.get_bind()
    ids = connection.execute(sa.text(
        "SELECT id FROM warehouse_query WHERE target = 'ledger' "
        "ORDER BY updated_at DESC, id DESC")).scalars().all()
    if len(ids) < 2:
        return
    keep, removed = ids[0], list(ids[1:])
    connection.execute(
        sa.text("UPDATE warehouse_result SET query_id = :keep WHERE query_id IN :removed")
        .bindparams(sa.bindparam("removed", expanding=True)),
        {"keep": keep, "removed": removed})
    connection.execute(
        sa.text("DELETE FROM warehouse_query WHERE id IN :removed")
        .bindparams(sa.bindparam("removed", expanding=True)),
        {"removed": removed})


def upgrade() -> None:
    _remove_duplicate_ledger_queries()
    op.create_index('uq_warehouse_query_ledger', 'warehouse_query', ['target'], unique=True,
                    sqlite_where=sa.text(_LEDGER_ONLY),
                    postgresql_where=sa.text(_LEDGER_ONLY))


def downgrade() -> None:
    op.drop_index('uq_warehouse_query_ledger', table_name='warehouse_query')
