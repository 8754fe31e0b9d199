"""Report roll-ups: exact daily sums of the ledger up to a watermark.

`report_daily` holds, for every entry with id ≤ the watermark in `report_watermarks`, its points
added into one row per (program, local day, local recording day, store, channel, tier). Reports
read these rows plus a live GROUP BY over the entries above the watermark, in one statement, so
they are exact at every moment (docs/reports.md, decision 0007).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Date, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, UTCDateTime

# The roll-up's key columns are NOT NULL so an upsert can find the row: "no store", "no channel"
# and "no tier" are stored as these values.
NO_STORE = 0
NO_CHANNEL = ""
NO_TIER = ""

MEASURES = (
    "earned",
    "reversed",
    "redeemed",
    "restored",
    "expired",
    "adjusted_in",
    "adjusted_out",
    "other",
    "entries",
    "earn_entries",
    "redeem_entries",
    "purchases",
    "sales_minor",
)


class ReportDaily(Base):
    """Sums of the entries of one program, local day, store, channel and tier.

    Points are magnitudes (all ≥ 0) except `other`, the signed sum of any entry kind a later
    version adds, so that net = earned − reversed − redeemed + restored − expired
    + adjusted_in − adjusted_out + other = Σ entries.points, always.
    """

    __tablename__ = "report_daily"
    __table_args__ = (
        UniqueConstraint(
            "program_id",
            "day",
            "recorded_day",
            "store_id",
            "channel",
            "tier",
            name="uq_report_daily_key",
        ),
        Index("ix_report_daily_program_recorded", "program_id", "recorded_day"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # No foreign keys: the roll-up is derived data and is rebuilt, never the source of truth.
    program_id: Mapped[int] = mapped_column(BigInteger)
    # The local date (program timezone) of occurred_at: when the points moved.
    day: Mapped[date] = mapped_column(Date)
    # The local date of created_at: when Patron wrote the entry (journal basis "recorded").
    recorded_day: Mapped[date] = mapped_column(Date)
    store_id: Mapped[int] = mapped_column(BigInteger)
    channel: Mapped[str] = mapped_column(String(10))
    # The member's tier just before the entry, from the tier history.
    tier: Mapped[str] = mapped_column(String(40))
    earned: Mapped[int] = mapped_column(BigInteger, default=0)
    reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    redeemed: Mapped[int] = mapped_column(BigInteger, default=0)
    restored: Mapped[int] = mapped_column(BigInteger, default=0)
    expired: Mapped[int] = mapped_column(BigInteger, default=0)
    adjusted_in: Mapped[int] = mapped_column(BigInteger, default=0)
    adjusted_out: Mapped[int] = mapped_column(BigInteger, default=0)
    other: Mapped[int] = mapped_column(BigInteger, default=0)
    entries: Mapped[int] = mapped_column(BigInteger, default=0)
    earn_entries: Mapped[int] = mapped_column(BigInteger, default=0)
    redeem_entries: Mapped[int] = mapped_column(BigInteger, default=0)
    purchases: Mapped[int] = mapped_column(BigInteger, default=0)
    sales_minor: Mapped[int] = mapped_column(BigInteger, default=0)


class ReportWatermark(Base):
    """Up to which entry id `report_daily` holds the sums (one row, name "entries")."""

    __tablename__ = "report_watermarks"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_entry_id: Mapped[int] = mapped_column(BigInteger, default=0)
    refreshed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
