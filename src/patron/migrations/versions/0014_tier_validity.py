"""tiers: the validity a period's evaluation gives, kept once on its run

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 12:00:00

Until 0014 every evaluation wrote each member's `accounts.tier_valid_until`, even when the tier
stayed; from 0014 the run row keeps it once per program and period (decision 0015). Runs from
before keep null: they already wrote it to the accounts. Going back down writes the runs'
validity to the accounts it covers, so nothing a reader showed is lost.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

WHEN = patron.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tier_evaluation_runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("valid_until", WHEN, nullable=True))


def downgrade() -> None:
    # What readers computed (tiers.service.held_until), written back to the accounts.
    op.execute(
        "UPDATE accounts SET tier_valid_until = ("
        " SELECT max(r.valid_until) FROM tier_evaluation_runs r"
        " WHERE r.program_id = accounts.program_id AND r.valid_until IS NOT NULL"
        " AND (r.status = 'done' OR r.last_account_id >= accounts.id))"
        " WHERE tier IS NOT NULL AND NOT tier_manual AND EXISTS ("
        " SELECT 1 FROM tier_evaluation_runs r"
        " WHERE r.program_id = accounts.program_id AND r.valid_until IS NOT NULL"
        " AND (r.status = 'done' OR r.last_account_id >= accounts.id)"
        " AND (accounts.tier_valid_until IS NULL OR r.valid_until > accounts.tier_valid_until))"
    )
    with op.batch_alter_table("tier_evaluation_runs", schema=None) as batch_op:
        batch_op.drop_column("valid_until")
