"""What the sale calls take and answer: baskets, purchases, quotes, refunds, adjustments and
batches (the ledger's own shapes, entries and totals, are in `patron.ledger.schemas`)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from patron.ledger.schemas import Amount, Channel, EntryOut, LineIn, Strict, Totals
from patron.members.schemas import MemberRef

# As long as a coupon code is stored (coupons.models.Coupon.code).
CouponCode = Annotated[str, Field(max_length=64)]


class BasketIn(Strict):
    amount: Amount = Field(
        gt=0,
        le=Decimal("1e13"),
        max_digits=18,
        decimal_places=4,
        description="Bill total in the program currency, before points are applied.",
    )
    currency: str | None = Field(
        None, max_length=3, description="If given, must be the program's currency."
    )
    lines: list[LineIn] = Field(
        default_factory=list,
        min_length=1,
        max_length=500,
        description="The basket's lines, if the till sends them: at least one, adding up to "
        "`amount` (422 otherwise). Without lines the sale earns on `amount` as one line.",
    )
    store: str | None = Field(None, max_length=40)
    channel: Channel = "pos"
    payment_method: str | None = Field(
        None,
        min_length=1,
        max_length=40,
        description="e.g. card, cash, gift_card; rules may depend on it",
    )


class QuoteRequest(BasketIn):
    member: MemberRef
    points_to_spend: int = Field(0, ge=0, le=10**12)
    coupons: list[CouponCode] = Field(
        default_factory=list,
        max_length=10,
        description="Coupon codes presented with this basket (printed or scanned).",
    )


class PurchaseRequest(BasketIn):
    external_id: str = Field(min_length=1, max_length=120, description="The till's order id.")
    member: MemberRef
    occurred_at: AwareDatetime | None = Field(
        None, description="When the sale happened; default now."
    )
    points_to_spend: int = Field(0, ge=0, le=10**12)
    coupons: list[CouponCode] = Field(
        default_factory=list,
        max_length=10,
        description="Coupons to use on this sale, all or none (quote first to find the best).",
    )


class RefundLineIn(Strict):
    id: str = Field(min_length=1, max_length=60)
    quantity: Decimal = Field(gt=0, le=1_000_000, max_digits=12, decimal_places=3)


class RefundRequest(Strict):
    refund_id: str = Field(
        min_length=1,
        max_length=120,
        description="The till's id for this refund; a replay returns the first answer.",
    )
    amount: Amount | None = Field(None, gt=0, le=Decimal("1e13"), max_digits=18, decimal_places=4)
    lines: list[RefundLineIn] | None = Field(None, min_length=1, max_length=500)
    full: bool = Field(False, description="Refund everything not yet refunded.")
    occurred_at: AwareDatetime | None = None

    @model_validator(mode="after")
    def _one_mode(self) -> RefundRequest:
        given = sum(x for x in (self.amount is not None, self.lines is not None, self.full))
        if given != 1:
            raise ValueError("give exactly one of amount, lines or full=true")
        return self


class AdjustRequest(Strict):
    member: MemberRef
    points: int = Field(description="Positive adds, negative removes.", ge=-(10**12), le=10**12)
    reason: str = Field(min_length=3, max_length=500)
    qualifying: bool = Field(False, description="Counts towards tiers (qualifying points)")

    @model_validator(mode="after")
    def _nonzero(self) -> AdjustRequest:
        if self.points == 0:
            raise ValueError("points must not be zero")
        return self


class CouponApplied(BaseModel):
    code: str
    applied: bool
    discount: Decimal = Field(description="Money this coupon takes off the basket")
    reward: str | None = None
    reason: str | None = Field(None, description="Why not applied, as an error code")
    detail: str | None = None


class QuoteOut(BaseModel):
    member_id: int
    points_earned: int
    breakdown: list[dict[str, Any]]
    rule_version: int
    balance: int
    max_points_to_spend: int
    points_to_spend: int
    spend_value: Decimal
    amount_due: Decimal
    discount: Decimal = Field(Decimal(0), description="What the applied coupons take off")
    coupons: list[CouponApplied] = Field(
        default_factory=list, description="Each presented coupon: applied, or why not"
    )


class ReviewHeld(BaseModel):
    code: str = Field(
        description="The first reason: velocity_<member|card|store|key>_<limit>, "
        "duplicate_transaction or points_above_threshold"
    )
    codes: list[str] = Field(description="Every reason the sale is held for")
    held_points: int = Field(description="Points earned and held (pending) until staff decide")
    detail: str


class PurchaseOut(BaseModel):
    external_id: str
    member_id: int
    amount: Decimal
    points_earned: int
    points_spent: int
    spend_value: Decimal
    occurred_at: datetime
    entries: list[EntryOut]
    totals: Totals
    # Only on sales with coupons (absent otherwise, so answers of sales without stay as
    # they were).
    discount: Decimal | None = Field(None, description="What the coupons took off `amount`")
    coupons: list[CouponApplied] | None = None
    # Only on a sale the program's fraud controls hold for review (docs/fraud.md).
    review: ReviewHeld | None = Field(
        None, description="The sale is recorded but its points are held for staff review"
    )

    def answer(self) -> dict[str, Any]:
        """The stored and returned JSON: without the coupon fields on a sale without coupons,
        without `review` on a sale not held."""
        skip = {"discount", "coupons"} if self.coupons is None else set()
        if self.review is None:
            skip.add("review")
        return self.model_dump(mode="json", exclude=skip)


class RefundOut(BaseModel):
    external_id: str
    refund_id: str
    amount: Decimal
    refunded_total: Decimal
    points_reversed: int
    points_restored: int
    points_written_off: int
    points_already_expired: int = Field(
        0, description="Points not taken back because the purchase's points had expired unspent"
    )
    debt_added: int
    negative_balance_policy: str
    note: str | None
    entries: list[EntryOut]
    totals: Totals


class AdjustOut(BaseModel):
    member_id: int
    entry: EntryOut
    totals: Totals


BATCH_MAX_PURCHASES = 5_000


class BatchPurchaseRequest(Strict):
    purchases: list[PurchaseRequest] = Field(
        min_length=1,
        max_length=BATCH_MAX_PURCHASES,
        description="Processed in this order, so an earlier sale can fund a later redemption.",
    )


BatchStatus = Literal["created", "replayed", "error"]


class BatchItemOut(BaseModel):
    index: int = Field(description="Position in the uploaded list, from 0.")
    external_id: str
    status: BatchStatus
    member_id: int | None = None
    points_earned: int = 0
    points_spent: int = 0
    error: str | None = Field(None, description="The error code when status is error.")
    detail: str | None = None


class BatchReport(BaseModel):
    total: int
    created: int
    replayed: int
    errors: int
    chunks: int = Field(description="Transactions committed (one per chunk).")
    items: list[BatchItemOut]
