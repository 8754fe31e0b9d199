"""A breakdown in plain words, in the member's language (ko, zh, en).

The breakdown stored on each earn entry keeps the numbers of every step; this module only words
them, so an old entry is explained exactly as it was computed, whatever the rules are today.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from patron import formats

LANGUAGES = ("en", "ko", "zh")

_TEXT: dict[str, dict[str, str]] = {
    "base_rate_full": {
        "en": "{amount} {currency}: {points_per} points for each full {per_amount} = {result}",
        "ko": "{amount} {currency}: {per_amount}당 {points_per}포인트 = {result}",
        "zh": "{amount} {currency}:每满 {per_amount} 得 {points_per} 积分 = {result}",
    },
    "base_rate_prop": {
        "en": "{amount} {currency} × {points_per}/{per_amount} = {result}",
        "ko": "{amount} {currency} × {points_per}/{per_amount} = {result}",
        "zh": "{amount} {currency} × {points_per}/{per_amount} = {result}",
    },
    # The same, with money already written in the reader's way ("12,000원", "₩12,000").
    "base_rate_full_money": {
        "en": "{amount}: {points_per} points for each full {per_amount} = {result}",
        "ko": "{amount}: {per_amount}당 {points_per}포인트 = {result}",
        "zh": "{amount}:每满 {per_amount} 得 {points_per} 积分 = {result}",
    },
    "base_rate_prop_money": {
        "en": "{amount} × {points_per}/{per_amount} = {result}",
        "ko": "{amount} × {points_per}/{per_amount} = {result}",
        "zh": "{amount} × {points_per}/{per_amount} = {result}",
    },
    # A base rate on some lines only (its `only`, or the lines no earlier rate earned on).
    "base_rate_lines_full": {
        "en": "{label}: {amount} {currency}: {points_per} points for each full {per_amount} = "
        "{result}",
        "ko": "{label}: {amount} {currency}: {per_amount}당 {points_per}포인트 = {result}",
        "zh": "{label}:{amount} {currency}:每满 {per_amount} 得 {points_per} 积分 = {result}",
    },
    "base_rate_lines_prop": {
        "en": "{label}: {amount} {currency} × {points_per}/{per_amount} = {result}",
        "ko": "{label}: {amount} {currency} × {points_per}/{per_amount} = {result}",
        "zh": "{label}:{amount} {currency} × {points_per}/{per_amount} = {result}",
    },
    "base_rate_lines_full_money": {
        "en": "{label}: {amount}: {points_per} points for each full {per_amount} = {result}",
        "ko": "{label}: {amount}: {per_amount}당 {points_per}포인트 = {result}",
        "zh": "{label}:{amount}:每满 {per_amount} 得 {points_per} 积分 = {result}",
    },
    "base_rate_lines_prop_money": {
        "en": "{label}: {amount} × {points_per}/{per_amount} = {result}",
        "ko": "{label}: {amount} × {points_per}/{per_amount} = {result}",
        "zh": "{label}:{amount} × {points_per}/{per_amount} = {result}",
    },
    "exclude": {
        "en": "{label}: {amount} earns no points",
        "ko": "{label}: {amount}은(는) 적립 제외",
        "zh": "{label}:{amount} 不积分",
    },
    "paid_with_points": {
        "en": "{amount} paid with points earns no points",
        "ko": "포인트로 결제한 {amount}은(는) 적립 제외",
        "zh": "积分抵扣的 {amount} 不积分",
    },
    "product_multiplier": {
        "en": "{label} ×{factor}: {before} → {after}",
        "ko": "{label} ×{factor}: {before} → {after}",
        "zh": "{label} ×{factor}:{before} → {after}",
    },
    "tier_multiplier": {
        "en": "{tier} tier ×{factor} = {after}",
        "ko": "{tier} 등급 ×{factor} = {after}",
        "zh": "{tier}等级 ×{factor} = {after}",
    },
    "time_weight": {
        "en": "{label} ×{factor} = {after}",
        "ko": "{label} 가중치 ×{factor} = {after}",
        "zh": "{label} 权重 ×{factor} = {after}",
    },
    "promotion_factor": {
        "en": "{label} ×{factor} = {after}",
        "ko": "{label} ×{factor} = {after}",
        "zh": "{label} ×{factor} = {after}",
    },
    "promotion_budget": {
        "en": "{label}: only {budget_left} points of its budget were left, so {after}",
        "ko": "{label}: 남은 예산 {budget_left}포인트까지만 적용되어 {after}",
        "zh": "{label}:预算仅剩 {budget_left} 积分,因此为 {after}",
    },
    "factor_adds": {
        "en": "{label} ×{factor} adds {adds} to the combined factor",
        "ko": "{label} ×{factor}: 합산 배율에 {adds} 추가",
        "zh": "{label} ×{factor}:合计倍数增加 {adds}",
    },
    "combined_factor": {
        "en": "{before} × {factor} = {after}",
        "ko": "{before} × {factor} = {after}",
        "zh": "{before} × {factor} = {after}",
    },
    "rounding": {
        "en": "{before} rounded {rounding} = {after}",
        "ko": "{before} 반올림 규칙({rounding}) = {after}",
        "zh": "{before} 按 {rounding} 取整 = {after}",
    },
    "bonus": {
        "en": "{label} +{added} = {after}",
        "ko": "{label} +{added} = {after}",
        "zh": "{label} +{added} = {after}",
    },
    "product_bonus": {
        "en": "{label}: {units} × {points_per_unit} = +{added}, total {after}",
        "ko": "{label}: {units}개 × {points_per_unit} = +{added}, 합계 {after}",
        "zh": "{label}:{units} 件 × {points_per_unit} = +{added},合计 {after}",
    },
    "cap": {
        "en": "{label}: limited to {after} (limit {max_points}, {already} already earned)",
        "ko": "{label}: 한도 {max_points}, 이미 {already} 적립되어 {after}(으)로 제한",
        "zh": "{label}:上限 {max_points},已获得 {already},限制为 {after}",
    },
    "event": {
        "en": "{label}: +{added}",
        "ko": "{label}: +{added}",
        "zh": "{label}:+{added}",
    },
    "total": {
        "en": "Total: {points} points",
        "ko": "합계: {points}포인트",
        "zh": "合计:{points} 积分",
    },
}

# Why a rule was skipped, for the skip reasons whose step keeps its figures (its `condition`,
# set by patron.rules.engine.SkipReason); any other reason reads as the engine wrote it.
_SKIP_REASONS: dict[str, dict[str, str]] = {
    "min_purchases": {
        "en": "{purchases} earlier purchases, {needed} needed",
        "ko": "이전 구매 {purchases}회, {needed}회 이상 필요",
        "zh": "此前消费 {purchases} 次,需至少 {needed} 次",
    },
    "first_purchase": {
        "en": "not the first purchase ({purchases} earlier)",
        "ko": "첫 구매가 아님 (이전 구매 {purchases}회)",
        "zh": "不是首次消费(此前已消费 {purchases} 次)",
    },
    "not_first_purchase": {
        "en": "the member's first purchase; only later ones count",
        "ko": "첫 구매에는 적용되지 않음 (두 번째 구매부터)",
        "zh": "首次消费不适用(第二次消费起适用)",
    },
    "nth_purchase": {
        "en": "purchase {number}, not purchase {nth}",
        "ko": "이번은 {number}번째 구매 ({nth}번째 구매에만 적용)",
        "zh": "本次为第 {number} 次消费(仅适用于第 {nth} 次)",
    },
    "within_first_purchases": {
        "en": "purchase {number}, only the first {limit} count",
        "ko": "이번은 {number}번째 구매 (처음 {limit}회 구매에만 적용)",
        "zh": "本次为第 {number} 次消费(仅适用于前 {limit} 次)",
    },
    "recent_purchases_min": {
        "en": "{count} purchases in the last {days} days, {min} needed",
        "ko": "최근 {days}일간 구매 {count}회, {min}회 이상 필요",
        "zh": "最近 {days} 天消费 {count} 次,需至少 {min} 次",
    },
    "recent_purchases_max": {
        "en": "{count} purchases in the last {days} days, at most {max}",
        "ko": "최근 {days}일간 구매 {count}회, {max}회 이하일 때만 적용",
        "zh": "最近 {days} 天消费 {count} 次,仅限不超过 {max} 次",
    },
    # Eligibility: the rule's switch, dates, where, how and who (docs/rules.md, "Breakdowns and
    # explanations"). Codes (stores, tiers, channels) stay codes; dates are ISO dates.
    "disabled": {"en": "disabled", "ko": "사용 안 함", "zh": "已停用"},
    "starts": {"en": "starts {date}", "ko": "{date}부터 적용", "zh": "{date} 起适用"},
    "ended": {"en": "ended {date}", "ko": "{date}에 종료됨", "zh": "已于 {date} 结束"},
    "store": {
        "en": "store {got} is not one of {allowed}",
        "ko": "매장 {got}은(는) 대상 매장({allowed})이 아님",
        "zh": "门店 {got} 不在适用门店({allowed})中",
    },
    "channel": {
        "en": "channel {got} is not one of {allowed}",
        "ko": "채널 {got}은(는) 대상 채널({allowed})이 아님",
        "zh": "渠道 {got} 不在适用渠道({allowed})中",
    },
    "payment_method": {
        "en": "payment method {got} is not one of {allowed}",
        "ko": "결제 수단 {got}은(는) 대상 결제 수단({allowed})이 아님",
        "zh": "支付方式 {got} 不在适用支付方式({allowed})中",
    },
    "coupon": {
        "en": "not with a coupon (this order uses {coupons})",
        "ko": "쿠폰 사용 주문에는 적용되지 않음 (사용 쿠폰: {coupons})",
        "zh": "使用优惠券的订单不适用(本单使用:{coupons})",
    },
    "min_amount": {
        "en": "order total {total} is below {needed}",
        "ko": "주문 금액 {total}이(가) {needed} 미만",
        "zh": "订单金额 {total} 低于 {needed}",
    },
    "min_items": {
        "en": "{count} matching items, {needed} needed",
        "ko": "대상 상품 {count}개, {needed}개 이상 필요",
        "zh": "符合条件的商品 {count} 件,需至少 {needed} 件",
    },
    "tiers": {
        "en": "tier {got} is not one of {allowed}",
        "ko": "등급 {got}은(는) 대상 등급({allowed})이 아님",
        "zh": "等级 {got} 不在适用等级({allowed})中",
    },
    "attribute": {
        "en": "member attribute {key} is not {value}",
        "ko": "회원 속성 {key}이(가) {value}이(가) 아님",
        "zh": "会员属性 {key} 不是 {value}",
    },
    "joined_within_days": {
        "en": "member joined more than {days} days ago",
        "ko": "가입한 지 {days}일이 넘음",
        "zh": "入会已超过 {days} 天",
    },
    "birthday_month": {
        "en": "not the member's birthday month",
        "ko": "회원의 생일 달이 아님",
        "zh": "不是会员的生日月份",
    },
    "days": {
        "en": "{day} is not one of {allowed}",
        "ko": "{day}요일은 적용 요일({allowed})이 아님",
        "zh": "{day} 不在适用日期({allowed})中",
    },
    "hours": {
        "en": "{time} is outside {hours}",
        "ko": "{time}은(는) 적용 시간({hours}) 밖임",
        "zh": "{time} 不在适用时段({hours})内",
    },
    "budget_used_up": {"en": "budget used up", "ko": "예산 소진", "zh": "预算已用完"},
    "tier_no_factor": {
        "en": "tier {got} has no factor",
        "ko": "등급 {got}에 배수가 없음",
        "zh": "等级 {got} 没有倍数",
    },
    "no_line": {
        "en": "no line matches",
        "ko": "해당하는 상품이 주문에 없음",
        "zh": "订单中没有符合条件的商品",
    },
    "cap_within": {
        "en": "{earned} is within the {per} limit ({left} left)",
        "ko": "{earned}포인트는 한도 이내 ({per}, 남은 한도 {left})",
        "zh": "{earned} 积分未超出上限({per},剩余 {left})",
    },
    # Segment conditions (docs/rules.md, "Segment conditions").
    "segments": {
        "en": "not in segment {segments}",
        "ko": "{segments} 세그먼트에 속하지 않음",
        "zh": "不属于分群 {segments}",
    },
    "segments_any": {
        "en": "not in any of segments {segments}",
        "ko": "{segments} 세그먼트 중 어디에도 속하지 않음",
        "zh": "不属于分群 {segments} 中的任何一个",
    },
    # Scoped base rates and `stop` (docs/rules.md, "Scoped rates, summed rates, priority and stop").
    "stopped": {
        "en": "stopped by rule '{stopped_by}'",
        "ko": "'{stopped_by}' 규칙이 적용되어 중단됨",
        "zh": "因规则“{stopped_by}”已适用而停止",
    },
    "only_no_line": {
        "en": "no line matches only ({only_text})",
        "ko": "대상 상품이 주문에 없음 ({only_text})",
        "zh": "订单中没有指定商品({only_text})",
    },
    "only_no_lines": {
        "en": "the order has no lines, so no line can match only",
        "ko": "주문에 상품 내역이 없어 대상 상품을 확인할 수 없음",
        "zh": "订单没有商品明细,无法匹配指定商品",
    },
    "base_rate_first": {
        "en": "base rate {first} applied first",
        "ko": "기본 적립 규칙 {first}이(가) 먼저 적용됨",
        "zh": "基本积分规则 {first} 已优先适用",
    },
}

# A step of a campaign's rule (a rule experiment, patron.experiments.arms) names the campaign and
# the variant before its own words: "winback-ab · variant B: +500".
_CAMPAIGN = {
    "en": "{campaign} · variant {variant}: {text}",
    "ko": "{campaign} · {variant}안: {text}",
    "zh": "{campaign} · 方案 {variant}:{text}",
}

_SKIPPED = {
    "en": "{label}: not applied, {reason}",
    "ko": "{label}: 적용 안 됨, {reason}",
    "zh": "{label}:未适用,{reason}",
}

_ROUNDING = {
    "down": {"en": "down", "ko": "내림", "zh": "向下"},
    "half_up": {"en": "half-up", "ko": "반올림", "zh": "四舍五入"},
    "up": {"en": "up", "ko": "올림", "zh": "向上"},
}


def _label(step: dict[str, Any]) -> str:
    return str(step.get("name") or step.get("rule", "")).replace("-", " ").replace("_", " ")


def _key(step: dict[str, Any]) -> str | None:
    kind = step.get("kind")
    if kind == "base_rate":
        scoped = "base_rate_lines" if "lines" in step else "base_rate"
        return f"{scoped}_full" if step.get("mode") == "per_full_unit" else f"{scoped}_prop"
    if kind == "promotion":
        if "budget_left" in step:
            return "promotion_budget"
        if "adds" in step:
            return "factor_adds"
        return "promotion_factor" if "factor" in step else "bonus"
    if kind == "tier_benefit":  # a tier definition's multiplier reads like a tier rule
        kind = "tier_multiplier"
    if kind in ("tier_multiplier", "time_weight") and "adds" in step:
        return "factor_adds"
    if kind == "order_bonus":
        return "bonus"
    if kind in _TEXT:
        return kind
    return None


def skip_reason(step: dict[str, Any], language: str = "en") -> str:
    """Why a skipped step's rule did not apply, in `language` where the step keeps the figures
    behind its reason (purchase counts), else the engine's own (English) reason."""
    lang = language if language in LANGUAGES else "en"
    template = _SKIP_REASONS.get(str(step.get("condition")))
    if template is not None and (lang != "en" or not step.get("reason")):
        values = dict(step)
        if "per" in values:  # a cap's period, in words
            values["per"] = _CAP_PERIODS.get(str(values["per"]), {}).get(lang, values["per"])
        if step.get("condition") == "days":  # weekdays, in words
            values["day"] = _DAY_WORDS[lang].get(str(values["day"]), values["day"])
            values["allowed"] = ", ".join(
                _DAY_WORDS[lang].get(d, d) for d in str(values["allowed"]).split(", ")
            )
        try:
            return template[lang].format(**values)
        except (KeyError, IndexError):
            pass
    # English: the engine's own words, which the templates above repeat.
    return str(step.get("reason") or step.get("detail", ""))


