"""The member pages' messages in Korean, Chinese and English.

The catalog is every locales/*.json file (one per part of the page: portal.json for the
pages, others for later parts), each mapping a key to its three translations side by side;
a key defined in two files is an error (tests/portal/test_i18n.py fails on a missing one).
Numbers, points, money and dates are patron.formats' (Babel/CLDR), as on the admin pages, so a
member and a clerk see the same figures the same way.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from patron.formats import date as format_date
from patron.formats import datetime as format_datetime
from patron.formats import money, number, points

__all__ = ["format_date", "format_datetime", "money", "number", "points"]

LANGUAGES = ("ko", "zh", "en")
LANGUAGE_NAMES = {"ko": "한국어", "zh": "中文", "en": "English"}
DEFAULT_LANGUAGE = "en"
LOCALES = Path(__file__).parent / "locales"


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(LOCALES.glob("*.json")):
        part: dict[str, dict[str, str]] = json.loads(path.read_text(encoding="utf-8"))
        twice = sorted(set(part) & set(merged))
        if twice:
            raise ValueError(f"{path.name} defines keys another catalog has: {twice}")
        merged.update(part)
    return merged


def language(value: str | None) -> str:
    return value if value in LANGUAGES else DEFAULT_LANGUAGE


def translate(key: str, lang: str, /, **values: Any) -> str:
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
