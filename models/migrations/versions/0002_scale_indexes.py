"""Indexes for a dispatch pass that costs what its due customers cost (issue 8, scale).

- ``ix_runs_due`` holds ``customer_id`` after ``next_run_at``: the claim reads the earliest due
  customers in the index's own order (nothing to sort) and stops at the batch's last one.
- ``ix_runs_customer_id`` goes: ``ix_runs_customer_journey`` starts with the same column, and
  PostgreSQL updates every index of a run whose ``next_run_at`` moves (no HOT update).
- ``ix_events_type`` goes: every query of events names the customer
  (``ix_events_customer_type_time``); without statistics PostgreSQL chose the type index for
  the dispatcher's exit-event read and went through every ``order.placed`` each batch.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 16:00:00.000000
"""

from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: Union[str, None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_DUE_WHERE = dict(postgresql_where=sa.text('next_run_at IS NOT NULL'), sqlite_where=sa.text('next_run_at IS NOT NULL'))


def upgrade() -> None:
    # IF EXISTS: a database ``create_all`` made is adopted at 0001 with the newer models' indexes
    op.drop_index('ix_runs_due', table_name='runs', if_exists=True)
    op.create_index('ix_runs_due', 'runs', ['next_run_at', 'customer_id'], unique=False, **_DUE_WHERE)
    op.drop_index('ix_runs_customer_id', table_name='runs', if_exists=True)
    op.drop_index('ix_events_type', table_name='events', if_exists=True)


def downgrade() -> None:
    op.create_index('ix_events_type', 'events', ['type'], unique=False)
    op.create_index('ix_runs_customer_id', 'runs', ['customer_id'], unique=False)
    op.drop_index('ix_runs_due', table_name='runs')
    op.create_index('ix_runs_due', 'runs', ['next_run_at'], unique=False, **_DUE_WHERE)
