"""Request and answer bodies of the rewards API. Money is a Decimal in the program's currency
(stored in its minor unit); points are integers."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from patron.coupons.schemas import BasketCheck, Money, sane_instant
from patron.members.schemas import MemberRef
from patron.programs.schemas import CODE_PATTERN

RewardKind = Literal[
    "goods",
    "service",
    "free_product",
    "fixed_discount",
    "percent_discount",
    "gift_card",
    "external",
]
RewardStatus = Literal["active", "paused", "archived"]
CouponStatus = Literal["issued", "used", "expired", "cancelled"]
RedeemChannel = Literal["pos", "online", "app", "portal", "admin"]
LANGUAGES = ("ko", "zh", "en")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


MemberId = Annotated[int, Field(ge=1, le=2**53)]


# What a reward's names and descriptions are keyed and limited by (before stripping).
Language = Annotated[str, Field(max_length=10)]
Text = Annotated[str, Field(max_length=2000)]


def _texts(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    unknown = set(value) - set(LANGUAGES)
    if unknown:
        raise ValueError(f"languages are ko, zh and en; not {', '.join(sorted(unknown))}")
    cleaned = {k: v.strip() for k, v in value.items() if v and v.strip()}
    if any(len(v) > 2000 for v in cleaned.values()):
        raise ValueError("at most 2,000 characters per language")
    return cleaned


class RewardFields(Strict):
    """Everything about a reward that can change after it is created."""

    status: RewardStatus | None = None
    names: dict[Language, Text] | None = Field(None, description='Per language: {"ko": …, "en": …}')
    descriptions: dict[Language, Text] | None = None
    image_url: str | None = Field(None, max_length=500, pattern=r"^(https?://\S+|/[^/\s]\S*)$")
    points_cost: int | None = Field(None, ge=0, le=10**12)
    tier_costs: dict[str, int] | None = Field(
        None, description='A different price per tier: {"gold": 1200}'
    )
    value: Money | None = Field(
        None,
        ge=0,
        le=Decimal("1e13"),
        decimal_places=4,
        description="What one unit costs the program.",
    )
    discount: Money | None = Field(
        None, ge=0, le=Decimal("1e13"), decimal_places=4, description="fixed_discount: money off."
    )
    percent: Decimal | None = Field(None, gt=0, le=100, max_digits=6, decimal_places=3)
    cap: Money | None = Field(
        None,
        ge=0,
        le=Decimal("1e13"),
        decimal_places=4,
        description="percent_discount: at most this off.",
    )
    min_spend: Money | None = Field(
        None,
        ge=0,
        le=Decimal("1e13"),
        decimal_places=4,
        description="Basket total needed to use it.",
    )
    sku: str | None = Field(None, min_length=1, max_length=80)
    gift_value: Money | None = Field(
        None, ge=0, le=Decimal("1e13"), decimal_places=4, description="gift_card: the balance."
    )
    valid_days: int | None = Field(None, ge=1, le=3650)
    valid_until: AwareDatetime | None = None
    available_from: AwareDatetime | None = None
    available_until: AwareDatetime | None = None
    limit_per_day: int | None = Field(None, ge=1, le=1_000_000)
    limit_per_month: int | None = Field(None, ge=1, le=1_000_000)
    limit_ever: int | None = Field(None, ge=1, le=1_000_000)
    tiers: list[Annotated[str, Field(max_length=40)]] | None = Field(None, max_length=50)
    stores: list[Annotated[str, Field(max_length=40)]] | None = Field(None, max_length=500)
    channels: list[RedeemChannel] | None = Field(None, max_length=5)
    segments: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]] | None = Field(
        None,
        max_length=50,
        description="Only members in at least one of these segments (codes), at the time of "
        "redeeming, may redeem it; empty: everyone. As the earning rules' `segments` condition.",
    )
    exclusive: bool | None = None
    stack_group: str | None = Field(None, min_length=1, max_length=40)
    max_per_order: int | None = Field(None, ge=1, le=100)
    earn_on_discounted: bool | None = None
    combine_with_points: bool | None = None
    on_expiry: Literal["forfeit", "refund"] | None = None
    on_refund: Literal["restore", "keep"] | None = None

    _names = field_validator("names", "descriptions")(_texts)
    _instants = field_validator("valid_until", "available_from", "available_until")(sane_instant)

    @field_validator("tier_costs")
    @classmethod
    def _costs(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and any(
            not (0 <= v <= 10**12) or not k or len(k) > 40 for k, v in value.items()
        ):
            raise ValueError("tier prices are whole points from 0, by tier code")
        return value


class RewardCreate(RewardFields):
    code: str = Field(pattern=CODE_PATTERN, description="Unique in the program, e.g. americano")
    kind: RewardKind
    names: dict[Language, Text] = Field(description='Per language, at least one: {"ko": …}')
    points_cost: int = Field(ge=0, le=10**12)
    stock: int | None = Field(None, ge=0, le=10**9, description="Units on hand; none: unlimited")

    @model_validator(mode="after")
    def _complete(self) -> RewardCreate:
        if not self.names:
            raise ValueError("give the reward a name in at least one language")
        return self


class RewardUpdate(RewardFields):
    """Fields to change; the others keep their value. `null` clears an optional field."""


class StockChange(Strict):
    delta: int = Field(ge=-(10**9), le=10**9, description="Units added (+) or removed (−)")
    note: str | None = Field(None, max_length=500)

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("delta must not be 0")
        return value


class RewardOut(BaseModel):
    code: str
    kind: str
    status: str
    version: int
    names: dict[str, str]
    descriptions: dict[str, str]
    image_url: str | None
    points_cost: int
    tier_costs: dict[str, int]
    value: Decimal
    discount: Decimal | None
    percent: Decimal | None
    cap: Decimal | None
    min_spend: Decimal
    sku: str | None
    gift_value: Decimal | None
    stock: int | None = Field(description="Units left; null is unlimited")
    valid_days: int | None
    valid_until: datetime | None
    available_from: datetime | None
    available_until: datetime | None
    limit_per_day: int | None
    limit_per_month: int | None
    limit_ever: int | None
    tiers: list[str]
    stores: list[str]
    channels: list[str]
    segments: list[str] = Field(
        description="Segments (codes) a member must be in one of to redeem; empty: everyone"
    )
    exclusive: bool
    stack_group: str | None
    max_per_order: int
    earn_on_discounted: bool
    combine_with_points: bool
    on_expiry: str
    on_refund: str
    created_at: datetime
    updated_at: datetime


class RewardVersionOut(BaseModel):
    version: int
    actor: str
    created_at: datetime
    document: dict[str, Any]


class CatalogItem(BaseModel):
    """A reward as one member sees it: their price and whether they can redeem it now."""

    reward: RewardOut
    price: int
    redeemable: bool
    reason: str | None = Field(None, description="Why not, as an error code (e.g. out_of_stock)")
    detail: str | None = None


class RedeemRequest(Strict):
    member: MemberRef
    quantity: int = Field(1, ge=1, le=20)
    store: str | None = Field(None, pattern=CODE_PATTERN)
    channel: RedeemChannel = "pos"


class CouponOut(BaseModel):
    code: str = Field(description="As printed: 7KQM-3X9P-DV2T-H8WC-R")
    reward: str
    kind: str
    status: str
    member_id: int | None
    source: str
    campaign: str | None
    points: int
    value: Decimal
    balance: Decimal | None = Field(description="gift_card: what is left to spend")
    issued_at: datetime
    expires_at: datetime | None
    used_at: datetime | None
    used_store: str | None
    used_order: str | None
    qr_svg: str = Field(description="The coupon's QR code as SVG (GET)")
    qr_png: str = Field(description="The coupon's QR code as PNG (GET)")
    offline_token: str | None = Field(
        None,
        description="While the coupon can be used: the signed token its QR code carries, which a "
        "till can verify offline with the program's public keys",
    )


class RedemptionOut(BaseModel):
    id: int
    reward: str
    member_id: int
    quantity: int
    points: int
    entry_id: int | None
    balance: int = Field(description="The member's spendable points afterwards")
    coupons: list[CouponOut]
    created_at: datetime


class CouponEventOut(BaseModel):
    kind: str
    at: datetime
    actor: str
    store: str | None
    order: str | None
    amount: Decimal | None
    offline: bool
    reason: str | None


class CouponDetail(CouponOut):
    history: list[CouponEventOut]


class ValidateRequest(BasketCheck):
    code: str = Field(min_length=4, max_length=1000, description="A code or an offline token")


class ValidateOut(BaseModel):
    code: str
    usable: bool
    reason: str | None = Field(None, description="Why not, as an error code")
    detail: str | None = None
    reward: str | None = None
    kind: str | None = None
    discount: Decimal = Field(Decimal(0), description="Money off this basket")
    sku: str | None = Field(None, description="free_product: the product handed over")
    balance: Decimal | None = None


class UseOut(BaseModel):
    coupon: CouponOut
    order: str
    discount: Decimal
    sku: str | None = None
    replayed: bool = False


class CancelRequest(Strict):
    reason: str = Field(min_length=1, max_length=500)


class CancelOut(BaseModel):
    coupon: CouponOut
    points_returned: int
    points_expired_again: int = Field(
        description="Returned points whose lots had expired meanwhile, expired again"
    )
    balance: int | None


class BulkIssueRequest(Strict):
    members: list[MemberId] = Field(min_length=1, max_length=10_000)
    campaign: str | None = Field(None, max_length=80)


class ImportRequest(Strict):
    codes: list[Annotated[str, Field(max_length=64)]] = Field(min_length=1, max_length=10_000)
    members: list[MemberId] | None = Field(
        None, max_length=10_000, description="The member of each code, in the same order (optional)"
    )
    campaign: str | None = Field(None, max_length=80)

    @model_validator(mode="after")
    def _same_length(self) -> ImportRequest:
        if self.members is not None and len(self.members) != len(self.codes):
            raise ValueError("members must list one member per code")
        return self


class IssueOut(BaseModel):
    issued: int
    coupons: list[CouponOut]
