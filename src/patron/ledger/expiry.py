"""When a lot expires and when it stops being pending, in the program's timezone."""

from __future__ import annotations

import calendar
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from patron.clock import as_utc


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return as_utc(datetime.combine(day, time(0), tzinfo=tz))


def expires_at(earned_at: datetime, *, kind: str, months: int, timezone: str) -> datetime | None:
    """The first instant at which points earned at `earned_at` are no longer valid.

    Points are valid through the whole last local day, so the instant is the
    local midnight that starts the following day.
    """
    if kind == "none":
        return None
    tz = ZoneInfo(timezone)
    local_day = earned_at.astimezone(tz).date()
    if kind == "months":
        last_day = add_months(local_day, months)
    elif kind == "end_of_month":
        target = add_months(local_day.replace(day=1), months)
        last_day = target.replace(day=calendar.monthrange(target.year, target.month)[1])
    elif kind == "end_of_year":
        target = add_months(local_day.replace(day=1), months)
        last_day = date(target.year, 12, 31)
    else:  # pragma: no cover - validated by the schema
        raise ValueError(f"unknown expiry kind {kind!r}")
    return _local_midnight(last_day + timedelta(days=1), tz)


def pending_until(earned_at: datetime, *, days: int) -> datetime | None:
    return earned_at + timedelta(days=days) if days > 0 else None
