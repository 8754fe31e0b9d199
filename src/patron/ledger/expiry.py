"""When a lot expires and when it stops being pending, in the program's timezone."""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from patron.clock import as_utc


@dataclass(frozen=True)
class ExpiryRule:
    """An expiry policy as a lot's earner sees it: the program's or its tier's own `kind`
    with its N (`months` or `days`), and the tier's `extra_months` on top."""

    kind: str
    months: int = 0
    days: int = 0
    extra_months: int = 0

    def expires_at(self, earned_at: datetime, timezone: str) -> datetime | None:
        return expires_at(
            earned_at,
            kind=self.kind,
            months=self.months,
            days=self.days,
            extra_months=self.extra_months,
            timezone=timezone,
        )


def add_months(day: date, months: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def _local_midnight(day: date, tz: ZoneInfo) -> datetime:
    return as_utc(datetime.combine(day, time(0), tzinfo=tz))


def expires_at(
    earned_at: datetime,
    *,
    kind: str,
    months: int,
    timezone: str,
    days: int = 0,
    extra_months: int = 0,
) -> datetime | None:
    """The first instant at which points earned at `earned_at` are no longer valid.

    Points are valid through the whole last local day, so the instant is the
    local midnight that starts the following day. `extra_months` (a tier's) lengthen any
    policy: added to N for the month policies, after the N days for `days`. `rolling` counts
    N (its `days` when set, else its `months`) from `earned_at` read as the latest activity.
    """
    if kind == "none":
        return None
    tz = ZoneInfo(timezone)
    local_day = earned_at.astimezone(tz).date()
    months += extra_months
    if kind == "rolling":
        # At earning, the earn is the latest activity: N after it (days when set, else months).
        kind = "days" if days else "months"
    if kind == "months":
        last_day = add_months(local_day, months)
    elif kind == "days":
        # Counted in local calendar days, not 24-hour spans, so a DST change never moves the
        # last day; the tier's months come after the days.
        last_day = add_months(local_day + timedelta(days=days), extra_months)
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
