"""After a member-page form is sent, the outcome is where the eye is: the page comes back at the
card that was sent, with the message (and the new balance) inside it, in view, not under the
sticky header, and focused for screen readers."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def assert_in_view_below_header(page, locator) -> None:
    expect(locator).to_be_focused()
    # The privacy and moves cards arrive by htmx after the page: measure once they are in.
    expect(page.locator('section[hx-trigger="load"]')).to_have_count(0)
    page.wait_for_timeout(100)
    box = locator.evaluate(
        """el => {
          const r = el.getBoundingClientRect();
          const title = el.closest('section').querySelector('h2').getBoundingClientRect();
          const bar = document.querySelector('.topbar').getBoundingClientRect();
          return {top: r.top, bottom: r.bottom, title: title.top, header: bar.bottom,
                  height: window.innerHeight, width: document.documentElement.scrollWidth,
                  view: window.innerWidth};
        }"""
    )
    assert box["top"] >= box["header"], f"the message is under the header: {box}"
    assert box["title"] >= box["header"], f"the card's title is under the header: {box}"
    assert box["bottom"] <= box["height"], f"the message is below the fold: {box}"
    assert box["width"] <= box["view"], f"the page scrolls sideways: {box}"


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)])
def test_adjust_tier_and_block_show_their_outcome_in_their_card(
    page, staff, seeded, sign_in_as, width, height
):
    page.set_viewport_size({"width": width, "height": height})
    sign_in_as("support")
    page.goto(f"/admin/members/{seeded.member_id}")
    before = int(re.sub(r"\D", "", page.get_by_test_id("balance").inner_text()))

    page.locator("#adjust-points").fill("700")
    page.locator("#adjust-reason").fill("Cake arrived late")
    page.locator("#adjust").get_by_role("button", name="Adjust points").click()
    page.wait_for_url(re.compile(r".*done=adjusted.*#adjust$"))
    notice = page.locator("#adjust [role=status]")
    expect(notice).to_contain_text("+700 points")
    expect(notice).to_contain_text(f"New balance: {before + 700:,} points")
    assert_in_view_below_header(page, notice)

    page.locator("#appeal-tier").select_option("gold")
    page.locator("#appeal-reason").fill("Regular since 2019")
    page.locator("#appeal").get_by_role("button").click()
    page.wait_for_url(re.compile(r".*done=tier.*#appeal$"))
    notice = page.locator("#appeal [role=status]")
    expect(notice).to_contain_text("Gold")
    assert_in_view_below_header(page, notice)

    page.locator("#status-reason").fill("Card shared with strangers")
    page.locator("#status").get_by_role("button", name="Block").click()
    page.wait_for_url(re.compile(r".*done=blocked.*#status$"))
    notice = page.locator("#status [role=status]")
    expect(notice).to_be_visible()
    assert_in_view_below_header(page, notice)
