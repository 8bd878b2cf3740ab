"""Warehouse data sources (issue 18 item 1).

Three new tables: ``data_source`` (a named warehouse whose SQLAlchemy URL is read from an
environment variable; no secret is stored), ``warehouse_query`` (the SQL an experiment's
dataset or the revenue ledger is read with, its schedule and last refresh) and
``warehouse_result`` (the sums a refresh brought back for one dataset version). The
downgrade drops them (with their rows).

Revision ID: d18a7e4b1c63
Revises: d17b5c3a9d52
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'd18a7e4b1c63'
down_revision: str | None = 'd17b5c3a9d52'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"],
                                   name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete)


def _moment(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.UTCDateTime(), nullable=nullable)


def _text(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=nullable)


def _index(table: str, column: str, unique: bool = False) -> None:
    op.create_index(op.f(f'ix_{table}_{column}'), table, [column], unique=unique)


_INDEXES = {
    'data_source': (('created_by_id', False),),
    'warehouse_query': (('created_by_id', False), ('experiment_id', True),
                        ('last_dataset_id', False), ('source_id', False)),
    'warehouse_result': (('dataset_id', True), ('query_id', False)),
}


def upgrade() -> None:
    op.create_table(
        'data_source',
        sa.Column('id', sa.Integer(), nullable=False),
        _text('name', 100),
        _text('url_env', 100),
        _text('dialect', 20),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        _moment('created_at'),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        sa.CheckConstraint(
            "dialect IN ('postgresql', 'duckdb', 'bigquery', 'snowflake', 'trino')",
            name=op.f('ck_data_source_dialect')),
        _fk('data_source', 'created_by_id', 'user_account', 'SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_data_source')),
        sa.UniqueConstraint('name', name=op.f('uq_data_source_name')),
    )
    op.create_table(
        'warehouse_query',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source_id', sa.Integer(), nullable=False),
        _text('target', 20),
        sa.Column('experiment_id', sa.Integer(), nullable=True),
        sa.Column('sql_text', sa.Text(), nullable=False),
        _text('schedule', 20),
        _moment('last_refresh_at', nullable=True),
        _text('last_status', 20),
        sa.Column('last_message', sa.Text(), nullable=False),
        sa.Column('last_dataset_id', sa.Integer(), nullable=True),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        _moment('updated_at'),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        sa.CheckConstraint("target IN ('experiment', 'ledger')",
                           name=op.f('ck_warehouse_query_target')),
        sa.CheckConstraint("schedule IN ('manual', 'hourly', 'daily')",
                           name=op.f('ck_warehouse_query_schedule')),
        sa.CheckConstraint("last_status IN ('never', 'queued', 'ok', 'unchanged', 'failed')",
                           name=op.f('ck_warehouse_query_last_status')),
        sa.CheckConstraint(
            "(target = 'experiment' AND experiment_id IS NOT NULL)"
            " OR (target = 'ledger' AND experiment_id IS NULL)",
            name=op.f('ck_warehouse_query_target_experiment')),
        _fk('warehouse_query', 'source_id', 'data_source', 'RESTRICT'),
        _fk('warehouse_query', 'experiment_id', 'experiment', 'CASCADE'),
        _fk('warehouse_query', 'last_dataset_id', 'dataset', 'SET NULL'),
        _fk('warehouse_query', 'created_by_id', 'user_account', 'SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_warehouse_query')),
    )
    op.create_table(
        'warehouse_result',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('dataset_id', sa.Integer(), nullable=False),
        sa.Column('query_id', sa.Integer(), nullable=True),
        sa.Column('total_rows', sa.Integer(), nullable=False),
        sa.Column('sample_rows', sa.Integer(), nullable=False),
        sa.Column('inputs', sa.JSON(), nullable=False),
        _moment('computed_at'),
        sa.CheckConstraint('total_rows >= 0 AND sample_rows >= 0',
                           name=op.f('ck_warehouse_result_rows_nonnegative')),
        _fk('warehouse_result', 'dataset_id', 'dataset', 'CASCADE'),
        _fk('warehouse_result', 'query_id', 'warehouse_query', 'SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_warehouse_result')),
    )
    for table, indexes in _INDEXES.items():
        for column, unique in indexes:
            _index(table, column, unique)


def downgrade() -> None:
    for table in ('warehouse_result', 'warehouse_query', 'data_source'):
        for column, _unique in _INDEXES[table]:
            op.drop_index(op.f(f'ix_{table}_{column}'), table_name=table)
        op.drop_table(table)
