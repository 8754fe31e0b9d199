"""campaigns: A/B campaigns on segments, and each member's arm and what the member was given

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04 04:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
AT = sa.DateTime(timezone=True)
JSON = patron.db.types.JSONType


def upgrade() -> None:
    op.create_table(
        "campaigns",
        sa.Column("id", PK, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("segment", sa.String(length=40), nullable=False),
        sa.Column("targeting", sa.String(length=10), nullable=False),
        sa.Column("snapshot_id", sa.BigInteger(), nullable=True),
        sa.Column("starts_at", AT, nullable=True),
        sa.Column("ends_at", AT, nullable=True),
        sa.Column("budget_points", sa.BigInteger(), nullable=True),
        sa.Column("budget_coupons", sa.BigInteger(), nullable=True),
        sa.Column("holdout_pct", sa.Integer(), nullable=False),
        sa.Column("arms", JSON, nullable=False),
        sa.Column("points_given", sa.BigInteger(), nullable=False),
        sa.Column("coupons_given", sa.BigInteger(), nullable=False),
        sa.Column("launched_at", AT, nullable=True),
        sa.Column("launched_by", sa.String(length=200), nullable=True),
        sa.Column("stopped_at", AT, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", AT, nullable=False),
        sa.Column("updated_at", AT, nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_campaigns_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_campaigns_program_id_code")),
    )
    op.create_table(
        "campaign_members",
        sa.Column("campaign_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("arm", sa.String(length=20), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("assigned_at", AT, nullable=False),
        sa.Column("reached_at", AT, nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("coupon_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_members_campaign_id_campaigns"),
        ),
        sa.PrimaryKeyConstraint("campaign_id", "member_id", name=op.f("pk_campaign_members")),
    )
    op.create_index(
        "ix_campaign_members_arm", "campaign_members", ["campaign_id", "arm", "outcome"]
    )


def downgrade() -> None:
    op.drop_index("ix_campaign_members_arm", table_name="campaign_members")
    op.drop_table("campaign_members")
    op.drop_table("campaigns")
