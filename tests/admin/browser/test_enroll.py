"""Enrolling at the counter on a phone: from the home page to the welcome sheet, with the
duplicate check offering the member who is already there, a card scanned into the form, no
sideways scrolling at 360 px, and a sheet that prints without the admin chrome."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.support.axe import serious_violations

pytestmark = pytest.mark.browser


def no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    view = page.evaluate("window.innerWidth")
    assert width <= view, f"{page.url}: {width}px wide in a {view}px window"


def test_enroll_on_a_phone_offers_the_existing_member_then_prints_the_welcome(
    page, staff, seeded, sign_in_as, shot
):
    page.set_viewport_size({"width": 360, "height": 780})
    sign_in_as("support")
    page.get_by_role("link", name="New member").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New member")
    no_sideways_scroll(page)
    assert serious_violations(page) == {}

    # She says she is new, but her phone number is 김민지's.
    page.locator("#e-name").fill("Minji Kim")
    page.locator("#e-phone").fill("010 1234 5678")
    page.get_by_role("button", name="Enroll member").click()
    offer = page.locator("#lookalikes")
    expect(offer).to_contain_text("This looks like 김민지 (010-1234-5678).")
    expect(offer).to_contain_text("same phone number")
    expect(page.get_by_role("button", name="Create a new member anyway")).to_have_count(0)
    expect(offer.locator("[data-done]")).to_be_focused()
    no_sideways_scroll(page)
    assert serious_violations(page) == {}
    shot(page, "member-enroll-duplicate", full_page=False)
    offer.get_by_role("link", name="Open 김민지").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("김민지")
    page.goto("/admin/members/new")

    # A new person: a card from the counter, scanned into the form (digits, then Enter).
    page.locator("#e-name").fill("최유나")
    page.locator("#e-phone").fill("010-9876-5432")
    page.locator("#e-email").fill("yuna@example.com")
    page.get_by_label("Offers by e-mail").check()
    page.locator("#e-card").click()
    page.keyboard.type("BKR200123", delay=4)
    page.keyboard.press("Enter")  # the scanner's Enter does not send the form half-filled
    expect(page.get_by_role("heading", level=1)).to_have_text("New member")
    expect(page.get_by_label("A card from the counter (type or scan its number)")).to_be_checked()
    page.get_by_role("button", name="Enroll member").click()

    page.wait_for_url(re.compile(r".*/admin/members/\d+/welcome\?program=bakery$"))
    expect(page.get_by_role("status").first).to_contain_text("최유나 is a member of")
    expect(page.get_by_test_id("card-number")).to_have_text("BKR200123")
    expect(page.locator("#welcome-email")).to_contain_text("already on its way")
    no_sideways_scroll(page)
    assert serious_violations(page) == {}
    shot(page, "member-welcome", full_page=False)

    page.emulate_media(media="print")
    expect(page.locator(".topbar")).to_be_hidden()
    expect(page.locator("#welcome-email")).to_be_hidden()
    expect(page.get_by_test_id("card-number")).to_be_visible()
    page.emulate_media(media="screen")

    # The new member is found by her card at once.
    page.keyboard.press("/")
    expect(page.get_by_label("Card, phone, e-mail or name")).to_be_focused()
    page.keyboard.type("BKR200123", delay=4)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("최유나")


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
def test_a_shared_name_and_birthday_may_be_enrolled_anyway_from_the_members_list(
    page, staff, seeded, sign_in_as
):
    sign_in_as("support")
    page.goto("/admin/members")
    page.get_by_test_id("new-member").click()
    page.locator("#e-name").fill("김민지")
    page.get_by_label("No card for now").check()
    page.get_by_role("button", name="Enroll member").click()
    expect(page.locator("#lookalikes")).to_contain_text("This looks like 김민지 (010-1234-5678).")
    page.get_by_role("button", name="Create a new member anyway").click()
    page.wait_for_url(re.compile(r".*/welcome\?program=bakery$"))
    expect(page.get_by_test_id("card-number")).to_have_text("—")
