"""surveys: questions per program, invitations (token hashes), responses and answers

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-04 01:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import patron.db.types

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
AT = sa.DateTime(timezone=True)
JSON = patron.db.types.JSONType


def upgrade() -> None:
    op.create_table(
        "surveys",
        sa.Column("id", PK, nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("title", JSON, nullable=False),
        sa.Column("intro", JSON, nullable=False),
        sa.Column("questions", JSON, nullable=False),
        sa.Column("fallback_language", sa.String(length=5), nullable=False),
        sa.Column("starts_at", AT, nullable=True),
        sa.Column("ends_at", AT, nullable=True),
        sa.Column("stores", JSON, nullable=False),
        sa.Column("channels", JSON, nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("cooldown_days", sa.Integer(), nullable=False),
        sa.Column("answer_days", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", AT, nullable=False),
        sa.Column("updated_at", AT, nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ["program_id"], ["programs.id"], name=op.f("fk_surveys_program_id_programs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_surveys")),
        sa.UniqueConstraint("program_id", "code", name=op.f("uq_surveys_program_id_code")),
    )
    op.create_table(
        "survey_marks",
        sa.Column("survey_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("last_invited_at", AT, nullable=False),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"], name=op.f("fk_survey_marks_survey_id_surveys")
        ),
        sa.PrimaryKeyConstraint("survey_id", "member_id", name=op.f("pk_survey_marks")),
    )
    op.create_table(
        "survey_invitations",
        sa.Column("id", PK, nullable=False),
        sa.Column("survey_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("store", sa.String(length=40), nullable=True),
        sa.Column("channel", sa.String(length=40), nullable=True),
        sa.Column("order_ref", sa.String(length=120), nullable=True),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("created_at", AT, nullable=False),
        sa.Column("expires_at", AT, nullable=False),
        sa.Column("answered_at", AT, nullable=True),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"], name=op.f("fk_survey_invitations_survey_id_surveys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_invitations")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_survey_invitations_token_hash")),
    )
    op.create_index(
        "ix_survey_invitations_survey", "survey_invitations", ["survey_id", "created_at"]
    )
    op.create_index("ix_survey_invitations_member", "survey_invitations", ["member_id", "id"])
    op.create_table(
        "survey_responses",
        sa.Column("id", PK, nullable=False),
        sa.Column("survey_id", sa.BigInteger(), nullable=False),
        sa.Column("invitation_id", sa.BigInteger(), nullable=False),
        sa.Column("program_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("store", sa.String(length=40), nullable=True),
        sa.Column("channel", sa.String(length=40), nullable=True),
        sa.Column("language", sa.String(length=5), nullable=False),
        sa.Column("answered_at", AT, nullable=False),
        sa.Column("answers", JSON, nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.BigInteger(), nullable=True),
        sa.Column("points_note", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["surveys.id"], name=op.f("fk_survey_responses_survey_id_surveys")
        ),
        sa.ForeignKeyConstraint(
            ["invitation_id"],
            ["survey_invitations.id"],
            name=op.f("fk_survey_responses_invitation_id_survey_invitations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_responses")),
        sa.UniqueConstraint("invitation_id", name=op.f("uq_survey_responses_invitation_id")),
    )
    op.create_index("ix_survey_responses_survey", "survey_responses", ["survey_id", "answered_at"])
    op.create_table(
        "survey_answers",
        sa.Column("id", PK, nullable=False),
        sa.Column("response_id", sa.BigInteger(), nullable=False),
        sa.Column("survey_id", sa.BigInteger(), nullable=False),
        sa.Column("question", sa.String(length=40), nullable=False),
        sa.Column("store", sa.String(length=40), nullable=True),
        sa.Column("answered_at", AT, nullable=False),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("choice", sa.String(length=40), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["response_id"],
            ["survey_responses.id"],
            name=op.f("fk_survey_answers_response_id_survey_responses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_answers")),
    )
    op.create_index(
        "ix_survey_answers_survey", "survey_answers", ["survey_id", "question", "answered_at"]
    )
    op.create_index("ix_survey_answers_response_id", "survey_answers", ["response_id"])


def downgrade() -> None:
    op.drop_table("survey_answers")
    op.drop_table("survey_responses")
    op.drop_table("survey_invitations")
    op.drop_table("survey_marks")
    op.drop_table("surveys")
