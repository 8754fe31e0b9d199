"""Message catalogs and locale formats for the admin UI (ko, zh, en)."""

from __future__ import annotations

import re
import string
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from patron.admin import i18n
from patron.admin.nav import NAV
from patron.admin.views.members import GENDERS, MEMBER_LANGUAGES, NOTICES

TEMPLATES = Path(i18n.__file__).parent / "templates"
SEOUL = ZoneInfo("Asia/Seoul")


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_every_message_has_all_three_languages_with_the_same_placeholders():
    for key, texts in i18n.catalog().items():
        assert set(texts) == set(i18n.LANGUAGES), key
        assert all(text.strip() for text in texts.values()), key
        assert (
            placeholders(texts["ko"]) == placeholders(texts["en"]) == placeholders(texts["zh"])
        ), key


def test_every_message_a_template_names_exists():
    # Whole keys only: t("role." ~ staff.role) is checked below, value by value.
    literal = re.compile(r"""\bt\(\s*["']([a-z0-9_.]*[a-z0-9_])["']""")
    missing = []
    for path in TEMPLATES.rglob("*.html"):
        for key in literal.findall(path.read_text(encoding="utf-8")):
            if not i18n.has_message(key):
                missing.append(f"{path.name}: {key}")
    assert not missing


def test_keys_built_from_values_exist_for_every_value():
    for role in ("owner", "marketer", "support", "viewer"):
        assert i18n.has_message(f"role.{role}") and i18n.has_message(f"role.{role}.help")
    for kind in ("earn", "redeem", "expire", "adjust", "reverse"):
        assert i18n.has_message(f"members.kind.{kind}")
    for reason in ("upgrade", "period_evaluation", "manual", "manual_ended"):
        assert i18n.has_message(f"members.tier.reason.{reason}")
    for key in ("forbidden", "csrf", "not_found", "conflict", "invalid", "method", "busy"):
        assert i18n.has_message(f"error.{key}") and i18n.has_message(f"error.{key}.help")
    for done in NOTICES:
        assert i18n.has_message(f"members.done.{done}")
    for gender in GENDERS:
        assert i18n.has_message(f"members.gender.{gender or 'unset'}")
    for language in MEMBER_LANGUAGES:
        assert i18n.has_message(f"members.language.{language}")
    for kind in ("physical", "ecard", "app"):
        assert i18n.has_message(f"members.cards.kind.{kind}")
    for status in ("blocked", "lost"):
        assert i18n.has_message(f"members.cards.status.{status}")
    for status in ("active", "blocked"):
        assert i18n.has_message(f"members.status.{status}")
    for item in NAV:
        assert i18n.has_message(item.label) and i18n.has_message(f"{item.label}.help")


def test_translate_falls_back_and_never_raises():
    assert i18n.translate("auth.sign_in", "ko") == "로그인"
    assert i18n.translate("auth.sign_in", "fr") == "Sign in"
    assert i18n.translate("no.such.key", "en") == "no.such.key"
    assert i18n.translate("home.hello", "en", wrong="x") == "Hello, {name}"


@pytest.mark.parametrize(
    ("amount", "currency", "lang", "text"),
    [
        (Decimal("25800"), "KRW", "ko", "₩25,800"),
        (Decimal("25800"), "KRW", "en", "₩25,800"),
        (Decimal("25.8"), "CNY", "zh", "¥25.80"),
        (Decimal("25.8"), "CNY", "en", "CN¥25.80"),
        (Decimal("1234567.891"), "USD", "en", "$1,234,567.89"),
        (Decimal("-1500"), "KRW", "ko", "-₩1,500"),
        (Decimal("12.5"), "KWD", "en", "KWD12.500"),
        (Decimal("100"), "JPY", "zh", "JP¥100"),
    ],
)
def test_money_in_the_currencys_minor_unit_and_the_locales_symbol(amount, currency, lang, text):
    assert i18n.money(amount, currency, lang) == text


def test_money_from_minor_units():
    assert i18n.money(2580, "CNY", "zh", minor_units=True) == "¥25.80"
    assert i18n.money(25800, "KRW", "ko", minor_units=True) == "₩25,800"


def test_numbers_and_points():
    assert i18n.number(25800) == "25,800"
    assert i18n.number(Decimal("-1234.5")) == "-1,234.5"
    assert i18n.number("not a number") == "not a number"
    assert i18n.points(1234, "en") == "1,234 points"
    assert i18n.points(1234, "ko") == "1,234포인트"
    assert i18n.points(1234, "zh") == "1,234 积分"
    assert i18n.points(500, "en", signed=True) == "+500 points"
    assert i18n.points(-500, "en", signed=True) == "-500 points"


def test_dates_are_shown_in_the_programs_timezone_and_the_users_language():
    # 23:30 on 30 June in Seoul is still 30 June there, though 1 July has not begun in UTC.
    late = datetime(2026, 6, 30, 14, 30, tzinfo=UTC)
    assert i18n.format_date(late, "en", SEOUL) == "Jun 30, 2026"
    assert i18n.format_date(late, "ko", SEOUL) == "2026년 6월 30일"
    assert i18n.format_date(late, "zh", SEOUL) == "2026年6月30日"
    assert i18n.format_datetime(late, "en", SEOUL) == "Jun 30, 2026, 11:30\u202fPM"
    assert i18n.format_datetime(late, "ko", SEOUL) == "2026년 6월 30일 오후 11:30"
    after = datetime(2026, 6, 30, 15, 0, tzinfo=UTC)
    assert i18n.format_date(after, "en", SEOUL) == "Jul 1, 2026"
    assert i18n.format_date(after, "en", UTC) == "Jun 30, 2026"
    assert i18n.format_date(date(2026, 3, 2), "zh") == "2026年3月2日"
    assert i18n.iso_date(after, SEOUL) == "2026-07-01"
    assert i18n.format_date(None) == "" and i18n.format_datetime(None) == ""
