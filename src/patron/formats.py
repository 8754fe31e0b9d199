"""Numbers, money, percentages and dates for people, the one way Patron writes them (decision 0037).

Everything comes from CLDR through Babel, in the reader's language (ko, zh or en; anything else
reads English) — the staff member's on the admin pages, the member's on the member page and in
messages:

    number    25800 -> "25,800"; Decimal("187.50") -> "187.50"; places=1 -> "187.5"
    points    1234 -> "1,234 points" / "1,234포인트" / "1,234 积分"
    money     ₩25,800 (KRW has no decimals); CNY ¥25.80 (zh) / CN¥25.80 (ko, en)
    percent   Decimal("0.7551") -> "75.5%"
    date      "2026년 3월 2일" / "2026年3月2日" / "Mar 2, 2026"
    datetime  "2026년 3월 2일 오후 2:05" / "2026年3月2日 14:05" / "Mar 2, 2026, 2:05 PM"
    month     "2026년 3월" / "2026年3月" / "March 2026"
    period    a report row's day, week (an interval: "Mar 2 – 8, 2026") or month

Dates are shown in the program's timezone: a datetime (UTC, or naive UTC as SQLite returns it)
is moved there first; a plain `date` is already a local day and is shown as is. `iso_date` is the
one machine format (date inputs, links, file names), never a table cell.

A value that is not a number (or not a date) comes back as text, never an error: a page must
render whatever an old audit record or event payload holds.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from babel.dates import format_date as _babel_date
from babel.dates import format_interval, format_skeleton, format_time, get_datetime_format
from babel.numbers import format_currency, format_decimal, format_percent

from patron.money import MINOR_UNITS, quantum

LANGUAGES: tuple[str, ...] = ("ko", "zh", "en")
DEFAULT_LANGUAGE = "en"

# CLDR's "long" date is the natural one in Korean and Chinese (2027년 1월 15일, 2027年1月15日);
# English's long one spells the month out ("January 15, 2027"), its medium one is what people
# write in a table or a short message ("Jan 15, 2027").
_DATE_FORMAT = {"ko": "long", "zh": "long", "en": "medium"}

TimeZoneLike = str | dt.tzinfo
Granularity = Literal["day", "week", "month"]


def language(value: str | None) -> str:
    """The language figures are written in: ko, zh or en (anything else reads English)."""
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _tz(tz: TimeZoneLike | None) -> dt.tzinfo:
    if tz is None:
        return dt.UTC
    return zone(tz) if isinstance(tz, str) else tz


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def _text(value: object) -> str:
    return "" if value is None else str(value)


# --- numbers --------------------------------------------------------------------------------


def number(value: object, lang: str = DEFAULT_LANGUAGE, *, places: int | None = None) -> str:
    """25800 -> "25,800"; the decimals the value carries are kept unless `places` fixes them."""
    amount = _decimal(value)
    if amount is None:
        return _text(value)
    lang = language(lang)
    if places is None:  # the decimals the value carries: Decimal("187.50") keeps its zero
        exponent = amount.as_tuple().exponent
        places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    fixed = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    pattern = "#,##0" + ("." + "0" * places if places > 0 else "")
    return format_decimal(fixed, format=pattern, locale=lang)


def _plus(text: str, value: object) -> str:
    amount = _decimal(value)
    return "+" + text if amount is not None and amount > 0 else text


def signed(value: object, lang: str = DEFAULT_LANGUAGE, *, places: int | None = None) -> str:
    """A change: "+1,250" for a gain, "-300" for a loss, "0"."""
    return _plus(number(value, lang, places=places), value)


# The one unit word Patron writes after a number of points, in each language.
_POINTS = {"en": "{n} points", "ko": "{n}포인트", "zh": "{n} 积分"}


def points(value: object, lang: str = DEFAULT_LANGUAGE, *, signed: bool = False) -> str:
    """1234 -> "1,234 points" / "1,234포인트" / "1,234 积分"; `signed` adds "+" to gains."""
    text = number(value, lang)
    if signed:
        text = _plus(text, value)
    return _POINTS.get(language(lang), _POINTS[DEFAULT_LANGUAGE]).format(n=text)


def money(
    amount: object, currency: str, lang: str = DEFAULT_LANGUAGE, *, minor_units: bool = False
) -> str:
    """An amount with the currency's own decimals (KRW none, CNY two): Decimal("25800") KRW ->
    "₩25,800"; Decimal("25.8") CNY -> "¥25.80" (zh) / "CN¥25.80" (en, ko). `minor_units=True`
    reads an integer count of the smallest unit (2580 fen -> ¥25.80)."""
    value = _decimal(amount)
    if value is None:
        return _text(amount)
    if minor_units:
        value = value * quantum(currency) if currency in MINOR_UNITS else value.scaleb(-2)
    return format_currency(value, currency, locale=language(lang), currency_digits=True)


def percent(rate: object, lang: str = DEFAULT_LANGUAGE, *, places: int = 1) -> str:
    """A share as a percentage: Decimal("0.7551") -> "75.5%"; None -> "–"."""
    value = _decimal(rate)
    if value is None:
        return "–" if rate is None else str(rate)
    pattern = "#,##0" + ("." + "0" * places if places > 0 else "") + "%"
    return format_percent(value, format=pattern, locale=language(lang))


# --- dates ----------------------------------------------------------------------------------


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


def date(value: object, lang: str = DEFAULT_LANGUAGE, tz: TimeZoneLike | None = None) -> str:
    """The day in the program's timezone: "2027년 1월 15일" / "2027年1月15日" / "Jan 15, 2027"."""
    parsed = _parse(value)
    if parsed is None:
        return _text(value)
    lang = language(lang)
    return _babel_date(local_day(parsed, tz), _DATE_FORMAT[lang], locale=lang)


