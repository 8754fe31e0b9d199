"""The members report: active and dormant members, new members per period, the tier
distribution as of a date and the moves between tiers per period."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.errors import Invalid
from patron.ledger.models import Account, Purchase
from patron.programs.models import Program
from patron.reports import rollup
from patron.reports.common import (
    DayRange,
    Granularity,
    bucket,
    bucket_label,
    check_day,
    day_start,
    today,
)
from patron.tiers.models import TierChange, TierDefinition

DEFAULT_DORMANT_DAYS = 90


class PeriodCount(BaseModel):
    period: str
    starts: date
    count: int


class TierCount(BaseModel):
    tier: str | None = Field(description="Tier code; null = no tier")
    names: dict[str, str] = Field(default_factory=dict)
    rank: int | None = None
    members: int


class TierMove(BaseModel):
    period: str
    starts: date
    from_tier: str | None
    to_tier: str | None
    direction: str = Field(description="up, down or same (by tier rank; no tier ranks lowest)")
    count: int


class MembersReport(BaseModel):
    program: str
    as_of: date = Field(description="Local date; counts are at the end of that day")
    dormant_days: int
    members: int = Field(description="Accounts opened by the end of as_of")
    active: int = Field(description="Members with a purchase in the dormant_days days up to as_of")
    dormant: int = Field(description="members − active")
    never_purchased: int = Field(description="Of the dormant: members with no purchase at all")
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
    granularity: Granularity
    new_members: list[PeriodCount]
    tier_distribution: list[TierCount]
    tier_moves: list[TierMove]


def activity(
    session: Session, program: Program, *, as_of: date, dormant_days: int
) -> tuple[int, int, int]:
    """(members, active, never purchased) at the end of `as_of`."""
    end = day_start(program, as_of + timedelta(days=1))
    since = day_start(program, as_of + timedelta(days=1) - timedelta(days=dormant_days))
    members = int(
        session.scalar(
            select(func.count())
            .select_from(Account)
            .where(Account.program_id == program.id, Account.created_at < end)
        )
        or 0
    )
    active = int(
        session.scalar(
            select(func.count(func.distinct(Purchase.account_id))).where(
                Purchase.program_id == program.id,
                Purchase.occurred_at >= since,
                Purchase.occurred_at < end,
            )
        )
        or 0
    )
    ever = int(
        session.scalar(
            select(func.count(func.distinct(Purchase.account_id))).where(
                Purchase.program_id == program.id, Purchase.occurred_at < end
            )
        )
        or 0
    )
    return members, active, members - ever


def tier_distribution(session: Session, program: Program, *, as_of: date) -> list[TierCount]:
    """Members per tier at the end of `as_of`, from the tier history (the last move before)."""
    end = day_start(program, as_of + timedelta(days=1))
    latest = (
        select(
            TierChange.account_id,
            TierChange.to_tier,
            func.row_number()
            .over(
                partition_by=TierChange.account_id,
                order_by=(TierChange.at.desc(), TierChange.id.desc()),
            )
            .label("n"),
        )
        .where(TierChange.program_id == program.id, TierChange.at < end)
        .subquery()
    )
    counts = {
        tier: int(n)
        for tier, n in session.execute(
            select(latest.c.to_tier, func.count())
            .join(Account, Account.id == latest.c.account_id)
            .where(latest.c.n == 1, Account.created_at < end)
            .group_by(latest.c.to_tier)
        )
    }
    members = int(
        session.scalar(
            select(func.count())
            .select_from(Account)
            .where(Account.program_id == program.id, Account.created_at < end)
        )
        or 0
    )
    without_history = members - sum(counts.values())
    none = without_history + counts.pop(None, 0)
    defined = session.scalars(
        select(TierDefinition)
        .where(TierDefinition.program_id == program.id)
        .order_by(TierDefinition.rank)
    ).all()
    out = [
        TierCount(tier=t.code, names=dict(t.names), rank=t.rank, members=counts.pop(t.code, 0))
        for t in defined
    ]
    # Tiers a member held that are no longer defined, then "no tier".
    out += [TierCount(tier=code, members=n) for code, n in sorted(counts.items()) if code]
    out.append(TierCount(tier=None, members=none))
    return out


def tier_moves(
    session: Session, program: Program, rng: DayRange, granularity: Granularity
) -> list[TierMove]:
    rollup.prepare(session)
    dialect = session.get_bind().dialect.name
    day = rollup.local_day(dialect, TierChange.at, program.timezone).label("day")
    inner = (
        select(day, TierChange.from_tier, TierChange.to_tier)
        .where(
            TierChange.program_id == program.id,
            TierChange.at >= rng.lo,
            TierChange.at < rng.hi,
        )
        .subquery()
    )
    rows = session.execute(
        select(inner.c.day, inner.c.from_tier, inner.c.to_tier, func.count()).group_by(
            inner.c.day, inner.c.from_tier, inner.c.to_tier
        )
    ).all()
    ranks = {
        code: rank
        for code, rank in session.execute(
            select(TierDefinition.code, TierDefinition.rank).where(
                TierDefinition.program_id == program.id
            )
        )
    }
    grouped: dict[tuple[date, str | None, str | None], int] = {}
    for day_value, from_tier, to_tier, n in rows:
        key = (bucket(day_value, granularity), from_tier, to_tier)
        grouped[key] = grouped.get(key, 0) + int(n)

    def rank(code: str | None) -> int:
        return ranks.get(code, -1) if code is not None else -1

    out = []
    for (start, from_tier, to_tier), n in sorted(
        grouped.items(), key=lambda i: (i[0][0], rank(i[0][1]), rank(i[0][2]), str(i[0][1:]))
    ):
        step = rank(to_tier) - rank(from_tier)
        out.append(
            TierMove(
                period=bucket_label(start, granularity),
                starts=max(start, rng.first),
                from_tier=from_tier,
                to_tier=to_tier,
                direction="up" if step > 0 else "down" if step < 0 else "same",
                count=n,
            )
        )
    return out


def new_members(
    session: Session, program: Program, rng: DayRange, granularity: Granularity
) -> list[PeriodCount]:
    rollup.prepare(session)
    dialect = session.get_bind().dialect.name
    day = rollup.local_day(dialect, Account.created_at, program.timezone).label("day")
    inner = (
        select(day)
        .where(
            Account.program_id == program.id,
            Account.created_at >= rng.lo,
            Account.created_at < rng.hi,
        )
        .subquery()
    )
    counts: dict[date, int] = {}
    for day_value, n in session.execute(select(inner.c.day, func.count()).group_by(inner.c.day)):
        start = bucket(day_value, granularity)
        counts[start] = counts.get(start, 0) + int(n)
    return [
        PeriodCount(period=bucket_label(s, granularity), starts=max(s, rng.first), count=n)
        for s, n in sorted(counts.items())
    ]


def members_report(
    session: Session,
    program: Program,
    rng: DayRange,
    *,
    now: datetime,
    as_of: date | None = None,
    dormant_days: int = DEFAULT_DORMANT_DAYS,
    granularity: Granularity = "month",
) -> MembersReport:
    """Activity and tiers at the end of `as_of` (default: the range's last day, or today if
    that is later than today); new members and tier moves per period of the range."""
    if not 1 <= dormant_days <= 3650:
        raise Invalid("dormant_days: between 1 and 3650", code="invalid_dormant_days")
    as_of = as_of or min(rng.last, today(program, now))
    check_day(as_of, "as_of")
    if as_of > today(program, now):
        raise Invalid(f"as_of: {as_of.isoformat()} is in the future", code="as_of_in_future")
    members, active, never = activity(session, program, as_of=as_of, dormant_days=dormant_days)
    return MembersReport(
        program=program.code,
        as_of=as_of,
        dormant_days=dormant_days,
        members=members,
        active=active,
        dormant=members - active,
        never_purchased=never,
        first_day=rng.first,
        last_day=rng.last,
        granularity=granularity,
        new_members=new_members(session, program, rng, granularity),
        tier_distribution=tier_distribution(session, program, as_of=as_of),
        tier_moves=tier_moves(session, program, rng, granularity),
    )
