"""A campaign (its segment, schedule, budget and arms) and its members: one row per member and
campaign, which arm the member is in and what the member was given (the key that makes giving
idempotent)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class Campaign(Base):
    """`arms` holds the variants as JSON (`patron.campaigns.schemas.Variant`): key, name, share
    and action; the control is the holdout (`holdout_pct` of the members, given nothing)."""

    __tablename__ = "campaigns"
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10))  # draft | scheduled | running | stopped | ended
    segment: Mapped[str] = mapped_column(String(40))  # the segment's code
    targeting: Mapped[str] = mapped_column(String(10))  # snapshot | live
    snapshot_id: Mapped[int | None] = mapped_column(BigInteger)
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    budget_points: Mapped[int | None] = mapped_column(BigInteger)  # None: no limit
    budget_coupons: Mapped[int | None] = mapped_column(BigInteger)
    holdout_pct: Mapped[int] = mapped_column(Integer)
    arms: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    points_given: Mapped[int] = mapped_column(BigInteger, default=0)
    coupons_given: Mapped[int] = mapped_column(BigInteger, default=0)
    launched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    launched_by: Mapped[str | None] = mapped_column(String(200))
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(200))


class CampaignMember(Base):
    """A member's arm in a campaign (`control` or a variant key) and what the member got:
    outcome assigned (nothing yet) | reached | no_budget | refused (the account took no points)
    | none (the control, or an arm without an action). A rule arm's members are `reached` at
    assignment: from then on they earn by its rules."""

    __tablename__ = "campaign_members"
    __table_args__ = (Index("ix_campaign_members_arm", "campaign_id", "arm", "outcome"),)

    campaign_id: Mapped[int] = mapped_column(ForeignKey("campaigns.id"), primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger)
    arm: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(10))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    points: Mapped[int] = mapped_column(BigInteger, default=0)
    # What the arm's earning rules (a rule experiment) added to the member's sales, net of the
    # program's own rules: counted by each sale, as the campaign runs.
    rule_points: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # When the member's campaign.offer event was written (an arm with `message`), once.
    messaged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    entry_id: Mapped[int | None] = mapped_column(BigInteger)
    coupon_id: Mapped[int | None] = mapped_column(BigInteger)
