"""The admin UI in Korean, Chinese and English: message catalogs and locale formats.

Messages live in `locales/*.json`, one file per area of the UI (core.json, members.json, …), each
mapping a dotted key to its three translations side by side:

    "members.adjust.title": {"en": "Adjust points", "ko": "포인트 조정", "zh": "调整积分"}

so a missing translation stands out in review, and tests/admin/test_i18n.py fails on one.
Placeholders use str.format: "{count} members". Templates call `t("key", count=3)`.

Numbers, money and dates are formatted here, never in templates or services. All three locales
group digits by thousands with "," and use "." for decimals; they differ in currency symbols and
date order. Money is rounded to the currency's minor unit (KRW 0 decimals, CNY 2).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any

from patron.money import MINOR_UNITS, quantum

LANGUAGES = ("en", "ko", "zh")
LANGUAGE_NAMES = {"en": "English", "ko": "한국어", "zh": "中文"}
DEFAULT_LANGUAGE = "en"
LOCALES = Path(__file__).parent / "locales"


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict[str, str]]:
    """Every message, merged from locales/*.json; a key defined twice is a mistake."""
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(LOCALES.glob("*.json")):
        for key, texts in json.loads(path.read_text(encoding="utf-8")).items():
            if key in merged:
                raise ValueError(f"message {key!r} is defined twice (again in {path.name})")
            merged[key] = texts
    return merged


def language(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def translate(key: str, lang: str, /, **values: Any) -> str:
    """The message in `lang` (English if that translation is missing; the key if the message is).
    Values are formatted with str.format; a bad placeholder shows the raw text, never an error."""
    texts = catalog().get(key)
    if texts is None:
        return key
    text = texts.get(lang) or texts.get(DEFAULT_LANGUAGE) or key
    if not values:
        return text
    try:
        return text.format(**values)
    except (KeyError, IndexError, ValueError):
        return text


def has_message(key: str) -> bool:
    return key in catalog()


# --- numbers --------------------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def number(value: Any, lang: str = DEFAULT_LANGUAGE, *, places: int | None = None) -> str:
    """25800 -> "25,800"; Decimal("187.50") -> "187.50"; places fixes the decimals."""
    amount = _decimal(value)
    if amount is None:
        return str(value)
    if places is not None:
        amount = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    whole, _, frac = format(abs(amount), "f").partition(".")
    grouped = f"{int(whole):,}"
    return f"{sign}{grouped}.{frac}" if frac else f"{sign}{grouped}"


def points(value: Any, lang: str = DEFAULT_LANGUAGE, *, signed: bool = False) -> str:
    """1234 -> "1,234 points" / "1,234포인트" / "1,234 积分"; signed adds "+" to gains."""
    text = number(value, lang)
    amount = _decimal(value)
    if signed and amount is not None and amount > 0:
        text = "+" + text
    return translate("format.points", lang, n=text)


# The symbol shown before an amount. Where one sign serves two currencies (¥, $), the locale that
# owns it keeps the bare sign and the others say which one (CLDR does the same).
_SYMBOLS = {
    "KRW": "₩",
    "CNY": "¥",
    "JPY": "¥",
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "HKD": "HK$",
    "TWD": "NT$",
    "SGD": "S$",
    "AUD": "A$",
    "CAD": "CA$",
    "INR": "₹",
    "VND": "₫",
    "THB": "฿",
    "PHP": "₱",
}
_LOCAL_SYMBOLS = {
    ("CNY", "en"): "CN¥",
    ("CNY", "ko"): "CN¥",
    ("JPY", "zh"): "JP¥",
    ("JPY", "ko"): "JP¥",
    ("USD", "ko"): "US$",
    ("USD", "zh"): "US$",
}


def currency_symbol(currency: str, lang: str = DEFAULT_LANGUAGE) -> str:
    return _LOCAL_SYMBOLS.get((currency, lang)) or _SYMBOLS.get(currency, "")


def money(
    amount: Any, currency: str, lang: str = DEFAULT_LANGUAGE, *, minor_units: bool = False
) -> str:
    """Decimal("25800") KRW -> "₩25,800"; Decimal("25.8") CNY -> "¥25.80" (zh) / "CN¥25.80" (en).
    `minor_units=True` reads an integer count of the smallest unit (2580 fen -> ¥25.80)."""
    value = _decimal(amount)
    if value is None:
        return str(amount)
    places = MINOR_UNITS.get(currency, 2)
    if minor_units:
        value = value * quantum(currency) if currency in MINOR_UNITS else value.scaleb(-places)
    text = number(abs(value), lang, places=places)
    sign = "-" if value < 0 else ""
    symbol = currency_symbol(currency, lang)
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency}"


# --- dates ----------------------------------------------------------------------------------

_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _local(value: datetime, tz: tzinfo | None) -> datetime:
    if value.tzinfo is None:  # SQLite hands back naive UTC
        value = value.replace(tzinfo=UTC)
    return value.astimezone(tz or UTC)


def format_date(value: date | datetime | None, lang: str = DEFAULT_LANGUAGE, tz=None) -> str:
    """en "2 Mar 2026", ko "2026년 3월 2일", zh "2026年3月2日"; a datetime is first moved to `tz`
    (the program's timezone), so a sale at 23:30 in Seoul is dated in Seoul."""
    if value is None:
        return ""
    day = _local(value, tz).date() if isinstance(value, datetime) else value
    if lang == "ko":
        return f"{day.year}년 {day.month}월 {day.day}일"
    if lang == "zh":
        return f"{day.year}年{day.month}月{day.day}日"
    return f"{day.day} {_MONTHS_EN[day.month - 1]} {day.year}"


def format_datetime(value: datetime | None, lang: str = DEFAULT_LANGUAGE, tz=None) -> str:
    """The date as format_date, then the 24-hour local time: "2 Mar 2026, 12:00"."""
    if value is None:
        return ""
    local = _local(value, tz)
    separator = ", " if lang == "en" else " "
    return f"{format_date(local, lang, local.tzinfo)}{separator}{local:%H:%M}"


def iso_date(value: date | datetime | None, tz=None) -> str:
    """YYYY-MM-DD in `tz`, for date inputs and file names."""
    if value is None:
        return ""
    return (_local(value, tz).date() if isinstance(value, datetime) else value).isoformat()
