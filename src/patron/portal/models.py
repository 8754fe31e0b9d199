"""One-time sign-in codes, contact verifications and signed-in member browsers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


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


class PortalSession(Base):
    """A member's signed-in browser. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "portal_sessions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_agent: Mapped[str | None] = mapped_column(String(200))


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


class PortalEnrollment(Base):
    """A program's self sign-up settings: whether members may join on the member page, which
    fields the form asks for and which consent boxes it shows (see portal/signup.py)."""

    __tablename__ = "portal_enrollment"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(200), default="")


class PrivacyRequest(Base):
    """A member's request about her data: `erasure` (recorded and confirmed here; carried out by
    the privacy operations) or `export` (a download she made). Never deleted."""

    __tablename__ = "privacy_requests"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # erasure | export
    status: Mapped[str] = mapped_column(String(20))  # requested | cancelled | done
    source: Mapped[str] = mapped_column(String(20))  # portal | admin | api
    reason: Mapped[str | None] = mapped_column(String(500))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
