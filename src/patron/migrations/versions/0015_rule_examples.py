"""rules: example sales with the points they must earn (rule tests)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 15:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "rule_examples",
        sa.Column("id", ID, nullable=False),
        sa.Column("program_id", ID, nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("sale", patron.db.types.JSONType, nullable=False),
        sa.Column("member", patron.db.types.JSONType, nullable=False),
        sa.Column("expected_points", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=True),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("created_at", patron.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", patron.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_rule_examples_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rule_examples")),
        sa.UniqueConstraint("program_id", "name", name=op.f("uq_rule_examples_program_id_name")),
    )


def downgrade() -> None:
    op.drop_table("rule_examples")
