from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.config_version import ProgramConfiguration
from patron.db.types import BigIntPK, DecimalText, JSONType, UTCDateTime


class Program(ProgramConfiguration, Base):
    __tablename__ = "programs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    currency: Mapped[str] = mapped_column(String(3))
    timezone: Mapped[str] = mapped_column(String(64))
    country: Mapped[str] = mapped_column(String(2))
    # Money value of one point, in the program's currency (1 point = 1 KRW).
    point_value: Mapped[Decimal] = mapped_column(DecimalText)
    # Base earning rate: `earn_points` for each `earn_per_amount` of currency.
    earn_mode: Mapped[str] = mapped_column(String(20))  # per_full_unit | proportional
    earn_points: Mapped[int] = mapped_column(Integer)
    earn_per_amount: Mapped[Decimal] = mapped_column(DecimalText)
    earn_rounding: Mapped[str] = mapped_column(String(10))  # down | half_up | up
    earn_on_redeemed: Mapped[bool] = mapped_column(Boolean, default=False)
    expiry_kind: Mapped[str] = mapped_column(
        String(20)
    )  # none | months | end_of_month | end_of_year | days
    expiry_months: Mapped[int] = mapped_column(Integer, default=0)
    # N of the `days` policy (1..3650); null for every other kind (migration 0016).
    expiry_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    pending_days: Mapped[int] = mapped_column(Integer, default=0)
    redeem_min_points: Mapped[int] = mapped_column(Integer, default=0)
    redeem_step: Mapped[int] = mapped_column(Integer, default=1)
    redeem_max_share: Mapped[Decimal] = mapped_column(DecimalText)
    negative_balance: Mapped[str] = mapped_column(String(20))  # allow_debt | write_off
    rule_version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    def configured_program_id(self) -> int | None:
        return self.id


class Store(ProgramConfiguration, Base):
    __tablename__ = "stores"
    __table_args__ = (UniqueConstraint("program_id", "code"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    code: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProgramBranding(Base):
    """A program's branding document (patron.programs.branding.Branding); none means defaults."""

    __tablename__ = "program_brandings"

    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"), primary_key=True)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
