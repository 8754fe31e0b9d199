"""Consent text versions, legal holds and the audit redactions an erasure leaves behind."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, UTCDateTime


class ConsentText(Base):
    """The wording a program asks members to agree to for one purpose, by version. The latest
    row per program and purpose is current; a consent record stores the version it agreed to."""

    __tablename__ = "consent_texts"
    __table_args__ = (Index("ix_consent_texts_program_purpose", "program_id", "purpose", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    purpose: Mapped[str] = mapped_column(String(30))  # marketing_email | marketing_sms | profiling
    version: Mapped[str] = mapped_column(String(40))
    summary: Mapped[str | None] = mapped_column(String(500))  # or a link to the full text
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)
    set_by: Mapped[str] = mapped_column(String(80))


class LegalHold(Base):
    """A hold on a member's data (a dispute, an investigation): no erasure while it is open."""

    __tablename__ = "legal_holds"
    __table_args__ = (Index("ix_legal_holds_member", "member_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    program_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(500))
    placed_by: Mapped[str] = mapped_column(String(80))
    placed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    released_by: Mapped[str | None] = mapped_column(String(80))
    release_reason: Mapped[str | None] = mapped_column(String(500))


class AuditRedaction(Base):
    """An audit record whose before/after an erasure replaced by the redaction marker: the
    digest it had (what its seal lists) and the digest it has now, so `patron audit verify`
    accepts exactly this change and still catches any other."""

    __tablename__ = "audit_redactions"

    record_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    original_digest: Mapped[str] = mapped_column(String(64))
    redacted_digest: Mapped[str] = mapped_column(String(64))
    erasure_id: Mapped[int] = mapped_column(BigInteger)  # the privacy_requests row
    at: Mapped[datetime] = mapped_column(UTCDateTime)
