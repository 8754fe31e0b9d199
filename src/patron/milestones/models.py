"""Milestones (a program's goals) and achievements (who reached which goal, for which period).

An achievement is unique per (milestone, member, period): `period` is "ever" for a goal
reached once, or the program-local month ("2027-01") for a goal repeated every month. The
evaluation job inserts with ON CONFLICT DO NOTHING, so concurrent runs award once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class Milestone(Base):
    __tablename__ = "milestones"
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10))  # active | archived
    kind: Mapped[str] = mapped_column(String(20))  # visits | spend | points | stores | streak
    target: Mapped[int] = mapped_column(BigInteger)  # stores: 0 = every listed/program store
    stores: Mapped[list[str]] = mapped_column(JSONType)  # kind stores: which ones (empty: all)
    window: Mapped[str] = mapped_column(String(10))  # ever | month | rolling
    window_days: Mapped[int | None] = mapped_column(Integer)  # rolling only
    repeat: Mapped[bool] = mapped_column(default=False)  # month only: once per month
    names: Mapped[dict[str, str]] = mapped_column(JSONType)  # language -> badge name
    descriptions: Mapped[dict[str, str]] = mapped_column(JSONType)
    points: Mapped[int] = mapped_column(BigInteger)  # reward; 0: none
    reward: Mapped[str | None] = mapped_column(String(40))  # a reward's code: a coupon of it
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(200))


class MilestoneAchievement(Base):
    __tablename__ = "milestone_achievements"
    __table_args__ = (
        UniqueConstraint("milestone_id", "member_id", "period"),
        Index("ix_milestone_achievements_member", "member_id", "achieved_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    milestone_id: Mapped[int] = mapped_column(ForeignKey("milestones.id"))
    program_id: Mapped[int] = mapped_column(BigInteger)
    member_id: Mapped[int] = mapped_column(BigInteger)
    period: Mapped[str] = mapped_column(String(10))  # ever | YYYY-MM
    value: Mapped[int] = mapped_column(BigInteger)  # the figure that reached the target
    achieved_at: Mapped[datetime] = mapped_column(UTCDateTime)
    points: Mapped[int] = mapped_column(BigInteger, default=0)  # credited
    entry_id: Mapped[int | None] = mapped_column(BigInteger)  # the ledger's adjust entry
    coupon_id: Mapped[int | None] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(200))  # why a reward was not given

    def detail(self) -> dict[str, Any]:
        return {"period": self.period, "value": self.value, "points": self.points}
