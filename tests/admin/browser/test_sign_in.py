"""Signing in and out in a real browser: a wrong password is refused, a right one lands home."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.admin.helpers import PASSWORD, STAFF

pytestmark = pytest.mark.browser


def test_wrong_password_is_refused_then_the_right_one_signs_in_and_out(page, staff, shot):
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/sign-in\?next=%2Fadmin%2F$"))
    shot(page, "sign-in")

    page.get_by_label("E-mail").fill(STAFF["owner"][0])
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("The e-mail or the password is not right")
    # The e-mail stays filled in; the password does not.
    expect(page.get_by_label("E-mail")).to_have_value(STAFF["owner"][0])
    expect(page.get_by_label("Password")).to_have_value("")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Hello, Olivia Owner")
    nav = page.get_by_role("navigation", name="Sections")
    expect(nav.get_by_role("link", name="Members")).to_be_visible()
    expect(nav.get_by_role("link", name="Audit log")).to_be_visible()
    shot(page, "home")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/sign-in"))
