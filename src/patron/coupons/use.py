"""Coupons at the till: what one gives on a basket (pure), validating and using it.

Using a coupon is one guarded UPDATE (`… WHERE status = 'issued'`, and for gift cards
`balance >= amount`), so two tills presenting the same code at once get one success and one
`coupon_used`. A use is tied to its order: the same (coupon, order) again is answered as the
first time (a unique index on the use events makes that hold under races too).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.audit.service import Actor
from patron.coupons.lookup import Refusal, coupon_event, find_coupon, state_refusal, store_id
from patron.coupons.models import Coupon, CouponEvent, Reward
from patron.coupons.schemas import BasketCheck, UseRequest
from patron.errors import CouponRefused, Invalid
from patron.fraud import redemption as fraud
from patron.members import service as members
from patron.money import from_minor, parse_amount, to_minor
from patron.programs.models import Program, Store


@dataclass(frozen=True)
class Line:
    sku: str | None
    quantity: Decimal
    amount_minor: int


@dataclass(frozen=True)
class Effect:
    """What a coupon gives on a basket: money off (minor unit), or a product handed over."""

    discount_minor: int
    sku: str | None = None


def effect(
    reward: Reward,
    coupon: Coupon,
    amount_minor: int,
    lines: list[Line],
    *,
    gift_amount_minor: int | None = None,
) -> Effect | Refusal:
    """Pure: the coupon's effect on a basket of `amount_minor` with `lines`, or why none.

    Percent discounts round down to the minor unit (the program never gives more than it
    promised); nothing takes more off than the basket costs."""
    if amount_minor < reward.min_spend_minor:
        return Refusal(
            "coupon_not_applicable",
            f"this coupon needs a basket of at least {reward.min_spend_minor} (minor units)",
        )
    kind = reward.kind
    if kind == "fixed_discount":
        return Effect(min(reward.discount_minor or 0, amount_minor))
    if kind == "percent_discount":
        assert reward.percent is not None
        off = int((Decimal(amount_minor) * reward.percent / 100).to_integral_value(ROUND_DOWN))
        if reward.cap_minor is not None:
            off = min(off, reward.cap_minor)
        return Effect(min(off, amount_minor))
    if kind == "free_product":
        matching = [line for line in lines if line.sku == reward.sku and line.quantity > 0]
        if not matching:
            return Refusal("coupon_not_applicable", f"the basket has no {reward.sku}")
        unit = min(
            int((Decimal(line.amount_minor) / line.quantity).to_integral_value(ROUND_DOWN))
            for line in matching
        )
        return Effect(min(unit, amount_minor), sku=reward.sku)
    if kind == "gift_card":
        balance = coupon.balance_minor or 0
        wanted = balance if gift_amount_minor is None else gift_amount_minor
        if wanted > balance:
            return Refusal(
                "coupon_not_applicable", f"the gift card has {balance} left (minor units)"
            )
        return Effect(min(wanted, amount_minor))
    if kind in ("goods", "service"):
        return Effect(0)
    return Refusal("coupon_not_applicable", "this reward is fulfilled outside the till")


def basket_lines(program: Program, basket: BasketCheck) -> tuple[int, list[Line]]:
    currency = program.currency
    try:
        amount = to_minor(parse_amount(basket.amount, currency), currency)
        lines = [
            Line(line.sku, line.quantity, to_minor(parse_amount(line.amount, currency), currency))
            for line in basket.lines
        ]
    except ValueError as exc:
        raise Invalid(str(exc), code="invalid_amount") from None
    return amount, lines


def check(
    session: Session,
    program: Program,
    coupon: Coupon,
    basket: BasketCheck,
    *,
    now: datetime,
    gift_amount_minor: int | None = None,
) -> tuple[Reward, Effect | Refusal]:
    """Everything that decides whether `coupon` works on this basket, without writing."""
    reward = session.get(Reward, coupon.reward_id)
    assert reward is not None
    why = state_refusal(coupon, now)
    if why is not None:
        return reward, why
    if basket.member is not None and coupon.member_id is not None:
        member = members.find_member(session, basket.member, program=program)
        if member.id != coupon.member_id:
            return reward, Refusal("coupon_other_member", "this coupon belongs to another member")
    if reward.stores and basket.store not in reward.stores:
        where = basket.store or "a sale without a store"
        return reward, Refusal("coupon_wrong_store", f"this coupon cannot be used at {where}")
    amount, lines = basket_lines(program, basket)
    return reward, effect(reward, coupon, amount, lines, gift_amount_minor=gift_amount_minor)


def _store_code(session: Session, store_pk: int | None) -> str | None:
    return (
        None if store_pk is None else session.scalar(select(Store.code).where(Store.id == store_pk))
    )


@dataclass
class Used:
    coupon: Coupon
    discount_minor: int
    sku: str | None
    replayed: bool


def _replay(session: Session, coupon: Coupon, order: str) -> Used | None:
    earlier = session.scalars(
        select(CouponEvent).where(
            CouponEvent.coupon_id == coupon.id,
            CouponEvent.kind == "used",
            CouponEvent.order_ref == order,
        )
    ).one_or_none()
    if earlier is None:
        return None
    details = earlier.details or {}
    return Used(coupon, int(earlier.amount_minor or 0), details.get("sku"), True)


def use(
    session: Session,
    program: Program,
    raw_code: str,
    req: UseRequest,
    *,
    actor: Actor,
    now: datetime,
    offline: bool = False,
    discount_minor: int | None = None,
) -> Used:
    """Mark the coupon used on `req.order` and say what it gave. Refusals raise CouponRefused
    with their code and write nothing. `discount_minor` (a sale's plan) may give less than
    the coupon alone would."""
    # Lock before you check: the replay, the state and a gift card's balance are read under
    # the coupon's row lock, so concurrent tills get the answer a later one would.
    coupon = find_coupon(session, program, raw_code, lock=True)
    replay = _replay(session, coupon, req.order)
    if replay is not None:
        return replay
    fraud.check_coupon(session, program.id, coupon.member_id)  # verified contact, if required
    gift_minor = None
    if req.gift_amount is not None:
        try:
            gift_minor = to_minor(parse_amount(req.gift_amount, program.currency), program.currency)
        except ValueError as exc:
            raise Invalid(f"gift_amount: {exc}", code="invalid_amount") from None
    at = req.used_at or now
    if at > now + timedelta(minutes=5):
        raise Invalid("used_at is in the future", code="used_at_in_future")
    reward, outcome = check(session, program, coupon, req, now=at, gift_amount_minor=gift_minor)
    if isinstance(outcome, Refusal):
        raise CouponRefused(outcome.detail, code=outcome.code)
    if discount_minor is not None:
        # A sale's share when several coupons together would take more than the basket.
        assert 0 <= discount_minor <= outcome.discount_minor
        outcome = Effect(discount_minor, outcome.sku)
    the_store = store_id(session, program, req.store)
    if reward.kind == "gift_card":
        left = session.execute(
            update(Coupon)
            .where(
                Coupon.id == coupon.id,
                Coupon.status == "issued",
                Coupon.balance_minor >= outcome.discount_minor,
            )
            .values(balance_minor=Coupon.balance_minor - outcome.discount_minor)
            .returning(Coupon.balance_minor)
        ).scalar_one_or_none()
        moved = left is not None
        if moved and left == 0:
            session.execute(
                update(Coupon)
                .where(Coupon.id == coupon.id)
                .values(status="used", used_at=at, used_store_id=the_store,
                        used_order=req.order, closed_at=now)
            )  # fmt: skip
    else:
        moved = bool(
            session.execute(
                update(Coupon)
                .where(Coupon.id == coupon.id, Coupon.status == "issued")
                .values(status="used", used_at=at, used_store_id=the_store,
                        used_order=req.order, closed_at=now)
            ).rowcount  # type: ignore[attr-defined]
        )  # fmt: skip
    session.refresh(coupon)
    if not moved:
        replay = _replay(session, coupon, req.order)
        if replay is not None:
            return replay
        why = state_refusal(coupon, at) or Refusal("coupon_used", "the gift card's balance changed")
        raise CouponRefused(why.detail, code=why.code)
    try:
        with session.begin_nested():
            session.add(
                CouponEvent(
                    coupon_id=coupon.id,
                    kind="used",
                    at=at,
                    actor=str(actor),
                    store_id=the_store,
                    order_ref=req.order,
                    amount_minor=outcome.discount_minor,
                    offline=offline,
                    details={"sku": outcome.sku} if outcome.sku else None,
                )
            )
    except IntegrityError:
        # A gift card used twice on one order at the same moment: the other call won.
        raise CouponRefused("this coupon is being used on this order", code="coupon_used") from None
    coupon_event(
        session, "coupon.used", program, coupon, reward, now, order=req.order, store=req.store,
        discount=str(from_minor(outcome.discount_minor, program.currency)), offline=offline,
    )  # fmt: skip
    session.flush()
    return Used(coupon, outcome.discount_minor, outcome.sku, False)
