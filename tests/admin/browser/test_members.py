"""Member 360° in a real browser: find, adjust, appeal, block, export, print, languages."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.admin.helpers import STAFF

pytestmark = pytest.mark.browser

SUPPORT = STAFF["support"][0]


def open_member_by_phone(page, digits: str = "010-1234") -> None:
    box = page.get_by_label("Card, phone, e-mail or name")
    box.press_sequentially(digits, delay=20)
    hit = page.locator("#results a.hit").filter(has_text="김민지")
    expect(hit).to_be_visible()
    hit.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("김민지")


def balance(page) -> int:
    text = page.get_by_test_id("balance").inner_text()
    return int(re.sub(r"\D", "", text))


def test_find_by_phone_adjust_with_a_reason_and_see_it_in_the_audit_log(
    page, staff, seeded, sign_in_as, shot
):
    sign_in_as("support")
    box = page.get_by_label("Card, phone, e-mail or name")
    box.press_sequentially("010-1234", delay=20)
    expect(page.locator("#results")).to_contain_text("010-1234-5678")
    shot(page, "member-search", full_page=False)
    # The keyboard reaches the result: ↓ from the search box, Enter opens it.
    box.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("김민지")
    before = balance(page)
    shot(page, "member-360")

    page.locator("#adjust-points").fill("500")
    page.locator("#adjust-reason").fill("Birthday goodwill")
    page.get_by_role("button", name="Adjust points").click()

    notice = page.get_by_role("status")
    expect(notice).to_contain_text("Points adjusted by +500 points")
    expect(notice).to_contain_text(f"New balance: {before + 500:,} points")
    assert balance(page) == before + 500
    newest = page.locator("table.history tbody tr").first
    expect(newest).to_contain_text("Adjusted")
    expect(newest).to_contain_text("+500 points")
    expect(newest).to_contain_text("500 points added by staff: Birthday goodwill")
    expect(newest).to_contain_text(SUPPORT)
    changes = page.locator("#changes tbody tr").first
    expect(changes).to_contain_text("Points adjusted")
    expect(changes).to_contain_text(SUPPORT)

    # An owner sees the same entry in the audit log, filtered by who did it.
    page.get_by_role("button", name="Sign out").click()
    sign_in_as("owner")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Audit log").click()
    page.get_by_label("Who").fill(SUPPORT)
    page.get_by_role("button", name="Filter").click()
    row = page.locator(".audit-table tbody tr").filter(has_text="Points adjusted")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("reason: Birthday goodwill")
    expect(row).to_contain_text(f"balance: {before + 500:,}")
    shot(page, "audit-log")


def test_a_missing_reason_is_shown_next_to_the_field_and_nothing_changes(
    page, staff, seeded, sign_in_as
):
    sign_in_as("support")
    open_member_by_phone(page)
    before = balance(page)
    page.locator("#adjust-points").fill("-300")
    page.get_by_role("button", name="Adjust points").click()
    reason = page.locator("#adjust-reason")
    expect(reason).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#adjust-reason-error")).to_have_text("Fill this in.")
    expect(reason).to_be_focused()
    # What was typed is kept.
    expect(page.locator("#adjust-points")).to_have_value("-300")
    assert balance(page) == before


def test_a_tier_appeal_with_a_reason_lands_in_the_tier_history(
    page, staff, seeded, sign_in_as, shot
):
    sign_in_as("support")
    open_member_by_phone(page)
    tier = page.locator("#tier")
    expect(tier.locator(".tier-name")).to_contain_text("Basic")

    page.get_by_label("New tier").select_option("gold")
    page.locator("#appeal-reason").fill("Complaint 42: upgrade was missed")
    page.get_by_label("Keep until (optional)").fill("2026-12-31")
    page.get_by_role("button", name="Change tier").click()

    expect(page.get_by_role("status")).to_contain_text("Tier changed")
    expect(tier.locator(".tier-name")).to_contain_text("Gold")
    expect(tier.locator(".tier-name")).to_contain_text("Set by staff")
    expect(tier).to_contain_text("Dec 31, 2026")
    latest = tier.locator("tbody tr").first
    expect(latest).to_contain_text("Basic → Gold")
    expect(latest).to_contain_text("Changed by staff: Complaint 42: upgrade was missed")
    expect(latest).to_contain_text(SUPPORT)
    shot(page, "member-tier-appeal")


def test_block_then_unblock_with_reasons(page, staff, seeded, sign_in_as):
    sign_in_as("support")
    open_member_by_phone(page)
    page.locator("#status-reason").fill("Card reported stolen")
    page.get_by_role("button", name="Block member").click()
    expect(page.get_by_role("status")).to_contain_text("Member blocked")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Blocked")
    page.locator("#status-reason").fill("Card found")
    page.get_by_role("button", name="Unblock member").click()
    expect(page.get_by_role("status")).to_contain_text("Member unblocked")
    expect(page.get_by_role("heading", level=1)).not_to_contain_text("Blocked")


def test_a_post_without_the_csrf_token_is_refused(page, staff, seeded, sign_in_as):
    sign_in_as("support")
    open_member_by_phone(page)
    before = balance(page)
    page.locator("#adjust-points").fill("100000")
    page.locator("#adjust-reason").fill("forged")
    page.locator('#adjust input[name="csrf_token"]').evaluate("input => input.remove()")
    page.get_by_role("button", name="Adjust points").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("This form cannot be accepted")
    page.go_back()
    page.reload()
    assert balance(page) == before


def test_support_cannot_open_the_owner_only_audit_log(page, staff, seeded, sign_in_as):
    sign_in_as("support")
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Members")).to_be_visible()
    expect(nav.get_by_role("link", name="Audit log")).to_have_count(0)
    response = page.goto("/admin/audit")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not for your role")


def test_a_viewer_sees_the_member_but_no_action_forms(page, staff, seeded, sign_in_as):
    sign_in_as("viewer")
    open_member_by_phone(page)
    expect(page.get_by_role("button", name="Adjust points")).to_have_count(0)
    expect(page.get_by_role("button", name="Change tier")).to_have_count(0)
    expect(page.get_by_role("button", name="Save profile")).to_have_count(0)
    expect(page.locator("#profile")).to_contain_text("minji@example.com")


def test_export_the_history_and_print_it(page, staff, seeded, sign_in_as, shot):
    sign_in_as("support")
    open_member_by_phone(page)
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    csv_file = download.value
    assert csv_file.suggested_filename == f"bakery-member-{seeded.member_id}-history.csv"
    text = csv_file.path().read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("entry,date,kind,points,running_total")
    assert "MAPO-0005" in text
    with page.expect_download() as download:
        page.get_by_role("link", name="Export Excel").click()
    assert download.value.suggested_filename.endswith(".xlsx")

    page.get_by_role("link", name="Print").click()
    expect(page.get_by_role("button", name="Print")).to_be_visible()
    expect(page.locator("table.history tbody tr")).to_have_count(5)
    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="Print")).to_be_hidden()
    shot(page, "member-print")


def test_korean_for_one_user_with_local_dates_and_a_tablet_layout(
    page, staff, seeded, sign_in_as, shot
):
    sign_in_as("support")
    open_member_by_phone(page)
    page.wait_for_load_state("load")  # its change handler is a deferred script
    page.get_by_label("Language", exact=True).select_option("ko")
    # Choosing a language reloads the page; on a loaded CI machine that takes a few seconds.
    expect(page.get_by_role("heading", name="포인트 조정")).to_be_visible(timeout=20_000)
    expect(page.locator(".stat-main dt")).to_have_text("잔액")
    expect(page.get_by_test_id("balance")).to_contain_text("포인트")
    # 3 days before T0 (2 March 2026, Seoul): dates read the Korean way, in the program's zone.
    expect(page.locator("table.history tbody tr").first).to_contain_text("2026년 2월 27일")
    page.set_viewport_size({"width": 820, "height": 1180})
    shot(page, "member-360-tablet-ko", full_page=False)
    # The language belongs to the user: it is still Korean on the next page.
    page.goto("/admin/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("안녕하세요")
