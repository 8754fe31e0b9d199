"""Templates, each program's notification settings, reminder marks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class MessageTemplate(Base):
    """A program's own wording for one event, channel and language (the shipped default
    applies where there is none)."""

    __tablename__ = "message_templates"
    __table_args__ = (UniqueConstraint("program_id", "event_kind", "channel", "language"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    event_kind: Mapped[str] = mapped_column(String(60))
    channel: Mapped[str] = mapped_column(String(10))  # email | sms
    language: Mapped[str] = mapped_column(String(10))  # ko | zh | en
    subject: Mapped[str | None] = mapped_column(String(500))  # e-mail only
    body: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(80))


class NotificationConfig(Base):
    """A program's notification settings (patron.notify.settings.NotifySettings as JSON)."""

    __tablename__ = "notification_configs"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ReminderMark(Base):
    """A scheduled message a member has had (or was decided on), so it is never sent twice:
    kind expiring + the expiry day, birthday + the year, statement + the month."""

    __tablename__ = "reminder_marks"
    __table_args__ = (UniqueConstraint("program_id", "member_id", "kind", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
