"""privacy: consent purposes and text versions, legal holds, audit redactions

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 21:30:00

consent_records gains the text version agreed to and the program it was asked in (a record's
channel is its purpose: email = marketing_email, sms = marketing_sms, profiling). Existing rows
keep a NULL version: they were agreed before versions were kept.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)


def upgrade() -> None:
    # A plain ADD COLUMN on both engines (nullable, no default): no table rebuild.
    op.add_column("consent_records", sa.Column("version", sa.String(length=40), nullable=True))
    op.add_column("consent_records", sa.Column("program_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "consent_texts",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("purpose", sa.String(length=30), nullable=False),
        sa.Column("version", sa.String(length=40), nullable=False),
        sa.Column("summary", sa.String(length=500), nullable=True),
        sa.Column("set_at", _AT, nullable=False),
        sa.Column("set_by", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_consent_texts_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_texts")),
    )
    op.create_index(
        "ix_consent_texts_program_purpose", "consent_texts", ["program_id", "purpose", "id"]
    )
    op.create_table(
        "legal_holds",
        sa.Column("id", _ID, nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("placed_by", sa.String(length=80), nullable=False),
        sa.Column("placed_at", _AT, nullable=False),
        sa.Column("released_at", _AT, nullable=True),
        sa.Column("released_by", sa.String(length=80), nullable=True),
        sa.Column("release_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_legal_holds_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    op.create_index("ix_legal_holds_member", "legal_holds", ["member_id", "id"])
    op.create_table(
        "audit_redactions",
        sa.Column("record_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("original_digest", sa.String(length=64), nullable=False),
        sa.Column("redacted_digest", sa.String(length=64), nullable=False),
        sa.Column("erasure_id", sa.BigInteger(), nullable=False),
        sa.Column("at", _AT, nullable=False),
        sa.PrimaryKeyConstraint("record_id", name=op.f("pk_audit_redactions")),
    )


def downgrade() -> None:
    op.drop_table("audit_redactions")
    op.drop_index("ix_legal_holds_member", table_name="legal_holds")
    op.drop_table("legal_holds")
    op.drop_index("ix_consent_texts_program_purpose", table_name="consent_texts")
    op.drop_table("consent_texts")
    with op.batch_alter_table("consent_records") as batch:
        batch.drop_column("program_id")
        batch.drop_column("version")
