"""Account ids and segments up to 255 characters, as the upload contract allows (DESIGN §3).

The readers take text values of up to 255 characters (``MAX_TEXT_LENGTH``, the ledger's
width too), but ``account_row.account_id`` and ``segment`` were VARCHAR(200): on
PostgreSQL a file with a 201–255-character id or segment failed in COPY and the background
upload ended as "unexpected error", while SQLite stored it. Widened to 255.

PostgreSQL widens a VARCHAR in place (no rewrite, no index rebuild: 0.04 s with a million
rows, the statement-level key triggers kept). SQLite does not check the length at all;
the batch rebuild only keeps its declared type in step with the model, but it copies the
whole table in one transaction: 2 million rows took 3.9 s and the file grew from 152 to
304 MB (the old pages stay free in it until VACUUM), so leave that much disk free. A
rebuild cut off (killed) rolls back whole.
The downgrade narrows back to 200: PostgreSQL rewrites the table (3.3 s a million rows)
and fails, changing nothing, while any stored value is longer than that; SQLite keeps
such values.

Revision ID: e20a1b2c3d45
Revises: e19c3e5a7b91
Create Date: 2026-11-30 19:40:00
"""
from collections.abc import Sequence

import sqlmodel
from alembic import op

revision: str = 'e20a1b2c3d45'
down_revision: str | None = 'e19c3e5a7b91'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (('account_id', False), ('segment', True))


def _resize(old: int, new: int) -> None:
    with op.batch_alter_table('account_row', schema=None) as batch_op:
        for name, nullable in COLUMNS:
            batch_op.alter_column(name,
                                  existing_type=sqlmodel.sql.sqltypes.AutoString(length=old),
                                  type_=sqlmodel.sql.sqltypes.AutoString(length=new),
                                  existing_nullable=nullable)


def upgrade() -> None:
    _resize(200, 255)


def downgrade() -> None:
    _resize(255, 200)
