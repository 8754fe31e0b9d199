"""A cap takes back from the budgeted promotions' use fairly: in proportion to what each gave,
the odd points by rule id, so neither the promotions' order nor which came last changes what a
budget is charged (the "last promotion first" rule made the charge depend on rule order), and
dropping a promotion still never raises the points, with any number of them and a cap."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patron.rules.engine import MemberContext, evaluate
from patron.rules.model import RuleSetDoc
from tests.rules.test_budget_fairness import _points, _without, base, cases, order, promo

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _capped(data: dict[str, Any], max_points: int) -> dict[str, Any]:
    rules = [r for r in data["rules"] if r["kind"] != "cap"]
    return {**data, "rules": [*rules, {"id": "cap", "kind": "cap", "per": "order",
                                       "max_points": max_points}]}  # fmt: skip


@PROPERTY
@given(cases(), st.integers(min_value=0, max_value=3000), st.randoms(use_true_random=False))
def test_with_a_cap_the_charge_does_not_depend_on_rule_order(case, cap, rnd):
    data = _capped(case[0], cap)
    promos = [r for r in data["rules"] if r["kind"] == "promotion"]
    shuffled = list(promos)
    rnd.shuffle(shuffled)
    others = [r for r in data["rules"] if r["kind"] != "promotion"]
    first = _points(data, case)
    second = _points({**data, "rules": others + shuffled}, case)
    assert (first.points, first.budget_used) == (second.points, second.budget_used)


@PROPERTY
@given(cases(), st.integers(min_value=0, max_value=3000))
def test_with_a_cap_dropping_a_promotion_never_raises_points_or_budgets_overspend(case, cap):
    data = _capped(case[0], cap)
    result = _points(data, case)
    for rule in data["rules"]:
        if rule["kind"] in ("promotion", "order_bonus"):
            assert _points(_without(data, rule["id"]), case).points <= result.points
    for rule_id, used in result.budget_used.items():
        assert 0 < used <= case[3][rule_id]


def test_a_cap_charges_twin_promotions_alike():
    rules = RuleSetDoc.model_validate(
        {"rules": [base(), promo("a", "2", budget=10_000), promo("b", "2", budget=10_000),
                   {"id": "cap", "kind": "cap", "per": "order", "max_points": 500}]}
    )  # fmt: skip
    result = evaluate(rules, order(25800), MemberContext(), {"a": 10_000, "b": 10_000})
    # 250 base ×2 ×2 = 1,000: the promotions add 375 each; the cap takes 500 back, 250 from each.
    assert result.points == 500
    assert result.budget_used == {"a": 125, "b": 125}
    swapped = RuleSetDoc.model_validate(
        {"rules": [base(), promo("b", "2", budget=10_000), promo("a", "2", budget=10_000),
                   {"id": "cap", "kind": "cap", "per": "order", "max_points": 500}]}
    )  # fmt: skip
    assert evaluate(
        swapped, order(25800), MemberContext(), {"a": 10_000, "b": 10_000}
    ).budget_used == {
        "a": 125,
        "b": 125,
    }
