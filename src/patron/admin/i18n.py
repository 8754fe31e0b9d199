"""The admin UI in Korean, Chinese and English: message catalogs and locale formats.

Messages live in `locales/*.json`, one file per area of the UI (core.json, members.json, …), each
mapping a dotted key to its three translations side by side:

    "members.adjust.title": {"en": "Adjust points", "ko": "포인트 조정", "zh": "调整积分"}

so a missing translation stands out in review, and tests/admin/test_i18n.py fails on one.
Placeholders use str.format: "{count} members". Templates call `t("key", count=3)`.

Numbers, money, percentages and dates are written by patron.formats (Babel, CLDR's data for
ko/zh/en), never by hand in templates or services; the names below are its admin spellings.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from patron import formats

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


# --- numbers, money and dates: patron.formats (Babel/CLDR), the one way they are written ---


def number(value: Any, lang: str = DEFAULT_LANGUAGE, *, places: int | None = None) -> str:
    """25800 -> "25,800" (patron.formats.number)."""
    return formats.number(value, lang, places=places)


points = formats.points
money = formats.money
percent = formats.percent
iso_date = formats.iso_date


def format_date(value: date | datetime | None, lang: str = DEFAULT_LANGUAGE, tz=None) -> str:
    return formats.date(value, lang, tz)


def format_datetime(value: datetime | None, lang: str = DEFAULT_LANGUAGE, tz=None) -> str:
    return formats.datetime(value, lang, tz)
