"""Scoped and summed base rates, priority and stop, and a first-purchase bonus, set up in a real
browser by a marketer (the base rate on a phone), published, read back from the API, and then
priced by a purchase through the API."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from patron import clock
from patron.audit.service import SYSTEM
from patron.programs.service import get_program
from patron.rules import publishing
from patron.rules import service as rules
from tests.conftest import T0, auth

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}


def seed_spring_promotion(db) -> None:
    """Version 3: a ×3 spring promotion, the one the marketer's new promotion will stop."""
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        doc = rules.document(s, program).model_dump(mode="json", exclude_none=True)
        doc["rules"].append({"id": "spring", "kind": "promotion", "factor": "3"})
        publishing.publish(s, program, rules.validate_doc(doc), actor=SYSTEM, now=T0)


def add_rule(page, kind: str) -> None:
    page.goto("/admin/rules")
    page.get_by_label("New rule of kind").select_option(kind)
    page.get_by_role("button", name="Add rule").click()


def publish(page, version: int) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text("Check before publishing")
    large = page.get_by_test_id("large-change")
    if large.count():
        large.get_by_role("checkbox").check()
    page.get_by_role("button", name=f"Publish as version {version}").click()
    expect(page.get_by_role("status")).to_contain_text(f"Version {version} is published")


def test_a_marketer_sets_up_scoped_summed_and_stopping_rules_and_a_sale_earns_by_them(
    page, db, staff, seeded, keys, sign_in_as, shot
):
    seed_spring_promotion(db)
    sign_in_as("marketer")

    # 1. A base rate on bakery lines only, set up on a phone.
    page.set_viewport_size(PHONE)
    add_rule(page, "base_rate")
    expect(page.get_by_role("heading", level=1)).to_have_text("New rule: Base rate")
    only = page.get_by_label("Earns only on categories")
    expect(only).to_be_visible()
    expect(page.locator('[id="f-only.categories-hint"]')).to_contain_text("Empty: every line earns")
    page.wait_for_load_state("load")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"the rule form is {width} px wide on a 390 px phone"
    page.get_by_label("Code").fill("bakery-rate")
    page.get_by_label("Name", exact=True).fill("Bakery earns 20 more")
    page.get_by_label(re.compile(r"^Points")).fill("20")
    page.get_by_label(re.compile(r"^For each amount of")).fill("1000")
    only.fill("bakery")
    shot(page, "rules-base-rate-only-phone")
    page.get_by_role("button", name="Check the effect").click()
    added = page.locator('li[data-change="added"][data-rule="bakery-rate"]')
    expect(added).to_contain_text("20 points per full ₩1,000 · only on categories: bakery")
    publish(page, 4)
    expect(page.locator('tr[data-rule="bakery-rate"]')).to_contain_text(
        "only on categories: bakery"
    )
    page.set_viewport_size(DESKTOP)

    # 2. Base rates add up.
    page.get_by_role("link", name="Change settings").click()
    page.get_by_label("Several base rates").select_option("sum")
    page.get_by_role("button", name="Check the effect").click()
    settings = page.locator('li[data-change="settings"]')
    expect(settings.locator("tr").filter(has_text="Several base rates")).to_contain_text(
        "Base rates add up"
    )
    publish(page, 5)
    expect(page.locator(".facts")).to_contain_text("Base rates add up")

    # 3. A promotion that goes first and stops the other promotions (spring ×3).
    add_rule(page, "promotion")
    page.get_by_label("Code").fill("launch")
    page.get_by_label(re.compile(r"^Factor")).fill("2")
    order = page.get_by_test_id("rule-order")
    order.locator("summary").click()
    page.get_by_label("Priority").fill("10")
    page.get_by_label("When this rule applies").select_option("stage")
    page.get_by_role("button", name="Check the effect").click()
    expect(page.locator('li[data-change="added"][data-rule="launch"]')).to_contain_text(
        "×2 · priority 10 · stops later rules of this stage"
    )
    shot(page, "rules-preview-stop")
    publish(page, 6)

    # 4. 500 points on a member's first purchase.
    add_rule(page, "order_bonus")
    page.get_by_label("Code").fill("welcome")
    page.get_by_label(re.compile(r"^Points per order")).fill("500")
    page.get_by_text("Only for some stores, channels or members").click()
    page.get_by_label("First purchase").select_option("yes")
    page.get_by_role("button", name="Check the effect").click()
    expect(page.locator('li[data-change="added"][data-rule="welcome"]')).to_contain_text(
        "+500 points per order · the member's first purchase"
    )
    publish(page, 7)

    # Editing the promotion again shows what was set.
    page.locator('tr[data-rule="launch"]').get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Priority")).to_have_value("10")
    expect(page.get_by_label("When this rule applies")).to_have_value("stage")

    # The published rule set holds exactly these fields.
    answer = page.request.get("/api/v1/programs/bakery/rules", headers=auth(keys["read"]))
    assert answer.ok, answer.text()
    body = answer.json()
    assert body["version"] == 7
    doc = body["document"]
    assert doc["base_rates"] == "sum"
    by_id = {r["id"]: r for r in doc["rules"]}
    assert list(by_id) == ["base", "seasonal-cake", "spring", "bakery-rate", "launch", "welcome"]
    assert by_id["bakery-rate"] == {
        "id": "bakery-rate",
        "name": "Bakery earns 20 more",
        "kind": "base_rate",
        "enabled": True,
        "mode": "per_full_unit",
        "points": 20,
        "per_amount": "1000",
        "rounding": "down",
        "only": {"skus": [], "categories": ["bakery"]},
    }
    assert by_id["launch"] == {
        "id": "launch",
        "kind": "promotion",
        "enabled": True,
        "factor": "2",
        "bonus_points": 0,
        "qualifying": True,
        "with_coupons": True,
        "priority": 10,
        "stop": "stage",
    }
    assert by_id["welcome"] == {
        "id": "welcome",
        "kind": "order_bonus",
        "enabled": True,
        "points": 500,
        "qualifying": True,
        "with_coupons": True,
        "conditions": {"first_purchase": True},
    }
    for rule_id in ("base", "seasonal-cake", "spring"):
        assert not {"priority", "stop", "only"} & set(by_id[rule_id]), rule_id

    # 박서준's first purchase: 10,000 of bread and 5,000 of coffee. Base rates add up: 150 on
    # everything + 200 on the bread = 350; launch ×2 stops spring ×3: 700; first purchase: +500.
    clock.freeze(T0.replace(minute=5))
    sale = page.request.post(
        "/api/v1/programs/bakery/purchases",
        headers=auth(keys["pos"]),
        data={
            "external_id": "EXPR-0001",
            "member": {"id": seeded.other_id},
            "amount": 15000,
            "lines": [
                {"sku": "croissant", "category": "bakery", "amount": 10000},
                {"sku": "latte", "category": "coffee", "amount": 5000},
            ],
        },
    )
    assert sale.status == 201, sale.text()
    assert sale.json()["points_earned"] == 1200
    # His second purchase: no welcome bonus, spring still stopped: 700.
    again = page.request.post(
        "/api/v1/programs/bakery/purchases",
        headers=auth(keys["pos"]),
        data={
            "external_id": "EXPR-0002",
            "member": {"id": seeded.other_id},
            "amount": 15000,
            "lines": [
                {"sku": "croissant", "category": "bakery", "amount": 10000},
                {"sku": "latte", "category": "coffee", "amount": 5000},
            ],
        },
    )
    assert again.status == 201, again.text()
    assert again.json()["points_earned"] == 700
