"""Rewards in a real browser: a marketer adds the americano with a gold price and stock; support
finds a member's coupon by its code and cancels it with a reason; the pages fit a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from patron import clock
from patron.audit.service import CLI
from patron.coupons import codes
from patron.ledger.models import Account
from patron.members.models import Member
from patron.programs.service import get_program
from patron.rewards import catalog, redeem
from patron.rewards.schemas import RewardCreate
from tests.admin.helpers import STAFF
from tests.ledger._helpers import adjust
from tests.rewards.conftest import AMERICANO

pytestmark = pytest.mark.browser


@pytest.fixture
def coupon(db, seeded) -> str:
    """김민지 has redeemed an americano; the coupon's code as printed."""
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        catalog.create_reward(
            s, program, RewardCreate.model_validate(AMERICANO), actor=CLI, now=clock.now()
        )
        adjust(s, program, seeded.member_id, 5_000, now=clock.now())
        member = s.get(Member, seeded.member_id)
        assert member is not None
        _redemption, [issued], _account = redeem.redeem(
            s, program, "americano", member=member, quantity=1, store="mapo", channel="pos",
            actor=CLI, now=clock.now(),
        )  # fmt: skip
        return codes.display(issued.code)


def available(db, member_id: int) -> int:
    with db.unit_of_work(readonly=True) as s:
        return s.scalars(select(Account.available).where(Account.member_id == member_id)).one()


def test_a_marketer_adds_the_americano_with_a_gold_price_and_stock(
    page, staff, seeded, sign_in_as, shot
):
    sign_in_as("marketer")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Rewards").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Rewards")
    expect(page.locator(".rewards-table")).to_contain_text("No rewards yet.")
    page.get_by_label("Kind").select_option("goods")
    page.get_by_role("button", name="Add a reward").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New reward")

    page.get_by_label("Code").fill("americano")
    page.get_by_label("Name (한국어)").fill("아메리카노 무료")
    page.get_by_label("Name (中文)").fill("免费美式咖啡")
    page.get_by_label("Name (English)").fill("Free americano")
    page.get_by_label("Price (points)").fill("1500")
    page.get_by_label("Price for Gold (points)").fill("1200")
    page.get_by_label("Cost to the program").fill("1500")
    page.get_by_label("Units in stock").fill("500")
    shot(page, "reward-new")
    page.get_by_role("button", name="Add reward").click()

    # Coupons need a validity: the form says so at the field, keeping what was typed.
    days = page.get_by_label("Valid for (days)")
    expect(days).to_have_attribute("aria-invalid", "true")
    expect(days).to_be_focused()
    expect(page.get_by_label("Price for Gold (points)")).to_have_value("1200")
    days.fill("30")
    page.get_by_role("button", name="Add reward").click()

    expect(page.get_by_role("status")).to_have_text("Reward added (version 1).")
    expect(page.get_by_role("heading", level=1)).to_contain_text("Free americano")
    expect(page.get_by_test_id("version")).to_have_text("Version 1")
    expect(page.get_by_test_id("stock-left")).to_have_text("500")
    shot(page, "reward-detail")

    page.get_by_role("link", name="Rewards").first.click()
    row = page.locator('tr[data-reward="americano"]')
    expect(row).to_contain_text("Free americano")
    expect(row).to_contain_text("1,500 points")
    expect(row).to_contain_text("Gold: 1,200 points")
    expect(row.locator("td.num").last).to_have_text("500")
    shot(page, "rewards")


def test_support_finds_a_coupon_by_its_code_and_cancels_it_with_a_reason(
    page, db, staff, seeded, coupon, sign_in_as, shot
):
    before = available(db, seeded.member_id)
    sign_in_as("support")
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Rewards")).to_have_count(0)
    nav.get_by_role("link", name="Members").click()
    page.get_by_label("Card, phone, e-mail or name").fill("BKR100000")
    page.get_by_label("Card, phone, e-mail or name").press("Enter")
    expect(page.get_by_role("heading", level=1)).to_contain_text("김민지")
    coupons = page.locator("#coupons")
    expect(coupons).to_contain_text(coupon)
    expect(coupons).to_contain_text("Open")

    # At the desk the member reads the code out: typed in lower case, without dashes.
    coupons.get_by_role("link", name="Find a coupon by code").click()
    page.get_by_label("Coupon code").fill(coupon.replace("-", "").lower())
    page.get_by_role("button", name="Find").click()
    expect(page.get_by_test_id("coupon-code")).to_have_text(coupon)
    expect(page.locator("#coupon")).to_contain_text("Free americano")
    shot(page, "coupon")

    page.get_by_role("button", name="Cancel coupon").click()
    reason = page.get_by_label("Reason")
    expect(reason).to_have_attribute("aria-invalid", "true")
    reason.fill("Ordered the wrong drink")
    page.get_by_role("button", name="Cancel coupon").click()

    expect(page.get_by_role("status")).to_have_text(
        "Coupon cancelled: 1,500 points returned to the member."
    )
    expect(page.locator("#coupon h2")).to_contain_text("Cancelled")
    latest = page.locator(".coupon-history tbody tr").last
    expect(latest).to_contain_text("Cancelled")
    expect(latest).to_contain_text("Ordered the wrong drink")
    expect(latest).to_contain_text(STAFF["support"][0])
    assert available(db, seeded.member_id) == before + 1500

    page.locator("#coupon").get_by_role("link", name=re.compile("Member #")).click()
    expect(page.locator(f'#coupons tr[data-coupon="{coupon}"]')).to_contain_text("Cancelled")
    shot(page, "member-coupons")


def test_the_catalog_and_a_coupon_fit_a_phone(page, staff, seeded, coupon, sign_in_as, shot):
    sign_in_as("owner")
    page.set_viewport_size({"width": 390, "height": 844})
    for path, landmark in (
        ("/admin/rewards", "Free americano"),
        (f"/admin/rewards/coupons?program=bakery&code={coupon}", "Cancel or reissue"),
    ):
        page.goto(path)
        expect(page.locator("main")).to_contain_text(landmark)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide on a 390px phone"
    shot(page, "coupon-phone")