_DAY_WORDS = {
    "en": {},
    "ko": dict(
        zip(("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "월화수목금토일", strict=True)
    ),
    "zh": {
        d: f"周{c}"
        for d, c in zip(
            ("mon", "tue", "wed", "thu", "fri", "sat", "sun"), "一二三四五六日", strict=True
        )
    },
}

_CAP_PERIODS = {
    "order": {"en": "order", "ko": "주문당", "zh": "每单"},
    "member_day": {"en": "member day", "ko": "회원별 일", "zh": "每位会员每日"},
    "member_month": {"en": "member month", "ko": "회원별 월", "zh": "每位会员每月"},
    "member_year": {"en": "member year", "ko": "회원별 연", "zh": "每位会员每年"},
}


def explain_steps(
    steps: list[dict[str, Any]],
    points: int,
    language: str = "en",
    *,
    money: Callable[[Any], str] | None = None,
    tier_name: Callable[[str], str] | None = None,
    skipped: bool = False,
) -> list[str]:
    """One sentence per applied step, then the total; skipped rules are left out unless
    `skipped`, then each says why (see `skip_reason`). For a member `money` writes the base
    rate's amounts in her way (12,000원); `tier_name` names a tier in the reader's language
    (골드: patron.earning.events passes the tier definitions' names). Without them the amounts
    carry the currency code and the tier its code."""
    lang = language if language in LANGUAGES else "en"
    out: list[str] = []
    for step in steps:
        before = len(out)
        _word_step(out, step, lang, money=money, tier_name=tier_name, skipped=skipped)
        if len(out) > before and step.get("campaign"):
            out[-1] = _CAMPAIGN[lang].format(
                campaign=step["campaign"],
                variant=str(step.get("variant_name") or step.get("variant", "")),
                text=out[-1],
            )
    out.append(_TEXT["total"][lang].format(points=formats.number(points, lang)))
    return out


def _word_step(
    out: list[str],
    step: dict[str, Any],
    lang: str,
    *,
    money: Callable[[Any], str] | None,
    tier_name: Callable[[str], str] | None,
    skipped: bool,
) -> None:
    """Append the words of one step to `out` (nothing for a skipped step unless `skipped`)."""
    if not step.get("applied", True):
        if skipped:
            out.append(_SKIPPED[lang].format(label=_label(step), reason=skip_reason(step, lang)))
        return
    key = _key(step)
    if key is None:
        out.append(str(step.get("detail", "")))
        return
    if money is not None and f"{key}_money" in _TEXT:
        out.append(
            _TEXT[f"{key}_money"][lang].format(
                **{
                    **step,
                    "label": _label(step),
                    "amount": money(step.get("amount")),
                    "per_amount": money(step.get("per_amount")),
                    "result": formats.number(step.get("result"), lang),
                }
            )
        )
        return
    if tier_name is not None and step.get("tier"):
        step = {**step, "tier": tier_name(str(step["tier"]))}
    values = {
        k: formats.number(v, lang)
        if k
        in (
            "amount",
            "per_amount",
            "before",
            "after",
            "result",
            "added",
            "max_points",
            "already",
            "budget_left",
        )
        else v
        for k, v in step.items()
    }
    values["label"] = _label(step)
    values["rounding"] = _ROUNDING.get(str(step.get("rounding")), {}).get(
        lang, step.get("rounding")
    )
    try:
        out.append(_TEXT[key][lang].format(**values))
    except KeyError:
        out.append(str(step.get("detail", "")))


def explain(
    steps: list[dict[str, Any]],
    points: int,
    language: str = "en",
    *,
    money: Callable[[Any], str] | None = None,
    tier_name: Callable[[str], str] | None = None,
) -> str:
    """The whole explanation on one line: "25,800 KRW × 10/1,000 = 250; … Total: 250 points"."""
    lines = explain_steps(steps, points, language, money=money, tier_name=tier_name)
    return "; ".join(lines)
