"""Numbers, money and dates in a member's message, formatted the way their language writes them.

Everything comes from CLDR through Babel, so "₩25,800", "¥25.80" (zh) / "CN¥25.80" (en, ko),
"2027년 1월 15일", "2027年1月15日" and "Jan 15, 2027" are what the locale data says, not rules
of our own. Messages exist in ko, zh and en; any other language is written as English.

Dates are shown in the program's timezone: a datetime (UTC, or naive UTC as SQLite returns it) is
moved there first; a plain `date` is already a local day and is shown as is.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo

from babel.dates import format_date as _babel_date
from babel.dates import format_skeleton, format_time, get_datetime_format
from babel.numbers import format_currency, format_decimal

LANGUAGES: tuple[str, ...] = ("ko", "zh", "en")
DEFAULT_LANGUAGE = "en"

# CLDR's "long" date is the natural one in Korean and Chinese (2027년 1월 15일, 2027年1月15日);
# English's long one spells the month out ("January 15, 2027"), its medium one is what people
# write in a short message ("Jan 15, 2027").
_DATE_FORMAT = {"ko": "long", "zh": "long", "en": "medium"}

TimeZoneLike = str | dt.tzinfo


def language(value: str | None) -> str:
    """The language a message is written in: ko, zh or en (anything else reads English)."""
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _tz(tz: TimeZoneLike | None) -> dt.tzinfo:
    if tz is None:
        return dt.UTC
    return zone(tz) if isinstance(tz, str) else tz


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def points(n: object, lang: str) -> str:
    """1250 -> "1,250" in every language (the wording around it says "points"/"포인트"/"积分")."""
    number = _decimal(n)
    if number is None:
        return "" if n is None else str(n)
    return format_decimal(number, locale=language(lang))


def money(amount: object, currency: str, lang: str) -> str:
    """An amount in `currency` with the currency's own decimals (KRW none, CNY two):
    Decimal("25800") KRW -> "₩25,800"; Decimal("25.8") CNY -> "¥25.80" (zh), "CN¥25.80" (en)."""
    number = _decimal(amount)
    if number is None:
        return "" if amount is None else str(amount)
    return format_currency(number, currency, locale=language(lang), currency_digits=True)


def local_day(value: dt.date | dt.datetime, tz: TimeZoneLike | None) -> dt.date:
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        return aware.astimezone(_tz(tz)).date()
    return value


def _parse(value: object) -> dt.date | dt.datetime | None:
    """A date or datetime, also from the ISO text an event payload carries."""
    if isinstance(value, dt.date):  # datetime is a date too
        return value
    if isinstance(value, str) and value:
        try:
            return (
                dt.date.fromisoformat(value)
                if len(value) == 10
                else dt.datetime.fromisoformat(value)
            )
        except ValueError:
            return None
    return None


def date(value: object, tz: TimeZoneLike | None, lang: str) -> str:
    """The day in the program's timezone: "2027년 1월 15일" / "2027年1月15日" / "Jan 15, 2027"."""
    parsed = _parse(value)
    if parsed is None:
        return "" if value is None else str(value)
    lang = language(lang)
    return _babel_date(local_day(parsed, tz), _DATE_FORMAT[lang], locale=lang)


def datetime(value: object, tz: TimeZoneLike | None, lang: str) -> str:
    """The day and the local time: "2027년 1월 15일 오후 2:05" / "2027年1月15日 14:05" /
    "Jan 15, 2027, 2:05 PM". A plain date has no time and is shown as `date` shows it."""
    parsed = _parse(value)
    if parsed is None:
        return "" if value is None else str(value)
    if not isinstance(parsed, dt.datetime):
        return date(parsed, tz, lang)
    lang = language(lang)
    aware = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
    local = aware.astimezone(_tz(tz))
    day = _babel_date(local.date(), _DATE_FORMAT[lang], locale=lang)
    clock = format_time(local.timetz(), "short", locale=lang)
    # CLDR's own way of joining a date and a time ("{1} {0}", "{1}, {0}").
    pattern = str(get_datetime_format("medium", locale=lang)).replace("'", "")
    return pattern.replace("{1}", day).replace("{0}", clock)


def month(value: object, lang: str) -> str:
    """A statement month "2027-01" -> "2027년 1월" / "2027年1月" / "January 2027"."""
    text = str(value or "")
    try:
        first = dt.date.fromisoformat(text[:7] + "-01")
    except ValueError:
        return text
    return str(format_skeleton("yMMMM", first, locale=language(lang)))
