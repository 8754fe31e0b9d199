"""Segments per program, and their materialised snapshots (the member ids a campaign targets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class Segment(Base):
    """A named definition (`patron.segments.definition.Definition` as JSON) in one program."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(200), default="")


class SegmentSnapshot(Base):
    """One materialisation of a segment: its definition then, the date it was evaluated as of,
    and how many members it held (the ids are in segment_snapshot_members)."""

    __tablename__ = "segment_snapshots"
    __table_args__ = (Index("ix_segment_snapshots_segment", "segment_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("segments.id"))
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    segment_version: Mapped[int] = mapped_column(Integer)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONType)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    taken_by: Mapped[str] = mapped_column(String(200))
    members: Mapped[int] = mapped_column(BigInteger)


class SegmentSnapshotMember(Base):
    """A member of a snapshot (insert-only; written by one INSERT … SELECT)."""

    __tablename__ = "segment_snapshot_members"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("segment_snapshots.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    segment_id: Mapped[int] = mapped_column(BigInteger)
