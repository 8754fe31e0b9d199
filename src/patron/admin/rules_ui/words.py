"""Rules in words: what each rule does, where and when it applies, in the staff member's
language — the rule list, the preview and the version history show these lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from patron.admin import i18n
from patron.admin.program_context import Prog
from patron.rules.model import DAYS, RuleSetDoc, rule_label


def factor_text(value: Any) -> str:
    """Decimal("2.0000") → "2", "1.50" → "1.5"."""
    number = Decimal(str(value))
    if number == number.to_integral_value():
        return str(int(number))
    return format(number.normalize(), "f")


def _words(lang: str, keys: Iterable[str], prefix: str) -> str:
    return ", ".join(
        i18n.translate(f"{prefix}{k}", lang) if i18n.has_message(f"{prefix}{k}") else k
        for k in keys
    )


def days_text(days: Iterable[str], lang: str) -> str:
    chosen = [d for d in DAYS if d in set(days)]
    if len(chosen) == 7:
        return i18n.translate("rules.days.every", lang)
    if chosen == ["sat", "sun"]:
        return i18n.translate("rules.days.weekend", lang)
    if chosen == ["mon", "tue", "wed", "thu", "fri"]:
        return i18n.translate("rules.days.weekdays", lang)
    return _words(lang, chosen, "rules.day.")


def match_text(match: Any, lang: str) -> str:
    parts = []
    if match.categories:
        parts.append(
            i18n.translate("rules.match.categories", lang, list=", ".join(match.categories))
        )
    if match.skus:
        parts.append(i18n.translate("rules.match.skus", lang, list=", ".join(match.skus)))
    return " / ".join(parts)


def only_text(match: Any, lang: str) -> str:
    """A base rate's lines: "only on categories: coffee / only on products: latte"."""
    parts = []
    if match.categories:
        parts.append(
            i18n.translate("rules.sum.only.categories", lang, list=", ".join(match.categories))
        )
    if match.skus:
        parts.append(i18n.translate("rules.sum.only.skus", lang, list=", ".join(match.skus)))
    return " / ".join(parts)


def recent_text(recent: Any, lang: str) -> str:
    """ "2–5 purchases in the last 30 days", "3+ …", "at most 1 …"."""
    if recent.min is not None and recent.max is not None:
        key = "rules.cond.recent.range"
    else:
        key = "rules.cond.recent.min" if recent.min is not None else "rules.cond.recent.max"
    return i18n.translate(key, lang, days=recent.days, min=recent.min, max=recent.max)


def _points(value: int, lang: str) -> str:
    return i18n.points(value, lang)


def _what(rule: Any, currency: str, lang: str, tier_names: Mapping[str, str]) -> str:
    t = i18n.translate
    kind = rule.kind
    if kind == "base_rate":
        per = i18n.money(rule.per_amount, currency, lang)
        if rule.mode == "per_full_unit":
            return t("rules.sum.base_full", lang, points=_points(rule.points, lang), per=per)
        return t(
            "rules.sum.base_prop",
            lang,
            points=_points(rule.points, lang),
            per=per,
            rounding=t(f"rules.rounding.{rule.rounding}", lang),
        )
    if kind == "exclude":
        return t("rules.sum.exclude", lang, match=match_text(rule.match, lang))
    if kind == "product_bonus":
        return t(
            "rules.sum.product_bonus",
            lang,
            points=_points(rule.points_per_unit, lang),
            match=match_text(rule.match, lang),
        )
    if kind == "product_multiplier":
        return t(
            "rules.sum.product_multiplier",
            lang,
            factor=factor_text(rule.factor),
            match=match_text(rule.match, lang),
        )
    if kind == "tier_multiplier":
        return ", ".join(
            f"{tier_names.get(code, code)} ×{factor_text(f)}" for code, f in rule.factors.items()
        )
    if kind == "time_weight":
        when = days_text(rule.days, lang)
        if rule.from_time is not None and rule.to_time is not None:
            when += f" {rule.from_time:%H:%M}–{rule.to_time:%H:%M}"
        return t("rules.sum.time_weight", lang, when=when, factor=factor_text(rule.factor))
    if kind == "promotion":
        parts = []
        if rule.factor != 1:
            parts.append(f"×{factor_text(rule.factor)}")
        if rule.bonus_points:
            parts.append(t("rules.sum.per_order", lang, points=_points(rule.bonus_points, lang)))
        if rule.budget_points is not None:
            parts.append(t("rules.sum.budget", lang, points=_points(rule.budget_points, lang)))
        return ", ".join(parts)
    if kind == "order_bonus":
        return t("rules.sum.per_order", lang, points=_points(rule.points, lang))
    if kind == "cap":
        return t(f"rules.sum.cap.{rule.per}", lang, points=_points(rule.max_points, lang))
    if kind == "event":
        key = f"rules.event.{rule.event}"
        event = t(key, lang) if i18n.has_message(key) else rule.event
        return t(
            "rules.sum.event",
            lang,
            points=_points(rule.points, lang),
            event=event,
            limit=t(f"rules.limit.{rule.limit}", lang),
        )
    return kind


