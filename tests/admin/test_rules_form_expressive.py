"""The rule editor's forms for scoped and summed base rates, priority and stop, and purchase-count
conditions: each field round-trips (an untouched form is no change), lands in the published
document, reads in words in the preview, and a refused value comes back at its field with 422."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patron.admin.rules_ui.diff import field_changes, value_words
from patron.admin.rules_ui.form import form_values, rule_from_form
from patron.admin.rules_ui.words import settings_lines, summary
from patron.programs.service import get_program
from patron.rules import service as rules
from patron.rules.model import RuleSetDoc
from patron.rules.service import validate_doc
from tests.admin.test_rules_pages import (
    SEEDED_VERSION,
    as_role,
    edit_base,
    field_errors,
    hidden_fields,
    versions,
)

# Rules with every new field the form edits, each as the rules core stores it.
EXPRESSIVE_RULES: list[dict[str, Any]] = [
    {
        "id": "bakery-rate",
        "name": "Bakery earns double",
        "kind": "base_rate",
        "enabled": True,
        "mode": "per_full_unit",
        "points": 20,
        "per_amount": "1000",
        "rounding": "down",
        "only": {"skus": ["baguette"], "categories": ["bakery", "cake"]},
        "priority": 7,
        "stop": "stage",
    },
    {
        "id": "launch",
        "kind": "promotion",
        "enabled": True,
        "factor": "2",
        "bonus_points": 0,
        "qualifying": True,
        "with_coupons": True,
        "priority": -1000,
        "stop": "all",
    },
    {
        "id": "welcome",
        "kind": "order_bonus",
        "enabled": True,
        "points": 500,
        "qualifying": True,
        "with_coupons": True,
        "conditions": {
            "first_purchase": True,
            "attributes": {"vip": True},  # not on the form: kept as it is
        },
    },
    {
        "id": "regulars",
        "kind": "order_bonus",
        "enabled": True,
        "points": 100,
        "qualifying": True,
        "with_coupons": True,
        "conditions": {
            "first_purchase": False,
            "min_purchases": 2,
            "nth_purchase": 5,
            "within_first_purchases": 10,
            "recent_purchases": {"days": 30, "min": 2, "max": 8},
        },
    },
    # A priority on a cap or an event (the form shows neither's) is kept through the form.
    {
        "id": "cap",
        "kind": "cap",
        "enabled": True,
        "per": "order",
        "max_points": 5000,
        "priority": 3,
    },
    {
        "id": "signup",
        "kind": "event",
        "enabled": True,
        "event": "signup",
        "points": 1000,
        "limit": "once",
        "qualifying": True,
        "priority": 2,
    },
]


def stored(rule: dict[str, Any]) -> dict[str, Any]:
    """The rule as a published document holds it."""
    doc = RuleSetDoc.model_validate({"rules": [rule]})
    return doc.model_dump(mode="json", exclude_none=True)["rules"][0]


# --- the form's own round trip (no database) ----------------------------------------------------


@pytest.mark.parametrize("rule", EXPRESSIVE_RULES, ids=[r["id"] for r in EXPRESSIVE_RULES])
def test_an_untouched_form_gives_back_the_rule_it_shows(rule):
    original = stored(rule)
    assert original == rule, "the fixture is the stored form of the rule"
    again = rule_from_form(rule["kind"], form_values(original), original)
    assert stored(again) == original


def test_the_form_shows_each_new_field_as_its_inputs():
    values = form_values(EXPRESSIVE_RULES[0])
    assert values["only.categories"] == "bakery, cake"
    assert values["only.skus"] == "baguette"
    assert (values["priority"], values["stop"]) == ("7", "stage")
    counts = form_values(EXPRESSIVE_RULES[3])
    assert counts["cond.first_purchase"] == "no"
    assert (counts["cond.nth_purchase"], counts["cond.within_first_purchases"]) == ("5", "10")
    assert [counts[f"cond.recent_purchases.{k}"] for k in ("days", "min", "max")] == [
        "30",
        "2",
        "8",
    ]
    # Nothing set: no priority typed, "later rules still apply", any purchase.
    plain = form_values({"id": "x", "kind": "promotion", "factor": "2"})
    assert "priority" not in plain and plain["stop"] == "none"
    assert "cond.first_purchase" not in plain


def test_emptying_the_fields_removes_them_from_the_rule():
    original = stored(EXPRESSIVE_RULES[0])
    form = {
        **form_values(original),
        "only.categories": "",
        "only.skus": "",
        "priority": "",
        "stop": "none",
    }
    rule = stored(rule_from_form("base_rate", form, original))
    assert not {"only", "priority", "stop"} & set(rule)
    counts = stored(EXPRESSIVE_RULES[3])
    blanked = {k: ("" if k.startswith("cond.") else v) for k, v in form_values(counts).items()}
    assert "conditions" not in stored(rule_from_form("order_bonus", blanked, counts))


def test_a_cap_or_event_form_never_sets_a_stop():
    cap = stored(EXPRESSIVE_RULES[4])
    sneaked = {**form_values(cap), "stop": "all", "priority": "999"}
    assert stored(rule_from_form("cap", sneaked, cap)) == cap


def test_the_new_fields_read_in_words_in_three_languages():
    doc = validate_doc({"base_rates": "sum", "rules": EXPRESSIVE_RULES})
    rate, launch, welcome, regulars = doc.rules[:4]
    assert summary(rate, "KRW", "en") == (
        "20 points per full ₩1,000 · only on categories: bakery, cake / only on products: "
        "baguette · priority 7 · stops later rules of this stage"
    )
    assert summary(launch, "KRW", "en") == "×2 · priority -1000 · stops all later rules"
    assert summary(welcome, "KRW", "en").startswith(
        "+500 points per order · the member's first purchase"
    )
    assert summary(regulars, "KRW", "en") == (
        "+100 points per order · from the member's second purchase on · the member's purchase "
        "no. 5 · within the member's first 10 purchases · members with 2+ earlier purchases · "
        "2–8 purchases in the last 30 days"
    )
    assert "카테고리 bakery, cake에만 적립" in summary(rate, "KRW", "ko")
    assert "이 단계의 이후 규칙 중단" in summary(rate, "KRW", "ko")
    assert "仅品类 bakery, cake 积分" in summary(rate, "KRW", "zh")
    assert "会员首次消费" in summary(welcome, "KRW", "zh")
    assert ("Several base rates", "Base rates add up") in settings_lines(doc, "en")
    assert ("기본 적립이 여러 개일 때", "적용되는 기본 적립을 모두 합산") in settings_lines(
        doc, "ko"
    )


def test_a_changed_stop_or_base_rates_reads_in_words_in_the_field_table():
    changes = field_changes(
        {"stop": "stage"}, {}, words=lambda path, value: value_words(path, value, "en")
    )
    assert [(c.field, c.before, c.after) for c in changes] == [
        ("stop", "Stop later rules of this stage", "Later rules still apply")
    ]
    assert value_words("base_rates", "sum", "zh") == "适用的基础积分全部累加"
    assert value_words("points", "10", "en") is None


# --- over HTTP: preview, publish, edit again ---------------------------------------------------


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def published(db) -> dict[str, Any]:
    with db.unit_of_work(readonly=True) as s:
        doc = rules.document(s, get_program(s, "bakery"))
        return doc.model_dump(mode="json", exclude_none=True)


def form_of(page: str) -> dict[str, str]:
    """What the browser would post from a rule form as rendered: inputs, ticked boxes and
    each select's chosen option."""
    import html
    import re

    start = page.index('class="card rule-form"')
    form = page[start : page.index("</form>", start)]
    data: dict[str, str] = {}
    for tag in re.findall(r"<input [^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name is None:
            continue
        if 'type="checkbox"' in tag and " checked" not in tag:
            continue
        data[name.group(1)] = html.unescape(value.group(1) if value else "")
    for name, body in re.findall(
        r'<select id="[^"]+" name="([^"]+)"[^>]*>(.*?)</select>', form, re.S
    ):
        chosen = re.search(r'<option value="([^"]*)" selected>', body) or re.search(
            r'<option value="([^"]*)"', body
        )
        data[name] = html.unescape(chosen.group(1)) if chosen else ""
    return data


def test_a_scoped_ordered_base_rate_publishes_and_edits_again_without_loss(web, db):
    token = as_role(web, "marketer")
    add = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "action": "add",
        "kind": "base_rate",
        "id": "bakery-rate",
        "enabled": "1",
        "mode": "per_full_unit",
        "points": "20",
        "per_amount": "1000",
        "rounding": "down",
        "only.categories": "bakery, cake",
        "only.skus": "",
        "priority": "5",
        "stop": "stage",
    }
    preview = web.post("/admin/rules/preview", data=add)
    assert preview.status_code == 200, field_errors(preview.text)
    added = preview.text.split('data-change="added" data-rule="bakery-rate"')[1].split("</li>")[0]
    assert (
        "20 points per full ₩1,000 · only on categories: bakery, cake · priority 5 · "
        "stops later rules of this stage"
    ) in added
    fields = hidden_fields(preview.text, "/admin/rules/publish")
    assert web.post("/admin/rules/publish", data=fields).status_code == 200
    rule = published(db)["rules"][-1]
    assert rule == {
        "id": "bakery-rate",
        "kind": "base_rate",
        "enabled": True,
        "mode": "per_full_unit",
        "points": 20,
        "per_amount": "1000",
        "rounding": "down",
        "only": {"skus": [], "categories": ["bakery", "cake"]},
        "priority": 5,
        "stop": "stage",
    }

    page = web.get("/admin/rules/items/bakery-rate/edit")
    assert page.status_code == 200
    shown = form_of(page.text)
    assert shown["only.categories"] == "bakery, cake"
    assert (shown["priority"], shown["stop"]) == ("5", "stage")
    assert 'data-testid="rule-order" open' in page.text
    # The form as shown, sent back: nothing to publish.
    same = web.post("/admin/rules/preview", data={**shown, "csrf_token": token})
    assert same.status_code == 200, field_errors(same.text)
    assert "No differences." in same.text

    changed = web.post("/admin/rules/preview", data={**shown, "csrf_token": token, "stop": "none"})
    row = changed.text.split('data-change="changed" data-rule="bakery-rate"')[1].split("</li>")[0]
    assert "When this rule applies" in row
    assert '<td class="diff-old">Stop later rules of this stage</td>' in row
    assert '<td class="diff-new">Later rules still apply</td>' in row


