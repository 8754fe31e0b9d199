"""Redeeming rewards and giving them back.

A redemption is one transaction: the member's account lock, the eligibility and limit checks
(after the lock, so two tabs cannot both take the last allowed unit), one guarded stock UPDATE,
one ledger redeem entry through patron.ledger.service (soonest-to-expire lots first), the
coupons, their history, the outbox event and the audit record. Cancelling an unused coupon
gives its points back to the lots they came from and its unit back to stock.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session, aliased

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.coupons import codes
from patron.coupons.lookup import Refusal, coupon_event, state_refusal, store_id
from patron.coupons.models import Coupon, CouponEvent, Redemption, Reward
from patron.errors import CouponRefused, Invalid, NotEligible, NotFound, OutOfStock
from patron.events import outbox
from patron.fraud import redemption as fraud
from patron.ledger import service as ledger
from patron.ledger.models import Account, Entry
from patron.ledger.views import totals
from patron.members import service as members
from patron.members.models import Member
from patron.programs.models import Program
from patron.rewards.catalog import change_stock, get_reward, price_for
from patron.sales import snapshot
from patron.sales.plan import Source
from patron.sales.points import operate

# Kinds fulfilled by another system: redeeming issues no coupon, the webhook carries the order.
NO_COUPON_KINDS = ("external",)


def local_start(program: Program, now: datetime, unit: str) -> datetime:
    """The start of the program-local day or month holding `now`, as a UTC instant."""
    local = now.astimezone(ZoneInfo(program.timezone))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "month":
        start = start.replace(day=1)
    return start


def coupon_expiry(program: Program, reward: Reward, issued_at: datetime) -> datetime | None:
    """Valid through the `valid_days`-th local day after issue, and never past valid_until."""
    ends: list[datetime] = []
    if reward.valid_days is not None:
        day = local_start(program, issued_at, "day")
        # Wall-clock days (a DST change does not move the end off midnight).
        end = (day.replace(tzinfo=None) + timedelta(days=reward.valid_days + 1)).replace(
            tzinfo=day.tzinfo
        )
        ends.append(end.astimezone(UTC))
    if reward.valid_until is not None:
        ends.append(reward.valid_until)
    return min(ends) if ends else None


def refusal(
    session: Session,
    program: Program,
    reward: Reward,
    account: Account | None,
    *,
    quantity: int,
    store: str | None,
    channel: str,
    now: datetime,
    balance: int | None = None,
    segments: Collection[str] | None = None,
) -> Refusal | None:
    """Why this member may not redeem `quantity` of `reward` now, or None. Limits count the
    member's redemptions not cancelled, in the program's local day and month. `segments`: the
    segments (of those the reward names) the member is in now, when the caller read them for
    several rewards at once (`member_segments`); otherwise they are read here, in one query."""
    if reward.status != "active":
        return Refusal("reward_not_available", f"reward {reward.code} is {reward.status}")
    if reward.available_from is not None and now < reward.available_from:
        return Refusal(
            "reward_not_available",
            f"reward {reward.code} can be redeemed from {reward.available_from.isoformat()}",
        )
    if reward.available_until is not None and now >= reward.available_until:
        return Refusal("reward_not_available", f"reward {reward.code} is no longer offered")
    tier = account.tier if account is not None else None
    if reward.tiers and tier not in reward.tiers:
        return Refusal(
            "tier_not_eligible", f"reward {reward.code} is for tiers {', '.join(reward.tiers)}"
        )
    if reward.segments:
        if segments is None:
            segments = member_segments(session, program, account, reward.segments, now)
        if not set(reward.segments) & set(segments):
            return Refusal("segment_not_eligible", segment_detail(reward))
    if reward.stores and store is not None and store not in reward.stores:
        return Refusal("store_not_eligible", f"reward {reward.code} is not offered at {store}")
    if reward.channels and channel not in reward.channels:
        return Refusal(
            "channel_not_eligible", f"reward {reward.code} cannot be redeemed via {channel}"
        )
    if reward.stock_left is not None and reward.stock_left < quantity:
        return Refusal("out_of_stock", f"reward {reward.code} has {reward.stock_left} left")
    if account is not None:
        for limit, since, label in (
            (reward.limit_per_day, local_start(program, now, "day"), "a day"),
            (reward.limit_per_month, local_start(program, now, "month"), "a month"),
            (reward.limit_ever, None, "in all"),
        ):
            if limit is None:
                continue
            taken = _redeemed_units(session, reward, account.member_id, since)
            if taken + quantity > limit:
                return Refusal(
                    "limit_reached",
                    f"reward {reward.code}: at most {limit} {label}; {taken} already redeemed",
                )
    if balance is not None:
        price = price_for(reward, tier) * quantity
        if price > balance:
            return Refusal(
                "insufficient_points", f"{price} points needed but only {balance} are available"
            )
    return None


def member_segments(
    session: Session,
    program: Program,
    account: Account | None,
    codes: Collection[str],
    now: datetime,
) -> frozenset[str]:
    """Which of the segments `codes` the account's member is in at `now`: live membership
    (tier and balance now, windows ending now), as an earning rule's `segments` condition
    reads it for a sale, in ONE query for all the codes (patron.segments.service.memberships).
    A code the program no longer has holds nobody (so a reward naming it is refused)."""
    if account is None or not codes:
        return frozenset()
    from patron.segments.service import memberships

    found = memberships(
        session, program, sorted(set(codes)), [account.member_id], at=now, known=True
    )
    return frozenset(found.get(account.member_id, ()))


def segment_detail(reward: Reward) -> str:
    listed = ", ".join(reward.segments)
    if len(reward.segments) == 1:
        return f"reward {reward.code} is for members of segment {listed}"
    return f"reward {reward.code} is for members of any of segments {listed}"


def _redeemed_units(
    session: Session, reward: Reward, member_id: int, since: datetime | None
) -> int:
    """Units of `reward` the member redeemed since `since`, less units cancelled since."""
    stmt = select(func.coalesce(func.sum(Redemption.quantity), 0)).where(
        Redemption.reward_id == reward.id, Redemption.member_id == member_id
    )
    # A coupon closed by a reissue lives on in its replacement: it frees no unit.
    replacement = aliased(Coupon)
    cancelled = (
        select(func.count())
        .select_from(Coupon)
        .join(Redemption, Redemption.id == Coupon.redemption_id)
        .where(
            Redemption.reward_id == reward.id,
            Redemption.member_id == member_id,
            Coupon.status == "cancelled",
            ~exists().where(replacement.reissued_from_id == Coupon.id),
        )
    )
    if since is not None:
        stmt = stmt.where(Redemption.created_at >= since)
        cancelled = cancelled.where(Redemption.created_at >= since)
    return int(session.scalar(stmt) or 0) - int(session.scalar(cancelled) or 0)


def _issue(
    session: Session,
    program: Program,
    reward: Reward,
    *,
    member_id: int | None,
    redemption: Redemption | None,
    points: int,
    source: str,
    campaign: str | None,
    actor: Actor,
    now: datetime,
    code: str | None = None,
    expires_at: datetime | None = None,
    reissued_from: Coupon | None = None,
) -> Coupon:
    coupon = Coupon(
        program_id=program.id,
        reward_id=reward.id,
        redemption_id=redemption.id if redemption is not None else None,
        member_id=member_id,
        code=code or codes.generate(),
        source=source,
        campaign=campaign,
        status="issued",
        points=points,
        value_minor=reward.value_minor,
        balance_minor=reward.value_minor if reward.kind == "gift_card" else None,
        issued_at=now,
        expires_at=expires_at if expires_at is not None else coupon_expiry(program, reward, now),
        reissued_from_id=reissued_from.id if reissued_from is not None else None,
    )
    session.add(coupon)
    session.flush()
    session.add(CouponEvent(coupon_id=coupon.id, kind="issued", at=now, actor=str(actor)))
    return coupon


def redeem(
    session: Session,
    program: Program,
    reward_code: str,
    *,
    member: Member,
    quantity: int,
    store: str | None,
    channel: str,
    actor: Actor,
    now: datetime,
) -> tuple[Redemption, list[Coupon], Account]:
    members.ensure_active(member)
    reward = get_reward(session, program, reward_code)
    the_store = store_id(session, program, store)
    # The program's fraud controls (verified contact, redemptions per day): before any write.
    guarded = fraud.check_redemption(
        session, program.id, program.timezone, member.id, store_id=the_store, actor=actor, now=now
    )
    account = ledger.open_account(session, program_id=program.id, member_id=member.id, now=now)
    ledger.settle_due(session, account, now)
    why = refusal(
        session, program, reward, account, quantity=quantity, store=store, channel=channel, now=now
    )
    if why is not None:
        if why.code == "out_of_stock":
            raise OutOfStock(why.detail)
        raise NotEligible(why.detail, code=why.code)
    unit_price = price_for(reward, account.tier)
    redemption = Redemption(
        program_id=program.id,
        reward_id=reward.id,
        reward_version=reward.version,
        member_id=member.id,
        account_id=account.id,
        quantity=quantity,
        points=unit_price * quantity,
        value_minor=reward.value_minor * quantity,
        tier=account.tier,
        store_id=the_store,
        channel=channel,
        actor=str(actor),
        created_at=now,
    )
    session.add(redemption)
    session.flush()
    if redemption.points:
        source = Source(
            store_id=the_store,
            channel=channel if channel in ("pos", "online", "app") else None,
            external_ref=f"reward:{reward.code}",
        )
        details = {"reward": reward.code, "redemption": redemption.id, "quantity": quantity}
        spent = operate(
            session,
            program.id,
            member.id,
            lambda planner, _state: planner.spend(
                member.id,
                redemption.points,
                reason=f"reward {reward.code} × {quantity}",
                source=source,
                details=details,
            ),
            actor=actor,
            now=now,
            new_rows=(0, 1),
        )
        redemption.entry_id = spent.id
    coupons: list[Coupon] = []
    if reward.kind not in NO_COUPON_KINDS:
        coupons = [
            _issue(
                session,
                program,
                reward,
                member_id=member.id,
                redemption=redemption,
                points=unit_price,
                source="redeem",
                campaign=None,
                actor=actor,
                now=now,
            )
            for _ in range(quantity)
        ]
    outbox.emit(
        session,
        kind="reward.redeemed",
        program_id=program.id,
        member_id=member.id,
        at=now,
        payload={
            "program": program.code,
            "member_id": member.id,
            "redemption_id": redemption.id,
            "reward": reward.code,
            "reward_kind": reward.kind,
            "quantity": quantity,
            "points": redemption.points,
            "entry_id": redemption.entry_id,
            "coupons": [codes.display(c.code) for c in coupons],
            "expires_at": (
                coupons[0].expires_at.isoformat() if coupons and coupons[0].expires_at else None
            ),
            "fulfilment": "external" if reward.kind in NO_COUPON_KINDS else "coupon",
            "store": store,
            "channel": channel,
        },
    )
    audit.record(
        session,
        actor=actor,
        action="reward.redeemed",
        subject_type="member",
        subject_id=member.id,
        program_id=program.id,
        at=now,
        after={
            "reward": reward.code,
            "quantity": quantity,
            "points": redemption.points,
            "redemption": redemption.id,
            "coupons": [c.id for c in coupons],
        },
    )
    # The guarded UPDATE is the oversell guard (the check above only gives the nicer answer).
    # Last, so the reward's row lock, which every redemption of it queues on, is held for
    # as little of the transaction as possible.
    change_stock(
        session, reward, -quantity, reason="redeem", actor=actor, now=now,
        redemption_id=redemption.id,
    )  # fmt: skip
    if guarded is not None and guarded.limits:
        fraud.record_redemption(
            session, program.id, member.id, store_id=the_store, actor=actor, now=now
        )
    session.flush()
    return redemption, coupons, account


def _close(session: Session, coupon: Coupon, status: str, now: datetime) -> bool:
    """Move an issued coupon to `status`; False when someone else moved it first."""
    moved = session.execute(
        update(Coupon)
        .where(Coupon.id == coupon.id, Coupon.status == "issued")
        .values(status=status, closed_at=now)
    ).rowcount  # type: ignore[attr-defined]
    session.refresh(coupon)
    return bool(moved)


@dataclass
class GiveBack:
    coupon: Coupon
    points_returned: int
    points_expired_again: int
    account: Account | None


def cancel(
    session: Session,
    program: Program,
    coupon: Coupon,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
    status: str = "cancelled",
    give_points: bool = True,
) -> GiveBack:
    """Close an unused coupon: its points back to the lots they came from (points whose lot
    expired meanwhile expire again at once: the reward gave them a second life, not a new
    date), its unit back to stock. Used by staff and members (cancelled) and by the coupon
    expiry job for rewards that refund on expiry (expired)."""
    account = None
    redemption = (
        session.get(Redemption, coupon.redemption_id) if coupon.redemption_id is not None else None
    )
    if redemption is not None:
        account = ledger.lock_account(session, redemption.account_id)
    why = state_refusal(coupon, now) if status == "cancelled" else None
    if why is not None:
        raise CouponRefused(why.detail, code=why.code)
    if not _close(session, coupon, status, now):
        why = state_refusal(coupon, now)
        raise CouponRefused(
            why.detail if why else "the coupon changed", code=why.code if why else "coupon_refused"
        )
    reward = session.get(Reward, coupon.reward_id)
    assert reward is not None
    returned = expired_again = 0
    if give_points and redemption is not None and account is not None and coupon.points:
        assert redemption.entry_id is not None
        entry = session.get(Entry, redemption.entry_id)
        assert entry is not None
        ledger.settle_due(session, account, now, actor=str(actor))  # what was due anyway
        expired_before = account.expired
        opened = snapshot.opened(session, entry.id)
        operate(
            session,
            program.id,
            account.member_id,
            lambda planner, state: planner.give_back(
                state.member_id,
                entry.id,
                coupon.points,
                opened,
                reason=f"coupon {codes.display(coupon.code)} {status}: {reason}",
                occurred_at=now,
                source=Source(external_ref=f"reward:{reward.code}"),
            ),
            actor=actor,
            now=now,
            new_rows=(0, 1 + len(opened)),
        )
        returned = coupon.points
        expired_again = account.expired - expired_before
        coupon.points_returned = returned
    if coupon.source == "redeem" or coupon.source == "bulk":
        change_stock(session, reward, 1, reason="cancel", actor=actor, now=now, coupon_id=coupon.id)
    session.add(
        CouponEvent(
            coupon_id=coupon.id,
            kind=status,
            at=now,
            actor=str(actor),
            reason=reason,
            details={"points_returned": returned, "points_expired_again": expired_again},
        )
    )
    coupon_event(
        session, f"coupon.{status}", program, coupon, reward, now,
        points_returned=returned, points_expired_again=expired_again, reason=reason,
    )  # fmt: skip
    audit.record(
        session,
        actor=actor,
        action=f"coupon.{status}",
        subject_type="coupon",
        subject_id=coupon.id,
        program_id=program.id,
        at=now,
        after={"reason": reason, "points_returned": returned, "expired_again": expired_again},
    )
    session.flush()
    return GiveBack(coupon, returned, expired_again, account)


def reissue(
    session: Session,
    program: Program,
    coupon: Coupon,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
) -> Coupon:
    """Replace an unused coupon (lost, or its code leaked) with a new code on the same terms:
    same points, same expiry; the old one is cancelled without points or stock moving."""
    why = state_refusal(coupon, now)
    if why is not None:
        raise CouponRefused(why.detail, code=why.code)
    if not _close(session, coupon, "cancelled", now):
        why = state_refusal(coupon, now) or Refusal("coupon_refused", "the coupon changed")
        raise CouponRefused(why.detail, code=why.code)
    reward = session.get(Reward, coupon.reward_id)
    assert reward is not None
    redemption = (
        session.get(Redemption, coupon.redemption_id) if coupon.redemption_id is not None else None
    )
    fresh = _issue(
        session,
        program,
        reward,
        member_id=coupon.member_id,
        redemption=redemption,
        points=coupon.points,
        source=coupon.source,
        campaign=coupon.campaign,
        actor=actor,
        now=now,
        expires_at=coupon.expires_at,
        reissued_from=coupon,
    )
    fresh.balance_minor = coupon.balance_minor
    session.add(
        CouponEvent(
            coupon_id=coupon.id,
            kind="reissued",
            at=now,
            actor=str(actor),
            reason=reason,
            details={"new_coupon": fresh.id},
        )
    )
    audit.record(
        session,
        actor=actor,
        action="coupon.reissued",
        subject_type="coupon",
        subject_id=coupon.id,
        program_id=program.id,
        at=now,
        after={"reason": reason, "new_coupon": fresh.id},
    )
    session.flush()
    return fresh


def bulk_issue(
    session: Session,
    program: Program,
    reward: Reward,
    member_ids: list[int],
    *,
    campaign: str | None,
    actor: Actor,
    now: datetime,
) -> list[Coupon]:
    """One coupon per listed member at no points cost (a campaign); stock is taken if the
    reward tracks it, all or nothing."""
    wanted = list(dict.fromkeys(member_ids))
    found = set(session.scalars(select(Member.id).where(Member.id.in_(wanted))))
    missing = [m for m in wanted if m not in found]
    if missing:
        raise NotFound(f"no member {missing[0]}", code="member_not_found")
    if reward.kind in NO_COUPON_KINDS:
        raise Invalid("an external reward issues no coupons", code="invalid_reward")
    change_stock(session, reward, -len(member_ids), reason="redeem", actor=actor, now=now,
                 note=f"bulk issue {campaign or ''}".strip())  # fmt: skip
    issued = [
        _issue(
            session,
            program,
            reward,
            member_id=m,
            redemption=None,
            points=0,
            source="bulk",
            campaign=campaign,
            actor=actor,
            now=now,
        )
        for m in member_ids
    ]
    for coupon in issued:
        expires = coupon.expires_at.isoformat() if coupon.expires_at else None
        coupon_event(
            session, "coupon.issued", program, coupon, reward, now, campaign=campaign,
            expires_at=expires,
        )  # fmt: skip
    audit.record(
        session,
        actor=actor,
        action="coupon.bulk_issued",
        subject_type="reward",
        subject_id=reward.code,
        program_id=program.id,
        at=now,
        after={"campaign": campaign, "members": len(member_ids)},
    )
    session.flush()
    return issued


def import_codes(
    session: Session,
    program: Program,
    reward: Reward,
    raw_codes: list[str],
    member_ids: list[int] | None,
    *,
    campaign: str | None,
    actor: Actor,
    now: datetime,
) -> list[Coupon]:
    """Partner codes as coupons of `reward` (kept as given, normalised); a code that exists
    already, or twice in the list, refuses the whole import."""
    normalised = [codes.normalise(c) for c in raw_codes]
    bad = [c for c in normalised if not (4 <= len(c) <= 64) or not c.isprintable()]
    if bad:
        raise Invalid(f"code {bad[0]!r} is not 4–64 printable characters", code="invalid_code")
    seen: set[str] = set()
    for c in normalised:
        if c in seen:
            raise Invalid(f"code {c} is listed twice", code="duplicate_code")
        seen.add(c)
    taken = session.scalar(select(Coupon.code).where(Coupon.code.in_(normalised)).limit(1))
    if taken is not None:
        raise Invalid(f"code {taken} exists already", code="duplicate_code")
    if member_ids is not None:
        found = set(session.scalars(select(Member.id).where(Member.id.in_(set(member_ids)))))
        missing = [m for m in member_ids if m not in found]
        if missing:
            raise NotFound(f"no member {missing[0]}", code="member_not_found")
    issued = [
        _issue(
            session,
            program,
            reward,
            member_id=member_ids[i] if member_ids else None,
            redemption=None,
            points=0,
            source="import",
            campaign=campaign,
            actor=actor,
            now=now,
            code=code,
        )
        for i, code in enumerate(normalised)
    ]
    audit.record(
        session,
        actor=actor,
        action="coupon.imported",
        subject_type="reward",
        subject_id=reward.code,
        program_id=program.id,
        at=now,
        after={"campaign": campaign, "codes": len(normalised)},
    )
    session.flush()
    return issued


def balance_after(session: Session, account: Account, now: datetime) -> int:
    return totals(session, account, now, settled=True).available
