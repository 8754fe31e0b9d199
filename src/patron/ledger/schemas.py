from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Channel = Literal["pos", "online", "app"]
EntryKind = Literal["earn", "redeem", "expire", "adjust", "reverse"]
Amount = Decimal


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# A basket line as a till sends it: the sale path, coupons on a basket and rule examples read it.
class LineIn(Strict):
    id: str | None = Field(
        None,
        min_length=1,
        max_length=60,
        description="Line id for refunds by line; defaults to its position (1, 2, …).",
    )
    sku: str | None = Field(None, max_length=80)
    category: str | None = Field(None, max_length=80)
    quantity: Decimal = Field(Decimal(1), gt=0, le=1_000_000, max_digits=12, decimal_places=3)
    amount: Amount = Field(ge=0, le=Decimal("1e13"), max_digits=18, decimal_places=4)


class ExpireRequest(Strict):
    dry_run: bool = False


class Totals(BaseModel):
    balance: int = Field(description="Spendable now: available minus any debt.")
    available: int
    pending: int
    debt: int
    earned: int
    redeemed: int
    expired: int
    adjusted: int
    expiring_30_days: int


class AccountOut(BaseModel):
    program: str
    member_id: int
    totals: Totals
    as_of: datetime


class EntryOut(BaseModel):
    id: int
    kind: str
    points: int
    occurred_at: datetime
    created_at: datetime
    reason: str | None
    store: str | None
    channel: str | None
    external_ref: str | None
    actor: str
    reverses_entry_id: int | None
    rule_version: int | None
    breakdown: list[dict[str, Any]] | None
    details: dict[str, Any] | None


class EntryPage(BaseModel):
    items: list[EntryOut]
    next_cursor: str | None


class LotOut(BaseModel):
    id: int
    points: int
    remaining: int
    earned_at: datetime
    pending_until: datetime | None
    pending: bool
    expires_at: datetime | None


class ExpireOut(BaseModel):
    dry_run: bool
    lots: int
    points: int
    accounts: int
    released_lots: int
    released_points: int
    idempotency_keys_purged: int = 0
    rolled_lots: int = Field(
        0,
        description="Rolling expiry: lots past their own date kept, because their account was "
        "active within N, and moved to N after its latest activity",
    )
    rolled_accounts: int = Field(0, description="Accounts whose lots were moved so")
