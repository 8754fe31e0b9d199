"""A milestone's figure per account, as one SQL statement over purchases or entries.

`figure(session, plan, period)` returns a `Select` of (account_id, value) for every account
with activity in the period: the evaluation job filters it on the target and inserts the
achievements from it (one INSERT … SELECT per goal and period), the progress of one member
narrows it to her account. No per-member loop anywhere.

Months are the program's: "this month" and "three months in a row" are calendar months in the
program's timezone (PostgreSQL: `timezone(tz, occurred_at)`; SQLite: a function registered on
the connection that uses Python's zoneinfo, as patron.notify.jobs does for local days).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Integer, String, func, literal, select
from sqlalchemy.orm import Session

from patron.ledger.expiry import add_months
from patron.ledger.models import Entry, Purchase
from patron.milestones.models import Milestone
from patron.programs.models import Store


@dataclass(frozen=True)
class Period:
    """One evaluation window: achievements for it are keyed `key` ("ever" or "YYYY-MM");
    purchases/entries in [start, end) count (None: unbounded)."""

    key: str
    start: datetime | None
    end: datetime | None
    label: str  # the month shown ("2027-01"), or "ever"


def is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _sqlite_local_month(value: str | None, timezone: str) -> int | None:
    if value is None:
        return None
    local = datetime.fromisoformat(value).replace(tzinfo=UTC).astimezone(_zone(timezone))
    return local.year * 12 + local.month - 1


def prepare(session: Session) -> None:
    """Register the SQLite helper on this transaction's connection (no-op on PostgreSQL)."""
    if is_postgresql(session):
        return
    raw: Any = session.connection().connection.driver_connection
    raw.create_function("patron_local_month", 2, _sqlite_local_month, deterministic=True)


def local_month(session: Session, instant: Any, timezone: str) -> ColumnElement[int]:
    """year × 12 + month − 1 of a UTC instant, in the program's timezone: consecutive months
    are consecutive integers."""
    tz = literal(timezone, String)
    if is_postgresql(session):
        local = func.timezone(tz, instant)
        year = func.cast(func.extract("year", local), Integer)
        month = func.cast(func.extract("month", local), Integer)
        return year * 12 + month - 1
    return func.patron_local_month(instant, tz, type_=Integer)


def month_start(day: date, timezone: str) -> datetime:
    return datetime.combine(day.replace(day=1), time(), _zone(timezone)).astimezone(UTC)


def periods(milestone: Milestone, timezone: str, now: datetime) -> list[Period]:
    """The windows a run evaluates: ever; the rolling days up to now; last month and this
    month (last month too, so a visit at 23:59 on the last day counts after midnight)."""
    if milestone.window == "rolling":
        days = milestone.window_days or 1
        return [Period("ever", now - timedelta(days=days), now, "ever")]
    if milestone.window != "month":
        return [Period("ever", None, None, "ever")]
    this = now.astimezone(_zone(timezone)).date().replace(day=1)
    out = []
    for first in (add_months(this, -1), this):
        label = first.strftime("%Y-%m")
        out.append(
            Period(
                label if milestone.repeat else "ever",
                month_start(first, timezone),
                month_start(add_months(first, 1), timezone),
                label,
            )
        )
    return out


def current_period(milestone: Milestone, timezone: str, now: datetime) -> Period:
    return periods(milestone, timezone, now)[-1]


def store_ids(session: Session, milestone: Milestone) -> list[int]:
    """A stores goal's stores: those listed, else every active store of the program."""
    stmt = select(Store.id).where(Store.program_id == milestone.program_id)
    if milestone.stores:
        stmt = stmt.where(Store.code.in_(milestone.stores))
    else:
        stmt = stmt.where(Store.active.is_(True))
    return list(session.scalars(stmt.order_by(Store.id)))


def target(session: Session, milestone: Milestone) -> int:
    return len(store_ids(session, milestone)) if milestone.kind == "stores" else milestone.target


def figure(
    session: Session,
    milestone: Milestone,
    timezone: str,
    period: Period,
    *,
    account_id: int | None = None,
) -> Any:
    """(account_id, value) per account with activity in `period`: one GROUP BY (streak: the
    months in a row, by gaps and islands over the distinct local months)."""
    if milestone.kind == "points":
        scope = (
            Entry.account_id == account_id
            if account_id is not None
            else Entry.program_id == milestone.program_id
        )
        conds = [scope, Entry.qualifying != 0]
        if period.start is not None:
            conds.append(Entry.occurred_at >= period.start)
        if period.end is not None:
            conds.append(Entry.occurred_at < period.end)
        return (
            select(Entry.account_id.label("account_id"), func.sum(Entry.qualifying).label("value"))
            .where(*conds)
            .group_by(Entry.account_id)
        )
    kept = Purchase.amount_minor - Purchase.refunded_minor
    scope = (
        Purchase.account_id == account_id
        if account_id is not None
        else Purchase.program_id == milestone.program_id
    )
    conds = [scope, kept > 0]
    if period.start is not None:
        conds.append(Purchase.occurred_at >= period.start)
    if period.end is not None:
        conds.append(Purchase.occurred_at < period.end)
    if milestone.kind in ("visits", "spend"):
        value = func.count() if milestone.kind == "visits" else func.sum(kept)
        return (
            select(Purchase.account_id.label("account_id"), value.label("value"))
            .where(*conds)
            .group_by(Purchase.account_id)
        )
    if milestone.kind == "stores":
        wanted = store_ids(session, milestone)
        return (
            select(
                Purchase.account_id.label("account_id"),
                func.count(func.distinct(Purchase.store_id)).label("value"),
            )
            .where(*conds, Purchase.store_id.in_(wanted or [-1]))
            .group_by(Purchase.account_id)
        )
    # streak: the distinct months with a purchase; a run of consecutive months has a constant
    # month − row_number(); the longest run per account is the value.
    months = (
        select(
            Purchase.account_id.label("account_id"),
            local_month(session, Purchase.occurred_at, timezone).label("month"),
        )
        .where(*conds)
        .distinct()
        .subquery("months")
    )
    runs = select(
        months.c.account_id,
        (
            months.c.month
            - func.row_number().over(partition_by=months.c.account_id, order_by=months.c.month)
        ).label("island"),
    ).subquery("runs")
    lengths = (
        select(runs.c.account_id, func.count().label("run"))
        .group_by(runs.c.account_id, runs.c.island)
        .subquery("lengths")
    )
    return select(
        lengths.c.account_id.label("account_id"), func.max(lengths.c.run).label("value")
    ).group_by(lengths.c.account_id)
