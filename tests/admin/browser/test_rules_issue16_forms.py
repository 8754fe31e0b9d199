"""Issue 16's remaining editor forms in a real browser: purchase-count conditions (Nth purchase,
purchases in the last X days), the dated-rule warning with its "same period last year" replay,
the tier movement and the rule tests in the preview, and expiry N days after earning."""

from __future__ import annotations

import re
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from patron.programs.service import get_program
from patron.rules import service as rules
from patron.rules import simulate as what_if
from tests.admin.browser.test_rules_expressive import add_rule, publish
from tests.conftest import T0, auth

pytestmark = pytest.mark.browser


def test_purchase_counts_and_a_dated_promotion_with_its_warning(
    page, db, staff, seeded, keys, sign_in_as
):
    sign_in_as("marketer")
    add_rule(page, "promotion")
    page.get_by_label("Code").fill("xmas-regulars")
    page.get_by_label(re.compile(r"^Factor")).fill("2")
    page.get_by_label("First day").fill("2026-12-01")
    page.get_by_label("Last day").fill("2026-12-31")
    page.get_by_text("Only for some stores, channels or members").click()
    counts = page.get_by_test_id("purchase-counts")
    counts.get_by_label(re.compile(r"^Only the member's purchase number")).fill("2")
    counts.get_by_label(re.compile(r"^Recent purchases: in the last")).fill("30")
    counts.get_by_label(re.compile(r"^Recent purchases at least")).fill("1")
    page.get_by_role("button", name="Check the effect").click()

    added = page.locator('li[data-change="added"][data-rule="xmas-regulars"]')
    expect(added).to_contain_text("the member's purchase no. 2")
    expect(added).to_contain_text("1+ purchases in the last 30 days")
    # December, previewed over the last 30 days (March): warned, and offered last December.
    warning = page.locator('[data-testid="sim-warning"][data-rule="xmas-regulars"]')
    expect(warning).to_contain_text("outside this period")
    suggestion = page.locator('[data-testid="sim-suggestion"][data-rule="xmas-regulars"]')
    suggestion.get_by_role("button").click()
    expect(page.get_by_test_id("sim-shifted")).to_contain_text("1 year")
    expect(page.locator('[data-testid="sim-warning"][data-rule="xmas-regulars"]')).to_have_count(0)
    publish(page, 3)

    answer = page.request.get("/api/v1/programs/bakery/rules", headers=auth(keys["read"]))
    assert answer.ok, answer.text()
    rule = next(r for r in answer.json()["document"]["rules"] if r["id"] == "xmas-regulars")
    assert (rule["starts"], rule["ends"], rule["factor"]) == ("2026-12-01", "2026-12-31", "2")
    assert rule["conditions"]["nth_purchase"] == 2
    assert rule["conditions"]["recent_purchases"] == {"days": 30, "min": 1}

    page.locator('tr[data-rule="xmas-regulars"]').get_by_role("link", name="Edit").click()
    page.get_by_text("Only for some stores, channels or members").click()
    expect(counts.get_by_label(re.compile(r"^Only the member's purchase number"))).to_have_value(
        "2"
    )
    expect(counts.get_by_label(re.compile(r"^Recent purchases: in the last"))).to_have_value("30")


def test_the_preview_shows_tier_movement_and_rule_tests(page, db, staff, seeded, keys, sign_in_as):
    saved = page.request.put(
        "/api/v1/programs/bakery/rules/examples/plain-sale",
        headers=auth(keys["admin"]),
        data={"sale": {"amount": 25800}, "expected_points": 250, "note": "a basic sale"},
    )
    assert saved.status in (200, 201), saved.text()
    sign_in_as("marketer")
    page.goto("/admin/rules")
    page.locator('tr[data-rule="base"]').get_by_role("link", name="Edit").click()
    page.get_by_label(re.compile(r"^Points")).fill("30")
    page.get_by_role("button", name="Check the effect").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check before publishing")

    # The rule test that held now fails under the proposal: 250 → 750.
    tests = page.get_by_test_id("rule-tests")
    row = tests.locator('tr[data-example="plain-sale"]')
    expect(row).to_have_attribute("data-passed", "no")
    expect(row).to_contain_text("750")
    expect(page.get_by_test_id("rule-tests-summary")).to_contain_text("1")

    # Tier movement as the service's own what-if has it.
    with db.unit_of_work(readonly=True) as s:
        program = get_program(s, "bakery")
        doc = rules.document(s, program).model_dump(mode="json", exclude_none=True)
        doc["rules"][0]["points"] = 30
        today = T0.astimezone(ZoneInfo(program.timezone)).date()
        report = what_if.simulate(
            s,
            program,
            rules.validate_doc(doc),
            date_from=today - timedelta(days=29),
            date_to=today,
        )
    assert report.tier_impact is not None
    expect(page.get_by_role("heading", name="Tier movement")).to_be_visible()
    if report.tier_impact.moves:
        moves = page.locator("table.sim-tier-moves tbody tr")
        expect(moves).to_have_count(len(report.tier_impact.moves))
        for move in report.tier_impact.moves:
            line = page.locator(f'table.sim-tier-moves tr[data-member="{move.member_id}"]')
            expect(line).to_have_attribute("data-direction", move.direction)
    else:
        expect(page.get_by_test_id("sim-no-tier-moves")).to_be_visible()


def test_points_expire_n_days_after_earning(page, client, staff, seeded, keys, sign_in_as):
    sign_in_as("marketer")
    page.goto("/admin/program")
    page.get_by_label("Points expire").select_option("days")
    page.get_by_label(re.compile(r"^N = days")).fill("90")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    expect(page.get_by_label("Points expire")).to_have_value("days")
    expect(page.get_by_label(re.compile(r"^N = days"))).to_have_value("90")
    expect(page.locator(".summary")).to_contain_text("Valid 90 days")
    program = client.get("/api/v1/programs/bakery", headers=auth(keys["admin"])).json()
    assert program["expiry"]["kind"] == "days" and program["expiry"]["days"] == 90
