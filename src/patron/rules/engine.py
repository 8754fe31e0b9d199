"""The rules core: rule set + order + member context → points and a breakdown. No I/O.

Stages, always in this order (see docs/rules.md):

1. eligibility — each rule's date window, stores, channels, payment methods and conditions;
   a rule that does not apply is listed as skipped, with the reason;
2. exclusions — matched lines earn nothing; the part paid with points earns nothing unless the
   program says otherwise;
3. base rate — the first base rate that applies, on the eligible amount, split over the lines;
4. product multipliers — on the base points of the matched lines;
5. order factors — tier, time-of-day/day-of-week weights, promotion factors, combined by the rule
   set's `combine` (multiply, or add their extra parts), then rounded once by its `rounding`;
6. fixed points — product bonuses per unit, promotion bonuses, order bonuses (never multiplied);
   then budgeted promotions give at most what their budgets have left, sharing what they add
   together fairly (`_split_budgets`);
7. caps — per order and per member per day/month/year.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from patron.money import Rounding, round_points, split_proportionally
from patron.rules.model import (
    DAYS,
    BaseRate,
    Cap,
    Event,
    Match,
    OrderBonus,
    ProductBonus,
    ProductMultiplier,
    Promotion,
    RuleSetDoc,
    TierMultiplier,
    TimeWeight,
)

ONE = Decimal(1)
TIER_KINDS = ("tier_multiplier", "tier_benefit")


@dataclass(frozen=True)
class Line:
    id: str
    amount: Decimal
    quantity: Decimal = ONE
    sku: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class Order:
    currency: str
    total: Decimal
    occurred_at: datetime
    timezone: str
    lines: tuple[Line, ...] = ()
    store: str | None = None
    channel: str | None = None
    payment_method: str | None = None
    paid_with_points: Decimal = Decimal(0)
    earn_on_redeemed: bool = False
    # The rewards of the coupons used on the order (promotions may not stack with them).
    coupons: tuple[str, ...] = ()


@dataclass(frozen=True)
class MemberContext:
    tier: str | None = None
    attributes: Mapping[str, Any] = field(default_factory=dict)
    joined_on: date | None = None
    birthday: date | None = None
    purchases: int = 0
    # Purchase points already earned in the current local day / month / year (for caps).
    earned_day: int = 0
    earned_month: int = 0
    earned_year: int = 0
    # The multiplier of the member's tier (tier definitions, patron.tiers); None or 1: none.
    tier_factor: Decimal | None = None


@dataclass(frozen=True)
class TierBenefit:
    """The member's tier multiplier as a pseudo-rule, so it shows in the breakdown."""

    id: str
    kind: str = "tier_benefit"
    name: str | None = None


@dataclass
class Evaluation:
    points: int
    line_points: list[int]
    steps: list[dict[str, Any]]
    # Extra points each budgeted promotion gave on this order.
    budget_used: dict[str, int] = field(default_factory=dict)
    caps: list[str] = field(default_factory=list)


def _num(value: Decimal) -> str:
    """A Decimal for a breakdown: exact, without trailing zeros or exponent."""
    text = format(value.normalize(), "f")
    return text


def _grouped(value: Decimal) -> str:
    """For the English detail only: 25800 → 25,800 (params keep the plain number)."""
    whole, _, frac = _num(value).partition(".")
    return f"{int(whole):,}" + (f".{frac}" if frac else "")


def _step(rule: Any, applied: bool, detail: str, **params: Any) -> dict[str, Any]:
    step = {"rule": rule.id, "kind": rule.kind, "applied": applied, "detail": detail, **params}
    if rule.name:
        step["name"] = rule.name
    return step


def _skip(rule: Any, reason: str) -> dict[str, Any]:
    return _step(rule, False, f"skipped: {reason}", reason=reason)


def _units(lines: tuple[Line, ...], match: Match) -> Decimal:
    return sum((ln.quantity for ln in lines if match.matches(ln.sku, ln.category)), Decimal(0))


