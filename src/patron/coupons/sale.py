"""Coupons on a sale: which apply (patron.coupons.stacking), what the basket costs after them,
what points are earned on, and using them in the sale's transaction.

A quote picks the best combination of the presented coupons and explains the others; a sale
uses exactly the coupons the till sends, all or none (a coupon that cannot be used refuses the
sale with its code, and nothing is written). Discounts are spread over the lines the way the
money was: a free product comes off its own line, money off comes off every line in proportion
to its amount (largest remainder, in the currency's minor unit), so a later refund by line
gives back what was paid for that line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from patron.audit.service import Actor
from patron.coupons import codes
from patron.coupons.lookup import Refusal, find_coupon
from patron.coupons.models import Coupon, CouponEvent, Reward
from patron.coupons.schemas import BasketCheck, UseRequest
from patron.coupons.stacking import MAX_COUPONS, Candidate, Selection, best, check_together
from patron.coupons.use import basket_lines, check, use
from patron.errors import CouponRefused, PatronError
from patron.members.models import Member
from patron.members.schemas import MemberRef
from patron.money import from_minor, to_minor
from patron.programs.models import Program

Req = TypeVar("Req", bound=Any)


@dataclass
class Plan:
    selection: Selection
    rewards: dict[str, Reward] = field(default_factory=dict)  # code as presented -> reward
    coupons: dict[str, Coupon] = field(default_factory=dict)
    discount_minor: int = 0
    # Of the discount, the part points are not earned on (rewards with earn_on_discounted off).
    not_earning_minor: int = 0

    def reward_codes(self) -> tuple[str, ...]:
        return tuple(self.rewards[c.code].code for c in self.selection.applied)

    def applied_coupons(self) -> list[tuple[str, Coupon, Reward, int]]:
        return [
            (c.code, self.coupons[c.code], self.rewards[c.code], c.discount_minor)
            for c in self.selection.applied
        ]


def _basket(req: Any, member: Member) -> BasketCheck:
    return BasketCheck(
        amount=req.amount,
        lines=req.lines,
        store=req.store,
        channel=req.channel,
        member=MemberRef(id=member.id),
    )


def plan(
    session: Session,
    program: Program,
    req: Any,
    member: Member,
    *,
    now: datetime,
    sale: bool,
) -> Plan:
    """Check each presented coupon alone, then choose (quote) or check them together (sale)."""
    presented = list(dict.fromkeys(req.coupons))[:MAX_COUPONS]
    basket = _basket(req, member)
    amount_minor, _lines = basket_lines(program, basket)
    candidates: list[Candidate] = []
    result = Plan(Selection())
    for raw in presented:
        try:
            coupon = find_coupon(session, program, raw)
        except PatronError as exc:
            if sale:
                raise
            candidates.append(Candidate(raw, "", refusal=(exc.code, exc.detail)))
            continue
        reward, outcome = check(session, program, coupon, basket, now=now)
        result.coupons[raw], result.rewards[raw] = coupon, reward
        refusal = None
        discount = 0
        if isinstance(outcome, Refusal):
            refusal = (outcome.code, outcome.detail)
        else:
            discount = outcome.discount_minor
        candidates.append(
            Candidate(
                raw,
                reward.code,
                discount_minor=discount,
                exclusive=reward.exclusive,
                stack_group=reward.stack_group,
                max_per_order=reward.max_per_order,
                combine_with_points=reward.combine_with_points,
                refusal=refusal,
            )
        )
    points = bool(req.points_to_spend)
    if sale:
        result.selection = check_together(candidates, amount_minor, points=points)
        refused = next((c for c in result.selection.choices if not c.applied), None)
        if refused is not None:
            raise CouponRefused(
                f"coupon {refused.code}: {refused.detail}", code=refused.reason or "coupon_refused"
            )
    else:
        result.selection = best(candidates, amount_minor, points=points)
    for choice in result.selection.applied:
        result.discount_minor += choice.discount_minor
        if not result.rewards[choice.code].earn_on_discounted:
            result.not_earning_minor += choice.discount_minor
    return result


def _spread(amounts: list[int], off: int) -> list[int]:
    """Take `off` from `amounts` in proportion (largest remainder), never below zero."""
    total = sum(amounts)
    if total <= 0 or off <= 0:
        return list(amounts)
    off = min(off, total)
    shares = [a * off // total for a in amounts]
    rest = off - sum(shares)
    order = sorted(range(len(amounts)), key=lambda i: (-(amounts[i] * off % total), i))
    for i in order[:rest]:
        shares[i] += 1
    return [a - s for a, s in zip(amounts, shares, strict=True)]


def discounted(program: Program, req: Req, plan_: Plan, *, earning: bool) -> Req:
    """`req` with the basket after the coupons: for paying and recording (all discounts), or
    for earning (only the discounts points are not earned on)."""
    off = plan_.not_earning_minor if earning else plan_.discount_minor
    if not off:
        return req
    currency = program.currency
    amount = to_minor(Decimal(req.amount), currency)
    lines = [to_minor(Decimal(line.amount), currency) for line in req.lines]
    if lines:
        # Free products first, from their own line; the rest in proportion.
        left = off
        for _code, _coupon, reward, part in plan_.applied_coupons():
            if reward.kind != "free_product" or (earning and reward.earn_on_discounted):
                continue
            for i, line in enumerate(req.lines):
                if line.sku == reward.sku and lines[i] > 0:
                    take = min(part, lines[i], left)
                    lines[i] -= take
                    left -= take
                    break
        lines = _spread(lines, left)
    new_lines = [
        line.model_copy(update={"amount": from_minor(minor, currency)})
        for line, minor in zip(req.lines, lines, strict=True)
    ]
    remaining = max(amount - off, 0)
    return req.model_copy(update={"amount": from_minor(remaining, currency), "lines": new_lines})


def apply(
    session: Session,
    program: Program,
    req: Any,
    plan_: Plan,
    member: Member,
    *,
    actor: Actor,
    now: datetime,
) -> None:
    """Use each applied coupon on the sale's order, in the sale's transaction."""
    basket = _basket(req, member)
    for code, _coupon, reward, part in plan_.applied_coupons():
        use(
            session,
            program,
            code,
            UseRequest(
                **basket.model_dump(),
                order=req.external_id,
                gift_amount=from_minor(part, program.currency)
                if reward.kind == "gift_card"
                else None,
                used_at=req.occurred_at,
            ),
            actor=actor,
            now=now,
            discount_minor=part,
        )


def restore_on_refund(
    session: Session, program: Program, order: str, *, actor: Actor, now: datetime
) -> list[Coupon]:
    """A fully refunded order gives back the coupons it used, where their reward says so
    (on_refund = restore): used coupons are usable again, gift cards get the amount back."""
    uses = list(
        session.execute(
            select(CouponEvent, Coupon, Reward)
            .join(Coupon, Coupon.id == CouponEvent.coupon_id)
            .join(Reward, Reward.id == Coupon.reward_id)
            .where(
                Coupon.program_id == program.id,
                CouponEvent.kind == "used",
                CouponEvent.order_ref == order,
            )
        ).all()
    )
    restored = []
    for event, coupon, reward in uses:
        if reward.on_refund != "restore":
            continue
        already = session.scalar(
            select(CouponEvent.id).where(
                CouponEvent.coupon_id == coupon.id,
                CouponEvent.kind == "restored",
                CouponEvent.order_ref == order,
            )
        )
        if already is not None:
            continue
        values: dict[str, Any] = {"status": "issued", "used_at": None, "used_store_id": None,
                                  "used_order": None, "closed_at": None}  # fmt: skip
        if coupon.balance_minor is not None:
            values["balance_minor"] = Coupon.balance_minor + int(event.amount_minor or 0)
        session.execute(update(Coupon).where(Coupon.id == coupon.id).values(**values))
        session.add(
            CouponEvent(
                coupon_id=coupon.id,
                kind="restored",
                at=now,
                actor=str(actor),
                order_ref=order,
                amount_minor=event.amount_minor,
                reason="the order was refunded",
            )
        )
        session.refresh(coupon)
        restored.append(coupon)
    return restored


def display(code: str) -> str:
    """How a presented code is shown back (our codes grouped; others as given)."""
    stored = codes.lookup_form(code)
    return codes.display(stored) if codes.is_generated(code) else code