def test_base_rates_add_up_from_the_settings_form(web, db):
    token = as_role(web, "owner")
    page = web.get("/admin/rules/settings")
    assert '<option value="first" selected>Only the first base rate that applies' in page.text
    data = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "action": "settings",
        "combine": "multiply",
        "rounding": "down",
        "base_rates": "sum",
    }
    preview = web.post("/admin/rules/preview", data=data)
    assert preview.status_code == 200
    settings = preview.text.split('data-change="settings"')[1].split("</li>")[0]
    assert "Several base rates" in settings
    assert '<td class="diff-new">Base rates add up</td>' in settings
    web.post("/admin/rules/publish", data=hidden_fields(preview.text, "/admin/rules/publish"))
    assert published(db)["base_rates"] == "sum"
    assert '<option value="sum" selected>' in web.get("/admin/rules/settings").text
    assert "Base rates add up" in web.get("/admin/rules").text
    # A settings form without the choice (sent before it existed) keeps the rule set's.
    older = {k: v for k, v in data.items() if k != "base_rates"}
    kept = web.post("/admin/rules/preview", data={**older, "base_version": "3", "rounding": "up"})
    assert (
        json.loads(hidden_fields(kept.text, "/admin/rules/publish")["candidate"])["base_rates"]
        == "sum"
    )
    bad = web.post("/admin/rules/preview", data={**data, "base_rates": "average"})
    assert bad.status_code == 422
    assert field_errors(bad.text) == {"base_rates": "Choose one of the options."}


