from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from patron.money import MINOR_UNITS

CODE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,39}$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EarningRate(Strict):
    """`points` for each `per_amount` of the program currency."""

    mode: Literal["per_full_unit", "proportional"] = Field(
        "per_full_unit",
        description="per_full_unit: points for each *full* per_amount (25,800 KRW → 25 × 10); "
        "proportional: points × amount ÷ per_amount, rounded by `rounding`.",
    )
    points: int = Field(ge=0, le=1_000_000)
    per_amount: Decimal = Field(gt=0, max_digits=18, decimal_places=4)
    rounding: Literal["down", "half_up", "up"] = "down"


ExpiryKind = Literal["none", "months", "end_of_month", "end_of_year", "days", "rolling"]


class ExpiryPolicy(Strict):
    kind: ExpiryKind = Field(
        "months",
        description="months: valid through the day N months after earning; end_of_month / "
        "end_of_year: through the end of the month / year N months after earning; days: "
        "through the local day `days` days after earning; rolling: every activity (points "
        "earned or spent) moves all the member's open points to N after the latest activity "
        "(`days` when given, else `months`); none: never expire. Every day is a local day in "
        "the program's timezone.",
    )
    months: int = Field(12, ge=0, le=600, description="N for the month-based kinds")
    days: int | None = Field(
        None,
        ge=1,
        le=3650,
        description="N for kind `days` (required then); for `rolling`, N in days instead of "
        "months (optional); not allowed with any other kind",
    )

    @model_validator(mode="after")
    def _n_needed(self) -> ExpiryPolicy:
        if self.kind == "months" and self.months < 1:
            raise ValueError("expiry.months must be at least 1 when kind is 'months'")
        if self.kind == "days" and self.days is None:
            raise ValueError("expiry.days (1 to 3650) is required when kind is 'days'")
        if self.kind == "rolling" and self.days is None and self.months < 1:
            raise ValueError(
                "expiry.months must be at least 1 when kind is 'rolling' without expiry.days"
            )
        if self.kind not in ("days", "rolling") and self.days is not None:
            raise ValueError(
                f"expiry.days applies only when kind is 'days' or 'rolling' (kind is {self.kind!r})"
            )
        return self


class RedemptionPolicy(Strict):
    min_points: int = Field(0, ge=0, le=100_000_000)
    step: int = Field(1, ge=1, le=1_000_000)
    max_share: Decimal = Field(
        Decimal(1),
        gt=0,
        le=1,
        max_digits=5,
        decimal_places=4,
        description="Largest share of a bill payable with points (0.5 = half).",
    )


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA timezone {value!r}") from None
    return value


class ProgramCreate(Strict):
    code: str = Field(pattern=CODE_PATTERN, description="Short identifier used in URLs.")
    name: str = Field(min_length=1, max_length=200)
    currency: str = Field(
        min_length=3,
        max_length=3,
        description="ISO 4217 code; decides the amount's decimal places.",
    )
    timezone: str = Field(
        "UTC", max_length=64, description="IANA timezone for dates, days and expiry."
    )
    country: str | None = Field(
        None, max_length=2, description="ISO 3166 region for local phone numbers."
    )
    point_value: Decimal = Field(Decimal(1), gt=0, max_digits=18, decimal_places=6)
    earning: EarningRate
    earn_on_redeemed: bool = False
    expiry: ExpiryPolicy = ExpiryPolicy()
    pending_days: int = Field(0, ge=0, le=365)
    redemption: RedemptionPolicy = RedemptionPolicy()
    negative_balance: Literal["allow_debt", "write_off"] = Field(
        "allow_debt",
        description="When a refund takes back points already spent: allow_debt leaves a debt "
        "that later earnings pay off; write_off takes what is left and forgives the rest.",
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        if value not in MINOR_UNITS:
            raise ValueError(f"unsupported currency {value!r}; use an ISO 4217 code such as KRW")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        return _check_timezone(value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z]{2}", value):
            raise ValueError("country must be two upper-case letters (ISO 3166-1), e.g. KR")
        return value


class ProgramUpdate(Strict):
    name: str | None = Field(None, min_length=1, max_length=200)
    timezone: str | None = Field(None, max_length=64)
    country: str | None = Field(None, max_length=2)
    point_value: Decimal | None = Field(None, gt=0, max_digits=18, decimal_places=6)
    earning: EarningRate | None = None
    earn_on_redeemed: bool | None = None
    expiry: ExpiryPolicy | None = None
    pending_days: int | None = Field(None, ge=0, le=365)
    redemption: RedemptionPolicy | None = None
    negative_balance: Literal["allow_debt", "write_off"] | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return None if value is None else _check_timezone(value)

    @field_validator("country")
    @classmethod
    def _country(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Z]{2}", value):
            raise ValueError("country must be two upper-case letters (ISO 3166-1), e.g. KR")
        return value


class ProgramOut(BaseModel):
    code: str
    name: str
    currency: str
    timezone: str
    country: str
    point_value: Decimal
    earning: EarningRate
    earn_on_redeemed: bool
    expiry: ExpiryPolicy
    pending_days: int
    redemption: RedemptionPolicy
    negative_balance: str
    rule_version: int
    created_at: datetime
    updated_at: datetime


class StoreCreate(Strict):
    code: str = Field(pattern=CODE_PATTERN)
    name: str = Field(min_length=1, max_length=200)


class StoreOut(BaseModel):
    code: str
    name: str
    active: bool
