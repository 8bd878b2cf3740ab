"""Background uploads: the upload_job table, dataset status and a per-experiment content key.

A dataset is written while ``status = 'importing'`` (invisible to readers) and made
``'ready'`` in one short transaction. ``content_sha256`` is unique per experiment, so
the same file uploaded twice, even at the same moment, is one version. Existing rows
get it from ``sha256``; where an experiment already holds the same bytes more than
once, only the newest version keeps the key (the older copies keep NULL, which a
unique constraint allows on both databases).

Revision ID: f88bcfae690c
Revises: 7c1e2a9d4b10
Create Date: 2026-11-30 03:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'f88bcfae690c'
down_revision: str | None = '7c1e2a9d4b10'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BACKFILL = """
UPDATE dataset SET content_sha256 = sha256
WHERE NOT EXISTS (
    SELECT 1 FROM dataset AS newer
    WHERE newer.experiment_id = dataset.experiment_id
      AND newer.sha256 = dataset.sha256
      AND newer.version > dataset.version
)
"""


def upgrade() -> None:
    op.create_table(
        'upload_job',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('experiment_id', sa.Integer(), nullable=False),
        sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column('phase', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column('rows_read', sa.Integer(), nullable=False),
        sa.Column('rows_stored', sa.Integer(), nullable=False),
        sa.Column('error_total', sa.Integer(), nullable=False),
        sa.Column('errors', sa.JSON(), nullable=True),
        sa.Column('notes', sa.JSON(), nullable=True),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('dataset_id', sa.Integer(), nullable=True),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'done', 'duplicate', 'failed', 'refused')",
            name=op.f('ck_upload_job_state'),
        ),
        sa.ForeignKeyConstraint(['created_by_id'], ['user_account.id'],
                                name=op.f('fk_upload_job_created_by_id_user_account'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['dataset_id'], ['dataset.id'],
                                name=op.f('fk_upload_job_dataset_id_dataset'), ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['experiment_id'], ['experiment.id'],
                                name=op.f('fk_upload_job_experiment_id_experiment'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_upload_job')),
    )
    with op.batch_alter_table('upload_job', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_upload_job_created_by_id'), ['created_by_id'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_upload_job_dataset_id'), ['dataset_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_upload_job_experiment_id'), ['experiment_id'],
                              unique=False)

    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_sha256', sqlmodel.sql.sqltypes.AutoString(length=64),
                                      nullable=True))
        batch_op.add_column(sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=20),
                                      server_default='ready', nullable=False))
    op.execute(_BACKFILL)
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_dataset_experiment_id_content_sha256'),
                                          ['experiment_id', 'content_sha256'])
        batch_op.create_check_constraint(op.f('ck_dataset_status'),
                                         "status IN ('importing', 'ready')")


def downgrade() -> None:
    with op.batch_alter_table('dataset', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('ck_dataset_status'), type_='check')
        batch_op.drop_constraint(batch_op.f('uq_dataset_experiment_id_content_sha256'),
                                 type_='unique')
        batch_op.drop_column('status')
        batch_op.drop_column('content_sha256')

    with op.batch_alter_table('upload_job', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_upload_job_experiment_id'))
        batch_op.drop_index(batch_op.f('ix_upload_job_dataset_id'))
        batch_op.drop_index(batch_op.f('ix_upload_job_created_by_id'))

    op.drop_table('upload_job')
