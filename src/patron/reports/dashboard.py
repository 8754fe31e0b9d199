"""The headline numbers of a program in one call, for the admin dashboard."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from patron.errors import Invalid
from patron.ledger.expiry import add_months
from patron.programs.models import Program
from patron.reports import finance, members, period
from patron.reports.common import Figures, day_start, from_minor, today
from patron.reports.members import TierCount
from patron.reports.period import FiguresOut, figures_out


class SeriesPoint(BaseModel):
    day: date
    earned: int = Field(description="Earned less refund reversals")
    redeemed: int = Field(description="Redeemed less refund give-backs")
    expired: int
    adjusted: int = Field(description="Manual credits less manual debits")
    net: int
    sales: Decimal


class DashboardOut(BaseModel):
    program: str
    currency: str
    today: date
    days: int
    series: list[SeriesPoint] = Field(description="One point per local day, oldest first")
    this_month: FiguresOut
    last_month: FiguresOut
    outstanding_points: int
    outstanding_value: Decimal
    breakage_rate_12m: Decimal | None
    redemption_rate_12m: Decimal | None
    members: int
    active_members: int
    dormant_members: int
    dormant_days: int
    tier_distribution: list[TierCount]
    generated_at: datetime


def dashboard(
    session: Session,
    program: Program,
    *,
    now: datetime,
    days: int = 30,
    dormant_days: int = members.DEFAULT_DORMANT_DAYS,
) -> DashboardOut:
    """Earned/redeemed/expired per day for the last `days` days, this and last month, the
    outstanding points and their value, breakage and redemption rates (trailing 12 months),
    active and dormant members and the tier distribution — all as of today (local)."""
    if not 1 <= days <= 366:
        raise Invalid("days: between 1 and 366", code="invalid_days")
    current = today(program, now)
    month_start = current.replace(day=1)
    last_month_start = add_months(month_start, -1)
    series_start = current - timedelta(days=days - 1)
    first = min(series_start, last_month_start)
    rows = period.daily(
        session,
        program,
        first_day=first,
        last_day=current,
        lo=day_start(program, first),
        hi=day_start(program, current + timedelta(days=1)),
    )
    per_day: dict[date, Figures] = {}
    this_month, last_month = Figures(), Figures()
    for day, _key, figures in rows:
        per_day.setdefault(day, Figures()).add(figures)
        if day >= month_start:
            this_month.add(figures)
        elif day >= last_month_start:
            last_month.add(figures)
    series = []
    for n in range(days):
        day = series_start + timedelta(days=n)
        f = per_day.get(day, Figures())
        series.append(
            SeriesPoint(
                day=day,
                earned=f.earned - f.reversed,
                redeemed=f.used,
                expired=f.expired,
                adjusted=f.adjusted_in - f.adjusted_out,
                net=f.net,
                sales=from_minor(program, f.sales_minor),
            )
        )
    owed = finance.liability(session, program, as_of=current, now=now)
    year = next(w for w in owed.breakage if w.months == 12)
    count, active, _never = members.activity(
        session, program, as_of=current, dormant_days=dormant_days
    )
    return DashboardOut(
        program=program.code,
        currency=program.currency,
        today=current,
        days=days,
        series=series,
        this_month=figures_out(program, this_month),
        last_month=figures_out(program, last_month),
        outstanding_points=owed.outstanding_points,
        outstanding_value=owed.outstanding_value,
        breakage_rate_12m=year.breakage_rate,
        redemption_rate_12m=year.redemption_rate,
        members=count,
        active_members=active,
        dormant_members=count - active,
        dormant_days=dormant_days,
        tier_distribution=members.tier_distribution(session, program, as_of=current),
        generated_at=now,
    )
