"""The base earning rate as a pure function: basket in, points and breakdown out.

This is the seam the full rules engine replaces: the ledger only consumes an
`EarnResult` (points, per-line split, breakdown, rule version).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from patron.money import Rounding, round_points, split_proportionally


@dataclass(frozen=True)
class BasketLine:
    id: str
    amount: Decimal
    quantity: Decimal = Decimal(1)
    sku: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class Basket:
    currency: str
    total: Decimal
    lines: tuple[BasketLine, ...] = ()
    # Money value of the points paid on this bill.
    paid_with_points: Decimal = Decimal(0)


@dataclass(frozen=True)
class EarnRate:
    mode: str  # per_full_unit | proportional
    points: int
    per_amount: Decimal
    rounding: Rounding = Rounding.DOWN
    earn_on_redeemed: bool = False


@dataclass
class EarnResult:
    points: int
    eligible_amount: Decimal
    line_points: list[int] = field(default_factory=list)
    breakdown: list[dict[str, Any]] = field(default_factory=list)


def describe_rate(rate: EarnRate, currency: str) -> str:
    per = f"{rate.per_amount:,f}".rstrip("0").rstrip(".") if "." in f"{rate.per_amount}" else f"{rate.per_amount:,}"
    if rate.mode == "per_full_unit":
        return f"{rate.points} points for each full {per} {currency}"
    return f"{rate.points} points per {per} {currency}, rounded {rate.rounding.value.replace('_', '-')}"


def compute_earn(rate: EarnRate, basket: Basket) -> EarnResult:
    eligible = basket.total
    breakdown: list[dict[str, Any]] = []
    if basket.paid_with_points > 0 and not rate.earn_on_redeemed:
        eligible = max(Decimal(0), basket.total - basket.paid_with_points)
        breakdown.append({
            "rule": "paid_with_points_excluded",
            "detail": f"{basket.paid_with_points} {basket.currency} paid with points earns nothing",
            "amount": str(-basket.paid_with_points),
            "points": 0,
        })
    if rate.mode == "per_full_unit":
        units = (eligible / rate.per_amount).to_integral_value(rounding=ROUND_FLOOR)
        points = int(units) * rate.points
    else:
        points = round_points(eligible * rate.points / rate.per_amount, rate.rounding)
    breakdown.insert(0, {
        "rule": "base_rate",
        "detail": describe_rate(rate, basket.currency),
        "amount": str(eligible),
        "points": points,
    })
    line_points = split_proportionally(points, [line.amount for line in basket.lines])
    return EarnResult(points=points, eligible_amount=eligible, line_points=line_points,
                      breakdown=breakdown)
