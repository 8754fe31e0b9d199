"""Reports in a real browser: the dashboard's figures and charts, the period report's filter and
its Excel download, the liability page."""

from __future__ import annotations

import re

import pytest
from openpyxl import load_workbook
from playwright.sync_api import expect

from patron import clock
from patron.admin import i18n
from patron.programs.service import get_program
from patron.reports import dashboard as dashboards

pytestmark = pytest.mark.browser


def test_owner_reads_the_dashboard_filters_the_period_report_and_downloads_excel(
    page, db, staff, seeded, sign_in_as, shot, tmp_path
):
    with db.unit_of_work(readonly=True) as s:
        out = dashboards.dashboard(s, get_program(s, "bakery"), now=clock.now(), days=30)

    sign_in_as("owner")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Reports").click()
    expect(page).to_have_url(re.compile(r"/admin/reports$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Dashboard")

    # The headline figures are the service's.
    expect(page.get_by_test_id("issued-last-month")).to_have_text(
        i18n.points(out.last_month.issued, "en")
    )
    expect(page.get_by_test_id("outstanding-value")).to_have_text(
        i18n.money(out.outstanding_value, "KRW", "en")
    )
    expect(page.get_by_test_id("dormant-members")).to_have_text(
        i18n.number(out.dormant_members, "en")
    )
    # Four charts, drawn as SVG and visible, each with its numbers a click away.
    for name in ("chart-months", "chart-days", "chart-outstanding", "chart-tiers"):
        svg = page.get_by_test_id(name).locator("svg")
        expect(svg).to_be_visible()
        box = svg.bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 50
    assert page.locator("[data-testid=chart-months] rect.bar").count() > 0
    months = page.get_by_test_id("chart-months")
    months.get_by_text("Show the numbers").click()
    expect(months.locator("table")).to_be_visible()
    shot(page, "dashboard")

    # The period report: a new range and granularity through the form.
    page.get_by_role("navigation", name="Reports").get_by_role(
        "link", name="Points by period"
    ).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Points by period")
    page.get_by_label("From", exact=True).fill("2025-03-01")
    page.get_by_label("To", exact=True).fill("2026-03-01")
    page.get_by_label("Per", exact=True).select_option("month")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"from=2025-03-01&to=2026-03-01&granularity=month"))
    expect(page.get_by_test_id("period-total")).to_be_visible()
    expect(page.get_by_test_id("chart-period").locator("svg")).to_be_visible()
    shot(page, "report-period")

    with page.expect_download() as info:
        page.get_by_test_id("download-xlsx").click()
    download = info.value
    assert download.suggested_filename == "bakery-points-2025-03-01-2026-03-01.xlsx"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    rows = list(load_workbook(path).active.iter_rows(values_only=True))
    assert rows[0][0].startswith("bakery · Points by period · ")  # the title row
    assert rows[1][:4] == ("Period", "From", "To", "Earned")
    assert rows[-1][0] == "Total" and rows[-1][rows[1].index("Issued")] > 0

    # A range that ends before it starts: the message at the field, no error page.
    page.get_by_label("From", exact=True).fill("2026-03-01")
    page.get_by_label("To", exact=True).fill("2026-01-01")
    page.get_by_role("button", name="Show").click()
    expect(page.locator("#f-from-error")).to_contain_text("after the end date")

    # The liability as of a date.
    page.get_by_role("navigation", name="Reports").get_by_role(
        "link", name="Outstanding points liability"
    ).click()
    expect(page.get_by_test_id("liability-value")).to_have_text(
        i18n.money(out.outstanding_value, "KRW", "en")
    )
    expect(page.get_by_test_id("chart-outstanding").locator("svg")).to_be_visible()
    shot(page, "report-liability")
