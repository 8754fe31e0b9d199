"""Program branding in a real browser at phone width: a marketer picks a low-contrast card,
sees the warning with its ratio while editing, fixes it and saves."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}


def test_a_marketer_sees_the_contrast_warning_fixes_the_card_and_saves(
    page, staff, seeded, sign_in_as, shot
):
    page.set_viewport_size(PHONE)
    sign_in_as("marketer")
    page.goto("/admin/program")
    page.get_by_role("navigation", name="Program pages").get_by_role(
        "link", name="Branding"
    ).click()
    expect(page.get_by_role("heading", level=2, name="Branding")).to_be_visible()
    expect(page.get_by_test_id("contrast-ok")).to_be_visible()
    # The preview follows typing once htmx (a deferred script) is listening; on a busy machine
    # the three fields can be filled before it is.
    page.wait_for_load_state("load")

    page.get_by_label("Name in Korean").fill("동네 빵집")
    page.get_by_label("Card background").fill("#777777")
    page.get_by_label("Card text colour").fill("#ffffff")

    warning = page.get_by_test_id("contrast-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("Card text on the card background: 4.48:1")
    expect(page.locator('[data-part="card"]')).to_have_attribute("fill", "#777777")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the page is {width} px wide on a 390 px phone"
    shot(page, "program-branding-warning")

    page.get_by_label("Card background").fill("#333333")
    expect(warning).to_be_hidden()
    expect(page.get_by_test_id("contrast-ok")).to_be_visible()
    expect(page.locator('[data-part="card"]')).to_have_attribute("fill", "#333333")

    page.get_by_role("button", name="Save branding").click()
    expect(page.get_by_role("status")).to_have_text("Branding saved.")
    expect(page.get_by_label("Card background")).to_have_value("#333333")
    expect(page.get_by_label("Name in Korean")).to_have_value("동네 빵집")
    expect(page.get_by_test_id("contrast-ok")).to_be_visible()
    latest = page.locator("#changes-h ~ .table-wrap tbody tr").first
    expect(latest).to_contain_text("Member page look changed")
    expect(latest).to_contain_text("card background: #333333")
