"""fraud controls: settings per program, the activity velocity limits count, the review queue

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 21:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "fraud_settings",
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("document", patron.db.types.JSONType, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_fraud_settings_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("program_id", name=op.f("pk_fraud_settings")),
    )
    op.create_table(
        "fraud_activity",
        sa.Column("id", PK, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("card", sa.String(length=40), nullable=True),
        sa.Column("store_id", sa.BigInteger(), nullable=True),
        sa.Column("key_id", sa.String(length=40), nullable=True),
        sa.Column("sales", sa.Integer(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("redemptions", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("purchase_id", sa.BigInteger(), nullable=True),
        sa.Column("external_id", sa.String(length=120), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_fraud_activity_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fraud_activity")),
    )
    for name, column in (
        ("member", "member_id"),
        ("card", "card"),
        ("store", "store_id"),
        ("key", "key_id"),
    ):
        op.create_index(
            f"ix_fraud_activity_{name}",
            "fraud_activity",
            ["program_id", column, "at", "sales", "points", "redemptions"],
        )
    op.create_table(
        "fraud_reviews",
        sa.Column("id", PK, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("purchase_id", sa.BigInteger(), nullable=False),
        sa.Column("external_id", sa.String(length=120), nullable=False),
        sa.Column("earn_entry_id", sa.BigInteger(), nullable=True),
        sa.Column("lot_id", sa.BigInteger(), nullable=True),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("reasons", patron.db.types.JSONType, nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("released_points", sa.BigInteger(), nullable=False),
        sa.Column("reversed_points", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_fraud_reviews_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fraud_reviews")),
    )
    op.create_index("ix_fraud_reviews_queue", "fraud_reviews", ["program_id", "status", "id"])
    op.create_index("uq_fraud_reviews_purchase", "fraud_reviews", ["purchase_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_fraud_reviews_purchase", table_name="fraud_reviews")
    op.drop_index("ix_fraud_reviews_queue", table_name="fraud_reviews")
    op.drop_table("fraud_reviews")
    for name in ("key", "store", "card", "member"):
        op.drop_index(f"ix_fraud_activity_{name}", table_name="fraud_activity")
    op.drop_table("fraud_activity")
    op.drop_table("fraud_settings")
