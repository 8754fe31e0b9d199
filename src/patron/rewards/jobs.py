"""Coupons past their date: expired in bounded chunks, each chunk one transaction.

What an expiring coupon does is the reward's choice (`on_expiry`): `forfeit` keeps the points
spent, `refund` gives them back to the member's lots like a cancellation. Either way the unit
goes back to stock (it was never handed over). Safe to run late, twice, or from several
workers: each coupon moves from issued by a guarded UPDATE, so only one run closes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from patron.audit.service import SYSTEM, Actor
from patron.coupons.models import Coupon, Reward
from patron.db.engine import Database
from patron.errors import CouponRefused
from patron.programs.models import Program
from patron.rewards.redeem import cancel


@dataclass
class CouponExpiry:
    coupons: int = 0
    refunded: int = 0  # coupons whose points went back
    points_returned: int = 0
    chunks: int = 0


def _due(now: datetime) -> Select[int]:
    return select(Coupon.id).where(Coupon.status == "issued", Coupon.expires_at <= now)


def preview(session: Session, now: datetime) -> int:
    return int(session.scalar(select(func.count()).select_from(_due(now).subquery())) or 0)


def expire_coupons(
    db: Database, now: datetime, *, batch_size: int = 1000, actor: Actor = SYSTEM
) -> CouponExpiry:
    report = CouponExpiry()
    last = 0
    while True:
        with db.unit_of_work() as session:
            ids = list(
                session.scalars(
                    _due(now).where(Coupon.id > last).order_by(Coupon.id).limit(batch_size)
                )
            )
            if not ids:
                break
            last = ids[-1]
            report.chunks += 1
            for coupon in session.scalars(select(Coupon).where(Coupon.id.in_(ids))):
                reward = session.get(Reward, coupon.reward_id)
                program = session.get(Program, coupon.program_id)
                assert reward is not None and program is not None
                try:
                    back = cancel(
                        session,
                        program,
                        coupon,
                        reason="expired unused",
                        actor=actor,
                        now=now,
                        status="expired",
                        give_points=reward.on_expiry == "refund",
                    )
                except CouponRefused:
                    continue  # used or cancelled a moment ago: nothing to expire
                report.coupons += 1
                if back.points_returned:
                    report.refunded += 1
                    report.points_returned += back.points_returned
    return report
