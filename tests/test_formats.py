"""patron.formats: numbers, money, percentages and dates as CLDR writes them in ko, zh and en
(decision 0037), and the one way templates reach them."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from patron import formats

SEOUL = ZoneInfo("Asia/Seoul")
NNBSP = "\u202f"  # CLDR puts a narrow no-break space before "PM"
THIN = "\u2009"  # and thin spaces around an interval's dash
ROOT = Path(__file__).resolve().parents[1]

# value, what ko, zh and en write
NUMBERS = [
    (25800, "25,800", "25,800", "25,800"),
    (Decimal("-1234.5"), "-1,234.5", "-1,234.5", "-1,234.5"),
    (1120, "1,120", "1,120", "1,120"),
    ("not a number", "not a number", "not a number", "not a number"),
]
MONEY = [
    (Decimal("1120"), "KRW", "₩1,120", "₩1,120", "₩1,120"),
    (Decimal("25800.4"), "KRW", "₩25,800", "₩25,800", "₩25,800"),
    (Decimal("-1500"), "KRW", "-₩1,500", "-₩1,500", "-₩1,500"),
    (Decimal("25.8"), "CNY", "CN¥25.80", "¥25.80", "CN¥25.80"),
    (Decimal("1234.5"), "USD", "US$1,234.50", "US$1,234.50", "$1,234.50"),
    (Decimal("100"), "JPY", "JP¥100", "JP¥100", "¥100"),
]
PERCENT = [
    (Decimal("0.7551"), "75.5%", "75.5%", "75.5%"),
    (Decimal("1"), "100.0%", "100.0%", "100.0%"),
    (None, "–", "–", "–"),
]
LATE_JUNE = datetime(2026, 6, 30, 14, 30, tzinfo=UTC)  # 23:30 in Seoul
DATES = [
    (date(2026, 3, 2), "2026년 3월 2일", "2026年3月2日", "Mar 2, 2026"),
    (LATE_JUNE, "2026년 6월 30일", "2026年6月30日", "Jun 30, 2026"),
    (datetime(2026, 6, 30, 15, 0, tzinfo=UTC), "2026년 7월 1일", "2026年7月1日", "Jul 1, 2026"),
    ("2027-01-15", "2027년 1월 15일", "2027年1月15日", "Jan 15, 2027"),
]
DATETIMES = [
    (
        LATE_JUNE,
        "2026년 6월 30일 오후 11:30",
        "2026年6月30日 23:30",
        f"Jun 30, 2026, 11:30{NNBSP}PM",
    ),
    # SQLite hands back naive UTC.
    (
        datetime(2026, 3, 2, 3, 0),
        "2026년 3월 2일 오후 12:00",
        "2026年3月2日 12:00",
        f"Mar 2, 2026, 12:00{NNBSP}PM",
    ),
]
PERIODS = [
    (date(2026, 3, 2), date(2026, 3, 2), "day", "2026년 3월 2일", "2026年3月2日", "Mar 2, 2026"),
    (
        date(2026, 3, 2),
        date(2026, 3, 8),
        "week",
        "2026년 3월 2일~8일",
        f"2026年3月2日{THIN}–{THIN}8日",
        f"Mar 2{THIN}–{THIN}8, 2026",
    ),
    (
        date(2026, 3, 30),
        date(2026, 4, 5),
        "week",
        "2026년 3월 30일~4월 5일",
        f"2026年3月30日{THIN}–{THIN}4月5日",
        f"Mar 30{THIN}–{THIN}Apr 5, 2026",
    ),
    (date(2026, 3, 1), date(2026, 3, 31), "month", "2026년 3월", "2026年3月", "March 2026"),
]
LANGS = ("ko", "zh", "en")


@pytest.mark.parametrize("row", NUMBERS)
def test_numbers(row):
    value, *texts = row
    assert [formats.number(value, lang) for lang in LANGS] == texts


@pytest.mark.parametrize("row", MONEY)
def test_money_in_the_currencys_digits_and_the_locales_symbol(row):
    amount, currency, *texts = row
    assert [formats.money(amount, currency, lang) for lang in LANGS] == texts


def test_money_from_minor_units_fixed_places_and_signs():
    assert formats.money(2580, "CNY", "zh", minor_units=True) == "¥25.80"
    assert formats.money(25800, "KRW", "ko", minor_units=True) == "₩25,800"
    assert formats.number(Decimal("187.5"), "en", places=2) == "187.50"
    assert formats.number(Decimal("2.345"), "ko", places=2) == "2.35"
    assert formats.signed(1250, "en") == "+1,250" and formats.signed(-300, "en") == "-300"
    assert formats.money(None, "KRW", "en") == ""


@pytest.mark.parametrize("row", PERCENT)
def test_percentages(row):
    rate, *texts = row
    assert [formats.percent(rate, lang) for lang in LANGS] == texts


@pytest.mark.parametrize("row", DATES)
def test_dates_in_the_programs_timezone(row):
    value, *texts = row
    assert [formats.date(value, lang, SEOUL) for lang in LANGS] == texts


@pytest.mark.parametrize("row", DATETIMES)
def test_date_and_time_as_each_language_tells_time(row):
    value, *texts = row
    assert [formats.datetime(value, lang, "Asia/Seoul") for lang in LANGS] == texts


@pytest.mark.parametrize("row", PERIODS)
def test_report_periods_in_words(row):
    starts, ends, granularity, *texts = row
    assert [formats.period(starts, ends, granularity, lang) for lang in LANGS] == texts


def test_months_axis_labels_iso_and_unknown_languages():
    assert [formats.month("2027-01", lang) for lang in LANGS] == [
        "2027년 1월",
        "2027年1月",
        "January 2027",
    ]
    assert [formats.short_day(date(2026, 3, 2), lang) for lang in LANGS] == [
        "3월 2일",
        "3月2日",
        "Mar 2",
    ]
    assert [formats.short_month(date(2026, 3, 2), lang) for lang in LANGS] == [
        "2026년 3월",
        "2026年3月",
        "Mar 2026",
    ]
    assert formats.iso_date(LATE_JUNE, SEOUL) == "2026-06-30"
    assert formats.number(25800, "fr") == "25,800"  # any other language reads English
    assert formats.date(None, "en") == "" and formats.date("soon", "en") == "soon"


def test_the_paid_with_points_explanation_writes_money_the_readers_way():
    from types import SimpleNamespace

    from patron.earning.events import _plain

    entry = SimpleNamespace(
        points=-1120, qualifying=0, reason="paid 1120 KRW with points", kind="redeem", details={}
    )
    assert _plain(entry, "en") == ["1,120 points used: paid ₩1,120 with points"]
    assert _plain(entry, "ko") == ["1,120포인트 사용: ₩1,120 결제"]
    assert _plain(entry, "zh") == ["使用 1,120 积分:抵扣 ₩1,120"]


# The hand-written ways templates formatted figures before patron.formats: printf-style numbers
# ("%.1f"|format(rate * 100) ~ " %"), strftime, and an ISO date shown to be read.
TEMPLATE_DIRS = [ROOT / "src/patron/admin/templates", ROOT / "src/patron/portal/templates"]
HAND_WRITTEN = re.compile(
    r"""["']%[-+ 0#]*\d*(?:\.\d+)?[dfeg%]["']\s*\|\s*format|strftime\(|\|\s*number[^}]*\}\}\s*%"""
)
ISO_SHOWN = re.compile(r">\s*\{\{[^}]*\|\s*isodate\s*\}\}")


def test_templates_format_figures_only_through_the_filters():
    found = []
    for folder in TEMPLATE_DIRS:
        for path in sorted(folder.rglob("*.html")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if HAND_WRITTEN.search(line) or ISO_SHOWN.search(line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert found == [], (
        "use |number(places), |percent, |money, |date (patron.formats):\n" + "\n".join(found)
    )
