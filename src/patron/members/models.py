from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, text
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class Member(Base):
    __tablename__ = "members"
    # lower(name), the column (not the string "name"): the search's case-insensitive name match.
    __table_args__ = (Index("ix_members_name_lower", text("lower(name)")),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    # E.164 (+821012345678), so 010-1234-5678 and 01012345678 are one number.
    phone: Mapped[str | None] = mapped_column(String(20), unique=True)
    email: Mapped[str | None] = mapped_column(String(254), unique=True)
    birthday: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(20))
    language: Mapped[str] = mapped_column(String(10), default="en")
    preferences: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(10), default="active")  # active | blocked | merged
    # The surviving member a merged one was folded into (patron.moves.merge).
    merged_into: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Card(Base):
    __tablename__ = "cards"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(10))  # physical | ecard | app
    status: Mapped[str] = mapped_column(String(10), default="active")  # active | blocked | lost
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ConsentRecord(Base):
    """One change of a member's marketing consent on one channel: who, when, how. The latest
    row per member and channel is in force; before any row, members.marketing_consent is."""

    __tablename__ = "consent_records"
    __table_args__ = (Index("ix_consent_records_member_channel", "member_id", "channel", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    channel: Mapped[str] = mapped_column(String(10))  # email | sms | profiling
    granted: Mapped[bool] = mapped_column(Boolean)
    # api | admin | portal | unsubscribe_link | sms_keyword | import | enrollment
    source: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    note: Mapped[str | None] = mapped_column(String(500))
    # The consent text version agreed to, and the program it was asked in (patron.privacy).
    version: Mapped[str | None] = mapped_column(String(40))
    program_id: Mapped[int | None] = mapped_column(BigInteger)


class PortalCode(Base):
    """A 6-digit code sent to a member. Only its HMAC (with the instance key) is stored; a wrong
    try counts against `tries`, and a used, expired or exhausted code never matches again."""

    __tablename__ = "portal_codes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    # Which contact the code was sent to ("email" | "sms"); the form asks for the same contact.
    channel: Mapped[str] = mapped_column(String(10))
    code_hash: Mapped[str] = mapped_column(String(64))
    tries: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class PortalVerification(Base):
    """A code sent to a contact that is not (yet) a member's: a self sign-up, or a member's new
    e-mail or phone. Only the code's HMAC is stored, with what to do once it matches (`payload`:
    the sign-up form, for instance). Same lifetime and tries as a sign-in code."""

    __tablename__ = "portal_verifications"
    __table_args__ = (Index("ix_portal_verifications_contact", "program_id", "purpose", "contact"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    purpose: Mapped[str] = mapped_column(String(20))  # sign_up | contact
    # The member changing a contact; None for a sign-up (there is no member yet).
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    channel: Mapped[str] = mapped_column(String(10))  # email | sms
    contact: Mapped[str] = mapped_column(String(254))  # normalised: lower-case e-mail or E.164
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType)
    code_hash: Mapped[str] = mapped_column(String(64))
    tries: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
