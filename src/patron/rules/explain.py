"""A breakdown in plain words, in the member's language (ko, zh, en).

The breakdown stored on each earn entry keeps the numbers of every step; this module only words
them, so an old entry is explained exactly as it was computed, whatever the rules are today.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

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


def _grouped(value: Any) -> str:
    """25800 → 25,800; 187.5 → 187.5 (grouping is the same in ko, zh and en)."""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if number == number.to_integral_value():
        return f"{int(number):,}"
    whole, _, frac = format(number.normalize(), "f").partition(".")
    return f"{int(whole):,}.{frac}" if whole not in ("", "-") else format(number, "f")


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
    if template is not None:
        try:
            return template[lang].format(**step)
        except (KeyError, IndexError):
            pass
    return str(step.get("reason") or step.get("detail", ""))


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
    (골드: patron.rules.events passes the tier definitions' names). Without them the amounts
    carry the currency code and the tier its code."""
    lang = language if language in LANGUAGES else "en"
    out: list[str] = []
    for step in steps:
        if not step.get("applied", True):
            if skipped:
                out.append(
                    _SKIPPED[lang].format(label=_label(step), reason=skip_reason(step, lang))
                )
            continue
        key = _key(step)
        if key is None:
            out.append(str(step.get("detail", "")))
            continue
        if money is not None and f"{key}_money" in _TEXT:
            out.append(
                _TEXT[f"{key}_money"][lang].format(
                    **{
                        **step,
                        "label": _label(step),
                        "amount": money(step.get("amount")),
                        "per_amount": money(step.get("per_amount")),
                        "result": _grouped(step.get("result")),
                    }
                )
            )
            continue
        if tier_name is not None and step.get("tier"):
            step = {**step, "tier": tier_name(str(step["tier"]))}
        values = {
            k: _grouped(v)
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
    out.append(_TEXT["total"][lang].format(points=_grouped(points)))
    return out


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