def _why_not(rule: Any, order: Order, member: MemberContext, local: datetime) -> str | None:
    """The reason a rule does not apply to this order, or None when it does."""
    if not rule.enabled:
        return "disabled"
    day = local.date()
    if rule.starts and day < rule.starts:
        return f"starts {rule.starts.isoformat()}"
    if rule.ends and day > rule.ends:
        return f"ended {rule.ends.isoformat()}"
    if rule.stores is not None and order.store not in rule.stores:
        return f"store {order.store or '(none)'} is not one of {', '.join(rule.stores)}"
    if rule.channels is not None and order.channel not in rule.channels:
        return f"channel {order.channel or '(none)'} is not one of {', '.join(rule.channels)}"
    if rule.payment_methods is not None and order.payment_method not in rule.payment_methods:
        return (
            f"payment method {order.payment_method or '(none)'} is not one of "
            f"{', '.join(rule.payment_methods)}"
        )
    if order.coupons and getattr(rule, "with_coupons", True) is False:
        return f"not with a coupon (this order uses {', '.join(order.coupons)})"
    cond = rule.conditions
    if cond is None:
        return None
    if cond.min_amount is not None and order.total < cond.min_amount:
        return f"order total {_num(order.total)} is below {_num(cond.min_amount)}"
    if cond.min_items is not None:
        units = _units(order.lines, cond.min_items.match)
        if units < cond.min_items.count:
            return f"{_num(units)} matching items, {_num(cond.min_items.count)} needed"
    if cond.tiers is not None and member.tier not in cond.tiers:
        return f"tier {member.tier or '(none)'} is not one of {', '.join(cond.tiers)}"
    if cond.attributes:
        for key, wanted in cond.attributes.items():
            if member.attributes.get(key) != wanted:
                return f"member attribute {key} is not {wanted!r}"
    if cond.joined_within_days is not None and (
        member.joined_on is None or (day - member.joined_on).days > cond.joined_within_days
    ):
        return f"member joined more than {cond.joined_within_days} days ago"
    if cond.birthday_month and (member.birthday is None or member.birthday.month != day.month):
        return "not the member's birthday month"
    if cond.min_purchases is not None and member.purchases < cond.min_purchases:
        return f"{member.purchases} earlier purchases, {cond.min_purchases} needed"
    return None


def _time_weight_miss(rule: TimeWeight, local: datetime) -> str | None:
    weekday = DAYS[local.weekday()]
    if weekday not in rule.days:
        return f"{weekday} is not one of {', '.join(rule.days)}"
    if rule.from_time is not None and rule.to_time is not None:
        now = local.time().replace(tzinfo=None)
        start, end = rule.from_time, rule.to_time
        inside = start <= now < end if start < end else (now >= start or now < end)
        if not inside:
            return f"{now:%H:%M} is outside {start:%H:%M}–{end:%H:%M}"
    return None


def _combine(factors: list[Decimal], how: str) -> Decimal:
    if how == "add":
        # Extra parts below 1 subtract (weekend 0.5 and a 0 factor: 1 - 0.5 - 1); the combined
        # factor stops at 0, or a sale would take points away.
        return max(Decimal(0), ONE + sum((f - ONE for f in factors), Decimal(0)))
    product = ONE
    for f in factors:
        product *= f
    return product


