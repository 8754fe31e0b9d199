"""bulk jobs: member imports and adjustment files, their row errors and idempotency keys

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 21:30:00

bulk_jobs records each run over a file (progress, last committed row, so `--resume` continues
after it); bulk_job_errors the refused rows; member_import_refs a member's id in the system
they came from (a row imported twice is found); bulk_adjustment_keys each adjustment row's key.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_AT = sa.DateTime(timezone=True)
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "bulk_jobs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("file_hash", sa.String(length=64), nullable=False),
        sa.Column("stored_path", sa.String(length=500), nullable=True),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("mapping", _JSON, nullable=False),
        sa.Column("rows_total", sa.BigInteger(), nullable=True),
        sa.Column("rows_done", sa.BigInteger(), nullable=False),
        sa.Column("rows_skipped", sa.BigInteger(), nullable=False),
        sa.Column("rows_failed", sa.BigInteger(), nullable=False),
        sa.Column("last_row", sa.BigInteger(), nullable=False),
        sa.Column("chunks_done", sa.Integer(), nullable=False),
        sa.Column("error", sa.String(length=1000), nullable=True),
        sa.Column("started_by", sa.String(length=80), nullable=False),
        sa.Column("created_at", _AT, nullable=False),
        sa.Column("started_at", _AT, nullable=True),
        sa.Column("finished_at", _AT, nullable=True),
        sa.Column("updated_at", _AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_bulk_jobs_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_jobs")),
    )
    op.create_index("ix_bulk_jobs_program", "bulk_jobs", ["program_id", "id"])
    op.create_table(
        "bulk_job_errors",
        sa.Column("id", _ID, nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=False),
        sa.Column("row", sa.BigInteger(), nullable=False),
        sa.Column("column", sa.String(length=120), nullable=True),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["bulk_jobs.id"], name=op.f("fk_bulk_job_errors_job_id_bulk_jobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_job_errors")),
    )
    op.create_index("ix_bulk_job_errors_job", "bulk_job_errors", ["job_id", "row"])
    op.create_table(
        "member_import_refs",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("external_ref", sa.String(length=120), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_member_import_refs_program_id_programs")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_import_refs_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_import_refs")),
        sa.UniqueConstraint(
            "program_id",
            "external_ref",
            name=op.f("uq_member_import_refs_program_id_external_ref"),
        ),
    )
    op.create_index(
        "ix_member_import_refs_member_id", "member_import_refs", ["member_id"], unique=False
    )
    op.create_table(
        "bulk_adjustment_keys",
        sa.Column("id", _ID, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=False),
        sa.Column("job_id", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["program_id"],
            ["programs.id"],
            name=op.f("fk_bulk_adjustment_keys_program_id_programs"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bulk_adjustment_keys")),
        sa.UniqueConstraint(
            "program_id", "key", name=op.f("uq_bulk_adjustment_keys_program_id_key")
        ),
    )


def downgrade() -> None:
    op.drop_table("bulk_adjustment_keys")
    op.drop_index("ix_member_import_refs_member_id", table_name="member_import_refs")
    op.drop_table("member_import_refs")
    op.drop_index("ix_bulk_job_errors_job", table_name="bulk_job_errors")
    op.drop_table("bulk_job_errors")
    op.drop_index("ix_bulk_jobs_program", table_name="bulk_jobs")
    op.drop_table("bulk_jobs")
