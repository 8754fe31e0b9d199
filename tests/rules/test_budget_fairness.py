"""Budgeted promotions: how a capped extra is split, and why adding a promotion never costs points.

The rule (docs/rules.md, "Promotion budgets"): the budgeted promotions of an order share the extra
they make together in proportion to what each would add on its own (its factor's extra part,
factor − 1); each gives its share plus its bonus, up to the budget it has left; the order's points
are rounded once, after the limits. Properties below hold for any number of budgeted promotions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from patron.rules.engine import Evaluation, Line, MemberContext, Order, evaluate
from patron.rules.model import RuleSetDoc

SEOUL = "Asia/Seoul"


def doc(*rules: dict[str, Any], combine: str = "multiply", rounding: str = "down") -> RuleSetDoc:
    return RuleSetDoc.model_validate({"combine": combine, "rounding": rounding, "rules": rules})


def base(points: int = 10, per: str = "1000") -> dict[str, Any]:
    return {"id": "base", "kind": "base_rate", "points": points, "per_amount": per}


def promo(
    id: str, factor: str = "1", *, bonus: int = 0, budget: int | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"id": id, "kind": "promotion", "factor": factor, "bonus_points": bonus}
    if budget is not None:
        out["budget_points"] = budget
    return out


def order(total: int) -> Order:
    return Order(
        currency="KRW",
        total=Decimal(total),
        occurred_at=datetime(2026, 3, 4, 12, tzinfo=ZoneInfo(SEOUL)),
        timezone=SEOUL,
    )


def budget_steps(result: Evaluation) -> list[dict[str, Any]]:
    return [s for s in result.steps if "budget_left" in s]


# --- Worked examples ------------------------------------------------------------------------


def test_two_doubles_share_the_joint_extra_equally() -> None:
    # 100 base points, ×2 and ×2: 400, an extra of 300 made together; each is charged 150.
    rules = doc(base(), promo("a", "2", budget=10_000), promo("b", "2", budget=10_000))
    result = evaluate(rules, order(10_000), budgets={"a": 10_000, "b": 10_000})
    assert result.points == 400
    assert result.budget_used == {"a": 150, "b": 150}
    assert budget_steps(result) == []


def test_shares_follow_what_each_adds_alone() -> None:
    # ×3 adds 2 on its own, ×1.5 adds 0.5: the joint extra (100 × 4.5 − 100 = 350) splits 4:1.
    rules = doc(base(), promo("big", "3", budget=10_000), promo("small", "1.5", budget=10_000))
    result = evaluate(rules, order(10_000), budgets={"big": 10_000, "small": 10_000})
    assert result.points == 450
    assert result.budget_used == {"big": 280, "small": 70}


def test_a_capped_promotion_is_not_paid_for_by_another_budget() -> None:
    # a has 10 left: it gives 10, not its 150; b still gives its own share, 150, no more.
    rules = doc(base(), promo("a", "2", budget=10_000), promo("b", "2", budget=10_000))
    result = evaluate(rules, order(10_000), budgets={"a": 10, "b": 10_000})
    assert result.points == 100 + 10 + 150
    assert result.budget_used == {"a": 10, "b": 150}
    (cut,) = budget_steps(result)
    assert (cut["rule"], cut["budget_left"], cut["before"], cut["after"]) == ("a", 10, 400, 260)
    # And never fewer points than b alone (200) or a alone (110).
    assert result.points >= max(
        evaluate(
            doc(base(), promo("b", "2", budget=10_000)), order(10_000), budgets={"b": 10_000}
        ).points,
        evaluate(
            doc(base(), promo("a", "2", budget=10_000)), order(10_000), budgets={"a": 10}
        ).points,
    )


def test_both_capped_give_exactly_their_budgets() -> None:
    rules = doc(base(), promo("a", "2", budget=10_000), promo("b", "3", bonus=50, budget=10_000))
    result = evaluate(rules, order(10_000), budgets={"a": 7, "b": 40})
    assert result.points == 100 + 7 + 40
    assert result.budget_used == {"a": 7, "b": 40}
    assert [s["rule"] for s in budget_steps(result)] == ["a", "b"]
    assert budget_steps(result)[-1]["after"] == result.points


def test_the_bonus_comes_out_of_what_the_factor_leaves() -> None:
    # ×2 adds 100, then +80 bonus, 150 left: the bonus gives 50 of its 80.
    rules = doc(base(), promo("a", "2", bonus=80, budget=10_000))
    result = evaluate(rules, order(10_000), budgets={"a": 150})
    assert result.points == 250
    assert result.budget_used == {"a": 150}


def test_one_budgeted_promotion_is_as_before() -> None:
    # The single-promotion figures of test_engine (250 base points, ×2, 30 left: 280).
    rules = doc(base(), promo("launch", "2", budget=10_000))
    assert evaluate(rules, order(25_800), budgets={"launch": 30}).points == 280
    full = evaluate(rules, order(25_800), budgets={"launch": 10_000})
    assert (full.points, full.budget_used) == (500, {"launch": 250})


def test_add_mode_shares_are_what_each_factor_adds() -> None:
    rules = doc(
        base(), promo("a", "2", budget=10_000), promo("b", "1.5", budget=10_000), combine="add"
    )
    result = evaluate(rules, order(10_000), budgets={"a": 10_000, "b": 30})
    assert result.points == 100 + 100 + 30
    assert result.budget_used == {"a": 100, "b": 30}


def test_adding_a_small_promotion_no_longer_costs_points() -> None:
    # Found by the property below on the engine before the fair split: 15 base points, a ×2
    # with a +5 bonus and 17 left, a ×1.1 with 1 left. The ×2 alone gives 32 (30 + 2 of its
    # bonus); both used to give 31, each budget charged as if the other were at full strength.
    a, b = promo("a", "2", bonus=5, budget=1000), promo("b", "1.1", budget=1000)
    budgets = {"a": 17, "b": 1}
    alone = evaluate(doc(base(1, "1"), a), order(15), budgets=budgets)
    both = evaluate(doc(base(1, "1"), a, b), order(15), budgets=budgets)
    assert alone.points == 32
    assert both.points == 33 and both.budget_used == {"a": 17, "b": 1}


def test_rule_order_does_not_change_the_split() -> None:
    a, b = promo("a", "2", bonus=20, budget=10_000), promo("b", "1.7", budget=10_000)
    budgets = {"a": 60, "b": 55}
    one = evaluate(doc(base(), a, b), order(12_345), budgets=budgets)
    other = evaluate(doc(base(), b, a), order(12_345), budgets=budgets)
    assert (one.points, one.budget_used) == (other.points, other.budget_used)


# --- Properties -----------------------------------------------------------------------------

factor_text = st.decimals(min_value=1, max_value=3, places=2).map(str)
weights = st.decimals(min_value=0, max_value=2, places=1).map(str)


@st.composite
def promotions(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Two to four promotions, most of them budgeted with little left, so limits bite."""
    out: list[dict[str, Any]] = []
    left: dict[str, int] = {}
    for n in range(draw(st.integers(min_value=2, max_value=4))):
        factor = draw(factor_text)
        bonus = draw(st.sampled_from([0, 0, 1, 7, 50, 300]))
        if Decimal(factor) == 1 and bonus == 0:
            bonus = 5
        rule = promo(f"p{n}", factor, bonus=bonus)
        if draw(st.integers(min_value=0, max_value=4)):
            rule["budget_points"] = 100_000
            left[rule["id"]] = draw(
                st.one_of(st.integers(min_value=0, max_value=400), st.just(100_000))
            )
        out.append(rule)
    return out, left


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Any], Order, MemberContext, dict[str, int]]:
    promos, left = draw(promotions())
    rules: list[dict[str, Any]] = [
        {
            "id": "base",
            "kind": "base_rate",
            "mode": draw(st.sampled_from(["per_full_unit", "proportional"])),
            "points": draw(st.integers(min_value=1, max_value=20)),
            "per_amount": draw(st.sampled_from(["1", "300", "1000"])),
            "rounding": draw(st.sampled_from(["down", "half_up", "up"])),
        }
    ]
    if draw(st.booleans()):
        rules.append({"id": "tier", "kind": "tier_multiplier", "factors": {"gold": draw(weights)}})
    if draw(st.booleans()):
        rules.append({"id": "week", "kind": "time_weight", "factor": draw(weights)})
    if draw(st.booleans()):
        rules.append(
            {
                "id": "cakes",
                "kind": "product_multiplier",
                "match": {"skus": ["cake"]},
                "factor": draw(weights),
            }
        )
    if draw(st.booleans()):
        rules.append({"id": "ob", "kind": "order_bonus", "points": draw(st.integers(1, 90))})
    rules += promos
    if draw(st.booleans()):
        rules.append(
            {
                "id": "cap",
                "kind": "cap",
                "per": "order",
                "max_points": draw(st.integers(min_value=0, max_value=3000)),
            }
        )
    data = {
        "combine": draw(st.sampled_from(["multiply", "add"])),
        "rounding": draw(st.sampled_from(["down", "half_up", "up"])),
        "rules": rules,
    }
    lines = tuple(
        Line(
            id=str(i + 1),
            amount=Decimal(draw(st.integers(min_value=0, max_value=90_000))),
            quantity=Decimal(draw(st.integers(min_value=1, max_value=3))),
            sku=draw(st.sampled_from(["cake", "bread"])),
        )
        for i in range(draw(st.integers(min_value=1, max_value=3)))
    )
    the_order = Order(
        currency="KRW",
        total=sum((ln.amount for ln in lines), Decimal(0)),
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC)
        + timedelta(minutes=draw(st.integers(min_value=0, max_value=60 * 24 * 30))),
        timezone=SEOUL,
        lines=lines if draw(st.booleans()) else (),
    )
    member = MemberContext(tier=draw(st.sampled_from([None, "gold"])))
    return data, the_order, member, left


PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _points(data: dict[str, Any], case: Any) -> Evaluation:
    _, the_order, member, left = case
    return evaluate(RuleSetDoc.model_validate(data), the_order, member, left)


def _without(data: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return {**data, "rules": [r for r in data["rules"] if r["id"] != rule_id]}


# The counterexample of test_adding_a_small_promotion_no_longer_costs_points, kept for good.
@example(
    (
        {
            "combine": "multiply",
            "rounding": "down",
            "rules": [
                base(1, "1"),
                promo("p0", "2", bonus=5, budget=1000),
                promo("p1", "1.1", budget=1000),
            ],
        },
        order(15),
        MemberContext(),
        {"p0": 17, "p1": 1},
    )
)
@PROPERTY
@given(cases())
def test_dropping_any_promotion_never_raises_points(case: Any) -> None:
    data = case[0]
    with_all = _points(data, case).points
    for rule in data["rules"]:
        if rule["kind"] in ("promotion", "order_bonus"):
            assert _points(_without(data, rule["id"]), case).points <= with_all, rule["id"]


@PROPERTY
@given(cases())
def test_budgets_are_never_overspent_and_pay_exactly_what_was_given(case: Any) -> None:
    data, _, _, left = case
    result = _points(data, case)
    for rule_id, used in result.budget_used.items():
        assert 0 < used <= left[rule_id]
    budgeted = [r["id"] for r in data["rules"] if "budget_points" in r]
    plain = {**data, "rules": [r for r in data["rules"] if r["id"] not in budgeted]}
    given_by_budgets = result.points - _points(plain, case).points
    # A cap may take back more than the budgets gave (it also cuts other points); otherwise the
    # budgets are charged exactly what the budgeted promotions added, to the point.
    if not any(r["kind"] == "cap" for r in data["rules"]):
        assert sum(result.budget_used.values()) == given_by_budgets
    else:
        assert sum(result.budget_used.values()) <= max(0, given_by_budgets)


@PROPERTY
@given(cases())
def test_steps_add_up_to_the_points(case: Any) -> None:
    """Every change of the running total is in a step, so the breakdown explains the total."""
    result = _points(case[0], case)
    last_after = None
    for s in result.steps:
        if s.get("applied") and "budget_left" in s:
            assert s["after"] <= s["before"]
            last_after = s["after"]
    if last_after is not None and not any(r["kind"] == "cap" for r in case[0]["rules"]):
        assert last_after == result.points


@PROPERTY
@given(cases(), st.randoms(use_true_random=False))
def test_rule_order_of_promotions_does_not_matter(case: Any, rnd: Any) -> None:
    data = case[0]
    promos = [r for r in data["rules"] if r["kind"] == "promotion"]
    shuffled = list(promos)
    rnd.shuffle(shuffled)
    others = [r for r in data["rules"] if r["kind"] != "promotion"]
    first = _points(data, case)
    second = _points({**data, "rules": others + shuffled}, case)
    assert first.points == second.points
    if not any(r["kind"] == "cap" for r in data["rules"]):
        assert first.budget_used == second.budget_used


@PROPERTY
@given(
    st.integers(min_value=0, max_value=500_000),
    factor_text,
    st.integers(min_value=0, max_value=300),
    st.integers(min_value=1, max_value=2000),
)
def test_twin_promotions_are_charged_alike(total: int, factor: str, bonus: int, left: int) -> None:
    if Decimal(factor) == 1 and bonus == 0:
        bonus = 1
    rules = doc(
        base(),
        promo("a", factor, bonus=bonus, budget=5000),
        promo("b", factor, bonus=bonus, budget=5000),
    )
    result = evaluate(rules, order(total), budgets={"a": left, "b": left})
    used_a, used_b = result.budget_used.get("a", 0), result.budget_used.get("b", 0)
    assert abs(used_a - used_b) <= 1
