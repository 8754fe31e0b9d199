"""Purchase-count conditions (issue 16 item 4): first purchase, the Nth purchase, one of the
first N purchases, purchases in the last N days. Engine properties with hypothesis, then the
HTTP API on both engines: points, breakdowns, explanations in ko/zh/en, the quote, the what-if
replay, rule examples, and the 422s for conditions that are malformed or could never hold."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from patron import clock
from patron.rules.engine import MemberContext, Order, evaluate
from patron.rules.model import Conditions, RuleSetDoc
from patron.rules.service import needs
from patron.rules.simulate import _recent_counts
from tests.api import conftest as api_fixtures
from tests.api.helpers import enroll
from tests.conftest import T0

admin, pos, reader, bakery = (
    api_fixtures.admin,
    api_fixtures.pos,
    api_fixtures.reader,
    api_fixtures.bakery,
)

# --- the engine ---------------------------------------------------------------------------

BASE = {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"}
ORDER = Order(currency="KRW", total=Decimal(25800), occurred_at=T0, timezone="Asia/Seoul")


def rule_set(**bonuses: dict[str, Any]) -> RuleSetDoc:
    """A base rate and one 100-point order bonus per keyword, gated on its conditions."""
    rules = [BASE] + [
        {"id": name.replace("_", "-"), "kind": "order_bonus", "points": 100, "conditions": cond}
        for name, cond in bonuses.items()
    ]
    return RuleSetDoc.model_validate({"rules": rules})


def applied(doc: RuleSetDoc, member: MemberContext) -> set[str]:
    steps = evaluate(doc, ORDER, member).steps
    return {s["rule"] for s in steps if s["applied"] and s["kind"] == "order_bonus"}


FIRST_OR_NOT = rule_set(first={"first_purchase": True}, later={"first_purchase": False})


@settings(max_examples=60, deadline=None)
@given(earlier=st.integers(min_value=0, max_value=10_000))
def test_first_purchase_true_and_false_split_every_sale(earlier: int) -> None:
    got = applied(FIRST_OR_NOT, MemberContext(purchases=earlier))
    assert got == ({"first"} if earlier == 0 else {"later"})


@settings(max_examples=60, deadline=None)
@given(nth=st.integers(min_value=1, max_value=30), sales=st.integers(min_value=1, max_value=30))
def test_nth_purchase_matches_exactly_one_sale_of_a_sequence(nth: int, sales: int) -> None:
    doc = rule_set(stamp={"nth_purchase": nth})
    hits = [k for k in range(sales) if applied(doc, MemberContext(purchases=k))]
    # The member's sale number k + 1 has k earlier purchases.
    assert hits == ([nth - 1] if nth <= sales else [])


@settings(max_examples=60, deadline=None)
@given(first=st.integers(min_value=1, max_value=30), sales=st.integers(min_value=1, max_value=30))
def test_within_first_purchases_is_the_first_n_sales(first: int, sales: int) -> None:
    doc = rule_set(early={"within_first_purchases": first})
    hits = [k for k in range(sales) if applied(doc, MemberContext(purchases=k))]
    assert hits == list(range(min(first, sales)))


HOURS = st.lists(st.integers(min_value=0, max_value=24 * 200), max_size=25)


@settings(max_examples=60, deadline=None)
@given(
    ago=HOURS,
    windows=st.lists(st.integers(min_value=1, max_value=200), min_size=2, max_size=6, unique=True),
    split=st.integers(min_value=0, max_value=25),
    least=st.integers(min_value=0, max_value=10),
)
def test_recent_purchases_are_monotone_in_days(
    ago: list[int], windows: list[int], split: int, least: int
) -> None:
    """`ago`: earlier purchases, hours before the sale (0: the same instant, counted)."""
    windows.sort()
    times = sorted(T0 - timedelta(hours=h) for h in ago)
    # The replay's counting: purchases before the replayed period plus the replayed ones.
    # Where the period starts does not change a count.
    counts = _recent_counts(windows, T0, times[:split], times[split:])
    assert counts == _recent_counts(windows, T0, [], times)
    assert counts == {d: sum(1 for h in ago if h <= 24 * d) for d in windows}  # both ends in
    assert [counts[d] for d in windows] == sorted(counts[d] for d in windows)
    # A rule needing `least` in the window holds from some number of days on, and never again
    # stops holding; a rule allowing at most `least` the other way round.
    member = MemberContext(purchases=len(ago), recent_purchases=counts)
    at_least = [
        bool(applied(rule_set(r={"recent_purchases": {"days": d, "min": least}}), member))
        for d in windows
    ]
    at_most = [
        bool(applied(rule_set(r={"recent_purchases": {"days": d, "max": least}}), member))
        for d in windows
    ]
    assert at_least == sorted(at_least)
    assert at_most == sorted(at_most, reverse=True)
    assert at_least == [counts[d] >= least for d in windows]


def test_needs_reads_counts_only_when_a_rule_counts_and_every_window_once() -> None:
    assert needs(rule_set(big={"min_amount": "50000"})).purchases is False
    for cond in (
        {"first_purchase": False},
        {"nth_purchase": 5},
        {"within_first_purchases": 2},
        {"min_purchases": 1},
    ):
        wanted = needs(rule_set(r=cond))
        assert (wanted.purchases, wanted.recent_days) == (True, ())
    wanted = needs(
        rule_set(
            a={"recent_purchases": {"days": 30, "min": 2}},
            b={"recent_purchases": {"days": 90, "max": 0}},
            c={"recent_purchases": {"days": 30, "max": 5}},
        )
    )
    assert (wanted.purchases, wanted.recent_days) == (True, (30, 90))
    # A switched-off rule reads nothing.
    off = RuleSetDoc.model_validate(
        {
            "rules": [
                {
                    **BASE,
                    "conditions": {"recent_purchases": {"days": 7, "min": 1}},
                    "enabled": False,
                }
            ]
        }
    )
    assert (needs(off).purchases, needs(off).recent_days) == (False, ())


@pytest.mark.parametrize(
    ("cond", "message"),
    [
        ({"recent_purchases": {"days": 30}}, "give min and/or max"),
        ({"recent_purchases": {"days": 30, "min": 3, "max": 2}}, "min (3) is above max (2)"),
        ({"nth_purchase": 0}, "greater than or equal to 1"),
        ({"within_first_purchases": 0}, "greater than or equal to 1"),
        ({"first_purchase": True, "nth_purchase": 2}, "can never all hold"),
        ({"first_purchase": False, "within_first_purchases": 1}, "can never all hold"),
        ({"min_purchases": 3, "nth_purchase": 3}, "can never all hold"),
        ({"first_purchase": True, "recent_purchases": {"days": 7, "min": 1}}, "never all hold"),
    ],
)
def test_conditions_that_could_never_hold_are_refused(cond: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Conditions.model_validate(cond)


# --- over HTTP, on both engines -------------------------------------------------------------

P = "/api/v1/programs/bakery"
LEE, PARK = "010-2222-3333", "010-4444-5555"
DAY = timedelta(days=1)
_orders = iter(range(1, 10**6))


def publish(client, headers, *rules: dict[str, Any]) -> None:
    response = client.put(f"{P}/rules", json={"rules": [BASE, *rules]}, headers=headers)
    assert response.status_code == 200, response.text


def bonus(rule_id: str, points: int, **conditions: Any) -> dict[str, Any]:
    return {"id": rule_id, "kind": "order_bonus", "points": points, "conditions": conditions}


def buy(client, headers, phone: str = LEE, **extra: Any) -> dict[str, Any]:
    body = {"external_id": f"N-{next(_orders)}", "member": {"phone": phone}, "amount": 25800}
    response = client.post(f"{P}/purchases", json={**body, **extra}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def step(answer: dict[str, Any], rule: str) -> dict[str, Any]:
    [earn] = [e for e in answer["entries"] if e["kind"] == "earn"]
    [found] = [s for s in earn["breakdown"] if s["rule"] == rule]
    return found


def explained(client, headers, answer: dict[str, Any], language: str) -> list[str]:
    [earn] = [e for e in answer["entries"] if e["kind"] == "earn"]
    response = client.get(
        f"{P}/entries/{earn['id']}/explanation",
        params={"language": language, "skipped": "true"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    return list(response.json()["lines"])


def test_a_welcome_bonus_on_the_first_purchase(frozen, client, admin, pos, reader, bakery):
    enroll(client, pos, name="Lee", phone=LEE)
    enroll(client, pos, name="Park", phone=PARK)
    publish(
        client,
        admin,
        {**bonus("welcome", 500, first_purchase=True), "name": "Welcome bonus"},
        bonus("regulars", 50, first_purchase=False),
    )
    first = buy(client, pos)
    assert first["points_earned"] == 250 + 500
    assert step(first, "welcome")["applied"] is True
    assert step(first, "regulars")["reason"] == "the member's first purchase; only later ones count"
    second = buy(client, pos)
    assert second["points_earned"] == 250 + 50
    missed = step(second, "welcome")
    assert (missed["applied"], missed["reason"]) == (False, "not the first purchase (1 earlier)")
    assert (missed["condition"], missed["purchases"]) == ("first_purchase", 1)
    # Counted per member: Park's first purchase is still a first purchase.
    assert buy(client, pos, PARK)["points_earned"] == 250 + 500

    assert "Welcome bonus: not applied, not the first purchase (1 earlier)" in explained(
        client, reader, second, "en"
    )
    assert "Welcome bonus: 적용 안 됨, 첫 구매가 아님 (이전 구매 1회)" in explained(
        client, reader, second, "ko"
    )
    assert "Welcome bonus:未适用,不是首次消费(此前已消费 1 次)" in explained(
        client, reader, second, "zh"
    )
    assert "regulars: 적용 안 됨, 첫 구매에는 적용되지 않음 (두 번째 구매부터)" in explained(
        client, reader, first, "ko"
    )
    # Without `skipped` an explanation stays as it was: applied steps and the total.
    [earn] = [e for e in second["entries"] if e["kind"] == "earn"]
    plain = client.get(f"{P}/entries/{earn['id']}/explanation?language=en", headers=reader)
    assert not any("not applied" in line for line in plain.json()["lines"])


def test_a_stamp_on_the_third_purchase(frozen, client, admin, pos, reader, bakery):
    enroll(client, pos, name="Lee", phone=LEE)
    publish(client, admin, bonus("third", 1000, nth_purchase=3))
    sales = [buy(client, pos) for _ in range(4)]
    assert [s["points_earned"] for s in sales] == [250, 250, 1250, 250]
    assert step(sales[0], "third")["reason"] == "purchase 1, not purchase 3"
    assert step(sales[3], "third")["reason"] == "purchase 4, not purchase 3"
    assert "third: 적용 안 됨, 이번은 4번째 구매 (3번째 구매에만 적용)" in explained(
        client, reader, sales[3], "ko"
    )
    assert "third:未适用,本次为第 4 次消费(仅适用于第 3 次)" in explained(
        client, reader, sales[3], "zh"
    )


def test_a_bonus_on_the_first_two_purchases_only(frozen, client, admin, pos, reader, bakery):
    enroll(client, pos, name="Lee", phone=LEE)
    publish(client, admin, bonus("starter", 100, within_first_purchases=2))
    sales = [buy(client, pos) for _ in range(3)]
    assert [s["points_earned"] for s in sales] == [350, 350, 250]
    assert step(sales[2], "starter")["reason"] == "purchase 3, only the first 2 count"
    assert "starter: not applied, purchase 3, only the first 2 count" in explained(
        client, reader, sales[2], "en"
    )
    assert "starter: 적용 안 됨, 이번은 3번째 구매 (처음 2회 구매에만 적용)" in explained(
        client, reader, sales[2], "ko"
    )


def quote(client, headers, phone: str = LEE) -> dict[str, Any]:
    body = {"member": {"phone": phone}, "amount": 25800}
    response = client.post(f"{P}/quote", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_purchases_in_the_last_30_days_and_a_come_back_bonus(
    frozen, client, admin, pos, reader, bakery
):
    enroll(client, pos, name="Lee", phone=LEE)
    publish(
        client,
        admin,
        bonus("regular", 300, recent_purchases={"days": 30, "min": 2}),
        bonus("come-back", 1000, first_purchase=False, recent_purchases={"days": 90, "max": 0}),
    )
    points: list[int] = []

    def sale_at(at: datetime) -> dict[str, Any]:
        clock.freeze(at)
        expected = quote(client, pos)["points_earned"]  # the quote reads the same figures
        answer = buy(client, pos)
        assert answer["points_earned"] == expected
        points.append(answer["points_earned"])
        return answer

    first = sale_at(T0)
    assert step(first, "regular")["reason"] == "0 purchases in the last 30 days, 2 needed"
    assert (
        step(first, "come-back")["reason"] == "the member's first purchase; only later ones count"
    )
    second = sale_at(T0 + 10 * DAY)
    assert step(second, "regular")["reason"] == "1 purchases in the last 30 days, 2 needed"
    assert step(second, "come-back")["reason"] == "1 purchases in the last 90 days, at most 0"
    assert sale_at(T0 + 20 * DAY)["points_earned"] == 250 + 300  # day 0 and day 10
    # Day 10 is exactly 30 days before day 40: the window holds both of its ends.
    assert sale_at(T0 + 40 * DAY)["points_earned"] == 250 + 300
    # A second later day 20 has left the window: only day 40 is in it.
    missed = sale_at(T0 + 50 * DAY + timedelta(seconds=1))
    assert step(missed, "regular")["reason"] == "1 purchases in the last 30 days, 2 needed"
    assert "regular: 적용 안 됨, 최근 30일간 구매 1회, 2회 이상 필요" in explained(
        client, reader, missed, "ko"
    )
    assert "regular:未适用,最近 30 天消费 1 次,需至少 2 次" in explained(
        client, reader, missed, "zh"
    )
    # 91 days without a purchase: welcome back.
    back = sale_at(T0 + 141 * DAY)
    assert back["points_earned"] == 250 + 1000
    assert step(back, "come-back")["applied"] is True
    assert points == [250, 250, 550, 550, 250, 1250]

    # A late sale (sent now, happened on day 15) counts what happened before it: days 0 and 10.
    late = buy(client, pos, occurred_at=(T0 + 15 * DAY).isoformat())
    assert late["points_earned"] == 250 + 300
    assert step(late, "come-back")["reason"] == "2 purchases in the last 90 days, at most 0"

    # The what-if replay rebuilds the same figures: the unchanged rules give what was recorded,
    # whether the period starts before the first sale or in the middle (seeded from before it).
    rules = client.get(f"{P}/rules", headers=reader).json()["document"]
    for start in ("2026-03-01", "2026-04-01"):
        body = {"rules": rules, "from": start, "to": "2026-12-31"}
        report = client.post(f"{P}/rules/simulate", json=body, headers=reader)
        assert report.status_code == 200, report.text
        got = report.json()
        assert got["current_points"] == got["actual_points"] > 0, got
        assert got["purchases"] == (7 if start == "2026-03-01" else 3)  # days 40, 50, 141


def test_rule_examples_give_the_member_recent_purchases(frozen, client, admin, pos, bakery):
    publish(client, admin, bonus("regular", 300, recent_purchases={"days": 30, "min": 2}))
    example = {
        "sale": {"amount": 25800},
        "member": {"purchases": 5, "recent_purchases": {"30": 2, "90": 4}},
        "expected_points": 550,
    }
    saved = client.put(f"{P}/rules/examples/regular", json=example, headers=admin)
    assert saved.status_code == 200, saved.text
    assert saved.json()["member"]["recent_purchases"] == {"30": 2, "90": 4}
    run = client.post(f"{P}/rules/examples/run", headers=admin)
    assert run.status_code == 200, run.text
    assert run.json()["passed"] == 1
    # One purchase in the window is not enough; a window the example does not give counts 0.
    for name, recent in (("one-recent", {"30": 1}), ("no-window", {"90": 4})):
        other = {**example, "member": {"purchases": 5, "recent_purchases": recent}}
        assert (
            client.put(f"{P}/rules/examples/{name}", json=other, headers=admin).status_code == 200
        )
    results = {
        r["name"]: r
        for r in client.post(f"{P}/rules/examples/run", headers=admin).json()["results"]
    }
    assert {name: r["points"] for name, r in results.items()} == {
        "regular": 550,
        "one-recent": 250,
        "no-window": 250,
    }
    wrong = {**example, "member": {"purchases": 1, "recent_purchases": {"30": 2}}}
    refused = client.put(f"{P}/rules/examples/wrong", json=wrong, headers=admin)
    assert refused.status_code == 422, refused.text
    assert "recent_purchases.30 (2) is more than purchases (1)" in refused.text


@pytest.mark.parametrize(
    ("conditions", "detail"),
    [
        (
            {"recent_purchases": {"days": 30}},
            "rules.1.conditions.recent_purchases: give min and/or max: how many purchases "
            "in the window",
        ),
        (
            {"recent_purchases": {"days": 0, "min": 1}},
            "rules.1.conditions.recent_purchases.days: Input should be greater than or equal to 1",
        ),
        (
            {"recent_purchases": {"days": 3651, "min": 1}},
            "rules.1.conditions.recent_purchases.days: Input should be less than or equal to 3650",
        ),
        (
            {"nth_purchase": 0},
            "rules.1.conditions.nth_purchase: Input should be greater than or equal to 1",
        ),
        (
            {"first_purchase": True, "min_purchases": 2},
            "rules.1.conditions: min_purchases 2, first_purchase true can never all hold: "
            "the rule could never apply",
        ),
        (
            {"max_purchases": 2},
            "rules.1.conditions.max_purchases: Extra inputs are not permitted",
        ),
    ],
)
def test_bad_purchase_conditions_are_refused_with_the_field(
    client, admin, bakery, conditions: dict[str, Any], detail: str
):
    rule = {"id": "r", "kind": "order_bonus", "points": 100, "conditions": conditions}
    response = client.put(f"{P}/rules", json={"rules": [BASE, rule]}, headers=admin)
    assert response.status_code == 422, response.text
    assert response.json() == {"error": "invalid_rule_set", "detail": detail}


def test_the_worked_example_in_the_docs() -> None:
    """docs/rules.md, "Purchase-count conditions": welcome, 5th-purchase stamp, welcome back."""
    doc = RuleSetDoc.model_validate(
        {
            "rules": [
                BASE,
                bonus("welcome", 500, first_purchase=True),
                bonus("fifth", 1000, nth_purchase=5),
                bonus(
                    "come-back",
                    1000,
                    first_purchase=False,
                    recent_purchases={"days": 90, "max": 0},
                ),
            ]
        }
    )
    days = ["03-02", "03-10", "03-20", "04-01", "04-09", "07-20", "07-21"]
    times = [datetime.fromisoformat(f"2026-{d}T03:00:00+00:00") for d in days]
    points = []
    for k, at in enumerate(times):
        member = MemberContext(
            purchases=k, recent_purchases=_recent_counts([90], at, [], times[:k])
        )
        order = Order(currency="KRW", total=Decimal(25800), occurred_at=at, timezone="Asia/Seoul")
        points.append(evaluate(doc, order, member).points)
    assert points == [750, 250, 250, 250, 1250, 1250, 250]
