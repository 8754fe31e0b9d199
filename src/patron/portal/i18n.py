"""The member pages' messages in Korean, Chinese and English.

One catalog, locales/portal.json, maps each key to its three translations side by side
(tests/portal/test_i18n.py fails on a missing one). Numbers, money and dates use the admin's
Babel-backed formatters, so a member and a clerk see the same figures the same way.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from patron.admin.i18n import format_date, format_datetime, money, number, points

__all__ = ["format_date", "format_datetime", "money", "number", "points"]

LANGUAGES = ("ko", "zh", "en")
LANGUAGE_NAMES = {"ko": "한국어", "zh": "中文", "en": "English"}
DEFAULT_LANGUAGE = "en"
CATALOG = Path(__file__).parent / "locales" / "portal.json"


@lru_cache(maxsize=1)
def catalog() -> dict[str, dict[str, str]]:
    data: dict[str, dict[str, str]] = json.loads(CATALOG.read_text(encoding="utf-8"))
    return data


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
