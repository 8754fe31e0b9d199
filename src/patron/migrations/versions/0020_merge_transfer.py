"""moves: member merges and member-to-member point transfers

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03 21:40:00

- members.merged_into: the surviving member of a merged one (status "merged");
- member_merges: one row per merged member, with the first answer (idempotent);
- program_transfer_settings: a program's opt-in to transfers and its limits;
- point_transfers: each transfer, unique per (program, sender, key);
- entries.kind widened to 20 characters (transfer_out is 12; SQLite ignores the length).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "entries", "kind", type_=sa.String(length=20), existing_type=sa.String(length=10)
        )
    # SQLite rebuilds `members` from its reflection, and SQLAlchemy cannot reflect the
    # expression index on lower(name): it warned ("Skipped unsupported reflection …") and the
    # rebuilt table came out without it. Dropped first and made again after, it survives.
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.drop_index("ix_members_name_lower", table_name="members")
    with op.batch_alter_table("members") as batch:
        batch.add_column(sa.Column("merged_into", sa.BigInteger(), nullable=True))
        batch.create_foreign_key(
            "fk_members_merged_into_members", "members", ["merged_into"], ["id"]
        )
    if sqlite:
        op.create_index("ix_members_name_lower", "members", [sa.text("lower(name)")])
    op.create_table(
        "member_merges",
        sa.Column("id", ID, nullable=False),
        sa.Column("source_id", sa.BigInteger(), nullable=False),
        sa.Column("survivor_id", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("at", patron.db.types.UTCDateTime(), nullable=False),
        sa.Column("result", patron.db.types.JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["source_id"], ["members.id"], name="fk_member_merges_source_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["survivor_id"], ["members.id"], name="fk_member_merges_survivor_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_member_merges"),
        sa.UniqueConstraint("source_id", name="uq_member_merges_source_id"),
    )
    op.create_index("ix_member_merges_survivor_id", "member_merges", ["survivor_id"])
    op.create_table(
        "program_transfer_settings",
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("max_per_transfer", sa.BigInteger(), nullable=True),
        sa.Column("max_per_day", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", patron.db.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name="fk_program_transfer_settings_program_id_programs"
        ),
        sa.PrimaryKeyConstraint("program_id", name="pk_program_transfer_settings"),
    )
    op.create_table(
        "point_transfers",
        sa.Column("id", ID, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("sender_id", sa.BigInteger(), nullable=False),
        sa.Column("receiver_id", sa.BigInteger(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.String(length=200), nullable=True),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=80), nullable=False),
        sa.Column("at", patron.db.types.UTCDateTime(), nullable=False),
        sa.Column("out_entry_id", sa.BigInteger(), nullable=False),
        sa.Column("result", patron.db.types.JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name="fk_point_transfers_program_id_programs"
        ),
        sa.ForeignKeyConstraint(
            ["sender_id"], ["members.id"], name="fk_point_transfers_sender_id_members"
        ),
        sa.ForeignKeyConstraint(
            ["receiver_id"], ["members.id"], name="fk_point_transfers_receiver_id_members"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_point_transfers"),
        sa.UniqueConstraint(
            "program_id", "sender_id", "key", name="uq_point_transfers_program_id_sender_id_key"
        ),
    )
    op.create_index(
        "ix_point_transfers_sender_time", "point_transfers", ["program_id", "sender_id", "at"]
    )
    op.create_index("ix_point_transfers_receiver_id", "point_transfers", ["receiver_id"])


def downgrade() -> None:
    op.drop_table("point_transfers")
    op.drop_table("program_transfer_settings")
    op.drop_index("ix_member_merges_survivor_id", table_name="member_merges")
    op.drop_table("member_merges")
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.drop_index("ix_members_name_lower", table_name="members")
    with op.batch_alter_table("members") as batch:
        batch.drop_constraint("fk_members_merged_into_members", type_="foreignkey")
        batch.drop_column("merged_into")
    if sqlite:
        op.create_index("ix_members_name_lower", "members", [sa.text("lower(name)")])
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "entries", "kind", type_=sa.String(length=10), existing_type=sa.String(length=20)
        )
