"""milestones: goals per program and the achievements of members

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-04 04:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
AT = sa.DateTime(timezone=True)
JSON = patron.db.types.JSONType


def upgrade() -> None:
    op.create_table(
        "milestones",
        sa.Column("id", PK, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("target", sa.BigInteger(), nullable=False),
        sa.Column("stores", JSON, nullable=False),
        sa.Column("window", sa.String(length=10), nullable=False),
        sa.Column("window_days", sa.Integer(), nullable=True),
        sa.Column("repeat", sa.Boolean(), nullable=False),
        sa.Column("names", JSON, nullable=False),
        sa.Column("descriptions", JSON, nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("reward", sa.String(length=40), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", AT, nullable=False),
        sa.Column("updated_at", AT, nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_milestones_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_milestones")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_milestones_program_id_code")),
    )
    op.create_table(
        "milestone_achievements",
        sa.Column("id", PK, nullable=False),
        sa.Column("milestone_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.Column("achieved_at", AT, nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("coupon_id", sa.BigInteger(), nullable=True),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["milestone_id"],
            ["milestones.id"],
            name=op.f("fk_milestone_achievements_milestone_id_milestones"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_milestone_achievements")),
        sa.UniqueConstraint(
            "milestone_id",
            "member_id",
            "period",
            name=op.f("uq_milestone_achievements_milestone_id_member_id_period"),
        ),
    )
    op.create_index(
        "ix_milestone_achievements_member",
        "milestone_achievements",
        ["member_id", "achieved_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_milestone_achievements_member", table_name="milestone_achievements")
    op.drop_table("milestone_achievements")
    op.drop_table("milestones")
