"""expiry policies: N days after earning, and a tier's own policy

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 18:45:00

`programs.expiry_days` is the N of the new `days` policy (null for the other kinds). A tier
definition may set its own policy (`expiry_kind`, `expiry_months`, `expiry_days`); a null kind
keeps the program's, so existing tiers behave as before. Lots keep the `expires_at` they were
written with: nothing is recomputed.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expiry_days", sa.Integer(), nullable=True))
    with op.batch_alter_table("tier_definitions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("expiry_kind", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("expiry_months", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("expiry_days", sa.Integer(), nullable=True))


def downgrade() -> None:
    # A program on the `days` policy has no equivalent before 0016: its nearest, in months
    # (rounded up, so no point expires earlier than it would have).
    op.execute(
        "UPDATE programs SET expiry_kind = 'months', "
        "expiry_months = (expiry_days + 29) / 30 WHERE expiry_kind = 'days'"
    )
    with op.batch_alter_table("tier_definitions", schema=None) as batch_op:
        batch_op.drop_column("expiry_days")
        batch_op.drop_column("expiry_months")
        batch_op.drop_column("expiry_kind")
    with op.batch_alter_table("programs", schema=None) as batch_op:
        batch_op.drop_column("expiry_days")
