"""portal: codes that verify a contact for a sign-up or a contact change

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "portal_verifications",
        sa.Column("id", ID, nullable=False),
        sa.Column("program_id", ID, nullable=False),
        sa.Column("purpose", sa.String(length=20), nullable=False),
        sa.Column("member_id", ID, nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("contact", sa.String(length=254), nullable=False),
        sa.Column("payload", patron.db.types.JSONType, nullable=False),  # JSON, JSONB on PostgreSQL
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("created_at", patron.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", patron.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", patron.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_portal_verifications_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_portal_verifications_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_portal_verifications")),
    )
    op.create_index(
        "ix_portal_verifications_contact",
        "portal_verifications",
        ["program_id", "purpose", "contact"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_portal_verifications_contact", table_name="portal_verifications")
    op.drop_table("portal_verifications")
