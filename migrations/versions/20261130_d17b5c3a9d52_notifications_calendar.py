"""Notifications and calendar feeds (issue 17, items 5-6).

Four new tables: ``notification_preference`` (a user's email choices),
``webhook_endpoint`` (admin-managed receivers), ``notification_delivery`` (every email or
webhook call with its body, attempts and outcome) and ``calendar_feed`` (hashed secret
tokens of the per-user iCalendar feeds). The downgrade drops them (with their rows).

Revision ID: d17b5c3a9d52
Revises: d19a2f6c8e40
Create Date: 2026-11-30 07:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'd17b5c3a9d52'
down_revision: str | None = 'd19a2f6c8e40'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"],
                                   name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete)


def _moment(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.UTCDateTime(), nullable=nullable)


def _text(name: str, length: int, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        'calendar_feed',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        _text('token_sha256', 64),
        _text('hint', 8),
        _moment('created_at'),
        _moment('revoked_at', nullable=True),
        _fk('calendar_feed', 'user_id', 'user_account', 'CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_calendar_feed')),
        sa.UniqueConstraint('token_sha256', name=op.f('uq_calendar_feed_token_sha256')),
    )
    op.create_index(op.f('ix_calendar_feed_user_id'), 'calendar_feed', ['user_id'], unique=False)

    op.create_table(
        'notification_preference',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('digest', sa.Boolean(), nullable=False),
        sa.Column('alert', sa.Boolean(), nullable=False),
        sa.Column('decision', sa.Boolean(), nullable=False),
        sa.Column('upload', sa.Boolean(), nullable=False),
        _text('scope', 10),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        _moment('updated_at'),
        sa.CheckConstraint("scope IN ('mine', 'all')",
                           name=op.f('ck_notification_preference_scope')),
        _fk('notification_preference', 'user_id', 'user_account', 'CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_preference')),
    )
    op.create_index(op.f('ix_notification_preference_user_id'), 'notification_preference',
                    ['user_id'], unique=True)

    op.create_table(
        'webhook_endpoint',
        sa.Column('id', sa.Integer(), nullable=False),
        _text('name', 200),
        _text('url', 2000),
        _text('secret_env', 100, nullable=True),
        _text('secret', 200, nullable=True),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('version', sa.Integer(), server_default='1', nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        _moment('created_at'),
        _moment('updated_at'),
        sa.CheckConstraint('(secret_env IS NULL) <> (secret IS NULL)',
                           name=op.f('ck_webhook_endpoint_one_secret')),
        _fk('webhook_endpoint', 'created_by_id', 'user_account', 'SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_endpoint')),
    )
    op.create_index(op.f('ix_webhook_endpoint_created_by_id'), 'webhook_endpoint',
                    ['created_by_id'], unique=False)

    op.create_table(
        'notification_delivery',
        sa.Column('id', sa.Integer(), nullable=False),
        _text('channel', 10),
        _text('event', 20),
        sa.Column('webhook_id', sa.Integer(), nullable=True),
        sa.Column('user_id', sa.Integer(), nullable=True),
        _text('recipient', 2000),
        _text('subject', 300),
        sa.Column('body', sa.Text(), nullable=False),
        _text('dedupe_key', 120, nullable=True),
        _text('status', 10),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('response_code', sa.Integer(), nullable=True),
        _moment('next_attempt_at', nullable=True),
        _moment('created_at'),
        _moment('updated_at'),
        _moment('sent_at', nullable=True),
        sa.CheckConstraint("channel IN ('email', 'webhook')",
                           name=op.f('ck_notification_delivery_channel')),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'retrying', 'failed', 'skipped')",
            name=op.f('ck_notification_delivery_status')),
        _fk('notification_delivery', 'user_id', 'user_account', 'SET NULL'),
        _fk('notification_delivery', 'webhook_id', 'webhook_endpoint', 'SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notification_delivery')),
        sa.UniqueConstraint('dedupe_key', name=op.f('uq_notification_delivery_dedupe_key')),
    )
    for column in ('event', 'status', 'user_id', 'webhook_id'):
        op.create_index(op.f(f'ix_notification_delivery_{column}'), 'notification_delivery',
                        [column], unique=False)


def downgrade() -> None:
    for column in ('webhook_id', 'user_id', 'status', 'event'):
        op.drop_index(op.f(f'ix_notification_delivery_{column}'),
                      table_name='notification_delivery')
    op.drop_table('notification_delivery')
    op.drop_index(op.f('ix_webhook_endpoint_created_by_id'), table_name='webhook_endpoint')
    op.drop_table('webhook_endpoint')
    op.drop_index(op.f('ix_notification_preference_user_id'),
                  table_name='notification_preference')
    op.drop_table('notification_preference')
    op.drop_index(op.f('ix_calendar_feed_user_id'), table_name='calendar_feed')
    op.drop_table('calendar_feed')
