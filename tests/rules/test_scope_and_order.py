"""Issue 16, expressiveness 1–3: base rates scoped to lines (`only`), base rates that add up
(`base_rates: "sum"`), and `priority` / `stop` within the stages. The pure engine first (with
property tests), then the rule set over HTTP on both engines, and the CLI's export/import."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from patron.db.engine import Database
from patron.rules import service as rules_service
from patron.rules.engine import Evaluation, Line, MemberContext, Order, evaluate
from patron.rules.explain import explain_steps, skip_reason
from patron.rules.model import RuleSetDoc
from tests.api import conftest as api_fixtures
from tests.api.helpers import enroll
from tests.rules import test_rules_cli as cli_tests

admin, pos, reader, bakery = (
    api_fixtures.admin,
    api_fixtures.pos,
    api_fixtures.reader,
    api_fixtures.bakery,
)
cli, program, current, run = (  # the CLI tests' fixtures and helpers
    cli_tests.cli,
    cli_tests.program,
    cli_tests.current,
    cli_tests.run,
)

SEOUL = ZoneInfo("Asia/Seoul")
AT = datetime(2026, 3, 4, 12, 0, tzinfo=SEOUL)  # a Wednesday noon
BASE: dict[str, Any] = {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"}
COFFEE: dict[str, Any] = {
    "id": "coffee",
    "name": "Coffee double rate",
    "kind": "base_rate",
    "points": 20,
    "per_amount": "1000",
    "only": {"categories": ["coffee"]},
}


def doc(*items: dict[str, Any], **settings_: Any) -> RuleSetDoc:
    return RuleSetDoc.model_validate({**settings_, "rules": list(items)})


def ln(id: str, amount: str | int, category: str | None = None, sku: str | None = None) -> Line:
    return Line(id=id, amount=Decimal(str(amount)), sku=sku, category=category)


LATTE = ln("1", 12000, "coffee", "latte")
BAGEL = ln("2", 8000, "bakery", "bagel")


def order(*lines: Line, total: str | int | None = None, currency: str = "KRW", **extra: Any):
    amount = (
        Decimal(str(total)) if total is not None else sum((x.amount for x in lines), Decimal(0))
    )
    return Order(
        currency=currency,
        total=amount,
        occurred_at=AT,
        timezone="Asia/Seoul",
        lines=tuple(lines),
        **extra,
    )


def step(result: Evaluation, rule_id: str) -> dict[str, Any]:
    [found] = [s for s in result.steps if s["rule"] == rule_id]
    return found


def reason(result: Evaluation, rule_id: str) -> str:
    found = step(result, rule_id)
    assert found["applied"] is False, found
    return str(found["reason"])


# --- 1. base rates scoped to lines -------------------------------------------------------


def test_only_coffee_earns():
    result = evaluate(doc(COFFEE), order(LATTE, BAGEL))
    assert result.points == 240  # 12 full thousands of coffee × 20; the bagel earns nothing
    assert result.line_points == [240, 0]
    applied = step(result, "coffee")
    assert applied["lines"] == ["1"] and applied["amount"] == "12000"
    assert applied["only"] == {"skus": [], "categories": ["coffee"]}


def test_full_units_count_on_the_sum_of_the_matching_lines():
    """1 point per full 1 USD on bakery only: 0.60 + 0.70 is one full dollar, not none per line."""
    bakery_only = {
        "id": "bakery",
        "kind": "base_rate",
        "points": 1,
        "per_amount": "1",
        "only": {"categories": ["bakery"]},
    }
    result = evaluate(
        doc(bakery_only),
        order(
            ln("1", "0.60", "bakery"),
            ln("2", "0.70", "bakery"),
            ln("3", "5.00", "coffee"),
            currency="USD",
        ),
    )
    assert result.points == 1
    assert step(result, "bakery")["lines"] == ["1", "2"]
    assert result.line_points[2] == 0


def test_an_order_without_lines_matches_no_only_list():
    result = evaluate(doc(COFFEE, BASE), order(total=20000))
    assert reason(result, "coffee") == "the order has no lines, so no line can match only"
    assert result.points == 200  # the general rate still earns on the whole amount


def test_excluded_lines_never_match_only():
    excl = {"id": "no-coffee", "kind": "exclude", "match": {"skus": ["latte"]}}
    result = evaluate(doc(excl, COFFEE), order(LATTE, BAGEL))
    assert result.points == 0
    assert reason(result, "coffee") == "no line matches only (category coffee)"


def test_only_earns_on_what_is_left_after_points_paid():
    # 5,000 of 20,000 paid with points: each line keeps 3/4 of its amount (coffee 9,000).
    result = evaluate(doc(COFFEE), order(LATTE, BAGEL, paid_with_points=Decimal(5000)))
    assert step(result, "coffee")["amount"] == "9000" and result.points == 180


# --- 2. several base rates: first per line, or sum -----------------------------------------


def test_first_mode_each_line_earns_by_the_first_rate_that_covers_it():
    scoped_first = evaluate(doc(COFFEE, BASE), order(LATTE, BAGEL))
    assert scoped_first.points == 240 + 80  # coffee at 20, the bagel by the general rate
    assert step(scoped_first, "base")["lines"] == ["2"]
    general_first = evaluate(doc(BASE, COFFEE), order(LATTE, BAGEL))
    assert general_first.points == 200
    assert reason(general_first, "coffee") == "base rate base applied first"


def test_sum_mode_adds_every_applicable_rate_and_shows_each():
    result = evaluate(doc(BASE, COFFEE, base_rates="sum"), order(LATTE, BAGEL))
    assert result.points == 200 + 240
    assert step(result, "base")["result"] == 200 and step(result, "coffee")["result"] == 240
    assert result.line_points == [120 + 240, 80]


def test_a_product_multiplier_acts_on_every_base_rate_of_its_line():
    double = {
        "id": "coffee-x2",
        "kind": "product_multiplier",
        "match": {"categories": ["coffee"]},
        "factor": "2",
    }
    result = evaluate(doc(BASE, COFFEE, double, base_rates="sum"), order(LATTE, BAGEL))
    assert step(result, "coffee-x2")["before"] == "360"
    assert result.points == 360 * 2 + 80


def test_a_first_mode_document_stays_as_it_was_stored():
    plain = doc(BASE)
    assert plain.model_dump(mode="json", exclude_none=True) == {
        "combine": "multiply",
        "rounding": "down",
        "rules": [
            {
                "id": "base",
                "enabled": True,
                "kind": "base_rate",
                "mode": "per_full_unit",
                "points": 10,
                "per_amount": "1000",
                "rounding": "down",
            }
        ],
        "redemption": {},
    }
    dumped = doc({**BASE, "priority": 3, "stop": "all"}, COFFEE, base_rates="sum").model_dump(
        mode="json", exclude_none=True
    )
    assert dumped["base_rates"] == "sum"
    assert (dumped["rules"][0]["priority"], dumped["rules"][0]["stop"]) == (3, "all")
    assert dumped["rules"][1]["only"] == {"skus": [], "categories": ["coffee"]}


# --- 3. priority and stop -----------------------------------------------------------------

VIP_ONLY: dict[str, Any] = {
    "id": "vip-only",
    "kind": "order_bonus",
    "points": 500,
    "priority": 10,
    "stop": "stage",
    "conditions": {"tiers": ["vip"]},
}
WELCOME: dict[str, Any] = {"id": "welcome", "kind": "order_bonus", "points": 100}
CAKE: dict[str, Any] = {
    "id": "cake",
    "kind": "product_bonus",
    "match": {"categories": ["cake"]},
    "points_per_unit": 50,
}


def test_stop_stage_switches_off_the_later_rules_of_its_stage_only():
    rules = doc(BASE, WELCOME, VIP_ONLY, CAKE, {"id": "wed", "kind": "time_weight", "factor": "2"})
    basket = order(LATTE, ln("2", 8000, "cake"))
    vip = evaluate(rules, basket, MemberContext(tier="vip"))
    # priority 10 puts vip-only first in stage 6, before the product bonus and the welcome.
    assert vip.points == 400 + 500
    assert reason(vip, "welcome") == "stopped by rule 'vip-only'"
    assert step(vip, "welcome")["stopped_by"] == "vip-only"
    assert reason(vip, "cake") == "stopped by rule 'vip-only'"
    assert step(vip, "wed")["applied"] is True  # stage 5 is not vip-only's stage
    other = evaluate(rules, basket, MemberContext(tier="gold"))
    # vip-only does not apply, so it stops nothing: the tier reason stays its own.
    assert reason(other, "vip-only") == "tier gold is not one of vip"
    assert other.points == 400 + 50 + 100


def test_stop_all_switches_off_every_later_stage_but_never_the_caps():
    staff = {**COFFEE, "id": "staff-rate", "only": None, "points": 1, "stop": "all"}
    rules = doc(
        staff,
        BASE,
        {
            "id": "x2",
            "kind": "product_multiplier",
            "match": {"categories": ["coffee"]},
            "factor": "2",
        },
        {"id": "wed", "kind": "time_weight", "factor": "2"},
        WELCOME,
        {"id": "cap", "kind": "cap", "per": "order", "max_points": 15},
    )
    result = evaluate(rules, order(LATTE, BAGEL))
    for stopped in ("base", "x2", "wed", "welcome"):
        assert reason(result, stopped) == "stopped by rule 'staff-rate'"
    assert step(result, "staff-rate")["result"] == 20
    assert step(result, "cap")["after"] == 15 and result.points == 15


def test_the_tier_definition_multiplier_is_a_priority_0_factor():
    member = MemberContext(tier="gold", tier_factor=Decimal(2))
    first = {"id": "first", "kind": "time_weight", "factor": "1.5", "stop": "stage"}
    # Same priority: the tier multiplier comes first and applies; the later promotion is stopped.
    same = evaluate(
        doc(BASE, first, {"id": "p", "kind": "promotion", "factor": "3"}), order(LATTE), member
    )
    assert (
        step(same, "tier:gold")["applied"] is True
        and reason(same, "p") == "stopped by rule 'first'"
    )
    assert same.points == 120 * 2 * 3 // 2
    # A higher priority puts the stopping weight before it.
    ahead = evaluate(doc(BASE, {**first, "priority": 1}), order(LATTE), member)
    assert reason(ahead, "tier:gold") == "stopped by rule 'first'" and ahead.points == 180


def test_a_stopped_budgeted_promotion_neither_gives_nor_spends():
    promo = {"id": "promo", "kind": "promotion", "factor": "2", "budget_points": 1000}
    bonus_promo = {"id": "bonus", "kind": "promotion", "bonus_points": 70, "budget_points": 1000}
    stopper = {"id": "stopper", "kind": "order_bonus", "points": 5, "priority": 1, "stop": "all"}
    weight = {"id": "w", "kind": "time_weight", "factor": "1.5", "priority": 1, "stop": "stage"}
    result = evaluate(doc(BASE, weight, promo, stopper, bonus_promo), order(LATTE))
    assert reason(result, "promo") == "stopped by rule 'w'"
    assert reason(result, "bonus") == "stopped by rule 'stopper'"
    assert result.budget_used == {} and result.points == 180 + 5


def test_priority_orders_a_stage_and_ties_keep_document_order():
    rules = doc(
        {**BASE, "id": "low", "points": 1},
        {**BASE, "id": "high", "points": 5, "priority": 2},
        {"id": "a", "kind": "time_weight", "factor": "1.5"},
        {"id": "b", "kind": "time_weight", "factor": "2", "priority": -1},
        {"id": "c", "kind": "time_weight", "factor": "3"},
    )
    result = evaluate(rules, order(LATTE))
    assert reason(result, "low") == "base rate high applied first"
    factors = [s["rule"] for s in result.steps if s["kind"] == "time_weight"]
    assert factors == ["a", "c", "b"]
    assert result.points == 60 * 9


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            {"id": "signup", "kind": "event", "event": "signup", "points": 10, "stop": "all"},
            "stop does not apply to an event rule",
        ),
        (
            {"id": "cap", "kind": "cap", "per": "order", "max_points": 10, "stop": "stage"},
            "stop does not apply to a cap",
        ),
        ({**BASE, "only": {}}, "match needs at least one sku or category"),
        ({**BASE, "only": {"skus": []}}, "match needs at least one sku or category"),
        ({**BASE, "priority": 1001}, "less than or equal to 1000"),
        ({**BASE, "stop": "order"}, "'stage' or 'all'"),
    ],
)
def test_invalid_scope_and_order_fields_are_refused(rule: dict[str, Any], message: str):
    with pytest.raises(ValidationError, match=message):
        doc(rule)
    with pytest.raises(ValidationError, match="'first' or 'sum'"):
        doc(BASE, base_rates="all")


def test_the_new_words_exist_in_ko_zh_and_en():
    result = evaluate(doc(COFFEE, {**BASE, "stop": "all"}, WELCOME), order(LATTE, BAGEL))
    words = {lang: explain_steps(result.steps, result.points, lang) for lang in ("en", "ko", "zh")}
    assert words["en"][0] == "Coffee double rate: 12,000 KRW: 20 points for each full 1,000 = 240"
    assert words["ko"][0] == "Coffee double rate: 12,000 KRW: 1,000당 20포인트 = 240"
    assert words["zh"][0] == "Coffee double rate:12,000 KRW:每满 1,000 得 20 积分 = 240"
    stopped = step(result, "welcome")
    assert skip_reason(stopped, "en") == "stopped by rule 'base'"
    assert skip_reason(stopped, "ko") == "'base' 규칙이 적용되어 중단됨"
    assert skip_reason(stopped, "zh") == "因规则“base”已适用而停止"
    no_lines = evaluate(doc(COFFEE, BASE, BASE | {"id": "b2"}), order(total=1000))
    for lang in ("en", "ko", "zh"):
        for rule_id in ("coffee", "b2"):
            worded = skip_reason(step(no_lines, rule_id), lang)
            assert worded and (lang == "en" or worded != step(no_lines, rule_id)["reason"])
    assert skip_reason(step(evaluate(doc(COFFEE), order(BAGEL)), "coffee"), "ko") == (
        "대상 상품이 주문에 없음 (category coffee)"
    )


# --- property tests -------------------------------------------------------------------------

CATEGORIES = ["coffee", "bakery", "cake", "gift_card"]
amounts = st.integers(min_value=0, max_value=60000)
line_lists = st.lists(st.tuples(amounts, st.sampled_from(CATEGORIES)), min_size=1, max_size=6).map(
    lambda items: tuple(ln(str(i + 1), a, c) for i, (a, c) in enumerate(items))
)
base_rates = st.lists(
    st.fixed_dictionaries(
        {
            "mode": st.sampled_from(["per_full_unit", "proportional"]),
            "points": st.integers(min_value=0, max_value=30),
            "per_amount": st.sampled_from(["100", "1000", "1500"]),
            "rounding": st.sampled_from(["down", "half_up", "up"]),
            "only": st.none() | st.lists(st.sampled_from(CATEGORIES), min_size=1, unique=True),
        }
    ),
    min_size=1,
    max_size=4,
).map(
    lambda items: [
        {
            "id": f"rate-{i}",
            "kind": "base_rate",
            **{k: v for k, v in item.items() if k != "only"},
            **({"only": {"categories": item["only"]}} if item["only"] else {}),
        }
        for i, item in enumerate(items)
    ]
)
EXTRAS: list[dict[str, Any]] = [
    {"id": "gift", "kind": "exclude", "match": {"categories": ["gift_card"]}},
    {"id": "wed", "kind": "time_weight", "factor": "1.5"},
    {"id": "promo", "kind": "promotion", "factor": "2", "bonus_points": 30},
    {"id": "cake-bonus", "kind": "product_bonus", "match": {"categories": ["cake"]},
     "points_per_unit": 40},
    {"id": "big", "kind": "order_bonus", "points": 100, "conditions": {"min_amount": "30000"}},
    {"id": "cap", "kind": "cap", "per": "order", "max_points": 2000},
]  # fmt: skip
extras = st.lists(st.sampled_from(EXTRAS), unique_by=lambda r: r["id"], max_size=len(EXTRAS))
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(
    lines=line_lists, rates=base_rates, others=extras, combine=st.sampled_from(["multiply", "add"])
)
def test_sum_mode_never_earns_less_than_first_mode(lines, rates, others, combine):
    basket = order(*lines)
    first = evaluate(doc(*rates, *others, combine=combine), basket)
    summed = evaluate(doc(*rates, *others, combine=combine, base_rates="sum"), basket)
    assert summed.points >= first.points


def test_a_rate_on_every_line_earns_on_exactly_the_part_not_paid_with_points():
    """30 per 100 on 30,670 KRW less 4,675 paid with points: 25,995 × 0.3 = 7,798.5, which rounds
    half up to 7,799 whether or not the rate lists every category. Scaling each line by
    25,995 / 30,670 and summing gave 7,798.4999… (found by the property test below)."""
    lines = [ln("1", 16018, "coffee"), ln("2", 899, "coffee"), ln("3", 13753, "coffee")]
    basket = order(*lines, paid_with_points=Decimal(4675))
    rate = {"id": "r", "kind": "base_rate", "points": 30, "per_amount": "100",
            "mode": "proportional", "rounding": "half_up"}  # fmt: skip
    scoped = {**rate, "only": {"categories": ["coffee"]}}
    assert evaluate(doc(rate), basket).points == 7799
    assert evaluate(doc(scoped), basket).points == 7799


@PROPERTY
@given(
    lines=line_lists,
    rate=base_rates.map(lambda rates: rates[0]),
    others=extras,
    paid=st.integers(min_value=0, max_value=20000),
    mode=st.sampled_from(["first", "sum"]),
)
def test_only_listing_every_category_is_the_same_as_no_only(lines, rate, others, paid, mode):
    basket = order(*lines, paid_with_points=Decimal(paid))
    plain = {k: v for k, v in rate.items() if k != "only"}
    every = {**plain, "only": {"categories": CATEGORIES}}
    without = evaluate(doc(plain, *others, base_rates=mode), basket)
    with_all = evaluate(doc(every, *others, base_rates=mode), basket)
    assert (with_all.points, with_all.line_points) == (without.points, without.line_points)


GROWING: list[dict[str, Any]] = [
    {"id": "wed", "kind": "time_weight", "factor": "1.5"},
    {"id": "noon", "kind": "time_weight", "factor": "1.2", "from_time": "11:00", "to_time": "13:00"},
    {"id": "promo", "kind": "promotion", "factor": "2", "bonus_points": 30},
    {"id": "x3", "kind": "product_multiplier", "match": {"categories": ["coffee"]}, "factor": "3"},
    {"id": "cake-bonus", "kind": "product_bonus", "match": {"categories": ["cake"]},
     "points_per_unit": 40},
    {"id": "bonus", "kind": "order_bonus", "points": 100},
    {"id": "cap", "kind": "cap", "per": "order", "max_points": 3000},
]  # fmt: skip


@PROPERTY
@given(
    lines=line_lists,
    rates=base_rates,
    others=st.lists(st.sampled_from(GROWING), unique_by=lambda r: r["id"], max_size=7),
    pick=st.integers(min_value=0, max_value=20),
    combine=st.sampled_from(["multiply", "add"]),
    mode=st.sampled_from(["first", "sum"]),
)
def test_stop_stage_never_gives_more_for_factors_of_at_least_1(
    lines, rates, others, pick, combine, mode
):
    items = [*rates, *[r for r in others if r["kind"] != "cap"]]
    chosen = pick % len(items)
    stopped = [{**r, "stop": "stage"} if i == chosen else r for i, r in enumerate(items)]
    caps = [r for r in others if r["kind"] == "cap"]
    basket = order(*lines)
    plain = evaluate(doc(*items, *caps, combine=combine, base_rates=mode), basket)
    cut = evaluate(doc(*stopped, *caps, combine=combine, base_rates=mode), basket)
    assert cut.points <= plain.points


@PROPERTY
@given(
    lines=line_lists,
    rates=base_rates,
    others=st.lists(
        st.sampled_from([r for r in [*EXTRAS, *GROWING] if r["kind"] != "product_bonus"]),
        unique_by=lambda r: r["id"],
        max_size=9,
    ),
    priorities=st.lists(st.integers(min_value=-3, max_value=3), min_size=16, max_size=16),
    stops=st.lists(st.sampled_from([None, None, None, "stage", "all"]), min_size=16, max_size=16),
    mode=st.sampled_from(["first", "sum"]),
)
def test_priorities_equal_the_document_reordered(lines, rates, others, priorities, stops, mode):
    """Priorities only reorder each stage: the same rules written in that order (priorities
    left out) earn the same, with or without stops. (Product bonuses are left out: without
    priorities stage 6 lists them before the promotion and order bonuses, whatever the order.)"""
    items = [
        {**r, "priority": priorities[i], **({"stop": stops[i]} if r["kind"] != "cap" else {})}
        for i, r in enumerate([*rates, *others])
    ]
    items = [{k: v for k, v in r.items() if v is not None} for r in items]
    reordered = [
        {k: v for k, v in r.items() if k != "priority"}
        for r in sorted(items, key=lambda r: -r["priority"])
    ]
    basket = order(*lines)
    prioritised = evaluate(doc(*items, base_rates=mode), basket, MemberContext(tier="gold"))
    written = evaluate(doc(*reordered, base_rates=mode), basket, MemberContext(tier="gold"))
    assert (prioritised.points, prioritised.line_points) == (written.points, written.line_points)
    applied = [s for s in prioritised.steps if s["applied"]]
    assert applied == [s for s in written.steps if s["applied"]]


@PROPERTY
@given(
    lines=line_lists,
    rates=base_rates,
    others=extras,
    priorities=st.lists(st.integers(min_value=-5, max_value=5), min_size=10, max_size=10),
)
def test_without_stop_priorities_change_no_points_in_sum_mode(lines, rates, others, priorities):
    items = [*rates, *others]
    with_priority = [{**r, "priority": priorities[i]} for i, r in enumerate(items)]
    basket = order(*lines)
    plain = evaluate(doc(*items, base_rates="sum"), basket)
    reordered = evaluate(doc(*with_priority, base_rates="sum"), basket)
    assert (reordered.points, reordered.line_points) == (plain.points, plain.line_points)


# --- over HTTP, on SQLite and PostgreSQL -----------------------------------------------------

P = "/api/v1/programs/bakery"
KIM = "010-1234-5678"
LINES = [
    {"sku": "latte", "category": "coffee", "amount": 12000},
    {"sku": "bagel", "category": "bakery", "amount": 8000},
]


def publish(client, headers, document: dict[str, Any]) -> dict[str, Any]:
    # Each step moves the month's points on purpose (tests/rules/test_publish_confirmation.py).
    response = client.put(
        f"{P}/rules", json=document, headers=headers, params={"confirm_large_change": "true"}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def buy(client, headers, external_id: str, **extra: Any) -> dict[str, Any]:
    body = {"external_id": external_id, "member": {"phone": KIM}, "amount": 20000, **extra}
    response = client.post(f"{P}/purchases", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def earn_steps(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    [earn] = [e for e in answer["entries"] if e["kind"] == "earn"]
    return {s["rule"]: s for s in earn["breakdown"]}


def test_scoped_and_summed_rates_over_http(frozen, client, admin, pos, reader, bakery):
    enroll(client, pos, name="Kim Minji", phone=KIM, language="ko")
    published = publish(client, admin, {"base_rates": "sum", "rules": [BASE, COFFEE]})
    assert published["document"]["base_rates"] == "sum"
    assert published["document"]["rules"][1]["only"] == {"skus": [], "categories": ["coffee"]}
    answer = buy(client, pos, "S-1", lines=LINES)
    assert answer["points_earned"] == 200 + 240
    steps = earn_steps(answer)
    assert (steps["base"]["result"], steps["coffee"]["result"]) == (200, 240)
    assert steps["coffee"]["lines"] == ["1"]
    [earn] = [e for e in answer["entries"] if e["kind"] == "earn"]
    words = client.get(
        f"{P}/entries/{earn['id']}/explanation", params={"language": "zh"}, headers=reader
    )
    assert words.status_code == 200, words.text
    assert any(line.startswith("Coffee double rate:") for line in words.json()["lines"])
    # Without lines no line can match `only`: the general rate alone earns.
    bare = buy(client, pos, "S-2")
    assert bare["points_earned"] == 200
    assert earn_steps(bare)["coffee"]["reason"] == (
        "the order has no lines, so no line can match only"
    )
    # First mode, the scoped rate first: each line earns once, by its own rate.
    publish(client, admin, {"rules": [COFFEE, BASE]})
    assert "base_rates" not in client.get(f"{P}/rules", headers=reader).json()["document"]
    assert buy(client, pos, "S-3", lines=LINES)["points_earned"] == 240 + 80


def test_priority_and_stop_over_http(frozen, client, admin, pos, reader, bakery):
    enroll(client, pos, name="Kim Minji", phone=KIM)
    document = {
        "rules": [
            BASE,
            WELCOME,
            {**VIP_ONLY, "conditions": {"min_amount": "15000"}},
            {"id": "cap", "kind": "cap", "per": "order", "max_points": 600},
        ]
    }
    stored = publish(client, admin, document)["document"]["rules"]
    assert (stored[2]["priority"], stored[2]["stop"]) == (10, "stage")
    assert "priority" not in stored[0] and "stop" not in stored[0]
    big = buy(client, pos, "P-1")
    assert big["points_earned"] == 200 + 500 - 100  # the cap still applies
    steps = earn_steps(big)
    assert steps["welcome"]["applied"] is False
    assert steps["welcome"]["reason"] == "stopped by rule 'vip-only'"
    assert steps["cap"]["applied"] is True
    small = buy(client, pos, "P-2", amount=10000)
    assert small["points_earned"] == 100 + 100


@pytest.mark.parametrize(
    ("rule", "detail"),
    [
        ({**BASE, "only": {}}, "rules.0.only: match needs at least one sku or category"),
        (
            {"id": "signup", "kind": "event", "event": "signup", "points": 10, "stop": "all"},
            "rules.0: stop does not apply to an event rule",
        ),
        (
            {"id": "cap", "kind": "cap", "per": "order", "max_points": 10, "stop": "all"},
            "rules.0: stop does not apply to a cap",
        ),
        ({**BASE, "priority": -1001}, "rules.0.priority: Input should be greater than or equal"),
    ],
)
def test_bad_scope_and_order_fields_get_422(client, admin, bakery, rule, detail):
    response = client.put(f"{P}/rules", json={"rules": [rule]}, headers=admin)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_rule_set"
    assert body["detail"].startswith(detail), body["detail"]
    summing = client.put(f"{P}/rules", json={"base_rates": "max", "rules": [BASE]}, headers=admin)
    assert summing.status_code == 422
    assert summing.json()["detail"].startswith("base_rates: Input should be 'first' or 'sum'")


# --- the CLI's export and import ---------------------------------------------------------------


def test_cli_round_trip_keeps_the_new_fields(cli, db: Database, program, tmp_path: Path):
    document = {
        "combine": "multiply",
        "rounding": "down",
        "base_rates": "sum",
        "rules": [
            {**BASE, "priority": -5},
            COFFEE,
            {**VIP_ONLY, "stop": "all"},
        ],
    }
    source = tmp_path / "scoped.json"
    source.write_text(json.dumps(document), encoding="utf-8")
    assert "published" in run(cli, db, "import", "--program", "bakery", str(source))
    version, stored = current(db)
    assert stored == rules_service.validate_doc(document).model_dump(mode="json", exclude_none=True)
    exported = json.loads(run(cli, db, "export", "--program", "bakery"))
    assert exported["base_rates"] == "sum"
    assert exported["rules"][0]["priority"] == -5
    assert exported["rules"][1]["only"] == {"skus": [], "categories": ["coffee"]}
    assert (exported["rules"][2]["priority"], exported["rules"][2]["stop"]) == (10, "all")
    again = tmp_path / "again.json"
    again.write_text(json.dumps(exported), encoding="utf-8")
    out = run(cli, db, "import", "--program", "bakery", str(again))
    assert "no rule changed" in out
    assert current(db) == (version + 1, stored)
    assert "on category coffee only" in run(cli, db, "show", "--program", "bakery")
