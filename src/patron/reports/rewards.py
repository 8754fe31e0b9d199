"""Rewards and coupons in the reports: redemptions per period and reward (by store, tier or
channel) with what they cost the program, stock and its moves, coupons outstanding as of a date
(a liability beside the points), and coupon breakage.

Every figure is one GROUP BY over redemptions, coupons, coupon events or stock moves; Python
only adds up the grouped rows into periods. Money is the rewards' `value_minor` (what a unit
costs the program) in the program's currency.

Dates (docs/reports.md):
- a redemption counts on the local day it was made; a coupon cancelled later (points and unit
  given back) is netted out on the local day it was **cancelled**, under the redemption's
  reward, store, tier and channel — so a day's figures never change once it is over, and the
  points agree with the period report (a cancellation's points come back in a `reverse` entry
  dated when it is cancelled). A coupon closed by a reissue is not a cancellation: its
  replacement carries the unit on.
- a coupon stops being outstanding when it is used (`used_at`, the till's time), cancelled
  (`closed_at`) or expires (`expires_at`, whether or not a job has marked it yet) — the instant
  it expires, as a lot's points do in the points liability.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import and_, case, exists, false, func, or_, select, true
from sqlalchemy.orm import Session

from patron.coupons.models import Coupon, CouponEvent, Redemption, Reward, StockMove
from patron.errors import Invalid
from patron.ledger.views import store_codes
from patron.programs.models import Program
from patron.reports import rollup
from patron.reports.common import (
    DayRange,
    Granularity,
    GroupBy,
    bucket,
    bucket_end,
    bucket_label,
    check_day,
    day_start,
    from_minor,
    ratio,
    today,
)

# --- shared -------------------------------------------------------------------------------------


class RewardInfo(BaseModel):
    reward: str = Field(description="The reward's code")
    names: dict[str, str] = Field(default_factory=dict, description="Per language")
    kind: str


def _rewards(session: Session, program: Program) -> dict[int, Reward]:
    return {r.id: r for r in session.scalars(select(Reward).where(Reward.program_id == program.id))}


def _info(reward: Reward) -> dict[str, Any]:
    return {"reward": reward.code, "names": dict(reward.names or {}), "kind": reward.kind}


def end_of(program: Program, as_of: date, now: datetime) -> datetime:
    """The instant a local `as_of` ends (checked: in range, not in the future)."""
    check_day(as_of, "as_of")
    if as_of > today(program, now):
        raise Invalid(
            f"as_of: {as_of.isoformat()} is in the future (today is "
            f"{today(program, now).isoformat()} in {program.timezone})",
            code="as_of_in_future",
        )
    return day_start(program, as_of + timedelta(days=1))


# --- redemptions per period ---------------------------------------------------------------------


class RedemptionFigures(BaseModel):
    """Gross redemptions, the cancellations netted out of them, and the net."""

    redemptions: int = Field(description="Redemptions made (each one or more units)")
    units: int = Field(description="Units redeemed")
    points: int = Field(description="Points spent on them")
    value: Decimal = Field(description="What those units cost the program (reward value × units)")
    cancelled_units: int = Field(description="Units whose coupon was cancelled (dated then)")
    cancelled_points: int = Field(description="Points those cancellations gave back")
    cancelled_value: Decimal
    net_units: int = Field(description="units − cancelled_units")
    net_points: int = Field(description="points − cancelled_points")
    net_value: Decimal = Field(description="value − cancelled_value: the cost to the program")


@dataclass(slots=True)
class _Tally:
    redemptions: int = 0
    units: int = 0
    points: int = 0
    value_minor: int = 0
    cancelled_units: int = 0
    cancelled_points: int = 0
    cancelled_minor: int = 0

    def add(self, other: _Tally) -> None:
        self.redemptions += other.redemptions
        self.units += other.units
        self.points += other.points
        self.value_minor += other.value_minor
        self.cancelled_units += other.cancelled_units
        self.cancelled_points += other.cancelled_points
        self.cancelled_minor += other.cancelled_minor

    def out(self, program: Program) -> dict[str, Any]:
        return {
            "redemptions": self.redemptions,
            "units": self.units,
            "points": self.points,
            "value": from_minor(program, self.value_minor),
            "cancelled_units": self.cancelled_units,
            "cancelled_points": self.cancelled_points,
            "cancelled_value": from_minor(program, self.cancelled_minor),
            "net_units": self.units - self.cancelled_units,
            "net_points": self.points - self.cancelled_points,
            "net_value": from_minor(program, self.value_minor - self.cancelled_minor),
        }


class RedemptionRow(RedemptionFigures):
    period: str = Field(description="2026-03-02, 2026-W10 or 2026-03")
    starts: date = Field(description="First day of the period inside the range")
    ends: date = Field(description="Last day of the period inside the range")
    reward: str
    group: str | None = Field(None, description="Store code, tier or channel when grouped")


class RewardTotal(RewardInfo, RedemptionFigures):
    """One reward over the whole range."""


class RedemptionsReport(BaseModel):
    program: str
    currency: str
    timezone: str
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
    granularity: Granularity
    group_by: GroupBy | None
    rows: list[RedemptionRow]
    by_reward: list[RewardTotal] = Field(description="Each reward over the range, by code")
    totals: RedemptionFigures
    generated_at: datetime


def _dimension(group_by: GroupBy | None) -> Any:
    if group_by is None:
        return None
    return {
        "store": Redemption.store_id,
        "tier": Redemption.tier,
        "channel": Redemption.channel,
    }[group_by]


def not_reissued() -> Any:
    """The coupon was not closed by a reissue (its replacement carries the unit on)."""
    return ~exists().where(CouponEvent.coupon_id == Coupon.id, CouponEvent.kind == "reissued")


def _redeemed(
    session: Session, program: Program, rng: DayRange, group_by: GroupBy | None
) -> list[tuple[date, int, Any, _Tally]]:
    """(local day, reward id, group value, figures): redemptions on their day, cancellations
    on theirs, each a GROUP BY in the database."""
    dialect = session.get_bind().dialect.name
    dim = _dimension(group_by)
    made_day = rollup.local_day(dialect, Redemption.created_at, program.timezone).label("day")
    made = (
        select(
            made_day,
            Redemption.reward_id.label("reward_id"),
            *([dim.label("grp")] if dim is not None else []),
            Redemption.quantity.label("quantity"),
            Redemption.points.label("points"),
            Redemption.value_minor.label("value_minor"),
        )
        .where(
            Redemption.program_id == program.id,
            Redemption.created_at >= rng.lo,
            Redemption.created_at < rng.hi,
        )
        .subquery()
    )
    keys = [made.c.day, made.c.reward_id, *([made.c.grp] if dim is not None else [])]
    out: list[tuple[date, int, Any, _Tally]] = []
    for row in session.execute(
        select(
            *keys,
            func.count(),
            func.sum(made.c.quantity),
            func.sum(made.c.points),
            func.sum(made.c.value_minor),
        ).group_by(*keys)
    ):
        n, units, points, value = (int(v or 0) for v in row[len(keys) :])
        tally = _Tally(redemptions=n, units=units, points=points, value_minor=value)
        out.append((row.day, row.reward_id, row.grp if dim is not None else None, tally))

    cancel_day = rollup.local_day(dialect, Coupon.closed_at, program.timezone).label("day")
    cancelled = (
        select(
            cancel_day,
            Coupon.reward_id.label("reward_id"),
            *([dim.label("grp")] if dim is not None else []),
            Coupon.points.label("points"),
            Coupon.value_minor.label("value_minor"),
        )
        .join(Redemption, Redemption.id == Coupon.redemption_id)
        .where(
            Coupon.program_id == program.id,
            Coupon.status == "cancelled",
            Coupon.closed_at >= rng.lo,
            Coupon.closed_at < rng.hi,
            not_reissued(),
        )
        .subquery()
    )
    keys = [cancelled.c.day, cancelled.c.reward_id, *([cancelled.c.grp] if dim is not None else [])]
    for row in session.execute(
        select(
            *keys,
            func.count(),
            func.sum(cancelled.c.points),
            func.sum(cancelled.c.value_minor),
        ).group_by(*keys)
    ):
        units, points, value = (int(v or 0) for v in row[len(keys) :])
        tally = _Tally(cancelled_units=units, cancelled_points=points, cancelled_minor=value)
        out.append((row.day, row.reward_id, row.grp if dim is not None else None, tally))
    return out


def _group_label(group_by: GroupBy | None, value: Any, stores: dict[int, str]) -> str | None:
    if group_by is None or value is None:
        return None
    if group_by == "store":
        return stores.get(value, f"#{value}")
    return str(value) or None


def redemptions_report(
    session: Session,
    program: Program,
    rng: DayRange,
    *,
    now: datetime,
    granularity: Granularity = "day",
    group_by: GroupBy | None = None,
) -> RedemptionsReport:
    """Units, points and cost per period and reward (and store, tier or channel), in the
    program's local dates, with cancelled coupons netted out on the day they were cancelled.
    Periods without redemptions or cancellations are left out."""
    rollup.prepare(session)
    rewards = _rewards(session, program)
    stores = store_codes(session, program.id) if group_by == "store" else {}
    grouped: dict[tuple[date, str, str | None], _Tally] = {}
    per_reward: dict[int, _Tally] = {}
    totals = _Tally()
    for day, reward_id, key, tally in _redeemed(session, program, rng, group_by):
        code = rewards[reward_id].code
        slot = (bucket(day, granularity), code, _group_label(group_by, key, stores))
        grouped.setdefault(slot, _Tally()).add(tally)
        per_reward.setdefault(reward_id, _Tally()).add(tally)
        totals.add(tally)
    rows = [
        RedemptionRow(
            period=bucket_label(start, granularity),
            starts=max(start, rng.first),
            ends=min(bucket_end(start, granularity), rng.last),
            reward=code,
            group=group,
            **tally.out(program),
        )
        for (start, code, group), tally in sorted(
            grouped.items(), key=lambda i: (i[0][0], i[0][1], i[0][2] is None, i[0][2] or "")
        )
    ]
    by_reward = sorted(
        (
            RewardTotal(**_info(rewards[reward_id]), **tally.out(program))
            for reward_id, tally in per_reward.items()
        ),
        key=lambda r: r.reward,
    )
    return RedemptionsReport(
        program=program.code,
        currency=program.currency,
        timezone=program.timezone,
        first_day=rng.first,
        last_day=rng.last,
        granularity=granularity,
        group_by=group_by,
        rows=rows,
        by_reward=by_reward,
        totals=RedemptionFigures(**totals.out(program)),
        generated_at=now,
    )


# --- stock ------------------------------------------------------------------------------------


class StockRow(RewardInfo):
    status: str
    tracked: bool = Field(description="False: unlimited stock, no moves")
    stock_left: int | None = Field(description="Units left now; null is unlimited")
    opening: int = Field(description="Units on hand when the range starts (0 without a range)")
    restocked: int = Field(description="Units added by staff")
    redeemed: int = Field(description="Units taken by redemptions and bulk issues")
    returned: int = Field(description="Units given back by coupons cancelled or expired unused")
    corrected: int = Field(description="Staff corrections, signed")
    closing: int = Field(description="opening + restocked − redeemed + returned + corrected")


class StockReport(BaseModel):
    program: str
    first_day: date | None = Field(serialization_alias="from", description="null: all time")
    last_day: date | None = Field(serialization_alias="to")
    rows: list[StockRow]
    generated_at: datetime


def stock_report(
    session: Session, program: Program, rng: DayRange | None, *, now: datetime
) -> StockReport:
    """Every reward's stock: units left now and the moves (restock, redeem, cancel — a coupon
    cancelled or expired unused gives its unit back —, correction) in the range — all time without one — with the units on hand before it."""
    rewards = _rewards(session, program)
    reason = StockMove.reason

    def moved(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, StockMove.delta), else_=0)), 0)

    inside: Any = true() if rng is None else and_(StockMove.at >= rng.lo, StockMove.at < rng.hi)
    before: Any = false() if rng is None else StockMove.at < rng.lo
    figures = {
        row[0]: [int(v) for v in row[1:]]
        for row in session.execute(
            select(
                StockMove.reward_id,
                moved(before),
                moved(and_(inside, reason == "restock")),
                moved(and_(inside, reason == "redeem")),
                moved(and_(inside, reason == "cancel")),
                moved(and_(inside, reason == "correction")),
            )
            .join(Reward, Reward.id == StockMove.reward_id)
            .where(Reward.program_id == program.id)
            .group_by(StockMove.reward_id)
        )
    }
    rows = []
    for reward in sorted(rewards.values(), key=lambda r: r.code):
        opening, restocked, redeemed, returned, corrected = figures.get(reward.id, [0] * 5)
        rows.append(
            StockRow(
                **_info(reward),
                status=reward.status,
                tracked=reward.stock_left is not None,
                stock_left=reward.stock_left,
                opening=opening,
                restocked=restocked,
                redeemed=-redeemed,
                returned=returned,
                corrected=corrected,
                closing=opening + restocked + redeemed + returned + corrected,
            )
        )
    return StockReport(
        program=program.code,
        first_day=rng.first if rng else None,
        last_day=rng.last if rng else None,
        rows=rows,
        generated_at=now,
    )


# --- coupons outstanding ------------------------------------------------------------------------


@dataclass(frozen=True)
class Outstanding:
    reward_id: int
    coupons: int
    points: int
    value_minor: int


def outstanding(session: Session, program: Program, end: datetime) -> list[Outstanding]:
    """Per reward, the coupons open at instant `end`: issued before it and not used, cancelled
    or expired by then. A gift card is worth its balance then: its balance now plus what was
    spent from it since, less what refunds gave back since (a reissued card's spending stays
    with the card it was spent from)."""
    # A refunded order gives a gift card back what it spent (a `restored` event).
    signed = case(
        (CouponEvent.kind == "used", CouponEvent.amount_minor), else_=-CouponEvent.amount_minor
    )
    spent = (
        select(CouponEvent.coupon_id.label("coupon_id"), func.sum(signed).label("spent"))
        .join(Coupon, Coupon.id == CouponEvent.coupon_id)
        .where(
            Coupon.program_id == program.id,
            Coupon.balance_minor.is_not(None),
            CouponEvent.kind.in_(("used", "restored")),
            CouponEvent.at >= end,
        )
        .group_by(CouponEvent.coupon_id)
        .subquery()
    )
    closed = case(
        (Coupon.status == "used", func.coalesce(Coupon.used_at, Coupon.closed_at)),
        else_=Coupon.closed_at,
    )
    value = case(
        (
            Coupon.balance_minor.is_not(None),
            Coupon.balance_minor + func.coalesce(spent.c.spent, 0),
        ),
        else_=Coupon.value_minor,
    )
    rows = session.execute(
        select(Coupon.reward_id, func.count(), func.sum(Coupon.points), func.sum(value))
        .outerjoin(spent, spent.c.coupon_id == Coupon.id)
        .where(
            Coupon.program_id == program.id,
            Coupon.issued_at < end,
            or_(Coupon.expires_at.is_(None), Coupon.expires_at >= end),
            or_(Coupon.status == "issued", closed >= end),
        )
        .group_by(Coupon.reward_id)
    )
    return [Outstanding(r[0], int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]


def outstanding_total(session: Session, program: Program, end: datetime) -> tuple[int, int]:
    """(coupons, value in the minor unit) open at instant `end`, for the liability report."""
    found = outstanding(session, program, end)
    return sum(o.coupons for o in found), sum(o.value_minor for o in found)


class CouponsRow(RewardInfo):
    coupons: int = Field(description="Coupons open at the end of as_of")
    points: int = Field(description="Points members spent on them")
    value: Decimal = Field(description="Their value: the reward's, or a gift card's balance")


class CouponsReport(BaseModel):
    program: str
    currency: str
    as_of: date = Field(description="Local date; coupons open at the end of that day")
    rows: list[CouponsRow]
    coupons: int
    points: int
    value: Decimal = Field(description="The coupons' liability, in the program's currency")
    generated_at: datetime


def coupons_report(
    session: Session, program: Program, *, as_of: date, now: datetime
) -> CouponsReport:
    """Coupons outstanding at the end of local `as_of`, per reward, and their value."""
    end = end_of(program, as_of, now)
    rewards = _rewards(session, program)
    found = sorted(outstanding(session, program, end), key=lambda o: rewards[o.reward_id].code)
    return CouponsReport(
        program=program.code,
        currency=program.currency,
        as_of=as_of,
        rows=[
            CouponsRow(
                **_info(rewards[o.reward_id]),
                coupons=o.coupons,
                points=o.points,
                value=from_minor(program, o.value_minor),
            )
            for o in found
        ],
        coupons=sum(o.coupons for o in found),
        points=sum(o.points for o in found),
        value=from_minor(program, sum(o.value_minor for o in found)),
        generated_at=now,
    )


# --- coupon breakage ------------------------------------------------------------------------------


class BreakageFigures(BaseModel):
    expired: int = Field(description="Coupons that expired unused in the range")
    expired_points: int = Field(description="Points members had spent on them")
    expired_value: Decimal = Field(description="Their value (a gift card: its balance left)")
    used: int = Field(description="Coupons used in the range")
    used_value: Decimal
    breakage_rate: Decimal | None = Field(
        description="expired ÷ (expired + used), 4 decimals; null when neither"
    )


class BreakageRow(RewardInfo, BreakageFigures):
    on_expiry: str = Field(description="The reward's policy now: forfeit or refund the points")


class BreakageReport(BaseModel):
    program: str
    currency: str
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
    rows: list[BreakageRow]
    totals: BreakageFigures
    generated_at: datetime


def _breakage(program: Program, figures: list[int]) -> dict[str, Any]:
    expired, expired_points, expired_minor, used, used_minor = figures
    return {
        "expired": expired,
        "expired_points": expired_points,
        "expired_value": from_minor(program, expired_minor),
        "used": used,
        "used_value": from_minor(program, used_minor),
        "breakage_rate": ratio(expired, expired + used),
    }


def breakage_report(
    session: Session, program: Program, rng: DayRange, *, now: datetime
) -> BreakageReport:
    """Per reward, coupons that expired unused in the range (dated at their expiry, counted
    before the expiry job marks them) against coupons used in it (dated at the use)."""
    expired_at = func.coalesce(Coupon.expires_at, Coupon.closed_at)
    is_expired = and_(
        or_(
            Coupon.status == "expired",
            and_(Coupon.status == "issued", Coupon.expires_at <= now),
        ),
        expired_at >= rng.lo,
        expired_at < rng.hi,
    )
    is_used = and_(Coupon.status == "used", Coupon.used_at >= rng.lo, Coupon.used_at < rng.hi)

    def when(condition: Any, value: Any) -> Any:
        return func.coalesce(func.sum(case((condition, value), else_=0)), 0)

    rows = session.execute(
        select(
            Coupon.reward_id,
            when(is_expired, 1),
            when(is_expired, Coupon.points),
            when(is_expired, func.coalesce(Coupon.balance_minor, Coupon.value_minor)),
            when(is_used, 1),
            when(is_used, Coupon.value_minor),
        )
        .where(Coupon.program_id == program.id, or_(is_expired, is_used))
        .group_by(Coupon.reward_id)
    ).all()
    rewards = _rewards(session, program)
    totals = [0] * 5
    out = []
    for row in sorted(rows, key=lambda r: rewards[r[0]].code):
        figures = [int(v) for v in row[1:]]
        totals = [a + b for a, b in zip(totals, figures, strict=True)]
        reward = rewards[row[0]]
        out.append(
            BreakageRow(**_info(reward), on_expiry=reward.on_expiry, **_breakage(program, figures))
        )
    return BreakageReport(
        program=program.code,
        currency=program.currency,
        first_day=rng.first,
        last_day=rng.last,
        rows=out,
        totals=BreakageFigures(**_breakage(program, totals)),
        generated_at=now,
    )
