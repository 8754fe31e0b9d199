"""Every skip reason the engine gives is worded in ko, zh and en by explain.skip_reason (the
explanation API's `skipped=true` lines): English is the engine's own reason, Korean and Chinese
are translations, not the English passed through."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from patron.rules.engine import Line, MemberContext, Order, evaluate
from patron.rules.explain import skip_reason
from patron.rules.model import RuleSetDoc

AT = datetime.fromisoformat("2026-03-04T12:00:00+09:00")  # a Wednesday
DOC = RuleSetDoc.model_validate(
    {
        "rules": [
            {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
            {"id": "off", "kind": "order_bonus", "points": 1, "enabled": False},
            {"id": "later", "kind": "order_bonus", "points": 1, "starts": "2026-04-01"},
            {"id": "past", "kind": "order_bonus", "points": 1, "ends": "2026-03-01"},
            {"id": "st", "kind": "order_bonus", "points": 1, "stores": ["gangnam"]},
            {"id": "ch", "kind": "order_bonus", "points": 1, "channels": ["app"]},
            {"id": "pm", "kind": "order_bonus", "points": 1, "payment_methods": ["card"]},
            {"id": "cp", "kind": "order_bonus", "points": 1, "with_coupons": False},
            {"id": "amt", "kind": "order_bonus", "points": 1,
             "conditions": {"min_amount": "50000"}},
            {"id": "items", "kind": "order_bonus", "points": 1,
             "conditions": {"min_items": {"match": {"skus": ["cake"]}, "count": 2}}},
            {"id": "tr", "kind": "order_bonus", "points": 1, "conditions": {"tiers": ["gold"]}},
            {"id": "attr", "kind": "order_bonus", "points": 1,
             "conditions": {"attributes": {"city": "seoul"}}},
            {"id": "jn", "kind": "order_bonus", "points": 1,
             "conditions": {"joined_within_days": 30}},
            {"id": "bd", "kind": "order_bonus", "points": 1,
             "conditions": {"birthday_month": True}},
            {"id": "sg", "kind": "order_bonus", "points": 1,
             "conditions": {"segments": ["gold-dormant"]}},
            {"id": "fp", "kind": "order_bonus", "points": 1,
             "conditions": {"first_purchase": True}},
            {"id": "wk", "kind": "time_weight", "days": ["sat", "sun"], "factor": "2"},
            {"id": "hr", "kind": "time_weight", "days": ["wed"], "from_time": "06:00",
             "to_time": "10:00", "factor": "2"},
            {"id": "tm", "kind": "tier_multiplier", "factors": {"gold": "2"}},
            {"id": "pb", "kind": "product_bonus", "match": {"skus": ["cake"]},
             "points_per_unit": 5},
            {"id": "cap", "kind": "cap", "per": "member_day", "max_points": 100000},
        ]
    }
)  # fmt: skip
ORDER = Order(
    currency="KRW",
    total=Decimal(25800),
    occurred_at=AT,
    timezone="Asia/Seoul",
    store="mapo",
    channel="pos",
    payment_method="cash",
    coupons=("free-coffee",),
    lines=(Line(id="1", amount=Decimal(25800), sku="latte"),),
)
MEMBER = MemberContext(
    tier="basic", joined_on=date(2020, 1, 1), birthday=date(1990, 7, 1), purchases=3
)


def test_every_skip_reads_in_korean_and_chinese_and_english_is_the_engines_own():
    skipped = [s for s in evaluate(DOC, ORDER, MEMBER).steps if not s["applied"]]
    assert {s["rule"] for s in skipped} == {r.id for r in DOC.rules} - {"base"}
    for step in skipped:
        en, ko, zh = (skip_reason(step, lang) for lang in ("en", "ko", "zh"))
        assert en == step["reason"], step
        assert ko != en and zh != en, step
        assert "{" not in ko + zh, step


def test_words_of_some_reasons():
    steps = {s["rule"]: s for s in evaluate(DOC, ORDER, MEMBER).steps}
    assert skip_reason(steps["st"], "ko") == "매장 mapo은(는) 대상 매장(gangnam)이 아님"
    assert skip_reason(steps["wk"], "ko") == "수요일은 적용 요일(토, 일)이 아님"
    assert skip_reason(steps["wk"], "zh") == "周三 不在适用日期(周六, 周日)中"
    assert skip_reason(steps["later"], "zh") == "2026-04-01 起适用"
    assert skip_reason(steps["cap"], "en") == "250 is within the member day limit (100000 left)"
    assert skip_reason(steps["cap"], "ko") == "250포인트는 한도 이내 (회원별 일, 남은 한도 100000)"
