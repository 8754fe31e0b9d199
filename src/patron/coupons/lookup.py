"""Finding a coupon by what a till or a member typed or scanned, whether its state lets it be
used, why not (a Refusal: an error code and a sentence), and the coupon.* outbox events. Shared
by using a coupon (patron.coupons.use) and by redeeming and cancelling (patron.rewards.redeem).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.coupons import codes, tokens
from patron.coupons.models import Coupon, Reward
from patron.errors import CouponRefused, NotFound
from patron.events import outbox
from patron.programs.models import Program, Store


@dataclass(frozen=True)
class Refusal:
    code: str
    detail: str


def store_id(session: Session, program: Program, code: str | None) -> int | None:
    if code is None:
        return None
    found = session.scalar(
        select(Store.id).where(Store.program_id == program.id, Store.code == code)
    )
    if found is None:
        raise NotFound(f"program {program.code} has no store {code!r}", code="store_not_found")
    return found


def coupon_event(
    session: Session,
    kind: str,
    program: Program,
    coupon: Coupon,
    reward: Reward,
    at: datetime,
    **details: object,
) -> None:
    """A coupon.* event in the outbox: who, which coupon and reward, and what happened."""
    outbox.emit(
        session,
        kind=kind,
        program_id=program.id,
        member_id=coupon.member_id,
        at=at,
        payload={
            "program": program.code,
            "member_id": coupon.member_id,
            "coupon": codes.display(coupon.code),
            "reward": reward.code,
            **details,
        },
    )


def find_coupon(session: Session, program: Program, raw: str, *, lock: bool = False) -> Coupon:
    """The program's coupon with this code (typed or scanned): 404 when no coupon has it,
    409 coupon_foreign when another program's does. `raw` may be an offline token."""
    if tokens.is_token(raw):
        raw = tokens.coupon_code(raw)
    code = codes.lookup_form(raw)
    stmt = select(Coupon).where(Coupon.code == code)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    coupon = session.scalars(stmt).one_or_none()
    if coupon is None:
        raise NotFound("no coupon has this code", code="coupon_not_found")
    if coupon.program_id != program.id:
        raise CouponRefused(
            f"this coupon belongs to another program than {program.code}", code="coupon_foreign"
        )
    return coupon


def state_refusal(coupon: Coupon, now: datetime) -> Refusal | None:
    if coupon.status == "used":
        return Refusal("coupon_used", f"this coupon was used on {coupon.used_at:%Y-%m-%d}")
    if coupon.status == "cancelled":
        return Refusal("coupon_cancelled", "this coupon was cancelled")
    if coupon.status == "expired" or (coupon.expires_at is not None and coupon.expires_at <= now):
        return Refusal("coupon_expired", "this coupon has expired")
    return None
