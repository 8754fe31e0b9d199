"""Time is explicit: services take ``now`` from here, tests set it."""

from __future__ import annotations

from datetime import UTC, datetime

# The earliest instant a sale (or event) may claim to have happened: the sale path refuses an
# earlier one, the fraud controls count it as happening now.
EARLIEST_SALE = datetime(1970, 1, 1, tzinfo=UTC)

_frozen: datetime | None = None


def now() -> datetime:
    """The current instant, timezone-aware UTC."""
    return _frozen if _frozen is not None else datetime.now(UTC)


def freeze(at: datetime | None) -> None:
    """Pin the clock (tests and the demo loader); ``None`` releases it."""
    global _frozen
    if at is not None and at.tzinfo is None:
        raise ValueError("frozen time must be timezone-aware")
    _frozen = at.astimezone(UTC) if at is not None else None


def as_utc(value: datetime) -> datetime:
    """Normalise a datetime read from any engine to aware UTC (SQLite drops tzinfo)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
