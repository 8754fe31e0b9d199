"""Surveys, their invitations (one link each, only the token's hash kept), the answers and a
mark per member and survey that enforces "at most one invitation every N days"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class Survey(Base):
    """A program's short survey: questions (`patron.surveys.schemas.Question`) with labels per
    language, when it runs, which purchases invite to it, and the points for answering."""

    __tablename__ = "surveys"
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10))  # draft | active | archived
    title: Mapped[dict[str, str]] = mapped_column(JSONType)  # language -> text
    intro: Mapped[dict[str, str]] = mapped_column(JSONType)
    questions: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    fallback_language: Mapped[str] = mapped_column(String(5))
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stores: Mapped[list[str]] = mapped_column(JSONType)  # store codes; empty: every store
    channels: Mapped[list[str]] = mapped_column(JSONType)  # sale channels; empty: every one
    points: Mapped[int] = mapped_column(BigInteger)  # for answering; 0: none
    cooldown_days: Mapped[int] = mapped_column(Integer)  # one invitation per member per N days
    answer_days: Mapped[int] = mapped_column(Integer)  # a link stays valid this long
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(200))


class SurveyMark(Base):
    """When a member was last invited to a survey: moved forward by one conditional UPDATE (or
    created by INSERT … ON CONFLICT DO NOTHING), so two workers never both invite."""

    __tablename__ = "survey_marks"

    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    last_invited_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SurveyInvitation(Base):
    __tablename__ = "survey_invitations"
    __table_args__ = (
        Index("ix_survey_invitations_survey", "survey_id", "created_at"),
        Index("ix_survey_invitations_member", "member_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"))
    program_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the link's token
    store: Mapped[str | None] = mapped_column(String(40))
    channel: Mapped[str | None] = mapped_column(String(40))
    order_ref: Mapped[str | None] = mapped_column(String(120))
    event_id: Mapped[int | None] = mapped_column(BigInteger)  # the purchase's outbox event
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SurveyResponse(Base):
    __tablename__ = "survey_responses"
    __table_args__ = (Index("ix_survey_responses_survey", "survey_id", "answered_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id"))
    invitation_id: Mapped[int] = mapped_column(ForeignKey("survey_invitations.id"), unique=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    store: Mapped[str | None] = mapped_column(String(40))
    channel: Mapped[str | None] = mapped_column(String(40))
    language: Mapped[str] = mapped_column(String(5))
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answers: Mapped[dict[str, Any]] = mapped_column(JSONType)  # question key -> value
    points: Mapped[int] = mapped_column(BigInteger)  # credited for it (0: none or refused)
    entry_id: Mapped[int | None] = mapped_column(BigInteger)  # the ledger's adjust entry
    points_note: Mapped[str | None] = mapped_column(String(200))  # why no points


class SurveyAnswer(Base):
    """One answer to one question, flat for set-based results: a rating, one chosen choice
    (a multiple choice gives a row per choice) or a text."""

    __tablename__ = "survey_answers"
    __table_args__ = (Index("ix_survey_answers_survey", "survey_id", "question", "answered_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    response_id: Mapped[int] = mapped_column(ForeignKey("survey_responses.id"), index=True)
    survey_id: Mapped[int] = mapped_column(BigInteger)
    question: Mapped[str] = mapped_column(String(40))
    store: Mapped[str | None] = mapped_column(String(40))
    answered_at: Mapped[datetime] = mapped_column(UTCDateTime)
    rating: Mapped[int | None] = mapped_column(Integer)
    choice: Mapped[str | None] = mapped_column(String(40))
    text: Mapped[str | None] = mapped_column(Text)
