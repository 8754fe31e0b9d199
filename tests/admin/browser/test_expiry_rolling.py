"""Rolling expiry set up in a real browser: the program's policy (months) and a tier's own
(days), saved, summarised and read back from the API."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from patron.programs.service import get_program
from patron.tiers import service as tiers
from tests.conftest import auth

pytestmark = pytest.mark.browser


def test_a_marketer_sets_rolling_expiry_for_the_program_and_a_tier(
    page, client, db, staff, seeded, keys, sign_in_as
):
    sign_in_as("marketer")
    page.goto("/admin/program")
    page.get_by_label("Points expire").select_option("rolling")
    page.get_by_label("N = months").fill("6")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    expect(page.get_by_label("Points expire")).to_have_value("rolling")
    expect(page.locator(".summary")).to_contain_text("Valid 6 months after the latest activity")
    program = client.get("/api/v1/programs/bakery", headers=auth(keys["admin"])).json()
    assert program["expiry"] == {"kind": "rolling", "months": 6, "days": None}

    # Gold rolls in days: the days field wins over the months left empty.
    page.goto("/admin/tiers")
    page.locator("#f-tier-2-expiry_kind").select_option("rolling")
    page.locator("#f-tier-2-expiry_months").fill("")
    page.locator("#f-tier-2-expiry_days").fill("90")
    page.get_by_role("button", name="Check the effect").click()
    page.get_by_role("button", name="Save tiers").click()
    expect(page.get_by_role("status")).to_contain_text("The tiers are saved")
    expect(page.locator("#f-tier-2-expiry_kind")).to_have_value("rolling")
    expect(page.locator("#f-tier-2-expiry_days")).to_have_value("90")
    with db.unit_of_work(readonly=True) as s:
        setup = tiers.tier_setup(s, get_program(s, "bakery"))
    gold = setup.tiers[2].expiry
    assert gold is not None and (gold.kind, gold.days) == ("rolling", 90)
