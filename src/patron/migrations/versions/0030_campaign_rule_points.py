"""campaign members: the points a rule experiment's rules added to the member's sales, and
when the member's campaign.offer message was queued

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-04 10:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaign_members") as batch:
        batch.add_column(
            sa.Column("rule_points", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("messaged_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaign_members") as batch:
        batch.drop_column("messaged_at")
        batch.drop_column("rule_points")
