"""Accounts, lots, entries and lot movements: the points ledger.

Entries and movements are append-only. Lots and accounts carry cached sums
(`remaining`, `available`, ...) updated in the same transaction as the rows
they summarise; `patron check` proves them equal.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    false,
    literal_column,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class Account(Base):
    """One member in one program, with cached totals."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("program_id", "member_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    available: Mapped[int] = mapped_column(BigInteger, default=0)
    pending: Mapped[int] = mapped_column(BigInteger, default=0)
    debt: Mapped[int] = mapped_column(BigInteger, default=0)
    earned: Mapped[int] = mapped_column(BigInteger, default=0)
    redeemed: Mapped[int] = mapped_column(BigInteger, default=0)
    expired: Mapped[int] = mapped_column(BigInteger, default=0)
    adjusted: Mapped[int] = mapped_column(BigInteger, default=0)
    # The member's tier code in this program; the rules engine reads it on every earn.
    tier: Mapped[str | None] = mapped_column(String(40))
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tier_valid_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by a manual change (an appeal): the tier is kept until then, per the program's policy.
    tier_manual_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    tier_manual: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Periods left in a downgrade grace (downgrade policy "grace").
    tier_grace_left: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Lot(Base):
    """Points from one credit, with their own expiry and pending date."""

    __tablename__ = "lots"
    __table_args__ = (
        Index(
            "ix_lots_account_open",
            "account_id",
            "expires_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
        Index(
            "ix_lots_expiry_open",
            "expires_at",
            postgresql_where=text("remaining > 0"),
            sqlite_where=text("remaining > 0"),
        ),
        Index(
            "ix_lots_pending",
            "pending_until",
            postgresql_where=text("pending"),
            sqlite_where=text("pending"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    points: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    earned_at: Mapped[datetime] = mapped_column(UTCDateTime)
    pending_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # True while the remainder counts as the account's pending, not its available points.
    pending: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Entry(Base):
    __tablename__ = "entries"
    __table_args__ = (
        Index("ix_entries_account_time", "account_id", "occurred_at", "id"),
        Index("ix_entries_program_time", "program_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    # earn | redeem | expire | adjust | reverse | merge_in | merge_out | transfer_in | transfer_out
    kind: Mapped[str] = mapped_column(String(20))
    points: Mapped[int] = mapped_column(BigInteger)
    # The part of `points` that counts towards tier qualification (tiers: metric "points").
    qualifying: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # The lot this entry created (earn, credit adjust) or expired (expire).
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("lots.id"), index=True)
    reverses_entry_id: Mapped[int | None] = mapped_column(ForeignKey("entries.id"), index=True)
    purchase_id: Mapped[int | None] = mapped_column(ForeignKey("purchases.id"), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str | None] = mapped_column(String(500))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    channel: Mapped[str | None] = mapped_column(String(10))
    actor: Mapped[str] = mapped_column(String(80))
    external_ref: Mapped[str | None] = mapped_column(String(120))
    rule_version: Mapped[int | None] = mapped_column(Integer)
    breakdown: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Movement(Base):
    """Points taken from (negative) or given back to (positive) a lot by an entry.

    A movement with no lot is debt: negative when a clawback found no points
    left, positive when a later credit settled it.
    """

    __tablename__ = "movements"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entries.id"), index=True)
    lot_id: Mapped[int | None] = mapped_column(ForeignKey("lots.id"), index=True)
    points: Mapped[int] = mapped_column(BigInteger)


class Purchase(Base):
    __tablename__ = "purchases"
    __table_args__ = (UniqueConstraint("program_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(120))
    store_id: Mapped[int | None] = mapped_column(ForeignKey("stores.id"))
    channel: Mapped[str] = mapped_column(String(10))
    payment_method: Mapped[str | None] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    # Each line: id, sku, category, quantity, amount_minor, points_earned, points_spent.
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    points_earned: Mapped[int] = mapped_column(BigInteger, default=0)
    points_spent: Mapped[int] = mapped_column(BigInteger, default=0)
    earn_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    redeem_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    refund_mode: Mapped[str | None] = mapped_column(String(10))  # amount | lines
    refunded_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    reversed_points: Mapped[int] = mapped_column(BigInteger, default=0)
    restored_points: Mapped[int] = mapped_column(BigInteger, default=0)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


class Refund(Base):
    __tablename__ = "refunds"
    __table_args__ = (UniqueConstraint("purchase_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    purchase_id: Mapped[int] = mapped_column(ForeignKey("purchases.id"), index=True)
    external_id: Mapped[str] = mapped_column(String(120))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    points_reversed: Mapped[int] = mapped_column(BigInteger, default=0)
    points_restored: Mapped[int] = mapped_column(BigInteger, default=0)
    points_written_off: Mapped[int] = mapped_column(BigInteger, default=0)
    # Points this refund did not take back because the purchase's own points had expired unspent.
    points_already_expired: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    request_hash: Mapped[str] = mapped_column(String(64))
    response: Mapped[dict[str, Any] | None] = mapped_column(JSONType)


def is_open(remaining: Any) -> Any:
    """`remaining > 0` with the 0 written into the SQL rather than bound. SQLite uses the
    partial indexes on open lots (`WHERE remaining > 0`) with a bound 0 only by looking at the
    value, and then compiles the statement again each time it is bound: the sale snapshot
    recompiled its largest statement on every sale (docs/benchmarks.md). Used there only: in the
    expiry job the literal let PostgreSQL pick a plan 1.75 × slower (200,000 lots, 4 runs)."""
    return remaining > literal_column("0")