def test_a_first_purchase_bonus_round_trips_with_its_hidden_conditions(web, db):
    token = as_role(web, "marketer")
    add = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "action": "add",
        "kind": "order_bonus",
        "id": "welcome",
        "enabled": "1",
        "qualifying": "1",
        "points": "500",
        "cond.first_purchase": "yes",
        "cond.recent_purchases.days": "30",
        "cond.recent_purchases.max": "0",
        "stop": "none",
    }
    preview = web.post("/admin/rules/preview", data=add)
    assert preview.status_code == 200, field_errors(preview.text)
    assert (
        "+500 points per order · the member&#39;s first purchase · at most 0 purchases in the "
        "last 30 days"
    ) in preview.text
    web.post("/admin/rules/publish", data=hidden_fields(preview.text, "/admin/rules/publish"))
    assert published(db)["rules"][-1] == {
        "id": "welcome",
        "kind": "order_bonus",
        "enabled": True,
        "points": 500,
        "qualifying": True,
        "with_coupons": True,
        "conditions": {"first_purchase": True, "recent_purchases": {"days": 30, "max": 0}},
    }
    page = web.get("/admin/rules/items/welcome/edit")
    shown = form_of(page.text)
    assert shown["cond.first_purchase"] == "yes"
    assert (shown["cond.recent_purchases.days"], shown["cond.recent_purchases.max"]) == ("30", "0")
    assert shown["cond.recent_purchases.min"] == ""
    same = web.post("/admin/rules/preview", data={**shown, "csrf_token": token})
    assert "No differences." in same.text


