"""The counter at speed: "/" focuses the member search from any page, a keyboard-wedge scanner
(the card number typed in a burst, then Enter) opens the member, as do a whole phone number and
"#id"; part of a name lists the matches."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from patron.programs.service import get_program
from tests.conftest import T0
from tests.factories import make_member

pytestmark = pytest.mark.browser

BOX = "Card, phone, e-mail or name"


def scan(page, text: str) -> None:
    """What a keyboard-wedge scanner does: keystrokes a few ms apart, then Enter."""
    page.keyboard.type(text, delay=4)
    page.keyboard.press("Enter")


def add_lookalike(db) -> int:
    """A member whose card starts with 김민지's (BKR100000 is a prefix of BKR1000001) and whose
    name shares her first two letters."""
    with db.unit_of_work() as session:
        program = get_program(session, "bakery")
        other = make_member(
            session,
            now=T0,
            program=program,
            name="김민수",
            phone="010-2222-3333",
            card="BKR1000001",
        )
        return other.id


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
def test_slash_then_a_scan_opens_the_member_and_slash_works_from_her_page(
    page, db, staff, seeded, sign_in_as
):
    add_lookalike(db)
    sign_in_as("support")
    member_url = re.compile(rf".*/admin/members/{seeded.member_id}(\?.*)?$")
    page.keyboard.press("/")
    expect(page.get_by_label(BOX)).to_be_focused()
    # Two members' cards contain BKR100000: the exact one opens, no list in between.
    scan(page, "BKR100000")
    page.wait_for_url(member_url)
    expect(page.get_by_role("heading", level=1)).to_contain_text("김민지")

    # The next customer: "/" from the member page goes back to the search, focused.
    page.keyboard.press("/")
    expect(page.get_by_label(BOX)).to_be_focused()
    scan(page, "01012345678")
    page.wait_for_url(member_url)

    page.keyboard.press("/")
    expect(page.get_by_label(BOX)).to_be_focused()
    scan(page, f"#{seeded.other_id}")
    page.wait_for_url(re.compile(rf".*/admin/members/{seeded.other_id}(\?.*)?$"))
    expect(page.get_by_role("heading", level=1)).to_contain_text("박서준")


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # engine-independent
def test_part_of_a_name_lists_the_matches_at_phone_width(page, db, staff, seeded, sign_in_as):
    add_lookalike(db)
    page.set_viewport_size({"width": 360, "height": 740})
    sign_in_as("support")
    page.keyboard.press("/")
    scan(page, "김민")
    expect(page.get_by_role("heading", level=1)).to_have_text("Members")
    hits = page.locator("#results a.hit")
    expect(hits).to_have_count(2)
    expect(hits.first).to_contain_text("김민")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
