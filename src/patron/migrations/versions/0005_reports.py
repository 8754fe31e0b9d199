"""report roll-ups

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 00:00:00
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None

MEASURES = (
    "earned",
    "reversed",
    "redeemed",
    "restored",
    "expired",
    "adjusted_in",
    "adjusted_out",
    "other",
    "entries",
    "earn_entries",
    "redeem_entries",
    "purchases",
    "sales_minor",
)


def upgrade() -> None:
    op.create_table(
        'report_daily',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('program_id', sa.BigInteger(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('recorded_day', sa.Date(), nullable=False),
        sa.Column('store_id', sa.BigInteger(), nullable=False),
        sa.Column('channel', sa.String(length=10), nullable=False),
        sa.Column('tier', sa.String(length=40), nullable=False),
        *[sa.Column(name, sa.BigInteger(), nullable=False) for name in MEASURES],
        sa.PrimaryKeyConstraint('id', name=op.f('pk_report_daily')),
        sa.UniqueConstraint(
            'program_id', 'day', 'recorded_day', 'store_id', 'channel', 'tier',
            name='uq_report_daily_key',
        ),
    )
    op.create_index(
        'ix_report_daily_program_recorded', 'report_daily', ['program_id', 'recorded_day']
    )
    op.create_table(
        'report_watermarks',
        sa.Column('name', sa.String(length=40), nullable=False),
        sa.Column('last_entry_id', sa.BigInteger(), nullable=False),
        sa.Column('refreshed_at', patron.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_report_watermarks')),
    )
    # The row exists from the start: a report locks it while it reads (patron.reports.rollup).
    op.execute("INSERT INTO report_watermarks (name, last_entry_id) VALUES ('entries', 0)")


def downgrade() -> None:
    op.drop_table('report_watermarks')
    op.drop_index('ix_report_daily_program_recorded', table_name='report_daily')
    op.drop_table('report_daily')
