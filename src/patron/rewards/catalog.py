"""The catalog: create and change rewards (each change a new, audited version), stock, and what
a given member may redeem."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.coupons.models import Reward, RewardVersion, StockMove
from patron.errors import Conflict, Invalid, NotFound, OutOfStock
from patron.money import from_minor, parse_amount, to_minor
from patron.programs.models import Program, Store
from patron.rewards.schemas import RewardCreate, RewardFields, RewardOut, RewardUpdate

# Fields stored in the minor unit, by their API name.
_MONEY_FIELDS = {
    "value": "value_minor",
    "discount": "discount_minor",
    "cap": "cap_minor",
    "min_spend": "min_spend_minor",
    "gift_value": "value_minor",  # a gift card is worth its balance
}
_LIST_FIELDS = ("tiers", "stores", "channels", "segments")
_DEFAULTS: dict[str, Any] = {
    "status": "active",
    "descriptions": {},
    "tier_costs": {},
    "tiers": [],
    "stores": [],
    "channels": [],
    "segments": [],
    "exclusive": False,
    "max_per_order": 1,
    "earn_on_discounted": False,
    "combine_with_points": True,
    "on_expiry": "forfeit",
    "on_refund": "restore",
    "min_spend_minor": 0,
    "value_minor": 0,
}


def get_reward(session: Session, program: Program, code: str, *, lock: bool = False) -> Reward:
    stmt = select(Reward).where(Reward.program_id == program.id, Reward.code == code)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    reward = session.scalars(stmt).one_or_none()
    if reward is None:
        raise NotFound(f"program {program.code} has no reward {code!r}", code="reward_not_found")
    return reward


def list_rewards(session: Session, program: Program, *, status: str | None = None) -> list[Reward]:
    stmt = select(Reward).where(Reward.program_id == program.id)
    if status is not None:
        stmt = stmt.where(Reward.status == status)
    return list(session.scalars(stmt.order_by(Reward.points_cost, Reward.code)))


def rewards_naming_segment(session: Session, program: Program, code: str) -> list[str]:
    """The program's rewards, active or paused, whose `segments` name `code` (an archived
    reward names it harmlessly: nobody can redeem it, and unarchiving checks its segments).
    What keeps the segment from being deleted: patron.segment_deletion."""
    rows = session.execute(
        select(Reward.code, Reward.segments).where(
            Reward.program_id == program.id, Reward.status != "archived"
        )
    )
    return sorted(reward for reward, segments in rows if code in (segments or []))


def _apply(program: Program, reward: Reward, fields: dict[str, Any]) -> None:
    for name, value in fields.items():
        if name in _MONEY_FIELDS:
            column = _MONEY_FIELDS[name]
            if value is None:
                value = 0 if column in ("value_minor", "min_spend_minor") else None
            else:
                value = _minor(value, program.currency, name)
            if name == "gift_value" and value is not None:
                reward.value_minor = value
            setattr(reward, column, value)
        elif name in _LIST_FIELDS:
            setattr(reward, name, sorted(set(value or [])))
        elif name in ("names", "descriptions", "tier_costs"):
            setattr(reward, name, dict(value or {}))
        else:
            setattr(reward, name, value)


def _minor(amount: Decimal, currency: str, field: str) -> int:
    try:
        exact = parse_amount(amount, currency)
    except ValueError as exc:
        raise Invalid(f"{field}: {exc}", code="invalid_amount") from None
    return to_minor(exact, currency)


def _check(session: Session, program: Program, reward: Reward) -> None:
    """What the kind needs, and names that exist: refused with the field at fault."""
    if not reward.names:
        raise Invalid("give the reward a name in at least one language", code="invalid_reward")
    if reward.kind == "fixed_discount" and not reward.discount_minor:
        raise Invalid("a fixed_discount needs discount (money off)", code="invalid_reward")
    if reward.kind == "percent_discount" and reward.percent is None:
        raise Invalid("a percent_discount needs percent", code="invalid_reward")
    if reward.kind == "free_product" and not reward.sku:
        raise Invalid("a free_product needs the sku it gives", code="invalid_reward")
    if reward.kind == "gift_card" and not reward.value_minor:
        raise Invalid("a gift_card needs gift_value", code="invalid_reward")
    if reward.kind != "external" and reward.valid_days is None and reward.valid_until is None:
        raise Invalid(
            "say how long issued coupons are valid: valid_days, valid_until or both",
            code="invalid_reward",
        )
    if (
        reward.available_from is not None
        and reward.available_until is not None
        and reward.available_from >= reward.available_until
    ):
        raise Invalid("available_from must be before available_until", code="invalid_reward")
    if reward.stores:
        known = set(
            session.scalars(
                select(Store.code).where(
                    Store.program_id == program.id, Store.code.in_(reward.stores)
                )
            )
        )
        missing = sorted(set(reward.stores) - known)
        if missing:
            raise Invalid(f"unknown store {missing[0]!r}", code="unknown_store")
    tier_codes = set(reward.tiers) | set(reward.tier_costs)
    if tier_codes:
        from patron.tiers.models import TierDefinition

        known = set(
            session.scalars(
                select(TierDefinition.code).where(TierDefinition.program_id == program.id)
            )
        )
        missing = sorted(tier_codes - known)
        if missing:
            raise Invalid(f"unknown tier {missing[0]!r}", code="unknown_tier")
    if reward.segments:
        from patron.segments.compiler import UnknownSegment
        from patron.segments.models import Segment

        known = set(
            session.scalars(
                select(Segment.code).where(
                    Segment.program_id == program.id, Segment.code.in_(reward.segments)
                )
            )
        )
        missing = sorted(set(reward.segments) - known)
        if missing:
            raise UnknownSegment(f"segments: program {program.code} has no segment {missing[0]!r}")


def document(reward: Reward, currency: str) -> dict[str, Any]:
    """The reward as saved in its version row (the API's shape, JSON-ready)."""
    return out(reward, currency).model_dump(
        mode="json", exclude={"created_at", "updated_at", "stock", "version"}
    )


def _version(session: Session, reward: Reward, currency: str, actor: Actor, now: datetime) -> None:
    session.add(
        RewardVersion(
            reward_id=reward.id,
            version=reward.version,
            document=document(reward, currency),
            actor=str(actor),
            created_at=now,
        )
    )


def create_reward(
    session: Session, program: Program, data: RewardCreate, *, actor: Actor, now: datetime
) -> Reward:
    exists = session.scalar(
        select(Reward.id).where(Reward.program_id == program.id, Reward.code == data.code)
    )
    if exists is not None:
        raise Conflict(f"reward {data.code!r} already exists", code="reward_exists")
    given = data.model_dump(exclude={"code", "kind", "stock"}, exclude_none=True)
    reward = Reward(
        program_id=program.id,
        code=data.code,
        kind=data.kind,
        version=1,
        stock_left=None,
        created_at=now,
        updated_at=now,
        **{k: v for k, v in _DEFAULTS.items()},
    )
    _apply(program, reward, given)
    _check(session, program, reward)
    session.add(reward)
    session.flush()
    if data.stock is not None:
        reward.stock_left = 0
        session.flush()
        if data.stock:
            change_stock(session, reward, data.stock, reason="restock", actor=actor, now=now)
    _version(session, reward, program.currency, actor, now)
    audit.record(
        session,
        actor=actor,
        action="reward.created",
        subject_type="reward",
        subject_id=reward.code,
        program_id=program.id,
        at=now,
        after=document(reward, program.currency) | {"stock": data.stock},
    )
    session.flush()
    return reward


def update_reward(
    session: Session,
    program: Program,
    reward: Reward,
    data: RewardUpdate | RewardFields,
    *,
    actor: Actor,
    now: datetime,
) -> Reward:
    given = data.model_dump(exclude_unset=True)
    for required in ("names", "points_cost", "status"):
        if required in given and given[required] is None:
            raise Invalid(f"{required} cannot be null", code="invalid_reward")
    before = document(reward, program.currency)
    _apply(program, reward, given)
    _check(session, program, reward)
    after = document(reward, program.currency)
    old, new = audit.changes(before, after)
    if not new:
        return reward
    reward.version += 1
    reward.updated_at = now
    session.flush()
    _version(session, reward, program.currency, actor, now)
    audit.record(
        session,
        actor=actor,
        action="reward.updated",
        subject_type="reward",
        subject_id=reward.code,
        program_id=program.id,
        at=now,
        before=old,
        after=new | {"version": reward.version},
    )
    session.flush()
    return reward


def versions(session: Session, reward: Reward) -> list[RewardVersion]:
    return list(
        session.scalars(
            select(RewardVersion)
            .where(RewardVersion.reward_id == reward.id)
            .order_by(RewardVersion.version.desc())
        )
    )


def change_stock(
    session: Session,
    reward: Reward,
    delta: int,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
    redemption_id: int | None = None,
    coupon_id: int | None = None,
    note: str | None = None,
) -> None:
    """Move stock by `delta` with one guarded UPDATE: it never goes below zero, whoever else
    is taking units at the same moment (the row's lock orders them on PostgreSQL; SQLite has
    one writer). Untracked stock (None) is left alone. Raises OutOfStock."""
    if reward.stock_left is None:
        return
    table = cast(Table, Reward.__table__)  # Core: no ORM bookkeeping on a hot statement
    moved = (
        session.connection()
        .execute(
            update(table)
            .where(table.c.id == reward.id, table.c.stock_left + delta >= 0)
            .values(stock_left=table.c.stock_left + delta)
            .returning(table.c.stock_left)
        )
        .scalar_one_or_none()
    )
    if moved is None:
        left = session.scalar(select(Reward.stock_left).where(Reward.id == reward.id))
        raise OutOfStock(
            f"reward {reward.code} has {left} left; {-delta} needed", code="out_of_stock"
        )
    session.add(
        StockMove(
            reward_id=reward.id,
            delta=delta,
            reason=reason,
            redemption_id=redemption_id,
            coupon_id=coupon_id,
            actor=str(actor),
            note=note,
            at=now,
        )
    )
    # Keep the loaded object in step with the row without another read.
    set_committed_value(reward, "stock_left", moved)


def adjust_stock(
    session: Session,
    program: Program,
    reward: Reward,
    delta: int,
    *,
    actor: Actor,
    now: datetime,
    note: str | None,
) -> Reward:
    """Staff restock (+) or correct (−) a reward; starting to track stock on an unlimited
    reward begins from zero."""
    before = reward.stock_left
    if reward.stock_left is None:
        if delta < 0:
            raise Invalid("this reward's stock is unlimited", code="stock_untracked")
        reward.stock_left = 0
        session.flush()
    change_stock(
        session,
        reward,
        delta,
        reason="restock" if delta > 0 else "correction",
        actor=actor,
        now=now,
        note=note,
    )
    audit.record(
        session,
        actor=actor,
        action="reward.stock_changed",
        subject_type="reward",
        subject_id=reward.code,
        program_id=program.id,
        at=now,
        before={"stock": before},
        after={"stock": reward.stock_left, "delta": delta, "note": note},
    )
    return reward


def price_for(reward: Reward, tier: str | None) -> int:
    """Points for one unit at the member's tier (the tier's price where it has one)."""
    if tier is not None and tier in reward.tier_costs:
        return int(reward.tier_costs[tier])
    return reward.points_cost


def money(minor: int | None, currency: str) -> Decimal | None:
    return None if minor is None else from_minor(minor, currency)


def out(reward: Reward, currency: str) -> RewardOut:
    return RewardOut(
        code=reward.code,
        kind=reward.kind,
        status=reward.status,
        version=reward.version,
        names=reward.names,
        descriptions=reward.descriptions,
        image_url=reward.image_url,
        points_cost=reward.points_cost,
        tier_costs=reward.tier_costs,
        value=from_minor(reward.value_minor, currency),
        discount=money(reward.discount_minor, currency),
        percent=reward.percent,
        cap=money(reward.cap_minor, currency),
        min_spend=from_minor(reward.min_spend_minor, currency),
        sku=reward.sku,
        gift_value=from_minor(reward.value_minor, currency) if reward.kind == "gift_card" else None,
        stock=reward.stock_left,
        valid_days=reward.valid_days,
        valid_until=reward.valid_until,
        available_from=reward.available_from,
        available_until=reward.available_until,
        limit_per_day=reward.limit_per_day,
        limit_per_month=reward.limit_per_month,
        limit_ever=reward.limit_ever,
        tiers=reward.tiers,
        stores=reward.stores,
        channels=reward.channels,
        segments=list(reward.segments or []),
        exclusive=reward.exclusive,
        stack_group=reward.stack_group,
        max_per_order=reward.max_per_order,
        earn_on_discounted=reward.earn_on_discounted,
        combine_with_points=reward.combine_with_points,
        on_expiry=reward.on_expiry,
        on_refund=reward.on_refund,
        created_at=reward.created_at,
        updated_at=reward.updated_at,
    )


def name_in(reward: Reward, language: str) -> str:
    """The reward's name in `language`, else English, else any."""
    names = reward.names or {}
    return names.get(language) or names.get("en") or next(iter(names.values()), reward.code)
