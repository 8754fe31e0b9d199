"""What `patron check` proves about rewards, with set-based queries:

1. a tracked reward's stock_left is the sum of its stock moves, and never negative;
2. each redemption's ledger entry is a redeem entry of the same account taking exactly its
   points (and a redemption of 0 points has none);
3. the points given back on a redemption's entry (reverse entries) equal the points its
   cancelled or refunded coupons say they returned;
4. each redemption took exactly its quantity from stock (when stock is tracked), and issued
   one coupon per unit (reissues aside) whose points add up to the redemption's;
5. a used coupon has one use per order and a gift card's balance is within [0, its value].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from patron.coupons.models import Coupon, Redemption, Reward, StockMove
from patron.ledger.models import Entry

Add = Callable[[str, Sequence[Any]], None]


def check(session: Session, add: Add) -> None:
    moves = (
        select(StockMove.reward_id, func.sum(StockMove.delta).label("total"))
        .group_by(StockMove.reward_id)
        .subquery()
    )
    total = func.coalesce(moves.c.total, 0)
    rows = session.execute(
        select(Reward.id, Reward.code, Reward.stock_left, total)
        .outerjoin(moves, moves.c.reward_id == Reward.id)
        .where(
            or_(
                and_(Reward.stock_left.is_not(None), Reward.stock_left != total),
                Reward.stock_left < 0,
                and_(Reward.stock_left.is_(None), total != 0),
            )
        )
        .order_by(Reward.id)
    ).all()
    add("reward stock not the sum of its moves (reward, code, stock_left, moves)", rows)

    rows = session.execute(
        select(Redemption.id, Redemption.points, Entry.kind, Entry.points)
        .outerjoin(Entry, Entry.id == Redemption.entry_id)
        .where(
            or_(
                and_(Redemption.points > 0, Entry.id.is_(None)),
                and_(Redemption.points == 0, Redemption.entry_id.is_not(None)),
                and_(
                    Entry.id.is_not(None),
                    or_(
                        Entry.kind != "redeem",
                        Entry.points != -Redemption.points,
                        Entry.account_id != Redemption.account_id,
                    ),
                ),
            )
        )
        .order_by(Redemption.id)
    ).all()
    add(
        "redemption not matching its ledger entry (redemption, points, entry kind, entry points)",
        rows,
    )

    given_back = (
        select(Entry.reverses_entry_id.label("entry_id"), func.sum(Entry.points).label("points"))
        .where(Entry.kind == "reverse", Entry.reverses_entry_id.is_not(None))
        .group_by(Entry.reverses_entry_id)
        .subquery()
    )
    # Points returned: by any coupon of the redemption, a reissued one included.
    returns = (
        select(
            Coupon.redemption_id.label("redemption_id"),
            func.sum(Coupon.points_returned).label("returned"),
        )
        .where(Coupon.redemption_id.is_not(None))
        .group_by(Coupon.redemption_id)
        .subquery()
    )
    # Units: the coupons first issued (a reissue replaces one, it adds none).
    coupons = (
        select(
            Coupon.redemption_id.label("redemption_id"),
            func.sum(Coupon.points).label("points"),
            func.count().label("units"),
        )
        .where(Coupon.redemption_id.is_not(None), Coupon.reissued_from_id.is_(None))
        .group_by(Coupon.redemption_id)
        .subquery()
    )
    returned = func.coalesce(returns.c.returned, 0)
    rows = session.execute(
        select(Redemption.id, func.coalesce(given_back.c.points, 0), returned)
        .outerjoin(given_back, given_back.c.entry_id == Redemption.entry_id)
        .outerjoin(returns, returns.c.redemption_id == Redemption.id)
        .where(func.coalesce(given_back.c.points, 0) != returned)
        .order_by(Redemption.id)
    ).all()
    add("points given back not those its coupons returned (redemption, ledger, coupons)", rows)

    taken = (
        select(StockMove.redemption_id.label("redemption_id"), func.sum(StockMove.delta).label("d"))
        .where(StockMove.redemption_id.is_not(None))
        .group_by(StockMove.redemption_id)
        .subquery()
    )
    rows = session.execute(
        select(
            Redemption.id,
            Redemption.quantity,
            func.coalesce(taken.c.d, 0),
            func.coalesce(coupons.c.units, 0),
            func.coalesce(coupons.c.points, 0),
        )
        .join(Reward, Reward.id == Redemption.reward_id)
        .outerjoin(taken, taken.c.redemption_id == Redemption.id)
        .outerjoin(coupons, coupons.c.redemption_id == Redemption.id)
        .where(
            or_(
                and_(
                    Reward.stock_left.is_not(None),
                    func.coalesce(taken.c.d, 0) != -Redemption.quantity,
                ),
                and_(
                    Reward.kind != "external",
                    or_(
                        func.coalesce(coupons.c.units, 0) != Redemption.quantity,
                        func.coalesce(coupons.c.points, 0) != Redemption.points,
                    ),
                ),
            )
        )
        .order_by(Redemption.id)
    ).all()
    add(
        "redemption's stock or coupons not its quantity (redemption, quantity, stock, coupons, points)",
        rows,
    )

    rows = session.execute(
        select(Coupon.id, Coupon.balance_minor, Coupon.value_minor)
        .where(
            Coupon.balance_minor.is_not(None),
            or_(Coupon.balance_minor < 0, Coupon.balance_minor > Coupon.value_minor),
        )
        .order_by(Coupon.id)
    ).all()
    add("gift card balance outside [0, value] (coupon, balance, value)", rows)
