"""Staff and API keys in a real browser: an owner adds a support user who then signs in with
a support's menu; an API key is shown once, works on the API, and stops when revoked."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def open_staff(page) -> None:
    nav = page.get_by_role("navigation", name="Sections")
    nav.get_by_role("link", name="Staff & keys").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Staff & API keys")


def test_owner_adds_a_support_user_who_signs_in_and_sees_supports_menu(
    page, staff, seeded, sign_in_as, shot
):
    sign_in_as("owner")
    open_staff(page)
    page.get_by_role("link", name="Add a staff member").click()
    page.get_by_label("E-mail").fill("jimin@bakery.example")
    page.get_by_label("Name").fill("Jimin Park")
    page.locator("#role-support").check()
    page.get_by_role("button", name="Create account").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Account created for Jimin Park")
    secret = page.locator("#new-password")
    password = secret.input_value()
    assert len(password) >= 16
    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".copy-status")).not_to_be_empty()

    page.get_by_role("link", name="Done").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Jimin Park")
    expect(page.locator("body")).not_to_contain_text(password)
    page.get_by_role("link", name="Staff & API keys").click()
    expect(page.locator('tr[data-user="jimin@bakery.example"]')).to_contain_text("Support")
    shot(page, "staff")

    page.get_by_role("button", name="Sign out").click()
    page.goto("/admin/sign-in")
    page.get_by_label("E-mail").fill("jimin@bakery.example")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Jimin Park")
    nav = page.get_by_role("navigation", name="Sections")
    # Support helps members: their records, the messages sent to them, imports of them, their
    # privacy requests and the sales held for review.
    expect(nav.get_by_role("link")).to_have_text(
        ["Members", "Messages", "Imports", "Privacy", "Review"]
    )
    expect(page.locator(".user-name .badge")).to_have_text("Support")


def test_owner_creates_an_api_key_sees_it_once_and_revokes_it(
    page, staff, seeded, sign_in_as, shot
):
    sign_in_as("owner")
    open_staff(page)
    page.get_by_role("link", name="API keys").click()
    page.locator("#key-name").fill("Mapo till 1")
    page.get_by_role("button", name="Create key").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("API key created")
    raw = page.locator("#api-key").input_value()
    assert re.fullmatch(r"ptr_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", raw)
    expect(page.locator(".secret-box")).to_contain_text("shown only this once")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".copy-status")).not_to_be_empty()
    shot(page, "api-key-created")

    answer = page.request.get("/api/v1/programs", headers={"Authorization": f"Bearer {raw}"})
    assert answer.status == 200 and answer.json()[0]["code"] == "bakery"

    page.get_by_role("link", name="Back to API keys").click()
    row = page.locator('tr[data-key="Mapo till 1"]')
    expect(row).to_contain_text("pos")
    expect(page.locator("body")).not_to_contain_text(raw)

    row.get_by_role("link", name="Revoke Mapo till 1").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Revoke this API key?")
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_role("status")).to_contain_text("Key revoked")
    expect(row).to_contain_text("Revoked")
    refused = page.request.get("/api/v1/programs", headers={"Authorization": f"Bearer {raw}"})
    assert refused.status == 401