def evaluate(
    doc: RuleSetDoc,
    order: Order,
    member: MemberContext | None = None,
    budgets: Mapping[str, int] | None = None,
) -> Evaluation:
    """Points for a purchase, with every rule listed as applied (and how) or skipped (and why).

    `budgets` maps a budgeted promotion's id to the points it may still give.
    """
    member = member or MemberContext()
    budgets = budgets or {}
    local = order.occurred_at.astimezone(ZoneInfo(order.timezone))
    lines = order.lines or (Line(id="1", amount=order.total),)
    steps: list[dict[str, Any]] = []

    active: list[Any] = []
    for rule in doc.rules:
        if rule.kind == "event":
            continue
        reason = _why_not(rule, order, member, local)
        if reason is None and isinstance(rule, TimeWeight):
            reason = _time_weight_miss(rule, local)
        if (
            reason is None
            and isinstance(rule, Promotion)
            and rule.budget_points is not None
            and budgets.get(rule.id, rule.budget_points) <= 0
        ):
            reason = "budget used up"
        if reason is None and isinstance(rule, TierMultiplier) and member.tier not in rule.factors:
            reason = f"tier {member.tier or '(none)'} has no factor"
        if reason is not None:
            steps.append(_skip(rule, reason))
        else:
            active.append(rule)

    # Stage 2: exclusions and the part paid with points.
    excluded: set[str] = set()
    for rule in (r for r in active if r.kind == "exclude"):
        dropped = [
            ln for ln in lines if ln.id not in excluded and rule.match.matches(ln.sku, ln.category)
        ]
        if not dropped:
            steps.append(_skip(rule, "no line matches"))
            continue
        excluded.update(ln.id for ln in dropped)
        amount = sum((ln.amount for ln in dropped), Decimal(0))
        steps.append(
            _step(
                rule,
                True,
                f"lines {', '.join(ln.id for ln in dropped)} "
                f"({_num(amount)} {order.currency}) earn nothing",
                lines=[ln.id for ln in dropped],
                amount=_num(amount),
            )
        )
    eligible = [Decimal(0) if ln.id in excluded else ln.amount for ln in lines]
    eligible_total = sum(eligible, Decimal(0))
    if order.paid_with_points > 0 and not order.earn_on_redeemed and eligible_total > 0:
        cut = min(order.paid_with_points, eligible_total)
        scale = (eligible_total - cut) / eligible_total
        eligible = [amount * scale for amount in eligible]
        steps.append(
            {
                "rule": "paid_with_points",
                "kind": "paid_with_points",
                "applied": True,
                "detail": f"{_num(cut)} {order.currency} paid with points earns nothing",
                "amount": _num(cut),
            }
        )
        eligible_total -= cut

    # Stage 3: the base rate.
    base_points = 0
    base_rules = [r for r in active if isinstance(r, BaseRate)]
    for index, rule in enumerate(base_rules):
        if index > 0:
            steps.append(_skip(rule, f"base rate {base_rules[0].id} applied first"))
            continue
        if rule.mode == "per_full_unit":
            full_units = (eligible_total / rule.per_amount).to_integral_value(rounding=ROUND_FLOOR)
            base_points = int(full_units) * rule.points
            how = f": {rule.points} points for each full {_grouped(rule.per_amount)}"
        else:
            base_points = round_points(
                eligible_total * rule.points / rule.per_amount, Rounding(rule.rounding)
            )
            how = f" × {rule.points}/{_grouped(rule.per_amount)}, rounded {rule.rounding}"
        steps.append(
            _step(
                rule,
                True,
                f"{_grouped(eligible_total)} {order.currency}{how} = {base_points}",
                amount=_num(eligible_total),
                currency=order.currency,
                points_per=rule.points,
                per_amount=_num(rule.per_amount),
                mode=rule.mode,
                rounding=rule.rounding,
                result=base_points,
            )
        )
    line_base = split_proportionally(base_points, eligible) if base_points else [0] * len(lines)

    # Stage 4: product multipliers on the base points of matched lines.
    per_line_factors: list[list[Decimal]] = [[] for _ in lines]
    for rule in (r for r in active if isinstance(r, ProductMultiplier)):
        chosen = [
            i
            for i, ln in enumerate(lines)
            if ln.id not in excluded and rule.match.matches(ln.sku, ln.category)
        ]
        if not chosen:
            steps.append(_skip(rule, "no line matches"))
            continue
        # In multiply mode a second multiplier on a line acts on what the first made of it, so
        # the step's before/after are what this rule really changed (the steps add up).
        line_before = sum(
            (
                Decimal(line_base[i])
                * (_combine(per_line_factors[i], "multiply") if doc.combine == "multiply" else ONE)
                for i in chosen
            ),
            Decimal(0),
        )
        for i in chosen:
            per_line_factors[i].append(rule.factor)
        steps.append(
            _step(
                rule,
                True,
                f"lines {', '.join(lines[i].id for i in chosen)}: {_num(line_before)} × "
                f"{_num(rule.factor)}",
                factor=_num(rule.factor),
                lines=[lines[i].id for i in chosen],
                before=_num(line_before),
                after=_num(line_before * rule.factor),
            )
        )
    values = [
        Decimal(line_base[i]) * _combine(per_line_factors[i], doc.combine)
        for i in range(len(lines))
    ]
    running = sum(values, Decimal(0))

    # Stage 5: order factors.
    factor_rules: list[tuple[Any, Decimal]] = []
    # The tier definition's multiplier is an order factor like the others, unless the rule set
    # has its own enabled tier_multiplier rule: that rule is the more specific setting and wins
    # (applying both would multiply the tier twice).
    if (
        member.tier_factor is not None
        and member.tier_factor != ONE
        and member.tier is not None
        and not any(isinstance(r, TierMultiplier) and r.enabled for r in doc.rules)
    ):
        factor_rules.append((TierBenefit(id=f"tier:{member.tier}"), member.tier_factor))
    for rule in active:
        if isinstance(rule, TierMultiplier):
            factor_rules.append((rule, rule.factors[member.tier or ""]))
        elif isinstance(rule, TimeWeight) or (isinstance(rule, Promotion) and rule.factor != ONE):
            factor_rules.append((rule, rule.factor))
    base_running = running
    if factor_rules:
        if doc.combine == "multiply":
            for rule, factor in factor_rules:
                after = running * factor
                steps.append(
                    _step(
                        rule,
                        True,
                        f"{_num(running)} × {_num(factor)} = {_num(after)}",
                        factor=_num(factor),
                        before=_num(running),
                        after=_num(after),
                        **({"tier": member.tier} if rule.kind in TIER_KINDS else {}),
                    )
                )
                running = after
        else:
            combined = _combine([f for _, f in factor_rules], "add")
            for rule, factor in factor_rules:
                steps.append(
                    _step(
                        rule,
                        True,
                        f"adds {_num(factor - ONE)} to the factor",
                        factor=_num(factor),
                        adds=_num(factor - ONE),
                        **({"tier": member.tier} if rule.kind in TIER_KINDS else {}),
                    )
                )
            after = running * combined
            steps.append(
                {
                    "rule": "combined_factor",
                    "kind": "combined_factor",
                    "applied": True,
                    "detail": f"{_num(running)} × {_num(combined)} = {_num(after)}",
                    "factor": _num(combined),
                    "before": _num(running),
                    "after": _num(after),
                }
            )
            running = after
        total_factor = _combine([f for _, f in factor_rules], doc.combine)
        values = [v * total_factor for v in values]
    points = round_points(running, Rounding(doc.rounding))
    if Decimal(points) != running:
        steps.append(
            {
                "rule": "rounding",
                "kind": "rounding",
                "applied": True,
                "detail": f"{_num(running)} rounded {doc.rounding} = {points}",
                "before": _num(running),
                "after": points,
                "rounding": doc.rounding,
            }
        )

    # Budgeted promotions share what they add; each gives no more than its budget has left.
    budget_used: dict[str, int] = {}
    budgeted = [r for r in active if isinstance(r, Promotion) and r.budget_points is not None]
    split = (
        _split_budgets(doc, budgeted, factor_rules, base_running, running, points, budgets)
        if budgeted
        else None
    )
    if split is not None:
        budget_used.update(split.used)

    # Stage 6: fixed points, never multiplied.
    fixed_per_line = [0] * len(lines)
    for rule in (r for r in active if isinstance(r, ProductBonus)):
        per_unit: list[tuple[int, int]] = [
            (i, int(ln.quantity.to_integral_value(rounding=ROUND_FLOOR)))
            for i, ln in enumerate(lines)
            if ln.id not in excluded and rule.match.matches(ln.sku, ln.category)
        ]
        unit_count = sum(count for _, count in per_unit)
        if unit_count == 0:
            steps.append(_skip(rule, "no line matches"))
            continue
        for i, count in per_unit:
            fixed_per_line[i] += rule.points_per_unit * count
        bonus = rule.points_per_unit * unit_count
        points += bonus
        steps.append(
            _step(
                rule,
                True,
                f"{unit_count} × {rule.points_per_unit} = +{bonus}",
                units=unit_count,
                points_per_unit=rule.points_per_unit,
                added=bonus,
                after=points,
            )
        )
    for rule in active:
        added = 0
        if isinstance(rule, Promotion) and rule.bonus_points:
            added = rule.bonus_points
        elif isinstance(rule, OrderBonus):
            added = rule.points
        if added:
            points += added
            steps.append(_step(rule, True, f"+{added}", added=added, after=points))
    if split is not None:
        # The budgets' limits, once every bonus is in: the cut of each limited promotion.
        for limited, left, taken in split.cuts:
            gives = split.used.get(limited.id, 0)
            steps.append(
                _step(
                    limited,
                    True,
                    f"budget left {left}: gives {gives}, {points} → {points - taken}",
                    budget_left=left,
                    used=gives,
                    before=points,
                    after=points - taken,
                )
            )
            points -= taken

    # Stage 7: caps.
    caps: list[str] = []
    for rule in (r for r in active if isinstance(r, Cap)):
        already = {
            "order": 0,
            "member_day": member.earned_day,
            "member_month": member.earned_month,
            "member_year": member.earned_year,
        }[rule.per]
        allowed = max(0, rule.max_points - already)
        caps.append(rule.per)
        if points > allowed:
            steps.append(
                _step(
                    rule,
                    True,
                    f"capped at {allowed} ({rule.per.replace('_', ' ')} "
                    f"limit {rule.max_points}, {already} already earned)",
                    per=rule.per,
                    max_points=rule.max_points,
                    already=already,
                    before=points,
                    after=allowed,
                )
            )
            removed = points - allowed
            points = allowed
            # What a cap removes comes out of the promotions' budget use first, last one first.
            for rule_id in reversed(list(budget_used)):
                back = min(removed, budget_used[rule_id])
                budget_used[rule_id] -= back
                removed -= back
        else:
            steps.append(
                _skip(
                    rule,
                    f"{points} is within the {rule.per.replace('_', ' ')} limit ({allowed} left)",
                )
            )

    weights = [v + fixed_per_line[i] for i, v in enumerate(values)]
    if sum(weights, Decimal(0)) <= 0:
        weights = [ln.amount for ln in lines]
    line_points = split_proportionally(points, weights) if order.lines else []
    return Evaluation(
        points=points,
        line_points=line_points,
        steps=steps,
        budget_used={k: v for k, v in budget_used.items() if v},
        caps=caps,
    )


