"""What every report shares: local date ranges, period buckets, the figures of a group, money."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from patron.errors import Invalid
from patron.ledger.expiry import add_months
from patron.money import quantum, round_money
from patron.programs.models import Program

Granularity = Literal["day", "week", "month"]
GroupBy = Literal["store", "channel", "tier"]
Basis = Literal["occurred", "recorded"]

# Reports accept local dates in this span: wide enough for any real ledger, and far from the
# ends of the calendar where time zone arithmetic overflows.
EARLIEST = date(1970, 1, 1)
LATEST = date(9998, 12, 31)
# The longest range one report reads (20 years).
MAX_DAYS = 7305


def today(program: Program, now: datetime) -> date:
    return now.astimezone(ZoneInfo(program.timezone)).date()


def day_start(program: Program, day: date) -> datetime:
    """Local midnight at the start of `day`, in UTC (DST gaps resolve as zoneinfo does)."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(program.timezone)).astimezone(UTC)


def check_day(value: date, field: str) -> date:
    if not EARLIEST <= value <= LATEST:
        raise Invalid(
            f"{field}: {value.isoformat()} is outside {EARLIEST.isoformat()}..{LATEST.isoformat()}",
            code="invalid_date",
        )
    return value


def parse_month(value: str, field: str = "month") -> tuple[date, date]:
    """'2026-02' → (1 Feb, 28 Feb)."""
    try:
        first = datetime.strptime(value, "%Y-%m").date()
    except ValueError:
        raise Invalid(
            f"{field}: {value!r} is not a month like 2026-02", code="invalid_month"
        ) from None
    check_day(first, field)
    return first, add_months(first, 1) - timedelta(days=1)


@dataclass(frozen=True)
class DayRange:
    """Inclusive local dates, and the UTC instants [lo, hi) that cover them."""

    first: date
    last: date
    lo: datetime
    hi: datetime

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1


def day_range(
    program: Program,
    *,
    first: date | None,
    last: date | None,
    month: str | None = None,
    now: datetime,
    default_days: int = 30,
) -> DayRange:
    """The range a report covers: `month`, or from/to (defaults: the `default_days` days up to
    today, in the program's timezone). Errors name the field: 422, never a 500."""
    if month is not None:
        if first is not None or last is not None:
            raise Invalid("month: give either month or from/to, not both", code="invalid_range")
        first, last = parse_month(month)
    else:
        if last is None:
            last = today(program, now) if first is None else max(first, today(program, now))
        if first is None:
            first = last - timedelta(days=default_days - 1)
    check_day(last, "to")
    check_day(first, "from")
    if first > last:
        raise Invalid(
            f"from: {first.isoformat()} is after to ({last.isoformat()})", code="invalid_range"
        )
    if (last - first).days + 1 > MAX_DAYS:
        raise Invalid(f"from: a report covers at most {MAX_DAYS} days", code="range_too_long")
    return DayRange(first, last, day_start(program, first), day_start(program, last + timedelta(1)))


def bucket(day: date, granularity: Granularity) -> date:
    """The first day of the day, ISO week (Monday) or month that `day` is in."""
    if granularity == "day":
        return day
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def bucket_end(start: date, granularity: Granularity) -> date:
    if granularity == "day":
        return start
    if granularity == "week":
        return start + timedelta(days=6)
    return add_months(start, 1) - timedelta(days=1)


def bucket_label(start: date, granularity: Granularity) -> str:
    if granularity == "day":
        return start.isoformat()
    if granularity == "week":
        year, week, _ = start.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{start:%Y-%m}"


def buckets(rng: DayRange, granularity: Granularity) -> list[tuple[date, date, date]]:
    """Every (bucket start, first day in range, last day in range) of the range, in order."""
    out = []
    start = bucket(rng.first, granularity)
    while start <= rng.last:
        end = bucket_end(start, granularity)
        out.append((start, max(start, rng.first), min(end, rng.last)))
        start = end + timedelta(days=1)
    return out


@dataclass(slots=True)
class Figures:
    """Sums of ledger entries. Points are magnitudes except `other` (signed)."""

    earned: int = 0
    reversed: int = 0
    redeemed: int = 0
    restored: int = 0
    expired: int = 0
    adjusted_in: int = 0
    adjusted_out: int = 0
    other: int = 0
    entries: int = 0
    earn_entries: int = 0
    redeem_entries: int = 0
    purchases: int = 0
    sales_minor: int = 0

    @classmethod
    def of(cls, values: Iterable[Any]) -> Figures:
        return cls(*(int(v or 0) for v in values))

    def add(self, other: Figures) -> None:
        # Spelled out: reports add up thousands of rows and this is their inner loop.
        self.earned += other.earned
        self.reversed += other.reversed
        self.redeemed += other.redeemed
        self.restored += other.restored
        self.expired += other.expired
        self.adjusted_in += other.adjusted_in
        self.adjusted_out += other.adjusted_out
        self.other += other.other
        self.entries += other.entries
        self.earn_entries += other.earn_entries
        self.redeem_entries += other.redeem_entries
        self.purchases += other.purchases
        self.sales_minor += other.sales_minor

    @property
    def net(self) -> int:
        """The change in points outstanding: Σ entries.points."""
        return (
            self.earned
            - self.reversed
            - self.redeemed
            + self.restored
            - self.expired
            + self.adjusted_in
            - self.adjusted_out
            + self.other
        )

    @property
    def issued(self) -> int:
        """Points given to members: earned less refund reversals, plus manual credits."""
        return self.earned - self.reversed + self.adjusted_in

    @property
    def used(self) -> int:
        """Points redeemed less those given back by refunds."""
        return self.redeemed - self.restored


def money(program: Program, points: int) -> Decimal:
    """What points are worth: points × point value, half up to the currency's minor unit."""
    return round_money(Decimal(points) * program.point_value, program.currency)


def from_minor(program: Program, minor: int) -> Decimal:
    return Decimal(minor) * quantum(program.currency)


def ratio(part: int, whole: int) -> Decimal | None:
    """part ÷ whole as a fraction with 4 decimals, half up; None when nothing was issued."""
    if whole <= 0:
        return None
    return (Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001"), ROUND_HALF_UP)


def share_half_up(points: int, part: int, whole: int) -> int:
    """round_half_up(points × part ÷ whole) in exact integer arithmetic (whole > 0)."""
    return (2 * points * part + whole) // (2 * whole)
