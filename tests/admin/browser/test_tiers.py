"""The tier editor in a real browser: rows added and removed, threshold what-if, save, roles."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from patron import clock
from patron.programs.service import get_program
from patron.tiers import reports
from patron.tiers import service as tiers

pytestmark = pytest.mark.browser


def test_a_marketer_tries_a_lower_silver_threshold_then_saves_it(
    page, db, staff, seeded, sign_in_as, shot
):
    sign_in_as("marketer")
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Tiers").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Tiers")
    rows = page.locator("[data-tier-row]")
    expect(rows).to_have_count(3)
    expect(page.locator("#f-tier-1-threshold")).to_have_value("5000")
    shot(page, "tiers-editor")

    # Rows are added and removed in the page (tiers.js), the keyboard following along.
    page.get_by_role("button", name="Add a tier").click()
    expect(rows).to_have_count(4)
    expect(page.locator("#f-tier-3-code")).to_be_focused()
    expect(rows.nth(3).locator("legend")).to_have_text("Tier 4")
    page.keyboard.type("vip")
    rows.nth(3).get_by_role("button", name="Remove").click()
    expect(rows).to_have_count(3)

    page.locator("#f-tier-1-threshold").fill("1000")
    page.get_by_role("button", name="Check the effect").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Check before saving")
    with db.unit_of_work(readonly=True) as s:
        expected = reports.what_if(
            s,
            get_program(s, "bakery"),
            reports.WhatIfRequest(thresholds={"silver": 1000}),
            now=clock.now(),
        )
    expect(page.get_by_test_id("moved-up")).to_have_text(str(expected.moved_up))
    expect(page.get_by_test_id("moved-down")).to_have_text(str(expected.moved_down))
    for row in expected.rows:
        line = page.locator(f'table.whatif-table tr[data-tier="{row.tier}"]')
        expect(line.locator('[data-col="today"]')).to_have_text(str(row.today))
        expect(line.locator('[data-col="proposed"]')).to_have_text(str(row.proposed))
    expect(page.locator('li[data-tier="silver"]')).to_contain_text("5000")
    shot(page, "tiers-preview")

    page.get_by_role("button", name="Save tiers").click()
    expect(page.get_by_role("status")).to_contain_text("The tiers are saved")
    expect(page.locator("#f-tier-1-threshold")).to_have_value("1000")
    with db.unit_of_work(readonly=True) as s:
        setup = tiers.tier_setup(s, get_program(s, "bakery"))
    assert [t.threshold for t in setup.tiers] == [0, 1000, 12000]


def test_an_error_is_shown_at_its_field_and_focused(page, staff, seeded, sign_in_as):
    sign_in_as("owner")
    page.goto("/admin/tiers")
    page.locator("#f-tier-2-code").fill("silver")
    page.get_by_role("button", name="Check the effect").click()
    expect(page.locator("#f-tier-2-code-error")).to_have_text("Another tier already has this code.")
    expect(page.locator("#f-tier-2-code")).to_be_focused()


def test_support_cannot_open_the_tier_editor(page, staff, seeded, sign_in_as):
    sign_in_as("support")
    response = page.goto("/admin/tiers")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("Not for your role")