def datetime(value: object, lang: str = DEFAULT_LANGUAGE, tz: TimeZoneLike | None = None) -> str:
    """The day and the local time as the language tells time: "2027년 1월 15일 오후 2:05" /
    "2027年1月15日 14:05" / "Jan 15, 2027, 2:05 PM". A plain date is shown as `date` shows it."""
    parsed = _parse(value)
    if parsed is None:
        return _text(value)
    if not isinstance(parsed, dt.datetime):
        return date(parsed, lang, tz)
    lang = language(lang)
    aware = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
    local = aware.astimezone(_tz(tz))
    day = _babel_date(local.date(), _DATE_FORMAT[lang], locale=lang)
    clock = format_time(local.timetz(), "short", locale=lang)
    # CLDR's own way of joining a date and a time ("{1} {0}", "{1}, {0}").
    pattern = str(get_datetime_format("medium", locale=lang)).replace("'", "")
    return pattern.replace("{1}", day).replace("{0}", clock)


def month(value: object, lang: str = DEFAULT_LANGUAGE) -> str:
    """A month (a date in it, or "2027-01") -> "2027년 1월" / "2027年1月" / "January 2027"."""
    if isinstance(value, dt.date):
        first = value.replace(day=1)
    else:
        text = _text(value)
        try:
            first = dt.date.fromisoformat(text[:7] + "-01")
        except ValueError:
            return text
    return str(format_skeleton("yMMMM", first, locale=language(lang)))


def short_day(day: dt.date, lang: str = DEFAULT_LANGUAGE) -> str:
    """A day without the year, for a chart's axis: "Mar 2" / "3월 2일" / "3月2日"."""
    return str(format_skeleton("MMMd", day, locale=language(lang)))


def short_month(day: dt.date, lang: str = DEFAULT_LANGUAGE) -> str:
    """A month for a chart's axis: "Mar 2026" / "2026년 3월" / "2026年3月"."""
    return str(format_skeleton("yMMM", day, locale=language(lang)))


def period(starts: dt.date, ends: dt.date, granularity: str, lang: str = DEFAULT_LANGUAGE) -> str:
    """A report row's period in words: a day as `date`, a month as `month`, a week (or a part
    of one) as CLDR's interval: "Mar 2 – 8, 2026" / "2026년 3월 2일~8일" / "2026年3月2日 – 8日"."""
    lang = language(lang)
    if granularity == "month":
        return month(starts, lang)
    if granularity == "day" or starts == ends:
        return date(starts, lang)
    return str(format_interval(starts, ends, "yMMMd", locale=lang))


def iso_date(value: dt.date | dt.datetime | None, tz: TimeZoneLike | None = None) -> str:
    """YYYY-MM-DD in `tz`, for date inputs, links and file names (never for reading)."""
    if value is None:
        return ""
    return local_day(value, tz).isoformat()