def _scope(rule: Any, currency: str, lang: str, tier_names: Mapping[str, str]) -> list[str]:
    t = i18n.translate
    parts = []
    if rule.kind == "base_rate" and rule.only is not None:
        parts.append(only_text(rule.only, lang))
    if rule.stores:
        parts.append(t("rules.scope.stores", lang, stores=", ".join(rule.stores)))
    if rule.channels:
        parts.append(
            t("rules.scope.channels", lang, channels=_words(lang, rule.channels, "rules.channel."))
        )
    if rule.payment_methods:
        parts.append(t("rules.scope.payment", lang, methods=", ".join(rule.payment_methods)))
    c = rule.conditions
    if c is not None:
        if c.min_amount is not None:
            amount = i18n.money(c.min_amount, currency, lang)
            parts.append(t("rules.cond.min_amount", lang, amount=amount))
        if c.min_items is not None:
            parts.append(
                t(
                    "rules.cond.min_items",
                    lang,
                    count=factor_text(c.min_items.count),
                    match=match_text(c.min_items.match, lang),
                )
            )
        if c.tiers:
            names = ", ".join(tier_names.get(code, code) for code in c.tiers)
            parts.append(t("rules.cond.tiers", lang, tiers=names))
        if c.segments:
            parts.append(t("rules.cond.segments", lang, segments=", ".join(c.segments)))
        if c.first_purchase is not None:
            parts.append(
                t(f"rules.cond.first_purchase.{'yes' if c.first_purchase else 'no'}", lang)
            )
        if c.nth_purchase is not None:
            parts.append(t("rules.cond.nth_purchase", lang, n=c.nth_purchase))
        if c.within_first_purchases is not None:
            parts.append(t("rules.cond.within_first", lang, n=c.within_first_purchases))
        if c.min_purchases is not None:
            parts.append(t("rules.cond.min_purchases", lang, count=c.min_purchases))
        if c.recent_purchases is not None:
            parts.append(recent_text(c.recent_purchases, lang))
        if c.joined_within_days is not None:
            parts.append(t("rules.cond.joined", lang, days=c.joined_within_days))
        if c.birthday_month:
            parts.append(t("rules.cond.birthday", lang))
        if c.attributes:
            attrs = ", ".join(f"{k}={v}" for k, v in c.attributes.items())
            parts.append(t("rules.cond.attributes", lang, attrs=attrs))
    return parts


def _order(rule: Any, lang: str) -> list[str]:
    """Its place among the rules of its stage and what it stops, when not the default."""
    parts = []
    if rule.priority:
        parts.append(i18n.translate("rules.sum.priority", lang, priority=rule.priority))
    if rule.stop is not None:
        parts.append(i18n.translate(f"rules.sum.stop.{rule.stop}", lang))
    return parts


def summary(
    rule: Any, currency: str, lang: str, tier_names: Mapping[str, str] | None = None
) -> str:
    """One line a store manager can read: "×2 on category cake · only at mapo"."""
    tier_names = tier_names or {}
    return " · ".join(
        [p for p in [_what(rule, currency, lang, tier_names)] if p]
        + _scope(rule, currency, lang, tier_names)
        + _order(rule, lang)
    )


def window_text(starts: date | None, ends: date | None, lang: str) -> str:
    if starts and ends:
        return i18n.translate(
            "rules.window.range",
            lang,
            start=i18n.format_date(starts, lang),
            end=i18n.format_date(ends, lang),
        )
    if starts:
        return i18n.translate("rules.window.from", lang, start=i18n.format_date(starts, lang))
    if ends:
        return i18n.translate("rules.window.until", lang, end=i18n.format_date(ends, lang))
    return i18n.translate("rules.window.always", lang)


def status_of(rule: Any, today: date) -> str:
    if not rule.enabled:
        return "off"
    if rule.ends is not None and rule.ends < today:
        return "ended"
    if rule.starts is not None and rule.starts > today:
        return "scheduled"
    return "on"


@dataclass(frozen=True)
class RuleRow:
    index: int
    id: str
    label: str
    kind: str
    summary: str
    window: str
    status: str
    enabled: bool


def rule_rows(
    doc: RuleSetDoc, prog: Prog, lang: str, tier_names: Mapping[str, str]
) -> list[RuleRow]:
    today = prog.today()
    return [
        RuleRow(
            index=index,
            id=rule.id,
            label=rule_label(rule),
            kind=rule.kind,
            summary=summary(rule, prog.currency, lang, tier_names),
            window=window_text(rule.starts, rule.ends, lang),
            status=status_of(rule, today),
            enabled=rule.enabled,
        )
        for index, rule in enumerate(doc.rules)
    ]


def settings_lines(doc: RuleSetDoc, lang: str) -> list[tuple[str, str]]:
    """The rule set's own settings as (label, value) lines."""
    t = i18n.translate
    lines = [
        (t("rules.field.combine", lang), t(f"rules.combine.{doc.combine}", lang)),
        (t("rules.field.set_rounding", lang), t(f"rules.rounding.{doc.rounding}", lang)),
        (t("rules.field.base_rates", lang), t(f"rules.base_rates.{doc.base_rates}", lang)),
    ]
    red = doc.redemption
    if red.excluded is not None:
        lines.append((t("rules.settings.no_redeem_on", lang), match_text(red.excluded, lang)))
    if red.stores is not None:
        lines.append((t("rules.settings.redeem_stores", lang), ", ".join(red.stores)))
    if red.channels is not None:
        channels = _words(lang, red.channels, "rules.channel.")
        lines.append((t("rules.settings.redeem_channels", lang), channels))
    return lines