@dataclass
class _BudgetSplit:
    used: dict[str, int]
    # (promotion, budget left, points its limit takes off) for each promotion the limit cut.
    cuts: list[tuple[Promotion, int, int]]


def _round_exact(value: Fraction, rounding: str) -> int:
    if rounding == "down":
        return math.floor(value)
    if rounding == "up":
        return math.ceil(value)
    return math.floor(value + Fraction(1, 2))  # half up; points are never negative


def _split_budgets(
    doc: RuleSetDoc,
    budgeted: list[Promotion],
    factor_rules: list[tuple[Any, Decimal]],
    base_running: Decimal,
    full_running: Decimal,
    full_points: int,
    budgets: Mapping[str, int],
) -> _BudgetSplit:
    """What each budgeted promotion gives, and what the limits take off the unlimited total.

    The budgeted promotions make an extra together (in multiply mode more than the sum of what
    each would make alone: ×2 and ×2 make 3× the points before them, not 2×). Each is charged a
    share of that extra in proportion to what it adds on its own, its factor minus 1 (a promotion
    whose factor is below 1 adds nothing, so it is an ordinary factor here); then it gives its
    share plus its bonus, up to the budget it has left. The order's points are rounded once,
    after the limits, and what a limited promotion does not give is never taken from another's
    budget. Shares per unit of "factor − 1" only grow as promotions are added, so adding a
    promotion never lowers the points (tests/rules/test_budget_fairness.py).

    Exact fractions: a comparison with a budget must not depend on a rounded division.
    """
    own = {r.id: r.factor - ONE for r in budgeted if r.factor > ONE}  # per point before it
    others = [f for r, f in factor_rules if r.id not in own]
    exact_before = base_running * _combine(others, doc.combine)
    if len(budgeted) == 1:
        # The common case, kept cheap: one promotion within its budget takes the whole extra.
        (only,) = budgeted
        left = budgets.get(only.id, only.budget_points or 0)
        extra = full_points - round_points(exact_before, Rounding(doc.rounding))
        if max(Decimal(0), full_running - exact_before) + only.bonus_points <= left:
            gives = max(0, extra) + only.bonus_points
            return _BudgetSplit(used={only.id: gives} if gives else {}, cuts=[])
    before = Fraction(exact_before)
    joint = max(Fraction(0), Fraction(full_running) - before)
    weight = Fraction(sum(own.values(), Decimal(0)))
    wanted: list[Fraction] = []
    given: list[Fraction] = []
    lefts: list[int] = []
    for rule in budgeted:
        share = joint * Fraction(own[rule.id]) / weight if rule.id in own else Fraction(0)
        left = budgets.get(rule.id, rule.budget_points or 0)
        want = share + rule.bonus_points
        wanted.append(want)
        given.append(min(want, Fraction(left)))
        lefts.append(left)
    points_before = _round_exact(before, doc.rounding)
    total = _round_exact(before + sum(given, Fraction(0)), doc.rounding)
    # Whole points per promotion: each gets the whole part of what it gives, and the points the
    # one rounding leaves go to the largest fractions (ties by rule id, not by rule order); so none exceeds its
    # budget and together they are exactly what the budgeted promotions added.
    used = [math.floor(g) for g in given]
    odd = total - points_before - sum(used)
    by_fraction = sorted(
        (i for i, g in enumerate(given) if g != used[i]),
        key=lambda i: (used[i] - given[i], budgeted[i].id),
    )
    for i in by_fraction[: max(0, odd)]:
        used[i] += 1
    cuts: list[tuple[Promotion, int, int]] = []
    limited = [i for i, want in enumerate(wanted) if want > given[i]]
    if limited:
        unlimited = full_points + sum(r.bonus_points for r in budgeted)
        off = split_proportionally(
            max(0, unlimited - total),
            [
                Decimal((wanted[i] - given[i]).numerator) / (wanted[i] - given[i]).denominator
                for i in limited
            ],
        )
        cuts = [(budgeted[i], lefts[i], cut) for i, cut in zip(limited, off, strict=True)]
    return _BudgetSplit(
        used={r.id: u for r, u in zip(budgeted, used, strict=True) if u},
        cuts=cuts,
    )


