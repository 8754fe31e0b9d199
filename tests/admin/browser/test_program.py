"""Program setup in a real browser: settings saved by a marketer, inline errors, stores."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.admin.helpers import STAFF

pytestmark = pytest.mark.browser


def open_program(page) -> None:
    page.get_by_role("navigation", name="Sections").get_by_role("link", name="Program").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Corner Bakery")


def test_a_marketer_changes_the_point_value_and_sees_it_saved(
    page, staff, seeded, sign_in_as, shot
):
    sign_in_as("marketer")
    open_program(page)
    expect(page.locator(".summary")).to_contain_text("1 point = ₩1")
    shot(page, "program-settings")

    page.get_by_label("Value of 1 point (KRW)").fill("2")
    page.get_by_label("Pending days").fill("7")
    page.get_by_label("Points expire").select_option("end_of_year")
    page.get_by_role("button", name="Save settings").click()

    expect(page.get_by_role("status")).to_have_text("Settings saved.")
    expect(page.get_by_label("Value of 1 point (KRW)")).to_have_value("2")
    expect(page.get_by_label("Pending days")).to_have_value("7")
    expect(page.get_by_label("Points expire")).to_have_value("end_of_year")
    expect(page.locator(".summary")).to_contain_text("1 point = ₩2")
    latest = page.locator("#changes-h ~ .table-wrap tbody tr").first
    expect(latest).to_contain_text("Program settings changed")
    expect(latest).to_contain_text(STAFF["marketer"][0])
    expect(latest).to_contain_text("value of 1 point: 2")


def test_a_wrong_value_is_shown_at_its_field_with_the_focus_and_nothing_saved(
    page, staff, seeded, sign_in_as
):
    sign_in_as("marketer")
    open_program(page)
    page.get_by_label("Pending days").fill("400")
    page.get_by_label("Most of a bill payable with points (%)").fill("150")
    page.get_by_role("button", name="Save settings").click()
    pending = page.get_by_label("Pending days")
    expect(pending).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-pending_days-error")).to_have_text("Enter whole days from 0 to 365.")
    expect(page.locator("#f-redeem_max_share-error")).to_contain_text("percentage")
    expect(page.get_by_role("alert").first).to_contain_text("Nothing was saved")
    # The first field to fix (in page order) has the focus.
    expect(page.get_by_label("Most of a bill payable with points (%)")).to_be_focused()
    expect(pending).to_have_value("400")
    page.goto("/admin/program")
    expect(page.get_by_label("Pending days")).to_have_value("0")


def test_a_viewer_sees_the_settings_but_cannot_change_them(page, staff, seeded, sign_in_as):
    sign_in_as("viewer")
    open_program(page)
    expect(page.get_by_label("Value of 1 point (KRW)")).to_be_disabled()
    expect(page.get_by_role("button", name="Save settings")).to_have_count(0)


def test_stores_add_rename_switch_off_and_a_duplicate_code(page, staff, seeded, sign_in_as, shot):
    sign_in_as("marketer")
    open_program(page)
    page.get_by_role("link", name="Stores & channels").click()
    expect(page.locator("#channels")).to_contain_text("The online shop")

    page.locator("#store-code").fill("mapo")
    page.locator("#store-name").fill("Mapo again")
    page.get_by_role("button", name="Add store").click()
    expect(page.locator("#store-code-error")).to_have_text(
        "This program already has a store with this code."
    )
    expect(page.locator("#store-name")).to_have_value("Mapo again")

    page.locator("#store-code").fill("gangnam")
    page.locator("#store-name").fill("Gangnam")
    page.get_by_role("button", name="Add store").click()
    expect(page.get_by_role("status")).to_have_text("Store gangnam added.")
    row = page.locator('tr[data-store="gangnam"]')
    expect(row).to_contain_text("Active")

    page.get_by_role("link", name="Edit Gangnam").click()
    page.locator("#store-name").fill("Gangnam Station")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Store gangnam saved.")
    expect(row).to_contain_text("Gangnam Station")

    page.get_by_role("button", name="Switch off Gangnam Station").click()
    expect(page.get_by_role("status")).to_have_text("Store gangnam switched off.")
    expect(row).to_contain_text("Switched off")
    shot(page, "stores")