def _add_bonus(token: str, **changes: str) -> dict[str, str]:
    data = {
        "csrf_token": token,
        "program": "bakery",
        "base_version": str(SEEDED_VERSION),
        "action": "add",
        "kind": "order_bonus",
        "id": "bonus",
        "enabled": "1",
        "points": "100",
    }
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "errors"),
    [
        ({"priority": "1001"}, {"priority": "At most 1,000."}),
        ({"priority": "-2000"}, {"priority": "At least -1,000."}),
        ({"priority": "first"}, {"priority": "Enter a whole number."}),
        ({"stop": "forever"}, {"stop": "Choose one of the options."}),
        ({"cond.first_purchase": "maybe"}, {"cond.first_purchase": "Choose one of the options."}),
        ({"cond.nth_purchase": "0"}, {"cond.nth_purchase": "At least 1."}),
        ({"cond.within_first_purchases": "x"}, {"cond.within_first_purchases": "Enter a whole number."}),
        ({"cond.recent_purchases.min": "2"}, {"cond.recent_purchases.days": "Fill this in."}),
        ({"cond.recent_purchases.days": "30"}, {"cond.recent_purchases.min": "Give at least and/or at most."}),
        (
            {"cond.recent_purchases.days": "30", "cond.recent_purchases.min": "3", "cond.recent_purchases.max": "1"},
            {"cond.recent_purchases.max": "At most is below at least: the condition could never hold."},
        ),
        (
            {"cond.min_purchases": "2", "cond.first_purchase": "yes"},
            {
                "cond.first_purchase": "These purchase conditions can never all hold: "
                "Earlier purchases at least, First purchase."
            },
        ),
    ],
)  # fmt: skip
def test_refused_values_come_back_at_their_field_with_422(web, db, changes, errors):
    token = as_role(web, "marketer")
    page = web.post("/admin/rules/preview", data=_add_bonus(token, **changes))
    assert page.status_code == 422
    assert field_errors(page.text) == errors
    for key, value in changes.items():
        assert f'name="{key}"' in page.text
        if key != "cond.first_purchase" and key != "stop":
            assert f'value="{value}"' in page.text
    # The section holding a refused field is open, so its error is in sight.
    if any(k.startswith("cond.") for k in errors):
        assert '<details class="group" open>' in page.text
    else:
        assert 'data-testid="rule-order" open' in page.text
    assert versions(db) == [1, SEEDED_VERSION]


def test_an_empty_only_from_the_json_editor_is_refused_with_its_path(web, db):
    token = as_role(web, "marketer")
    doc = published(db)
    doc["rules"][0]["only"] = {}
    page = web.post(
        "/admin/rules/preview",
        data={
            "csrf_token": token,
            "program": "bakery",
            "base_version": str(SEEDED_VERSION),
            "action": "json",
            "document": json.dumps(doc),
        },
    )
    assert page.status_code == 422
    assert "rules.0.only: Give at least one category or product." in page.text


def test_the_base_rate_form_in_korean_shows_the_new_fields(web, db, staff):
    from patron.admin import service as staff_users

    with db.unit_of_work() as s:
        staff_users.get_user(s, staff["marketer"]).language = "ko"
    token = as_role(web, "marketer")
    page = web.get("/admin/rules/items/base/edit")
    for text in (
        "적립 대상 카테고리만",
        "적용 순서와 중단",
        "우선순위",
        "이 단계의 이후 규칙 중단",
    ):
        assert text in page.text
    refused = web.post("/admin/rules/preview", data=edit_base(token, priority="5000"))
    assert field_errors(refused.text) == {"priority": "1,000 이하여야 합니다."}
