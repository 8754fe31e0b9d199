"""segments: definitions per program and their materialised snapshots

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-04 00:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "segments",
        sa.Column("id", PK, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=1000), nullable=False),
        sa.Column("definition", patron.db.types.JSONType, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_segments_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_segments_program_id_code")),
    )
    op.create_table(
        "segment_snapshots",
        sa.Column("id", PK, nullable=False),
        sa.Column("segment_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("segment_version", sa.Integer(), nullable=False),
        sa.Column("definition", patron.db.types.JSONType, nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("taken_by", sa.String(length=200), nullable=False),
        sa.Column("members", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["segment_id"], ["segments.id"], name=op.f("fk_segment_snapshots_segment_id_segments")
        ),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_segment_snapshots_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segment_snapshots")),
    )
    op.create_index("ix_segment_snapshots_segment", "segment_snapshots", ["segment_id", "id"])
    op.create_table(
        "segment_snapshot_members",
        sa.Column("snapshot_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("segment_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["snapshot_id"],
            ["segment_snapshots.id"],
            name=op.f("fk_segment_snapshot_members_snapshot_id_segment_snapshots"),
        ),
        sa.PrimaryKeyConstraint(
            "snapshot_id", "member_id", name=op.f("pk_segment_snapshot_members")
        ),
    )


def downgrade() -> None:
    op.drop_table("segment_snapshot_members")
    op.drop_index("ix_segment_snapshots_segment", table_name="segment_snapshots")
    op.drop_table("segment_snapshots")
    op.drop_table("segments")
