"""What a till sent, checked and turned into the rules core's `Order` (pure functions)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from patron.clock import EARLIEST_SALE
from patron.errors import InsufficientPoints, Invalid
from patron.money import parse_amount, spend_value, split_proportionally
from patron.programs.models import Program
from patron.rules.engine import Line, Order
from patron.rules.model import RuleSetDoc
from patron.sales.program_cache import ProgramConfig
from patron.sales.schemas import BasketIn

FUTURE_TOLERANCE = timedelta(minutes=5)


Policy = Program | ProgramConfig  # what of a program these helpers read


def share_half_up(points: int, part: int, whole: int) -> int:
    """round_half_up(points × part ÷ whole) in exact integer arithmetic."""
    return (2 * points * part + whole) // (2 * whole)


def amount(value: Decimal, currency: str, field: str) -> Decimal:
    try:
        return parse_amount(value, currency)
    except ValueError as exc:
        raise Invalid(f"{field}: {exc}", code="invalid_amount") from None


def order_of(
    program: Policy,
    req: BasketIn,
    *,
    occurred_at: datetime,
    points_to_spend: int,
    store_id_of: Callable[[str], int | None],
) -> tuple[Order, int | None]:
    """The basket as the rules core sees it, and the store's id (`store_id_of(code)`, None for
    a store the program does not have)."""
    if req.currency is not None and req.currency != program.currency:
        raise Invalid(
            f"program {program.code} runs in {program.currency}, not {req.currency}; "
            "convert the amount before sending it",
            code="currency_mismatch",
        )
    total = amount(req.amount, program.currency, "amount")
    lines: list[Line] = []
    for index, line in enumerate(req.lines, start=1):
        lines.append(
            Line(
                id=line.id or str(index),
                amount=amount(line.amount, program.currency, f"lines[{index - 1}].amount"),
                quantity=line.quantity,
                sku=line.sku,
                category=line.category,
            )
        )
    if lines:
        if len({line.id for line in lines}) != len(lines):
            raise Invalid("line ids must be unique within a purchase", code="duplicate_line_id")
        line_sum = sum((line.amount for line in lines), Decimal(0))
        if line_sum != total:
            raise Invalid(
                f"lines add up to {line_sum} but amount is {total}", code="lines_total_mismatch"
            )
    store_id = None
    if req.store is not None:
        store_id = store_id_of(req.store)
        if store_id is None:
            raise Invalid(
                f"no store {req.store!r} in program {program.code}", code="store_not_found"
            )
    order = Order(
        currency=program.currency,
        total=total,
        occurred_at=occurred_at,
        timezone=program.timezone,
        lines=tuple(lines),
        store=req.store,
        channel=req.channel,
        payment_method=req.payment_method,
        paid_with_points=spend_value(points_to_spend, program.point_value, program.currency),
        earn_on_redeemed=program.earn_on_redeemed,
    )
    return order, store_id


def max_spend(program: Policy, amount: Decimal, balance: int) -> int:
    """The most points a bill with `amount` payable can take, by the policy and the balance."""
    cap = int(
        (amount * program.redeem_max_share / program.point_value).to_integral_value(ROUND_FLOOR)
    )
    cap = min(cap, max(balance, 0))
    cap -= cap % program.redeem_step
    return cap if cap >= max(program.redeem_min_points, 1) else 0


def check_spend(
    program: Policy,
    amount: Decimal,
    points: int,
    balance: int,
    blocked: str | None = None,
) -> None:
    if points == 0:
        return
    if blocked is not None:
        raise Invalid(blocked, code="redemption_not_allowed")
    if points < program.redeem_min_points:
        raise Invalid(
            f"at least {program.redeem_min_points} points must be used at once",
            code="below_minimum_redemption",
        )
    if points % program.redeem_step:
        raise Invalid(
            f"points are used in steps of {program.redeem_step}", code="invalid_redemption_step"
        )
    value = spend_value(points, program.point_value, program.currency)
    limit = amount * program.redeem_max_share
    if value > limit:
        raise Invalid(
            f"{points} points are worth {value} {program.currency}, more than the "
            f"{limit.normalize():f} {program.currency} of this bill payable with points",
            code="exceeds_max_share",
        )
    if points > balance:
        raise InsufficientPoints(f"{points} points requested but the balance is {balance}")


def check_occurred_at(value: datetime | None, now: datetime) -> datetime:
    """When a sale or event happened: default now; never in the future or before 1970."""
    if value is None:
        return now
    if value > now + FUTURE_TOLERANCE:
        raise Invalid("occurred_at is in the future", code="occurred_at_in_future")
    if value < EARLIEST_SALE:
        # Year-1 instants with a positive offset cannot even be converted to UTC (was a 500).
        raise Invalid("occurred_at is before 1970", code="occurred_at_out_of_range")
    return value


def spent_per_line(doc: RuleSetDoc, order: Order, points: int) -> list[int]:
    """Points paid, spread over the lines points could pay for (so refunds give back exactly)."""
    excluded = doc.redemption.excluded
    weights = [
        Decimal(0) if excluded is not None and excluded.matches(ln.sku, ln.category) else ln.amount
        for ln in order.lines
    ]
    return split_proportionally(points, weights)
