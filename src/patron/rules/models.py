from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.config_version import ProgramConfiguration
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class RuleSetVersion(ProgramConfiguration, Base):
    """One immutable version of a program's rule set; the program points at the current one."""

    __tablename__ = "rule_sets"
    __table_args__ = (UniqueConstraint("program_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    note: Mapped[str | None] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PromotionBudget(Base):
    """Points a budgeted promotion has given so far (locked while an earn uses it)."""

    __tablename__ = "promotion_budgets"
    __table_args__ = (UniqueConstraint("program_id", "rule_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    rule_id: Mapped[str] = mapped_column(String(60))
    used: Mapped[int] = mapped_column(BigInteger, default=0)


class EventClaim(Base):
    """A limited event already credited to an account in a period (`event:birthday:2026`)."""

    __tablename__ = "event_claims"
    __table_args__ = (UniqueConstraint("account_id", "period_key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    period_key: Mapped[str] = mapped_column(String(120))
    entry_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class RuleExample(Base):
    """A sale a marketer wrote down with the points it must earn ("a 25,800 KRW sale by a basic
    member earns 250"): every preview, publish and `patron rules test` runs it."""

    __tablename__ = "rule_examples"
    __table_args__ = (UniqueConstraint("program_id", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    name: Mapped[str] = mapped_column(String(120))
    sale: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the basket and when it happens
    member: Mapped[dict[str, Any]] = mapped_column(JSONType)  # who buys: tier, attributes, …
    expected_points: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(500))
    actor: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
