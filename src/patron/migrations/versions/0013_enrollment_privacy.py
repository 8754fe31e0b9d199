"""portal: self sign-up settings per program, and members' privacy requests

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 09:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
WHEN = patron.db.types.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "portal_enrollment",
        sa.Column("program_id", ID, nullable=False),
        sa.Column("document", patron.db.types.JSONType, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_portal_enrollment_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_portal_enrollment")),
    )
    op.create_table(
        "privacy_requests",
        sa.Column("id", ID, nullable=False),
        sa.Column("program_id", ID, nullable=False),
        sa.Column("member_id", ID, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("requested_at", WHEN, nullable=False),
        sa.Column("closed_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_privacy_requests_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_privacy_requests_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_privacy_requests")),
    )
    op.create_index(
        op.f("ix_privacy_requests_member_id"), "privacy_requests", ["member_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_privacy_requests_member_id"), table_name="privacy_requests")
    op.drop_table("privacy_requests")
    op.drop_table("portal_enrollment")
