"""What using a coupon takes: the basket it would be used on and the use itself (the rewards
API's validate and use bodies build on these). Money is a Decimal in the program's currency."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from pydantic import AwareDatetime, Field, field_validator

from patron.ledger.schemas import Channel, LineIn, Strict
from patron.members.schemas import MemberRef
from patron.programs.schemas import CODE_PATTERN

Money = Decimal


EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def sane_instant(value: datetime | None) -> datetime | None:
    """Instants from 1970 to 9000: outside, offsets cannot even be turned into UTC."""
    if value is not None and not (EARLIEST <= value <= LATEST):
        raise ValueError("must be between 1970 and 9000")
    return value


class BasketCheck(Strict):
    """The sale a coupon would be used on."""

    amount: Money = Field(description="Bill total before discounts", gt=0, le=Decimal("1e13"))
    lines: list[LineIn] = Field(default_factory=list, max_length=500)
    store: str | None = Field(None, pattern=CODE_PATTERN)
    channel: Channel = "pos"
    member: MemberRef | None = Field(None, description="Who presents it (checked if given)")


class UseRequest(BasketCheck):
    order: str = Field(min_length=1, max_length=120, description="The till's order id")
    gift_amount: Money | None = Field(
        None, gt=0, le=Decimal("1e13"), description="gift_card: how much of it to spend"
    )
    used_at: AwareDatetime | None = Field(None, description="When (offline tills); default now")

    _instants = field_validator("used_at")(sane_instant)
