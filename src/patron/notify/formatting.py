"""Numbers, money and dates in a member's message: patron.formats (Babel/CLDR, decision 0037)
with the arguments in the order the message templates pass them — (value, timezone, language).

"₩25,800", "¥25.80" (zh) / "CN¥25.80" (en, ko), "2027년 1월 15일", "2027年1月15日" and
"Jan 15, 2027" are what the locale data says, not rules of our own. Messages exist in ko, zh and
en; any other language is written as English. A plain `date` is already a local day; a datetime
is moved to the program's timezone first.
"""

from __future__ import annotations

from patron import formats
from patron.formats import DEFAULT_LANGUAGE, LANGUAGES, TimeZoneLike, language, local_day, zone

__all__ = [
    "DEFAULT_LANGUAGE",
    "LANGUAGES",
    "TimeZoneLike",
    "date",
    "datetime",
    "language",
    "local_day",
    "money",
    "month",
    "points",
    "zone",
]


def points(n: object, lang: str) -> str:
    """1250 -> "1,250" in every language (the wording around it says "points"/"포인트"/"积分")."""
    return formats.number(n, lang)


def money(amount: object, currency: str, lang: str) -> str:
    return formats.money(amount, currency, lang)


def date(value: object, tz: TimeZoneLike | None, lang: str) -> str:
    return formats.date(value, lang, tz)


def datetime(value: object, tz: TimeZoneLike | None, lang: str) -> str:
    return formats.datetime(value, lang, tz)


def month(value: object, lang: str) -> str:
    return formats.month(value, lang)
