"""In Chromium: a marketer builds a 50/50 coupon-vs-points campaign with a 10 % holdout on a
segment, sees its reach and budget, launches it and opens its results — also at 390 px."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.admin.browser.conftest import browser, live_server, page, shot, sign_in_as
from tests.campaigns.conftest import N

__all__ = ["browser", "live_server", "page", "shot", "sign_in_as"]
pytestmark = pytest.mark.browser


def test_marketer_builds_launches_and_reads_an_ab_campaign(page, world, staff, sign_in_as, shot):
    sign_in_as("marketer")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Campaigns").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Campaigns")
    page.get_by_role("link", name="New campaign").click()
    page.get_by_label("Code").fill("ab-test")
    page.get_by_label("Name", exact=True).fill("Coupon or points")
    page.get_by_label("Segment").select_option("club")
    page.get_by_label("Control group (% given nothing)").fill("10")
    page.get_by_label("Points budget (empty: no limit)").fill("100000")
    first, second = page.get_by_test_id("arm-0"), page.get_by_test_id("arm-1")
    first.get_by_label("Variant name").fill("Coupon")
    first.get_by_label("Gives").select_option("coupon")
    first.get_by_label("Coupon reward").select_option("pastry")
    second.get_by_label("Variant name").fill("Points")
    second.get_by_label("Gives").select_option("points")
    second.get_by_label("Bonus points").fill("300")
    page.get_by_role("button", name="Save and review launch").click()

    expect(page.get_by_test_id("reach-members")).to_have_text(f"{N} members of club")
    arms = [int(page.get_by_test_id(f"reach-{k}").inner_text()) for k in ("control", "a", "b")]
    assert sum(arms) == N and arms[0] < arms[1] and arms[0] < arms[2]
    shot(page, "campaign-launch")
    page.get_by_role("button", name="Launch now").click()

    expect(page).to_have_url(re.compile(r"/admin/campaigns/ab-test/results"))
    expect(page.locator("#notice")).to_have_text("The campaign was launched.")
    expect(page.get_by_test_id("arm-b").locator("td").nth(2)).to_have_text(
        f"{arms[2] * 300:,} points"
    )
    expect(page.get_by_test_id("arm-a").locator("td").nth(3)).to_have_text(str(arms[1]))
    expect(page.get_by_test_id("verdict-a-visits")).to_contain_text("not enough data yet")
    page.get_by_role("link", name="After it").click()
    expect(page.get_by_role("link", name="After it")).to_have_attribute("aria-current", "page")

    page.set_viewport_size({"width": 390, "height": 800})
    page.reload()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "campaign-results-390")


def test_marketer_builds_a_rule_experiment_with_a_message(page, world, staff, sign_in_as):
    sign_in_as("marketer")
    page.goto(page.url.split("/admin")[0] + "/admin/campaigns/new?program=bakery")
    page.get_by_label("Code").fill("rule-test")
    page.get_by_label("Name", exact=True).fill("Bonus per visit")
    page.get_by_label("Segment").select_option("club")
    first, second = page.get_by_test_id("arm-0"), page.get_by_test_id("arm-1")
    first.get_by_label("Variant name").fill("Nothing")
    first.get_by_label("Gives").select_option("none")
    second.get_by_label("Variant name").fill("Bonus")
    second.get_by_label("Gives").select_option("rules")
    second.get_by_label("Earning rules (JSON)").fill(
        '[{"id": "visit-bonus", "kind": "order_bonus", "points": -5}]'
    )
    second.get_by_label("Send this group a message at launch").check()
    page.get_by_role("button", name="Save and review launch").click()
    # The rule editor's check, in the form; what was typed stays.
    expect(page.locator("#form-error")).to_contain_text("points")
    second = page.get_by_test_id("arm-1")
    expect(second.get_by_label("Send this group a message at launch")).to_be_checked()
    second.get_by_label("Earning rules (JSON)").fill(
        '[{"id": "visit-bonus", "kind": "order_bonus", "points": 500}]'
    )
    page.get_by_role("button", name="Save and review launch").click()
    page.get_by_role("button", name="Launch now").click()
    expect(page).to_have_url(re.compile(r"/admin/campaigns/rule-test/results"))
    expect(page.get_by_test_id("rule-points-b")).to_have_text("0 points")
