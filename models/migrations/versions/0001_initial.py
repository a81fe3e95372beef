"""The initial schema: every table of models/tables.py.

Revision ID: 0001
Revises: -
Create Date: 2026-11-23 09:27:22.798932
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: Union[str, None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('customers',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('timezone', sa.String(length=64), nullable=False),
    sa.Column('locale', sa.String(length=35), nullable=True),
    sa.Column('attributes', sa.JSON(), nullable=False),
    sa.Column('open_tickets', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_customers_email'), 'customers', ['email'], unique=False)

    op.create_table('delivery_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('dedupe_key', sa.String(length=200), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('event_type', sa.String(length=32), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('dedupe_key')
    )
    op.create_index(op.f('ix_delivery_events_message_id'), 'delivery_events', ['message_id'], unique=False)

    op.create_table('events',
    sa.Column('id', sa.String(length=200), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('customer_id', sa.String(length=200), nullable=True),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('customer_snapshot', sa.JSON(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_events_customer_type_time', 'events', ['customer_id', 'type', 'occurred_at'], unique=False)
    op.create_index(op.f('ix_events_type'), 'events', ['type'], unique=False)

    op.create_table('journey_versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('journey_id', sa.String(length=100), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('source', sa.Text(), nullable=False),
    sa.Column('file', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('journey_id', 'content_hash', name='uq_journey_versions_hash')
    )
    op.create_index(op.f('ix_journey_versions_journey_id'), 'journey_versions', ['journey_id'], unique=False)

    op.create_table('messages',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('run_id', sa.String(length=64), nullable=False),
    sa.Column('step_id', sa.String(length=100), nullable=False),
    sa.Column('customer_id', sa.String(length=200), nullable=False),
    sa.Column('journey_id', sa.String(length=100), nullable=False),
    sa.Column('touchpoint', sa.String(length=32), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('is_survey', sa.Boolean(), nullable=False),
    sa.Column('survey_id', sa.String(length=100), nullable=True),
    sa.Column('template', sa.String(length=200), nullable=False),
    sa.Column('to_email', sa.String(length=254), nullable=True),
    sa.Column('to_name', sa.String(length=200), nullable=True),
    sa.Column('from_email', sa.String(length=300), nullable=False),
    sa.Column('reply_to', sa.String(length=300), nullable=True),
    sa.Column('subject', sa.String(length=500), nullable=False),
    sa.Column('html', sa.Text(), nullable=True),
    sa.Column('text_body', sa.Text(), nullable=True),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('provider_id', sa.String(length=200), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sending_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivery_state', sa.String(length=32), nullable=True),
    sa.Column('reconcile', sa.String(length=16), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('run_id', 'step_id', name='uq_messages_run_step')
    )
    op.create_index('ix_messages_customer_time', 'messages', ['customer_id', 'created_at'], unique=False)
    op.create_index('ix_messages_status', 'messages', ['status', 'next_attempt_at'], unique=False)

    op.create_table('purchases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=False),
    sa.Column('customer_id', sa.String(length=200), nullable=False),
    sa.Column('sku', sa.String(length=200), nullable=False),
    sa.Column('purchased_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id', 'sku', name='uq_purchases_event_sku')
    )
    op.create_index('ix_purchases_sku_time', 'purchases', ['sku', 'purchased_at'], unique=False)

    op.create_table('suppressions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('scope', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email_hash')
    )
    op.create_table('survey_responses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.String(length=64), nullable=True),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('customer_id', sa.String(length=200), nullable=False),
    sa.Column('journey_id', sa.String(length=100), nullable=True),
    sa.Column('survey', sa.String(length=100), nullable=False),
    sa.Column('answers', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('event_id', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('customer_id', 'survey', 'message_id', name='uq_survey_response')
    )
    op.create_index(op.f('ix_survey_responses_customer_id'), 'survey_responses', ['customer_id'], unique=False)

    op.create_table('timeline',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('customer_id', sa.String(length=200), nullable=True),
    sa.Column('journey_id', sa.String(length=100), nullable=True),
    sa.Column('run_id', sa.String(length=64), nullable=True),
    sa.Column('step_id', sa.String(length=100), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('template', sa.String(length=200), nullable=True),
    sa.Column('subject', sa.String(length=500), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_timeline_at'), 'timeline', ['at'], unique=False)
    op.create_index(op.f('ix_timeline_customer_id'), 'timeline', ['customer_id'], unique=False)

    op.create_table('runs',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.String(length=200), nullable=False),
    sa.Column('journey_id', sa.String(length=100), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('touchpoint', sa.String(length=32), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('step_index', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.String(length=100), nullable=True),
    sa.Column('next_run_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('entered_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('exit_reason', sa.String(length=500), nullable=True),
    sa.Column('waiting_for', sa.String(length=100), nullable=True),
    sa.Column('trigger_event_id', sa.String(length=200), nullable=True),
    sa.Column('context', sa.JSON(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['version_id'], ['journey_versions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index(op.f('ix_runs_customer_id'), 'runs', ['customer_id'], unique=False)
    op.create_index('ix_runs_customer_journey', 'runs', ['customer_id', 'journey_id', 'status'], unique=False)
    op.create_index('ix_runs_due', 'runs', ['next_run_at'], unique=False, postgresql_where=sa.text('next_run_at IS NOT NULL'), sqlite_where=sa.text('next_run_at IS NOT NULL'))


def downgrade() -> None:
    op.drop_table('runs')
    op.drop_table('timeline')
    op.drop_table('survey_responses')
    op.drop_table('suppressions')
    op.drop_table('purchases')
    op.drop_table('messages')
    op.drop_table('journey_versions')
    op.drop_table('events')
    op.drop_table('delivery_events')
    op.drop_table('customers')
