"""Rewards and coupons as the API answers them (shared by the API, the admin UI and the
member page)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.coupons import codes
from patron.coupons.models import Coupon, CouponEvent, Reward
from patron.ledger.models import Account
from patron.ledger.views import totals
from patron.money import from_minor
from patron.programs.models import Program, Store
from patron.rewards import offline
from patron.rewards.catalog import list_rewards, out, price_for
from patron.rewards.redeem import member_segments, refusal
from patron.rewards.schemas import (
    CatalogItem,
    CouponDetail,
    CouponEventOut,
    CouponOut,
)


def _stores(session: Session, ids: Iterable[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(session.execute(select(Store.id, Store.code).where(Store.id.in_(wanted))).all())


def coupons_out(session: Session, program: Program, coupons: list[Coupon]) -> list[CouponOut]:
    rewards = {
        r.id: r
        for r in session.scalars(
            select(Reward).where(Reward.id.in_({c.reward_id for c in coupons}))
        )
    }
    stores = _stores(session, (c.used_store_id for c in coupons))
    tokens = offline.tokens(session, program, coupons, rewards)
    return [
        _coupon_out(program, c, rewards[c.reward_id], stores, tokens.get(c.id)) for c in coupons
    ]


def _coupon_out(
    program: Program,
    coupon: Coupon,
    reward: Reward,
    stores: dict[int, str],
    offline_token: str | None,
) -> CouponOut:
    shown = codes.display(coupon.code)
    base = f"/api/v1/programs/{program.code}/coupons/{coupon.code}"
    return CouponOut(
        code=shown,
        reward=reward.code,
        kind=reward.kind,
        status=coupon.status,
        member_id=coupon.member_id,
        source=coupon.source,
        campaign=coupon.campaign,
        points=coupon.points,
        value=from_minor(coupon.value_minor, program.currency),
        balance=(
            from_minor(coupon.balance_minor, program.currency)
            if coupon.balance_minor is not None
            else None
        ),
        issued_at=coupon.issued_at,
        expires_at=coupon.expires_at,
        used_at=coupon.used_at,
        used_store=stores.get(coupon.used_store_id) if coupon.used_store_id else None,
        used_order=coupon.used_order,
        qr_svg=f"{base}/qr.svg",
        qr_png=f"{base}/qr.png",
        offline_token=offline_token,
    )


def coupon_detail(session: Session, program: Program, coupon: Coupon) -> CouponDetail:
    [base] = coupons_out(session, program, [coupon])
    events = list(
        session.scalars(
            select(CouponEvent).where(CouponEvent.coupon_id == coupon.id).order_by(CouponEvent.id)
        )
    )
    stores = _stores(session, (e.store_id for e in events))
    return CouponDetail(
        **base.model_dump(),
        history=[
            CouponEventOut(
                kind=e.kind,
                at=e.at,
                actor=e.actor,
                store=stores.get(e.store_id) if e.store_id else None,
                order=e.order_ref,
                amount=(
                    from_minor(e.amount_minor, program.currency)
                    if e.amount_minor is not None
                    else None
                ),
                offline=e.offline,
                reason=e.reason,
            )
            for e in events
        ],
    )


def member_coupons(
    session: Session,
    program: Program,
    member_id: int,
    *,
    status: str | None = None,
    limit: int = 200,
) -> list[Coupon]:
    stmt = select(Coupon).where(Coupon.program_id == program.id, Coupon.member_id == member_id)
    if status is not None:
        stmt = stmt.where(Coupon.status == status)
    return list(session.scalars(stmt.order_by(Coupon.id.desc()).limit(limit)))


def catalog_for(
    session: Session,
    program: Program,
    account: Account | None,
    *,
    now: datetime,
    channel: str = "portal",
    include_paused: bool = False,
) -> list[CatalogItem]:
    """The active catalog as one member sees it: their price (tier prices apply) and whether
    they can redeem each reward now, with the reason when not."""
    balance = totals(session, account, now).available if account is not None else 0
    rewards = [
        r
        for r in list_rewards(session, program, status=None if include_paused else "active")
        if r.status != "archived"
    ]
    # The member's segments, for every reward that names one, in one query.
    segments = member_segments(
        session, program, account, {c for r in rewards for c in r.segments or ()}, now
    )
    items = []
    for reward in rewards:
        why = refusal(
            session, program, reward, account, quantity=1, store=None, channel=channel, now=now,
            balance=balance, segments=segments,
        )  # fmt: skip
        items.append(
            CatalogItem(
                reward=out(reward, program.currency),
                price=price_for(reward, account.tier if account is not None else None),
                redeemable=why is None,
                reason=why.code if why else None,
                detail=why.detail if why else None,
            )
        )
    return items
