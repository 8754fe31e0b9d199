from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class AuditRecord(Base):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_subject", "subject_type", "subject_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(80))
    action: Mapped[str] = mapped_column(String(60))
    subject_type: Mapped[str] = mapped_column(String(30))
    subject_id: Mapped[str] = mapped_column(String(60))
    program_id: Mapped[int | None] = mapped_column(BigInteger)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class IdempotencyKey(Base):
    """The first answer to a write, replayed for a retry with the same key."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("uq_idempotency_keys_actor_key", "actor", "key", unique=True),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    actor: Mapped[str] = mapped_column(String(80))
    key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(BigInteger)
    response: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditSeal(Base):
    """One sealed block of the audit log, chained to the seal before it (patron.audit.chain).

    `entries` lists every record the block holds, in id order, as `id program digest` lines;
    `hash` commits to them, to the id range (from_id, to_id] and to `prev_hash`. The unique
    seq and prev_hash are what stop two sealers from forking the chain: the second insert of
    a seq fails and that sealer starts again from the new head."""

    __tablename__ = "audit_seals"
    __table_args__ = (
        Index("uq_audit_seals_seq", "seq", unique=True),
        Index("uq_audit_seals_prev_hash", "prev_hash", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    from_id: Mapped[int] = mapped_column(BigInteger)  # exclusive: the previous seal's to_id
    to_id: Mapped[int] = mapped_column(BigInteger)  # inclusive
    record_count: Mapped[int] = mapped_column(BigInteger)
    entries: Mapped[str] = mapped_column(Text)
    sealed_at: Mapped[datetime] = mapped_column(UTCDateTime)
