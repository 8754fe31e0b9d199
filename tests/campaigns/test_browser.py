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
