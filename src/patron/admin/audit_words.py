"""Audit records in the staff member's words: "Points adjusted" with "reason: Birthday goodwill ·
balance: 29,995" rather than `points.adjusted` and `balance: 29995`.

The words live in locales/audit_words.json (`audit.act.<action>`, `audit.field.<key>`). An action
or a field with no words yet is shown by its code, so a new kind of record is never hidden; the
audit log's filter still takes codes, and each label carries its code as a tooltip.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from patron.admin import i18n

LIMIT = 120  # characters of one value before it is cut with "…"


@dataclass(frozen=True)
class Pair:
    field: str
    value: str


def action(code: str, lang: str) -> str:
    key = f"audit.act.{code}"
    return i18n.translate(key, lang) if key in i18n.catalog() else code


def field(key: str, lang: str) -> str:
    name = f"audit.field.{key}"
    return i18n.translate(name, lang) if name in i18n.catalog() else key.replace("_", " ")


def value(raw: Any, lang: str) -> str:
    """One value as staff read it: grouped numbers, yes/no, "none", lists joined; anything
    nested as short JSON."""
    if raw is None or raw == "":
        return i18n.translate("audit.value.none", lang)
    if isinstance(raw, bool):
        return i18n.translate("audit.value.yes" if raw else "audit.value.no", lang)
    if isinstance(raw, int | float):
        return i18n.number(raw, lang)
    if isinstance(raw, list) and all(isinstance(v, str | int) for v in raw):
        text = ", ".join(str(v) for v in raw) if raw else i18n.translate("audit.value.none", lang)
    elif isinstance(raw, str):
        text = raw
    else:
        text = json.dumps(raw, ensure_ascii=False, default=str)
    return text if len(text) <= LIMIT else text[: LIMIT - 1] + "…"


def pairs(data: Any, lang: str) -> list[Pair]:
    """The fields of a before/after snapshot; a snapshot that is not a mapping is one value."""
    if data is None:
        return []
    if not isinstance(data, dict):
        return [Pair("", value(data, lang))]
    return [Pair(field(k, lang), value(v, lang)) for k, v in data.items()]
