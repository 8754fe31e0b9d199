"""audit seals: the audit log sealed into hash-chained blocks

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 19:00:00

Nothing changes for audit_log itself (writing a record stays a plain INSERT); `patron audit
seal` and the jobs runner seal existing records on their first run.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_seals",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("from_id", sa.BigInteger(), nullable=False),
        sa.Column("to_id", sa.BigInteger(), nullable=False),
        sa.Column("record_count", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.Text(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_seals")),
    )
    op.create_index("uq_audit_seals_seq", "audit_seals", ["seq"], unique=True)
    op.create_index("uq_audit_seals_prev_hash", "audit_seals", ["prev_hash"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_audit_seals_prev_hash", table_name="audit_seals")
    op.drop_index("uq_audit_seals_seq", table_name="audit_seals")
    op.drop_table("audit_seals")
