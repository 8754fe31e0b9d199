"""The rule-set editor in a real browser: edit, what-if, publish, versions, diff, roles."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from patron.programs.service import get_program
from patron.rules import service as rules
from patron.rules import simulate as what_if
from tests.conftest import T0

pytestmark = pytest.mark.browser


def expected_report(db, *, points: int, days: int = 30):
    """The service's own what-if for the bakery's base rate at `points` per 1,000 KRW."""
    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        doc = rules.document(s, program).model_dump(mode="json", exclude_none=True)
        doc["rules"][0]["points"] = points
        today = T0.astimezone(ZoneInfo(program.timezone)).date()
        return what_if.simulate(
            s,
            program,
            rules.validate_doc(doc),
            date_from=today - timedelta(days=days - 1),
            date_to=today,
        )


def test_a_marketer_edits_the_base_rate_checks_the_what_if_and_publishes(
    page, db, staff, seeded, sign_in_as, shot
):
    sign_in_as("marketer")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Rules").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Earning rules")
    expect(page.get_by_test_id("current-version")).to_contain_text("Version 2")
    base_row = page.locator('tr[data-rule="base"]')
    expect(base_row).to_contain_text("10 points per full ₩1,000")
    expect(page.locator('tr[data-rule="seasonal-cake"]')).to_contain_text(
        "+200 points per unit of product seasonal-cake"
    )
    shot(page, "rules-list")

    base_row.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Edit rule: Base rate")
    points = page.get_by_label(re.compile(r"^Points"))
    expect(points).to_have_value("10")
    shot(page, "rules-edit")
    points.fill("20")
    # Keyboard only from here: Enter in a field submits the form to the preview.
    points.press("Enter")

    expect(page.get_by_role("heading", level=1)).to_have_text("Check before publishing")
    report = expected_report(db, points=20)
    assert (report.current_points, report.proposed_points) == (90, 180)
    expect(page.get_by_test_id("sim-current")).to_have_text(f"{report.current_points} points")
    expect(page.get_by_test_id("sim-proposed")).to_have_text(f"{report.proposed_points} points")
    expect(page.get_by_test_id("sim-delta")).to_contain_text("+90 points (+100.0%)")
    expect(page.get_by_test_id("sim-delta-value")).to_have_text("₩90")
    by_rule = page.locator('table.sim-rules tr[data-rule="base"]')
    base_impact = next(r for r in report.rules if r.rule == "base")
    expect(by_rule.locator('[data-col="current"]')).to_have_text(f"{base_impact.current_points}")
    expect(by_rule.locator('[data-col="proposed"]')).to_have_text(f"{base_impact.proposed_points}")
    expect(page.locator("table.sim-members")).to_contain_text("김민지")
    changed = page.locator('li[data-change="changed"][data-rule="base"]')
    expect(changed).to_contain_text("10 points per full ₩1,000")
    expect(changed).to_contain_text("20 points per full ₩1,000")
    shot(page, "rules-preview")

    # A longer period replays more purchases; still nothing is written.
    page.get_by_label("From", exact=True).fill("2025-03-03")
    page.get_by_role("button", name="Recalculate").click()
    longer = expected_report(db, points=20, days=365)
    expect(page.get_by_test_id("sim-proposed")).to_have_text(f"{longer.proposed_points:,} points")
    expect(page.get_by_test_id("sim-current")).to_have_text(f"{longer.current_points:,} points")

    page.get_by_label("Note for the version history").fill("Double points for March")
    # +100 % of total points: the browser will not publish until the change is confirmed.
    confirm = page.get_by_test_id("large-change").get_by_role("checkbox")
    expect(page.get_by_test_id("large-change")).to_contain_text("100.0%")
    page.get_by_role("button", name="Publish as version 3").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check before publishing")
    confirm.check()
    page.get_by_role("button", name="Publish as version 3").click()
    notice = page.get_by_role("status")
    expect(notice).to_contain_text("Version 3 is published")
    expect(page.get_by_test_id("current-version")).to_contain_text("Version 3")
    expect(page.get_by_test_id("current-version")).to_contain_text("marketer@demo.patron")
    expect(page.locator('tr[data-rule="base"]')).to_contain_text("20 points per full ₩1,000")

    notice.get_by_role("link", name="See what changed").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Version 2 → version 3")
    diff = page.locator('li[data-change="changed"][data-rule="base"]')
    expect(diff.locator("table tr").filter(has_text="points").first).to_contain_text("10")
    expect(diff).to_contain_text("20 points per full ₩1,000")
    expect(page.locator(".facts")).to_contain_text("Double points for March")
    shot(page, "rules-diff")

    page.get_by_role("link", name="Versions").click()
    expect(page.locator('tr[data-version="3"]')).to_contain_text("marketer@demo.patron")
    expect(page.locator('tr[data-version="3"]')).to_contain_text("In force")


def test_a_new_rule_with_a_mistake_shows_the_error_at_its_field(page, staff, seeded, sign_in_as):
    sign_in_as("owner")
    page.goto("/admin/rules")
    page.get_by_label("New rule of kind").select_option("product_multiplier")
    page.get_by_role("button", name="Add rule").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New rule: Product multiplier")
    page.get_by_label("Categories").fill("cake")
    factor = page.get_by_label(re.compile(r"^Factor"))
    factor.fill("250")
    page.get_by_role("button", name="Check the effect").click()
    expect(page.locator("#f-factor-error")).to_have_text("At most 100.")
    expect(factor).to_have_attribute("aria-invalid", "true")
    expect(factor).to_be_focused()
    expect(page.get_by_label("Categories")).to_have_value("cake")
    factor.fill("2")
    page.get_by_role("button", name="Check the effect").click()
    expect(page.locator('li[data-change="added"]')).to_contain_text("×2 on category cake")
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(re.compile(r"/admin/rules\?program=bakery$"))
    expect(page.locator("table.rules-table")).not_to_contain_text("category cake")


def test_support_cannot_open_the_rule_editor(page, staff, seeded, sign_in_as):
    sign_in_as("support")
    expect(page.get_by_role("navigation", name="Sections")).not_to_contain_text("Rules")
    response = page.goto("/admin/rules")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not for your role")


def test_a_viewer_reads_the_rules_without_buttons(page, staff, seeded, sign_in_as):
    sign_in_as("viewer")
    page.goto("/admin/rules")
    expect(page.locator('tr[data-rule="base"]')).to_contain_text("10 points per full ₩1,000")
    expect(page.get_by_role("button", name="Add rule")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)
    expect(page.get_by_role("button", name="Switch off")).to_have_count(0)


def test_the_rules_read_in_korean(page, staff, seeded, sign_in_as, shot):
    sign_in_as("marketer")
    page.goto("/admin/rules")
    page.wait_for_load_state("load")  # its change handler is a deferred script
    page.get_by_label("Language").select_option("ko")
    expect(page.get_by_role("heading", level=1)).to_contain_text("적립 규칙")
    expect(page.locator('tr[data-rule="base"]')).to_contain_text("₩1,000당 10포인트")
    expect(page.locator('tr[data-rule="seasonal-cake"]')).to_contain_text(
        "상품 seasonal-cake 1개당 +200포인트"
    )
    page.locator('tr[data-rule="seasonal-cake"]').get_by_role("button", name="사용 중지").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("게시 전 확인")
    expect(page.get_by_test_id("change")).to_have_text("규칙 seasonal-cake 사용 중지")
    shot(page, "rules-preview-ko")
