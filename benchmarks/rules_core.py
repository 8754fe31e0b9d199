"""How long the rules core takes: a 20-rule set on a 10-line basket, beside two baselines.

    python benchmarks/rules_core.py [--iterations N] [--json out.json]

Each figure is the time of one call, measured call by call after a warm-up, so the median and
the 99th percentile are both real. The baselines run in the same process on the same basket:

- `single_rule`: evaluate() with a rule set of one base rate, the least the core can do;
- `json`: json.dumps of the basket and the 20-rule breakdown, about what it costs to send the
  answer anywhere at all.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from patron.rules.engine import Evaluation, Line, MemberContext, Order, evaluate
from patron.rules.model import RuleSetDoc

SEOUL = ZoneInfo("Asia/Seoul")

TWENTY_RULES: dict[str, Any] = {
    "combine": "multiply",
    "rounding": "down",
    "rules": [
        {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
        {"id": "gift-cards", "kind": "exclude", "match": {"categories": ["gift_card"]}},
        {
            "id": "seasonal-cake",
            "kind": "product_bonus",
            "match": {"skus": ["seasonal-cake"]},
            "points_per_unit": 200,
        },
        {
            "id": "sourdough",
            "kind": "product_bonus",
            "match": {"skus": ["sourdough"]},
            "points_per_unit": 30,
        },
        {
            "id": "new-drinks",
            "kind": "product_bonus",
            "match": {"skus": ["yuja-ade", "omija-tea"]},
            "points_per_unit": 20,
            "starts": "2026-01-01",
            "ends": "2026-06-30",
        },
        {
            "id": "gift-box",
            "kind": "product_bonus",
            "match": {"categories": ["gift"]},
            "points_per_unit": 100,
            "stores": ["yeonnam"],
        },
        {
            "id": "coffee-x2",
            "kind": "product_multiplier",
            "match": {"categories": ["drink"]},
            "factor": "2",
        },
        {
            "id": "bread-x1-5",
            "kind": "product_multiplier",
            "match": {"categories": ["bread"]},
            "factor": "1.5",
        },
        {
            "id": "pastry-app",
            "kind": "product_multiplier",
            "match": {"categories": ["pastry"]},
            "factor": "3",
            "channels": ["app"],
        },
        {
            "id": "tiers",
            "kind": "tier_multiplier",
            "factors": {"silver": "1.5", "gold": "2", "vip": "2.5"},
        },
        {"id": "weekend", "kind": "time_weight", "days": ["sat", "sun"], "factor": "0.5"},
        {
            "id": "weekday-morning",
            "kind": "time_weight",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "from_time": "06:00",
            "to_time": "11:00",
            "factor": "1.2",
        },
        {
            "id": "late-night",
            "kind": "time_weight",
            "from_time": "22:00",
            "to_time": "02:00",
            "factor": "1.1",
        },
        {
            "id": "march",
            "kind": "promotion",
            "factor": "2",
            "starts": "2026-03-01",
            "ends": "2026-03-31",
            "budget_points": 1000000,
        },
        {
            "id": "december",
            "kind": "promotion",
            "factor": "2",
            "starts": "2026-12-01",
            "ends": "2026-12-31",
        },
        {
            "id": "welcome",
            "kind": "promotion",
            "bonus_points": 100,
            "conditions": {"joined_within_days": 30},
        },
        {
            "id": "big-basket",
            "kind": "order_bonus",
            "points": 500,
            "conditions": {"min_amount": "50000"},
        },
        {
            "id": "three-cakes",
            "kind": "order_bonus",
            "points": 300,
            "conditions": {"min_items": {"match": {"categories": ["cake"]}, "count": 3}},
        },
        {"id": "order-cap", "kind": "cap", "per": "order", "max_points": 20000},
        {"id": "day-cap", "kind": "cap", "per": "member_day", "max_points": 50000},
    ],
}

SINGLE_RULE: dict[str, Any] = {"rules": [TWENTY_RULES["rules"][0]]}

BASKET = [  # sku, category, unit price (KRW), quantity
    ("seasonal-cake", "cake", 32000, 1),
    ("cheesecake-slice", "cake", 6500, 2),
    ("baguette", "bread", 4500, 2),
    ("sourdough", "bread", 7800, 1),
    ("croissant", "pastry", 3800, 3),
    ("cream-bun", "pastry", 2800, 2),
    ("americano", "drink", 4000, 2),
    ("latte", "drink", 4800, 1),
    ("madeleine-box", "gift", 15000, 1),
    ("gift-card-30k", "gift_card", 30000, 1),
]


def basket_order() -> Order:
    lines = tuple(
        Line(
            id=str(i + 1),
            sku=sku,
            category=category,
            quantity=Decimal(qty),
            amount=Decimal(price * qty),
        )
        for i, (sku, category, price, qty) in enumerate(BASKET)
    )
    return Order(
        currency="KRW",
        total=sum((ln.amount for ln in lines), Decimal(0)),
        occurred_at=datetime(2026, 3, 6, 9, 30, tzinfo=SEOUL),
        timezone="Asia/Seoul",
        lines=lines,
        store="mapo",
        channel="pos",
        payment_method="card",
    )


MEMBER = MemberContext(tier="silver", earned_day=1200, joined_on=datetime(2026, 1, 5).date())


def timed(call: Callable[[], object], iterations: int, warmup: int) -> dict[str, float]:
    """Median, p99 and mean of one call, in microseconds."""
    for _ in range(warmup):
        call()
    samples: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(iterations):
        start = clock()
        call()
        samples.append(clock() - start)
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    return {
        "median": statistics.median(samples) / 1000,
        "p99": p99 / 1000,
        "mean": statistics.fmean(samples) / 1000,
        "min": samples[0] / 1000,
    }


def run(iterations: int) -> dict[str, Any]:
    full = RuleSetDoc.model_validate(TWENTY_RULES)
    single = RuleSetDoc.model_validate(SINGLE_RULE)
    order = basket_order()
    budgets = {"march": 400000}
    result: Evaluation = evaluate(full, order, MEMBER, budgets)
    applied = sum(1 for step in result.steps if step.get("applied"))
    basket_data = [
        {
            "id": ln.id,
            "sku": ln.sku,
            "category": ln.category,
            "quantity": str(ln.quantity),
            "amount": str(ln.amount),
        }
        for ln in order.lines
    ]

    def serialise() -> str:
        return json.dumps(
            {"lines": basket_data, "points": result.points, "breakdown": result.steps},
            ensure_ascii=False,
        )

    warmup = max(50, iterations // 10)
    core = timed(lambda: evaluate(full, order, MEMBER, budgets), iterations, warmup)
    one_rule = timed(lambda: evaluate(single, order, MEMBER), iterations, warmup)
    as_json = timed(serialise, iterations, warmup)
    return {
        "benchmark": "rules_core",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "iterations": iterations,
        "rules": len(full.rules),
        "lines": len(order.lines),
        "points": result.points,
        "steps": len(result.steps),
        "steps_applied": applied,
        "evaluate_us": core,
        "baseline_single_rule_us": one_rule,
        "baseline_json_us": as_json,
        "ratio_vs_single_rule": core["median"] / one_rule["median"],
        "ratio_vs_json": core["median"] / as_json["median"],
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--iterations", type=int, default=20000)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be at least 1")
    out = run(args.iterations)
    core, one, js = out["evaluate_us"], out["baseline_single_rule_us"], out["baseline_json_us"]
    print(
        f"rules core: {out['rules']} rules, {out['lines']} lines, {out['points']} points, "
        f"{out['steps_applied']}/{out['steps']} steps applied; {out['iterations']} iterations"
    )
    print(f"  evaluate (20 rules)      median {core['median']:8.1f} µs   p99 {core['p99']:8.1f} µs")
    print(
        f"  baseline: 1 base rate    median {one['median']:8.1f} µs   p99 {one['p99']:8.1f} µs"
        f"   ratio {out['ratio_vs_single_rule']:.1f}×"
    )
    print(
        f"  baseline: json.dumps     median {js['median']:8.1f} µs   p99 {js['p99']:8.1f} µs"
        f"   ratio {out['ratio_vs_json']:.1f}×"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
