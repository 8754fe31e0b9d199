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
        return "base_rate_full" if step.get("mode") == "per_full_unit" else "base_rate_prop"
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


def explain_steps(
    steps: list[dict[str, Any]],
    points: int,
    language: str = "en",
    *,
    money: Callable[[Any], str] | None = None,
    tier_name: Callable[[str], str] | None = None,
) -> list[str]:
    """One sentence per applied step, then the total; skipped rules are left out. For a member
    `money` writes the base rate's amounts in her way (12,000원); `tier_name` names a tier in the
    reader's language (골드: patron.rules.events passes the tier definitions' names). Without
    them the amounts carry the currency code and the tier its code."""
    lang = language if language in LANGUAGES else "en"
    out: list[str] = []
    for step in steps:
        if not step.get("applied", True):
            continue
        key = _key(step)
        if key is None:
            out.append(str(step.get("detail", "")))
            continue
        if money is not None and key in ("base_rate_full", "base_rate_prop"):
            out.append(
                _TEXT[f"{key}_money"][lang].format(
                    **{
                        **step,
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
