"""Signed-in member browsers, self sign-up settings and privacy requests. The one-time codes
the member page sends (sign-in codes, contact verifications) are `patron.members.models`'s:
whether a member's contact is verified is read below the member page (fraud controls)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


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
