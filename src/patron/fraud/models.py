"""Fraud controls: a program's settings, the activity the velocity limits count and the review
queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class FraudSettings(Base):
    """A program's fraud controls (`patron.fraud.rules.FraudDoc`); no row: none."""

    __tablename__ = "fraud_settings"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(200), default="")


FIGURES = ("sales", "points", "redemptions")


class FraudActivity(Base):
    """One sale or redemption recorded in a program with fraud controls on: what the velocity
    limits and the duplicate check count (insert-only; no counter row every sale updates)."""

    __tablename__ = "fraud_activity"
    # Covering: a day's figures of a busy store or key are read from the index alone.
    __table_args__ = tuple(
        Index(f"ix_fraud_activity_{name}", "program_id", column, "at", *FIGURES)
        for name, column in (
            ("member", "member_id"),
            ("card", "card"),
            ("store", "store_id"),
            ("key", "key_id"),
        )
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)  # when it was recorded
    member_id: Mapped[int] = mapped_column(BigInteger)
    card: Mapped[str | None] = mapped_column(String(40))  # the card the member was named by
    store_id: Mapped[int | None] = mapped_column(BigInteger)
    key_id: Mapped[str | None] = mapped_column(String(40))  # the API key's id
    sales: Mapped[int] = mapped_column(Integer)  # 1 for a sale
    points: Mapped[int] = mapped_column(BigInteger)  # points the sale earned (held or not)
    redemptions: Mapped[int] = mapped_column(Integer)  # 1 for a sale spending points, a reward
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the sale happened
    purchase_id: Mapped[int | None] = mapped_column(BigInteger)
    external_id: Mapped[str | None] = mapped_column(String(120))


class FraudReview(Base):
    """A sale held for review: its earned points wait in a pending lot (no release date) until
    staff confirm (released) or reverse (taken back) it, with a reason."""

    __tablename__ = "fraud_reviews"
    __table_args__ = (
        Index("ix_fraud_reviews_queue", "program_id", "status", "id"),
        Index("uq_fraud_reviews_purchase", "purchase_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    member_id: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[int] = mapped_column(BigInteger)
    purchase_id: Mapped[int] = mapped_column(BigInteger)
    external_id: Mapped[str] = mapped_column(String(120))
    earn_entry_id: Mapped[int | None] = mapped_column(BigInteger)
    lot_id: Mapped[int | None] = mapped_column(BigInteger)
    points: Mapped[int] = mapped_column(BigInteger)  # held when opened
    code: Mapped[str] = mapped_column(String(60))  # the first reason
    reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)  # every reason, with figures
    status: Mapped[str] = mapped_column(String(10))  # open | confirmed | reversed
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    released_points: Mapped[int] = mapped_column(BigInteger, default=0)
    reversed_points: Mapped[int] = mapped_column(BigInteger, default=0)
