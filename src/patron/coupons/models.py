"""The rewards catalog, its versions and stock, redemptions, coupons and their history.

A reward is what points buy (a free americano, 5,000 KRW off). Redeeming it writes one ledger
redeem entry (through patron.ledger.service), takes stock by SQL expression, and issues one
coupon per unit; a coupon is what the member shows at the till. Everything here is appended or
moves forward through states; stock is the sum of its moves, which `patron check` proves.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, DecimalText, JSONType, UTCDateTime

# What a reward gives. goods/service: handed over at the till; free_product: one unit of `sku`
# on the basket; fixed_discount / percent_discount: money off the basket; gift_card: a stored
# money value spent over several sales; external: fulfilled by another system (a partner's
# points, a ticket), which learns of it from the reward.redeemed webhook.
REWARD_KINDS = (
    "goods",
    "service",
    "free_product",
    "fixed_discount",
    "percent_discount",
    "gift_card",
    "external",
)
# Kinds that change what the basket costs at the till.
BASKET_KINDS = ("free_product", "fixed_discount", "percent_discount", "gift_card")
COUPON_STATES = ("issued", "used", "expired", "cancelled")


class Reward(Base):
    """One catalog item, at its current version (older versions are in reward_versions)."""

    __tablename__ = "rewards"
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10))  # active | paused | archived
    version: Mapped[int] = mapped_column(Integer)
    # Names and descriptions per language: {"ko": "...", "zh": "...", "en": "..."}.
    names: Mapped[dict[str, str]] = mapped_column(JSONType)
    descriptions: Mapped[dict[str, str]] = mapped_column(JSONType)
    image_url: Mapped[str | None] = mapped_column(String(500))
    points_cost: Mapped[int] = mapped_column(BigInteger)
    tier_costs: Mapped[dict[str, int]] = mapped_column(JSONType)  # {"gold": 1200}
    # What one unit costs the program, in the currency's minor unit (liability, reports).
    value_minor: Mapped[int] = mapped_column(BigInteger)
    # The effect at the till (by kind): money off, percent (with a cap), a product, a balance.
    discount_minor: Mapped[int | None] = mapped_column(BigInteger)
    percent: Mapped[Decimal | None] = mapped_column(DecimalText)
    cap_minor: Mapped[int | None] = mapped_column(BigInteger)
    min_spend_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    sku: Mapped[str | None] = mapped_column(String(120))
    # Stock: None is unlimited. stock_left is the sum of reward_stock_moves, changed by SQL
    # expression (`stock_left - q WHERE stock_left >= q`) so two redemptions never both get
    # the last unit.
    stock_left: Mapped[int | None] = mapped_column(BigInteger)
    # Issued coupons are valid for `valid_days` local days after issue, and never past
    # `valid_until`; at least one of them is set for kinds that issue coupons.
    valid_days: Mapped[int | None] = mapped_column(Integer)
    valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    available_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    available_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    limit_per_day: Mapped[int | None] = mapped_column(Integer)
    limit_per_month: Mapped[int | None] = mapped_column(Integer)
    limit_ever: Mapped[int | None] = mapped_column(Integer)
    # Eligibility; an empty list is everyone / everywhere.
    tiers: Mapped[list[str]] = mapped_column(JSONType)
    stores: Mapped[list[str]] = mapped_column(JSONType)
    channels: Mapped[list[str]] = mapped_column(JSONType)
    # Segments (codes): the member is in at least one of them when redeeming, live, as the
    # earning rules' `segments` condition reads them (docs/rewards.md, "Segments").
    segments: Mapped[list[str]] = mapped_column(JSONType, default=list, server_default=text("'[]'"))
    # Stacking (docs/rewards.md): an exclusive coupon is used alone; others combine within
    # their group; at most max_per_order of this reward per order.
    exclusive: Mapped[bool] = mapped_column(Boolean, default=False)
    stack_group: Mapped[str | None] = mapped_column(String(40))
    max_per_order: Mapped[int] = mapped_column(Integer, default=1)
    earn_on_discounted: Mapped[bool] = mapped_column(Boolean, default=False)
    combine_with_points: Mapped[bool] = mapped_column(Boolean, default=True)
    # When an issued coupon expires unused: forfeit (points stay spent) or refund the points.
    on_expiry: Mapped[str] = mapped_column(String(10))
    # When the order a coupon was used on is refunded: restore the coupon, or keep it used.
    on_refund: Mapped[str] = mapped_column(String(10))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RewardVersion(Base):
    """A reward as it was saved: every change is a new version (as with rule sets)."""

    __tablename__ = "reward_versions"
    __table_args__ = (UniqueConstraint("reward_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    actor: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StockMove(Base):
    """One change of a reward's stock: restock (+), redeem (−), cancel (+), correction (±)."""

    __tablename__ = "reward_stock_moves"
    __table_args__ = (Index("ix_reward_stock_moves_reward", "reward_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    delta: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(20))  # restock | redeem | cancel | correction
    redemption_id: Mapped[int | None] = mapped_column(ForeignKey("redemptions.id"))
    coupon_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id"))
    actor: Mapped[str] = mapped_column(String(80))
    note: Mapped[str | None] = mapped_column(String(500))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Redemption(Base):
    """A member spent points on `quantity` units of a reward: one ledger redeem entry."""

    __tablename__ = "redemptions"
    __table_args__ = (
        Index("ix_redemptions_member_reward", "member_id", "reward_id", "created_at"),
        Index("ix_redemptions_program_at", "program_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    reward_version: Mapped[int] = mapped_column(Integer)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    quantity: Mapped[int] = mapped_column(Integer)
    points: Mapped[int] = mapped_column(BigInteger)  # all units together
    value_minor: Mapped[int] = mapped_column(BigInteger)  # all units together
    entry_id: Mapped[int | None] = mapped_column(ForeignKey("entries.id"))  # None when 0 points
    tier: Mapped[str | None] = mapped_column(String(40))  # the tier whose price applied
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    channel: Mapped[str | None] = mapped_column(String(10))
    actor: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Coupon(Base):
    """One usable unit: issued by a redemption, bulk-issued to members, or imported.

    `code` is what the member types or the till scans (normalised: upper case, no dashes)."""

    __tablename__ = "coupons"
    __table_args__ = (
        UniqueConstraint("code"),
        Index("ix_coupons_member", "member_id", "id"),
        Index("ix_coupons_reward_status", "reward_id", "status"),
        Index(
            "ix_coupons_open_expiry",
            "expires_at",
            postgresql_where=text("status = 'issued'"),
            sqlite_where=text("status = 'issued'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    reward_id: Mapped[int] = mapped_column(ForeignKey("rewards.id"))
    redemption_id: Mapped[int | None] = mapped_column(ForeignKey("redemptions.id"))
    member_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))
    code: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(10))  # redeem | bulk | import
    campaign: Mapped[str | None] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(10))
    points: Mapped[int] = mapped_column(BigInteger)  # this unit's share of the redemption
    # Points given back when it was cancelled, or expired on a reward that refunds on expiry.
    points_returned: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    value_minor: Mapped[int] = mapped_column(BigInteger)
    # Gift cards: what is left to spend (minor unit); None for other kinds.
    balance_minor: Mapped[int | None] = mapped_column(BigInteger)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    used_store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    used_order: Mapped[str | None] = mapped_column(String(120))
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # used, expired, cancelled
    reissued_from_id: Mapped[int | None] = mapped_column(ForeignKey("coupons.id"))


class CouponEvent(Base):
    """A coupon's history: issued, used (or part-used, for gift cards), expired, cancelled,
    restored (its order was refunded), reissued, and double uses found when offline tills
    synced (`conflict`), which are reported and never accepted."""

    __tablename__ = "coupon_events"
    __table_args__ = (
        Index("ix_coupon_events_coupon", "coupon_id", "id"),
        # One use per coupon and order: a till that retries gets the first answer.
        Index(
            "ux_coupon_events_use",
            "coupon_id",
            "order_ref",
            unique=True,
            postgresql_where=text("kind = 'used'"),
            sqlite_where=text("kind = 'used'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    coupon_id: Mapped[int] = mapped_column(ForeignKey("coupons.id"))
    kind: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(80))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    order_ref: Mapped[str | None] = mapped_column(String(120))
    amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
