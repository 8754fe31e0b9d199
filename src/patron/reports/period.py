"""The period report: points earned, redeemed, expired and adjusted per day, week or month, by
store, channel or tier, next to the sales they came from."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import Date, DateTime, cast, func, select, type_coerce
from sqlalchemy.orm import Session

from patron.errors import Invalid, NotFound
from patron.ledger.views import store_codes
from patron.programs.models import Program
from patron.programs.service import get_store
from patron.reports import rollup
from patron.reports.common import (
    Basis,
    DayRange,
    Figures,
    Granularity,
    GroupBy,
    bucket,
    bucket_end,
    bucket_label,
    from_minor,
    money,
)
from patron.reports.models import MEASURES


class FiguresOut(BaseModel):
    """Points are magnitudes; `net` is the change in points outstanding."""

    earned: int = Field(description="Points earned (purchases and events)")
    reversed: int = Field(description="Earned points taken back by refunds")
    redeemed: int = Field(description="Points spent")
    restored: int = Field(description="Spent points given back by refunds")
    expired: int
    adjusted_in: int = Field(description="Manual credits")
    adjusted_out: int = Field(description="Manual debits")
    other: int = Field(0, description="Entries of any other kind, signed")
    net: int = Field(description="earned − reversed − redeemed + restored − expired ± adjusted")
    issued: int = Field(description="earned − reversed + adjusted_in")
    net_redeemed: int = Field(description="redeemed − restored")
    purchases: int = Field(description="Sales that earned or spent points")
    sales: Decimal = Field(description="Their amount (gross, in the program's currency)")
    issued_value: Decimal = Field(description="issued × point value")
    redeemed_value: Decimal = Field(description="net_redeemed × point value")


def figures_out(program: Program, f: Figures) -> FiguresOut:
    return FiguresOut(
        earned=f.earned,
        reversed=f.reversed,
        redeemed=f.redeemed,
        restored=f.restored,
        expired=f.expired,
        adjusted_in=f.adjusted_in,
        adjusted_out=f.adjusted_out,
        other=f.other,
        net=f.net,
        issued=f.issued,
        net_redeemed=f.used,
        purchases=f.purchases,
        sales=from_minor(program, f.sales_minor),
        issued_value=money(program, f.issued),
        redeemed_value=money(program, f.used),
    )


class PeriodRow(FiguresOut):
    period: str = Field(description="2026-03-02, 2026-W10 or 2026-03")
    starts: date = Field(description="First day of the period inside the range")
    ends: date = Field(description="Last day of the period inside the range")
    group: str | None = Field(
        None, description="Store code, channel or tier when grouped; null = none"
    )


class PeriodReport(BaseModel):
    program: str
    currency: str
    timezone: str
    basis: Basis
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
    granularity: Granularity
    group_by: GroupBy | None
    filters: dict[str, str]
    rows: list[PeriodRow]
    totals: FiguresOut
    generated_at: datetime


def resolve_filters(
    session: Session,
    program: Program,
    *,
    store: str | None,
    channel: str | None,
    tier: str | None,
) -> dict[str, Any]:
    """Filter values as the roll-up stores them; an unknown store is a 422 naming the field."""
    out: dict[str, Any] = {}
    if store is not None:
        try:
            out["store_id"] = get_store(session, program, store).id
        except NotFound:
            raise Invalid(
                f"store: program {program.code} has no store {store!r}", code="store_not_found"
            ) from None
    if channel is not None:
        out["channel"] = channel
    if tier is not None:
        out["tier"] = tier
    return out


def daily(
    session: Session,
    program: Program,
    *,
    first_day: date | None,
    last_day: date | None,
    lo: datetime | None,
    hi: datetime | None,
    basis: Basis = "occurred",
    group_by: GroupBy | None = None,
    where: dict[str, Any] | None = None,
    granularity: Granularity = "day",
) -> list[tuple[date, Any, Figures]]:
    """(first day of the period, group value, figures) for every day (week, month) with
    entries: the roll-up and the live tail, grouped in the database."""
    src = rollup.source(
        session,
        program,
        basis=basis,
        first_day=first_day,
        last_day=last_day,
        lo=lo,
        hi=hi,
        tiers=group_by == "tier" or "tier" in (where or {}),
    )
    dims = {"store": src.c.store_id, "channel": src.c.channel, "tier": src.c.tier}
    period_start = _bucket_sql(session.get_bind().dialect.name, src.c.day, granularity)
    group_cols = [period_start] + ([dims[group_by]] if group_by else [])
    stmt = select(*group_cols, *[func.sum(src.c[m]) for m in MEASURES]).group_by(*group_cols)
    for column, value in (where or {}).items():
        stmt = stmt.where(src.c[column] == value)
    out = []
    for row in session.execute(stmt):
        key = row[1] if group_by else None
        out.append((row[0], key, Figures.of(row[len(group_cols) :])))
    return out


def _bucket_sql(dialect: str, day: Any, granularity: Granularity) -> Any:
    """The first day of the day's ISO week or month, in SQL (see common.bucket)."""
    if granularity == "day":
        return day
    if dialect == "postgresql":
        # Through a timestamp without time zone: the session's TimeZone plays no part.
        return cast(func.date_trunc(granularity, cast(day, DateTime)), Date).label("period")
    if granularity == "month":
        return type_coerce(func.date(day, "start of month"), Date).label("period")
    # SQLite: back 6 days, then forward to the next Monday (or stay on it).
    return type_coerce(func.date(day, "-6 days", "weekday 1"), Date).label("period")


