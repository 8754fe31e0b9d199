"""The report pages over HTTP: roles, figures equal to the services', downloads, bad filters."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient
from openpyxl import load_workbook

from patron import clock
from patron.admin import i18n
from patron.programs.service import get_program
from patron.reports import dashboard as dashboards
from patron.reports import finance, members, period
from patron.reports.common import day_range
from tests.admin.helpers import STAFF, sign_in
from tests.conftest import T0

PAGES = [
    "/admin/reports",
    "/admin/reports/period",
    "/admin/reports/liability",
    "/admin/reports/journal",
    "/admin/reports/members",
    "/admin/reports/promotions",
]
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def as_role(client: TestClient, role: str) -> str:
    return sign_in(client, STAFF[role][0])


def by_testid(page: str, name: str) -> str:
    found = re.search(rf'data-testid="{name}">([^<]*)<', page)
    assert found, f"no {name} on the page"
    return html.unescape(found.group(1))


def field_error(page: str, name: str) -> str:
    found = re.search(rf'<p class="field-error" id="f-{name}-error">([^<]*)</p>', page)
    assert found, f"no error under {name}"
    return html.unescape(found.group(1))


@pytest.mark.parametrize("role", ["owner", "marketer", "viewer"])
def test_every_report_page_opens_for_roles_with_reports_view(web, role):
    as_role(web, role)
    for path in PAGES:
        response = web.get(path)
        assert response.status_code == 200, (path, response.text[:500])
        assert "<svg" in response.text or path.endswith("promotions"), path
    # The nav's Reports item leads to the dashboard.
    assert 'href="/admin/reports"' in web.get("/admin/").text


def test_support_gets_403_and_no_reports_in_the_nav(web):
    as_role(web, "support")
    for path in PAGES:
        assert web.get(path).status_code == 403, path
        assert web.get(path + "?format=xlsx").status_code == 403, path
    assert 'href="/admin/reports"' not in web.get("/admin/").text


def test_signed_out_goes_to_sign_in(web):
    response = web.get("/admin/reports", follow_redirects=False)
    assert response.status_code == 303
    assert "/admin/sign-in" in response.headers["location"]


def test_dashboard_figures_are_the_services(web, db):
    as_role(web, "owner")
    page = web.get("/admin/reports").text
    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        out = dashboards.dashboard(s, program, now=clock.now(), days=30)
    assert out.last_month.issued > 0  # the seed has a sale 3 days before T0 (in February)
    assert by_testid(page, "issued-last-month") == i18n.points(out.last_month.issued, "en")
    assert by_testid(page, "issued-this-month") == i18n.points(out.this_month.issued, "en")
    assert by_testid(page, "outstanding-points") == i18n.points(out.outstanding_points, "en")
    assert by_testid(page, "outstanding-value") == i18n.money(out.outstanding_value, "KRW", "en")
    assert by_testid(page, "dormant-members") == i18n.number(out.dormant_members, "en")
    assert by_testid(page, "active-members") == i18n.number(out.active_members, "en")
    for chart in ("chart-months", "chart-days", "chart-outstanding", "chart-tiers"):
        assert f'data-testid="{chart}"' in page
    # Each report is linked from the dashboard.
    for path in PAGES[1:]:
        assert f'href="{path}?program=bakery"' in page


def test_dashboard_in_korean_and_chinese(web, db):
    token = as_role(web, "owner")
    web.post("/admin/account/language", data={"language": "ko", "csrf_token": token})
    page = web.get("/admin/reports").text
    assert "지난달 적립 포인트" in page and "휴면 회원" in page and "미사용 포인트 부채" in page
    assert "₩" in by_testid(page, "outstanding-value")
    web.post("/admin/account/language", data={"language": "zh", "csrf_token": token})
    page = web.get("/admin/reports").text
    assert "上月发放积分" in page and "沉睡会员" in page and "积分负债" in page


def test_dashboard_downloads_excel_with_the_headline_figures(web, db):
    as_role(web, "owner")
    response = web.get("/admin/reports?format=xlsx")
    assert response.status_code == 200
    assert response.headers["content-type"] == XLSX
    assert 'filename="bakery-dashboard-2026-03-02.xlsx"' in response.headers["content-disposition"]
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["Dashboard", "Months", "Days", "Tiers"]
    sheet = book["Dashboard"]
    # Made for a person: a title row with the program, report, day and time of export; the
    # headers and figure names in words; the header frozen; numbers and rates formatted.
    assert re.fullmatch(
        r"bakery · Dashboard · Mar 2, 2026 · exported \w{3} \d+, \d{4}, \d+:\d\d:\d\d\s?[AP]M UTC",
        sheet["A1"].value,
    ), sheet["A1"].value
    assert (sheet["A2"].value, sheet["B2"].value, sheet.freeze_panes) == ("Figure", "Value", "A3")
    figures = {row[0].value: row for row in sheet.iter_rows(min_row=3)}
    with db.unit_of_work(readonly=True) as s:
        out = dashboards.dashboard(s, get_program(s, "bakery"), now=clock.now(), days=30)
    assert figures["Issued last month"][1].value == out.last_month.issued
    assert figures["Issued last month"][1].number_format == "#,##0"
    assert figures["Outstanding points"][1].value == out.outstanding_points
    assert figures["Dormant members"][1].value == out.dormant_members
    rate = figures["Breakage rate, 12 months"][1]
    assert rate.value == out.breakage_rate_12m and rate.number_format == "0.0%"
    assert figures["Outstanding value"][1].number_format == "#,##0"  # KRW has no decimals
    assert sheet.column_dimensions["A"].width >= len("New members this month")

    # In the staff member's language.
    token = as_role(web, "owner")
    web.post("/admin/account/language", data={"language": "ko", "csrf_token": token})
    korean = load_workbook(io.BytesIO(web.get("/admin/reports?format=xlsx").content))
    assert korean.sheetnames == ["대시보드", "개월", "일별", "등급"]
    assert korean["대시보드"]["A1"].value.startswith("bakery · 대시보드 · 2026. 3. 2.")
    names = [row[0] for row in korean["대시보드"].iter_rows(min_row=3, values_only=True)]
    assert "지난달 발행" in names and not any("_" in str(n) for n in names)
    headers = next(korean["개월"].iter_rows(min_row=2, max_row=2, values_only=True))
    assert headers[:4] == ("기간", "시작일", "종료일", "적립")


@pytest.mark.parametrize("language", ["ko", "zh"])
def test_every_workbook_speaks_the_staff_members_language(web, language):
    """No header, figure name or sheet title is left as a code key (`issued_last_month`)."""
    token = as_role(web, "owner")
    web.post("/admin/account/language", data={"language": language, "csrf_token": token})
    for path in (
        "/admin/reports?",
        "/admin/reports/period?from=2025-01-01&to=2026-03-01&granularity=month&",
        "/admin/reports/liability?as_of=2026-03-01&",
        "/admin/reports/journal?from=2026-02-01&to=2026-03-01&",
        "/admin/reports/members?",
        "/admin/reports/promotions?from=2025-01-01&to=2026-03-02&",
    ):
        response = web.get(path + "format=xlsx")
        assert response.status_code == 200, path
        book = load_workbook(io.BytesIO(response.content))
        for sheet in book.worksheets:
            assert not sheet.title.isascii(), (path, sheet.title)
            words = list(next(sheet.iter_rows(min_row=2, max_row=2, values_only=True)))
            if words == [i18n_word("figure", language), i18n_word("value", language)]:
                words += [r[0] for r in sheet.iter_rows(min_row=3, values_only=True)]
            untranslated = [w for w in words if w is not None and str(w).isascii()]
            assert untranslated == [], (path, sheet.title, untranslated)


def i18n_word(code: str, language: str) -> str:
    from patron.reports.labels import word

    return word(code, language)


def test_period_page_shows_the_service_totals_and_downloads_them(web, db):
    as_role(web, "marketer")
    query = "from=2025-01-01&to=2026-03-01&granularity=month&program=bakery"
    page = web.get(f"/admin/reports/period?{query}")
    assert page.status_code == 200
    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        rng = day_range(
            program,
            first=T0.date().replace(year=2025, month=1, day=1),
            last=T0.date() - timedelta(days=1),
            now=clock.now(),
        )
        report = period.period_report(s, program, rng, now=clock.now(), granularity="month")
    assert report.totals.issued > 0
    assert by_testid(page.text, "total-issued") == i18n.points(report.totals.issued, "en")
    assert 'value="2025-01-01"' in page.text and 'value="2026-03-01"' in page.text
    assert 'data-testid="chart-period"' in page.text
    # The range ends on 1 March: that month is drawn, and labelled as only part of it.
    assert "<title>Mar 2026 (part): " in page.text and "<title>Feb 2026: " in page.text
    assert "Feb 2026 (part)" not in page.text

    xlsx = web.get(f"/admin/reports/period?{query}&format=xlsx")
    assert xlsx.status_code == 200 and xlsx.headers["content-type"] == XLSX
    assert "bakery-points-2025-01-01-2026-03-01.xlsx" in xlsx.headers["content-disposition"]
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[1][:4] == ("Period", "From", "To", "Earned")
    header = list(rows[1])
    assert rows[-1][0] == "Total"
    assert rows[-1][header.index("Issued")] == report.totals.issued
    assert rows[-1][header.index("Sales")] == report.totals.sales

    text = web.get(f"/admin/reports/period?{query}&format=csv")
    assert text.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(text.content.decode("utf-8-sig"))))
    assert lines[0][0] == "period" and lines[-1][0] == "total"


def test_period_grouped_by_store_stacks_the_chart(web):
    as_role(web, "owner")
    page = web.get(
        "/admin/reports/period?from=2025-01-01&to=2026-03-01&group_by=store&granularity=month"
    )
    assert page.status_code == 200
    assert "chart-kind-stacked" in page.text
    assert ">mapo<" in page.text


def test_journal_csv_is_balanced(web, db):
    as_role(web, "owner")
    page = web.get("/admin/reports/journal?from=2025-01-01&to=2026-03-02")
    assert page.status_code == 200
    response = web.get("/admin/reports/journal?from=2025-01-01&to=2026-03-02&format=csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert (
        'filename="bakery-journal-2025-01-01-2026-03-02.csv"'
        in response.headers["content-disposition"]
    )
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows, "the seed's sales make journal lines"
    debit = sum(Decimal(r["debit"]) for r in rows)
    credit = sum(Decimal(r["credit"]) for r in rows)
    assert debit == credit > 0
    by_day: dict[str, Decimal] = {}
    for r in rows:
        by_day[r["date"]] = (
            by_day.get(r["date"], Decimal(0)) + Decimal(r["debit"]) - Decimal(r["credit"])
        )
    assert all(v == 0 for v in by_day.values())


def test_liability_page_equals_the_service(web, db):
    as_role(web, "owner")
    page = web.get("/admin/reports/liability?as_of=2026-03-01&projection_months=6")
    assert page.status_code == 200
    with db.unit_of_work(readonly=True) as s:
        owed = finance.liability(
            s,
            get_program(s, "bakery"),
            as_of=T0.date() - timedelta(days=1),
            now=clock.now(),
            projection_months=6,
        )
    assert by_testid(page.text, "liability-points") == i18n.points(owed.outstanding_points, "en")
    assert by_testid(page.text, "liability-value") == i18n.money(
        owed.outstanding_value, "KRW", "en"
    )
    # The month-end chart has every month end before as_of, the month just ended included.
    titles = re.findall(r"<title>([^<:]+): ", page.text)
    assert titles[-3:] == ["Jan 31", "Feb 28", "Mar 1"], titles
    xlsx = web.get("/admin/reports/liability?as_of=2026-03-01&format=xlsx")
    book = load_workbook(io.BytesIO(xlsx.content))
    assert book.sheetnames == ["Liability", "Breakage"]
    figures = {r[0]: r[1] for r in book["Liability"].iter_rows(min_row=3, values_only=True)}
    assert figures["Outstanding points"] == owed.outstanding_points


def test_members_page_counts_dormant_with_the_chosen_days(web, db):
    as_role(web, "owner")
    page = web.get("/admin/reports/members?dormant_days=30")
    assert page.status_code == 200
    assert 'value="30"' in page.text
    with db.unit_of_work(readonly=True) as s:
        count, active, _never = members.activity(
            s, get_program(s, "bakery"), as_of=T0.date(), dormant_days=30
        )
    assert by_testid(page.text, "dormant-members") == i18n.number(count - active, "en")
    xlsx = web.get("/admin/reports/members?dormant_days=30&format=xlsx")
    assert load_workbook(io.BytesIO(xlsx.content)).sheetnames[0] == "Members"


def test_promotions_page_and_download(web):
    as_role(web, "owner")
    page = web.get("/admin/reports/promotions?from=2025-01-01&to=2026-03-02")
    assert page.status_code == 200
    assert 'data-testid="rules-table"' in page.text
    xlsx = web.get("/admin/reports/promotions?from=2025-01-01&to=2026-03-02&format=xlsx")
    rows = list(load_workbook(io.BytesIO(xlsx.content)).active.iter_rows(values_only=True))
    assert rows[1][:4] == ("Rule", "Name", "Kind", "Points")
    assert rows[-1][0] == "Total"


@pytest.mark.parametrize(
    ("path", "field", "message"),
    [
        ("/admin/reports/period?from=2026-03-01&to=2026-02-01", "from", "after the end"),
        ("/admin/reports/period?from=2026-02-30", "from", "YYYY-MM-DD"),
        ("/admin/reports/period?from=yesterday", "from", "YYYY-MM-DD"),
        ("/admin/reports/period?from=1990-01-01&to=2026-01-01", "from", "at most 7,305 days"),
        ("/admin/reports/period?granularity=year", "granularity", "Choose one"),
        ("/admin/reports/journal?to=2026-13-01", "to", "YYYY-MM-DD"),
        ("/admin/reports/journal?from=2026-03-01&to=2026-01-01", "from", "after the end"),
        ("/admin/reports/liability?as_of=2027-01-01", "as_of", "in the future"),
        ("/admin/reports/liability?as_of=0001-01-01", "as_of", "outside"),
        ("/admin/reports/members?dormant_days=0", "dormant_days", "1 to 3650"),
        ("/admin/reports/members?dormant_days=abc", "dormant_days", "1 to 3650"),
        ("/admin/reports/promotions?from=2026-03-01&to=2026-02-01", "from", "after the end"),
    ],
)
def test_bad_filters_come_back_with_an_inline_error(web, path, field, message):
    as_role(web, "marketer")
    response = web.get(path)
    assert response.status_code == 422, response.text[:300]
    assert message in field_error(response.text, field)
    # A download with the same bad filter is the page with its message, not a file.
    download = web.get(path + "&format=xlsx")
    assert download.status_code == 422
    assert download.headers["content-type"].startswith("text/html")


def test_unknown_program_is_404(web):
    as_role(web, "owner")
    assert web.get("/admin/reports?program=nope").status_code == 404
