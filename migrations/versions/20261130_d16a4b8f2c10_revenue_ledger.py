"""Revenue ledger (issue 16): ledger versions, rows, the current pointer and stored figures.

Revision ID: d16a4b8f2c10
Revises: d15a0c3e7b21
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'd16a4b8f2c10'
down_revision: str | None = 'd15a0c3e7b21'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TEXT = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        'ledger_version',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=True),
        sa.Column('status', _TEXT(length=20), nullable=False),
        sa.Column('filename', _TEXT(length=255), nullable=False),
        sa.Column('sha256', _TEXT(length=64), nullable=False),
        sa.Column('row_count', sa.Integer(), nullable=False),
        sa.Column('account_count', sa.Integer(), nullable=False),
        sa.Column('periods', sa.JSON(), nullable=False),
        sa.Column('dimensions', sa.JSON(), nullable=False),
        sa.Column('notes', sa.JSON(), nullable=False),
        sa.Column('uploaded_by_id', sa.Integer(), nullable=True),
        sa.Column('uploaded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('activated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('first_row_id', sa.BigInteger(), nullable=True),
        sa.Column('last_row_id', sa.BigInteger(), nullable=True),
        sa.CheckConstraint("status IN ('importing', 'ready')",
                           name=op.f('ck_ledger_version_status')),
        sa.CheckConstraint('row_count >= 0', name=op.f('ck_ledger_version_row_count')),
        sa.CheckConstraint("(status = 'ready') = (version IS NOT NULL)",
                           name=op.f('ck_ledger_version_numbered_when_ready')),
        sa.ForeignKeyConstraint(['uploaded_by_id'], ['user_account.id'],
                                name=op.f('fk_ledger_version_uploaded_by_id_user_account'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_version')),
        sa.UniqueConstraint('version', name=op.f('uq_ledger_version_version')),
    )
    with op.batch_alter_table('ledger_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_version_sha256'), ['sha256'], unique=False)
        batch_op.create_index(batch_op.f('ix_ledger_version_uploaded_by_id'), ['uploaded_by_id'],
                              unique=False)

    op.create_table(
        'ledger_row',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True,
                  nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('period', sa.Integer(), nullable=False),
        sa.Column('account_id', _TEXT(length=255), nullable=False),
        sa.Column('start_cents', sa.BigInteger(), nullable=False),
        sa.Column('expansion_cents', sa.BigInteger(), nullable=False),
        sa.Column('contraction_cents', sa.BigInteger(), nullable=False),
        sa.Column('churned_cents', sa.BigInteger(), nullable=False),
        sa.Column('customer_since', sa.Date(), nullable=True),
        sa.Column('days_to_value', sa.Float(), nullable=True),
        *[sa.Column(f'dim_{i}', _TEXT(length=255), nullable=True) for i in range(1, 7)],
        sa.CheckConstraint('start_cents >= 0', name=op.f('ck_ledger_row_start_nonnegative')),
        sa.CheckConstraint(
            'expansion_cents >= 0 AND contraction_cents >= 0 AND churned_cents >= 0',
            name=op.f('ck_ledger_row_money_nonnegative'),
        ),
        sa.CheckConstraint('contraction_cents + churned_cents <= start_cents',
                           name=op.f('ck_ledger_row_loss_within_start')),
        sa.CheckConstraint('days_to_value IS NULL OR days_to_value >= 0',
                           name=op.f('ck_ledger_row_days_nonnegative')),
        # No foreign key to ledger_version on purpose (see experiments/ledger_models.py).
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_row')),
    )

    op.create_table(
        'ledger_period',
        sa.Column('period', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['version_id'], ['ledger_version.id'],
                                name=op.f('fk_ledger_period_version_id_ledger_version'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('period', name=op.f('pk_ledger_period')),
    )
    with op.batch_alter_table('ledger_period', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_period_version_id'), ['version_id'],
                              unique=False)

    op.create_table(
        'ledger_figures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('version_id', sa.Integer(), nullable=False),
        sa.Column('computed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('row_count', sa.Integer(), nullable=False),
        sa.Column('figures', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['version_id'], ['ledger_version.id'],
                                name=op.f('fk_ledger_figures_version_id_ledger_version'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_figures')),
        sa.UniqueConstraint('version_id', name=op.f('uq_ledger_figures_version_id')),
    )


def downgrade() -> None:
    op.drop_table('ledger_figures')
    with op.batch_alter_table('ledger_period', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_period_version_id'))
    op.drop_table('ledger_period')
    op.drop_table('ledger_row')
    with op.batch_alter_table('ledger_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_version_uploaded_by_id'))
        batch_op.drop_index(batch_op.f('ix_ledger_version_sha256'))
    op.drop_table('ledger_version')