@dataclass
class EventEvaluation:
    rule: Event | None
    points: int
    period_key: str | None
    steps: list[dict[str, Any]]


def period_key(limit: str, event: str, local_day: date) -> str | None:
    """The counter a limited event is counted in (one a member may fill once)."""
    if limit == "unlimited":
        return None
    if limit == "once":
        return f"event:{event}"
    if limit == "per_day":
        return f"event:{event}:{local_day.isoformat()}"
    if limit == "per_month":
        return f"event:{event}:{local_day:%Y-%m}"
    return f"event:{event}:{local_day.year}"


def evaluate_event(
    doc: RuleSetDoc,
    event: str,
    *,
    occurred_at: datetime,
    timezone: str,
    member: MemberContext | None = None,
    store: str | None = None,
    channel: str | None = None,
) -> EventEvaluation:
    """Points for a non-purchase event; the caller checks the period counter is still free."""
    member = member or MemberContext()
    local = occurred_at.astimezone(ZoneInfo(timezone))
    order = Order(
        currency="",
        total=Decimal(0),
        occurred_at=occurred_at,
        timezone=timezone,
        store=store,
        channel=channel,
    )
    candidates = [r for r in doc.rules if isinstance(r, Event) and r.event == event]
    steps: list[dict[str, Any]] = []
    for rule in candidates:
        reason = _why_not(rule, order, member, local)
        if reason is not None:
            steps.append(_skip(rule, reason))
            continue
        steps.append(
            _step(
                rule,
                True,
                f"{event}: +{rule.points}",
                event=event,
                added=rule.points,
                limit=rule.limit,
                after=rule.points,
            )
        )
        return EventEvaluation(
            rule=rule,
            points=rule.points,
            period_key=period_key(rule.limit, event, local.date()),
            steps=steps,
        )
    return EventEvaluation(rule=None, points=0, period_key=None, steps=steps)
