"""Every member-page message exists in Korean, Chinese and English with the same placeholders,
and every key the templates and code use is in the catalog."""

from __future__ import annotations

import re
import string
from pathlib import Path

from patron.portal import i18n

PORTAL = Path(i18n.__file__).parent
LITERAL_KEY = re.compile(r"""\bt\(\s*["']([a-z_]+(?:\.[a-z_]+)+)["']\s*[,)]""")
CODE_KEY = re.compile(r"""translate\(\s*["']([a-z_]+\.[a-z_.]+)["']""")


def _fields(text: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in string.Formatter().parse(text) if name}


def test_every_message_in_every_language_with_the_same_placeholders():
    missing = []
    for key, texts in i18n.catalog().items():
        for lang in i18n.LANGUAGES:
            if not texts.get(lang, "").strip():
                missing.append(f"{key} [{lang}]")
        fields = {lang: _fields(texts.get(lang, "")) for lang in i18n.LANGUAGES}
        if len({frozenset(f) for f in fields.values()}) != 1:
            missing.append(f"{key} placeholders differ: {fields}")
    assert missing == []


def test_every_key_used_is_in_the_catalog():
    used = set()
    for path in (PORTAL / "templates").glob("*.html"):
        used |= set(LITERAL_KEY.findall(path.read_text(encoding="utf-8")))
    for path in PORTAL.glob("*.py"):
        used |= set(CODE_KEY.findall(path.read_text(encoding="utf-8")))
    # Keys built from a value: each value the code can produce.
    for prefix, values in {
        "nav.": ("home", "history", "card", "rewards", "profile"),
        "kind.": ("earn", "redeem", "expire", "adjust", "reverse"),
        "status.": ("issued", "used", "expired", "cancelled"),
        "unit.": ("points", "spend", "visits"),
        "profile.consent.": ("email", "sms"),
        "error.": ("csrf", "too_many", "not_found", "refused", "invalid"),
    }.items():
        used |= {prefix + value for value in values}
    assert sorted(used - set(i18n.catalog())) == []
    assert len(used) > 40
