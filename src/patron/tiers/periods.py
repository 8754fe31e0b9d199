"""Qualification windows in the program's timezone: half-years, years, rolling months, lifetime."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from patron.ledger.expiry import add_months

LIFETIME_START = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """[start, end) in UTC, and a label such as 2026H1, 2026, R2026-03-02 or lifetime."""

    key: str
    start: datetime
    end: datetime | None  # None: open-ended (lifetime)


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)


def window_at(kind: str, at: datetime, timezone: str, *, rolling_months: int = 12) -> Window:
    """The window that contains the instant `at`."""
    tz = ZoneInfo(timezone)
    day = at.astimezone(tz).date()
    if kind == "half_year":
        first = date(day.year, 1 if day.month <= 6 else 7, 1)
        return Window(
            f"{day.year}H{1 if day.month <= 6 else 2}",
            _midnight(first, tz),
            _midnight(add_months(first, 6), tz),
        )
    if kind == "year":
        first = date(day.year, 1, 1)
        return Window(str(day.year), _midnight(first, tz), _midnight(date(day.year + 1, 1, 1), tz))
    if kind == "rolling":
        # The last N months up to the end of today (local).
        from datetime import timedelta

        end_day = day + timedelta(days=1)
        return Window(
            f"R{day.isoformat()}",
            _midnight(add_months(end_day, -rolling_months), tz),
            _midnight(end_day, tz),
        )
    if kind == "lifetime":
        return Window("lifetime", LIFETIME_START, None)
    raise ValueError(f"unknown window kind {kind!r}")


def previous_window(kind: str, at: datetime, timezone: str, *, rolling_months: int = 12) -> Window:
    """The window that ended most recently before the one containing `at`.

    For rolling and lifetime windows there is no period boundary: the current one is returned.
    """
    current = window_at(kind, at, timezone, rolling_months=rolling_months)
    if kind in ("rolling", "lifetime"):
        return current
    from datetime import timedelta

    return window_at(
        kind, current.start - timedelta(microseconds=1), timezone, rolling_months=rolling_months
    )