def total(
    session: Session,
    program: Program,
    *,
    first_day: date | None,
    last_day: date | None,
    lo: datetime | None,
    hi: datetime | None,
    basis: Basis = "occurred",
) -> Figures:
    """The figures of a whole range in one row."""
    src = rollup.source(
        session,
        program,
        basis=basis,
        first_day=first_day,
        last_day=last_day,
        lo=lo,
        hi=hi,
        tiers=False,
    )
    row = session.execute(select(*[func.sum(src.c[m]) for m in MEASURES])).one()
    return Figures.of(row)


def _group_label(group_by: GroupBy | None, value: Any, stores: dict[int, str]) -> str | None:
    if group_by is None:
        return None
    if group_by == "store":
        return stores.get(value, f"#{value}") if value else None
    return value or None


def period_report(
    session: Session,
    program: Program,
    rng: DayRange,
    *,
    now: datetime,
    granularity: Granularity = "day",
    group_by: GroupBy | None = None,
    basis: Basis = "occurred",
    store: str | None = None,
    channel: str | None = None,
    tier: str | None = None,
) -> PeriodReport:
    """Points per period (and group) in the program's local dates, with the sales they came
    from. Periods with no entries are left out; `totals` covers the whole range."""
    where = resolve_filters(session, program, store=store, channel=channel, tier=tier)
    rows = daily(
        session,
        program,
        first_day=rng.first,
        last_day=rng.last,
        lo=rng.lo,
        hi=rng.hi,
        basis=basis,
        group_by=group_by,
        where=where,
        granularity=granularity,
    )
    stores = store_codes(session, program.id) if group_by == "store" else {}
    grouped: dict[tuple[date, str | None], Figures] = {}
    totals = Figures()
    for day, key, figures in rows:
        slot = (bucket(day, granularity), _group_label(group_by, key, stores))
        grouped.setdefault(slot, Figures()).add(figures)
        totals.add(figures)
    out_rows = []
    for (start, group), figures in sorted(
        grouped.items(), key=lambda item: (item[0][0], item[0][1] is None, item[0][1] or "")
    ):
        out_rows.append(
            PeriodRow(
                period=bucket_label(start, granularity),
                starts=max(start, rng.first),
                ends=min(bucket_end(start, granularity), rng.last),
                group=group,
                **figures_out(program, figures).model_dump(),
            )
        )
    filters = {k: v for k, v in (("store", store), ("channel", channel), ("tier", tier)) if v}
    return PeriodReport(
        program=program.code,
        currency=program.currency,
        timezone=program.timezone,
        basis=basis,
        first_day=rng.first,
        last_day=rng.last,
        granularity=granularity,
        group_by=group_by,
        filters=filters,
        rows=out_rows,
        totals=figures_out(program, totals),
        generated_at=now,
    )
