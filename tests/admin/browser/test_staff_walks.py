"""The three kinds of staff, each through their everyday task in a real browser, on both
engines (issue 19): a support agent finds a member and reads why an entry gave its points; a
marketer publishes a weekend weight; an owner reads last month and takes it to Excel."""

from __future__ import annotations

import re

import pytest
from openpyxl import load_workbook
from playwright.sync_api import expect

from tests.admin.browser.test_rules import expected_report

pytestmark = pytest.mark.browser


def test_support_finds_a_member_and_reads_why_an_entry_gave_its_points(
    page, staff, seeded, sign_in_as
):
    sign_in_as("support")
    # The counter's home is the member search: "/" focuses it, the hits come as one types.
    page.keyboard.press("/")
    box = page.get_by_label("Card, phone, e-mail or name")
    expect(box).to_be_focused()
    box.press_sequentially("010-1234", delay=20)
    hit = page.locator("#results a.hit").filter(has_text="김민지")
    expect(hit).to_be_visible()
    hit.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("김민지")

    # The latest purchase (₩9,800, three days ago) and its explanation in words, with the
    # amount as money and the points it gave: 10 points for each full ₩1,000 = 90.
    latest = page.locator("table.history tbody tr").filter(has_text="₩9,800").first
    expect(latest.locator("td.num")).to_have_text("+90 points")
    why = latest.locator("td.explain")
    expect(why).to_contain_text("₩9,800")
    expect(why).to_contain_text("10 points for each full ₩1,000")
    expect(why).to_contain_text("= 90")
    expect(why).not_to_contain_text("KRW")  # money the reader's way, not a code


def test_marketer_publishes_a_weekend_weight_confirming_a_large_change(
    page, db, staff, seeded, sign_in_as
):
    sign_in_as("marketer")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Rules").click()
    page.get_by_label("New rule of kind").select_option(label="Day and time weight")
    page.get_by_role("button", name="Add rule").click()

    # The form starts empty: no day chosen, no factor, no hours.
    days = page.get_by_role("group", name="Days")
    for day in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"):
        expect(days.get_by_label(day, exact=True)).not_to_be_checked()
    expect(page.get_by_role("textbox", name="Factor", exact=True)).to_have_value("")
    expect(page.get_by_role("textbox", name="From (time)")).to_have_value("")

    # A weight on no day is refused at the days, with nothing published.
    page.get_by_role("textbox", name="Factor", exact=True).fill("2")
    page.get_by_role("button", name="Check the effect").click()
    expect(page.locator("#f-days-error")).to_have_text("Choose at least one.")

    days.get_by_label("Sat", exact=True).check()
    days.get_by_label("Sun", exact=True).check()
    page.get_by_role("button", name="Check the effect").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check before publishing")

    # Over a year the bakery's one weekend sale (₩32,000 on a Sunday) doubles: more than 10 %
    # of all points, so publishing waits for a confirmation.
    base = expected_report(db, points=10, days=365)
    page.get_by_label("From", exact=True).fill("2025-03-03")
    page.get_by_role("button", name="Recalculate").click()
    expect(page.get_by_test_id("sim-current")).to_have_text(f"{base.current_points:,} points")
    large = page.get_by_test_id("large-change")
    expect(large).to_be_visible()
    publish = page.get_by_role("button", name="Publish as version 3")
    publish.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check before publishing")
    large.get_by_role("checkbox").check()
    publish.click()
    expect(page.get_by_role("status")).to_contain_text("Version 3 is published")
    expect(page.get_by_test_id("current-version")).to_contain_text("Version 3")
    weight = page.locator('tr[data-rule="time-weight-1"]')
    expect(weight).to_contain_text("Weekend ×2")


def test_owner_reads_last_month_and_downloads_it_as_excel(
    page, staff, seeded, sign_in_as, tmp_path
):
    sign_in_as("owner")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Reports").click()
    page.get_by_role("navigation", name="Reports").get_by_role(
        "link", name="Points by period"
    ).click()
    page.get_by_role("link", name="Last month", exact=True).click()
    # T0 is 2 March 2026: last month is February, read as days in words, not ISO dates.
    expect(page).to_have_url(re.compile(r"from=2026-02-01&to=2026-02-28"))
    table = page.locator("table").filter(has=page.locator("th", has_text="Earned")).first
    expect(table).to_contain_text("Feb 27, 2026")
    expect(table).not_to_contain_text("2026-02-27")
    expect(page.get_by_test_id("period-total")).to_contain_text("90")

    with page.expect_download() as info:
        page.get_by_test_id("download-xlsx").click()
    download = info.value
    assert download.suggested_filename.endswith(".xlsx")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    sheet = load_workbook(path).active
    rows = list(sheet.iter_rows(values_only=True))
    title = rows[0][0]
    assert title.startswith("bakery · Points by period · ")  # the program, the report, the time
    assert "2026" in title
    headers = [h for h in rows[1] if h is not None]
    assert headers[:4] == ["Period", "From", "To", "Earned"]
    assert all(re.fullmatch(r"[A-Z][a-z ]+(\([^)]*\))?", h) for h in headers), headers
    assert not any("_" in h for h in headers)  # words, not code keys
    assert sheet.freeze_panes is not None
    assert rows[-1][0] == "Total" and rows[-1][headers.index("Earned")] == 90
