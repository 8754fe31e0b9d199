"""The rule editor's segment field in a real browser (issue 16 "Done means", issue 18 item 1): a
segment is created, a marketer ticks it on a new order bonus, the preview explains the condition,
the published rule carries it (read back from the API) and the editor shows it ticked again."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.admin.browser.test_rules_expressive import add_rule, publish
from tests.conftest import auth

pytestmark = pytest.mark.browser


def test_a_marketer_ticks_a_segment_on_a_rule_previews_and_publishes(
    page, db, staff, seeded, keys, sign_in_as, shot
):
    for code, name in (("regulars", "Regulars"), ("dormant", "Dormant")):
        made = page.request.post(
            "/api/v1/programs/bakery/segments",
            headers=auth(keys["admin"]),
            data={"code": code, "name": name, "definition": {"condition": {"type": "tier",
                                                                         "tiers": ["gold"]}}},
        )  # fmt: skip
        assert made.status == 201, made.text()
    sign_in_as("marketer")

    add_rule(page, "order_bonus")
    expect(page.get_by_role("heading", level=1)).to_have_text("New rule: Order bonus")
    page.get_by_label("Code").fill("regulars-bonus")
    page.get_by_label(re.compile(r"^Points per order")).fill("300")
    page.get_by_text("Only for some stores, channels or members").click()
    segments = page.locator("fieldset").filter(
        has=page.locator("legend", has_text="Member segments")
    )
    expect(segments).to_be_visible()
    expect(segments.get_by_role("checkbox")).to_have_count(2)
    segments.get_by_label("Regulars").check()
    shot(page, "rules-segment-field")
    page.get_by_role("button", name="Check the effect").click()

    added = page.locator('li[data-change="added"][data-rule="regulars-bonus"]')
    expect(added).to_contain_text("+300 points per order")
    expect(added).to_contain_text("members in segment regulars")
    expect(added).not_to_contain_text("dormant")
    publish(page, 3)
    expect(page.locator('tr[data-rule="regulars-bonus"]')).to_contain_text(
        "members in segment regulars"
    )

    answer = page.request.get("/api/v1/programs/bakery/rules", headers=auth(keys["read"]))
    assert answer.ok, answer.text()
    body = answer.json()
    assert body["version"] == 3
    rule = next(r for r in body["document"]["rules"] if r["id"] == "regulars-bonus")
    assert rule["conditions"] == {"segments": ["regulars"]}
    assert rule["points"] == 300

    # Edited again, the segment comes back ticked and the other one not.
    page.locator('tr[data-rule="regulars-bonus"]').get_by_role("link", name="Edit").click()
    expect(segments.get_by_label("Regulars")).to_be_checked()
    expect(segments.get_by_label("Dormant")).not_to_be_checked()
