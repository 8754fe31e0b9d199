"""The rules core: rule set + order + member context → points and a breakdown. No I/O.

Stages, always in this order (see docs/rules.md):

1. eligibility — each rule's date window, stores, channels, payment methods and conditions;
   a rule that does not apply is listed as skipped, with the reason;
2. exclusions — matched lines earn nothing; the part paid with points earns nothing unless the
   program says otherwise;
3. base rates — by the rule set's `base_rates`, each line earns by the first base rate that
   applies to it ("first") or by every one ("sum"); a rate with `only` earns on its lines alone;
4. product multipliers — on the base points of the matched lines;
5. order factors — tier, time-of-day/day-of-week weights, promotion factors, combined by the rule
   set's `combine` (multiply, or add their extra parts), then rounded once by its `rounding`;
6. fixed points — product bonuses per unit, promotion bonuses, order bonuses (never multiplied);
   then budgeted promotions give at most what their budgets have left, sharing what they add
   together fairly (`_split_budgets`);
7. caps — per order and per member per day/month/year.

Within a stage, rules of higher `priority` come first (ties in document order); a rule with `stop`
that applies switches off the rest of its stage ("stage") or every later stage too ("all"),
except the caps, which always apply.
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
    Conditions,
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
    # Earlier purchases: recorded, happened at or before this sale, this one not included.
    purchases: int = 0
    # Earlier purchases in the last N days (N × 24 hours) before this sale, by N; only the
    # windows the rule set's `recent_purchases` conditions name are filled (others count 0).
    recent_purchases: Mapping[int, int] = field(default_factory=dict)
    # Purchase points already earned in the current local day / month / year (for caps).
    earned_day: int = 0
    earned_month: int = 0
    earned_year: int = 0
    # The multiplier of the member's tier (tier definitions, patron.tiers); None or 1: none.
    tier_factor: Decimal | None = None
    # The segments (codes) the member is in at the time of the sale; only those the rule set's
    # `segments` conditions name are read (patron.segments.service.memberships).
    segments: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TierBenefit:
    """The member's tier multiplier as a pseudo-rule, so it shows in the breakdown."""

    id: str
    kind: str = "tier_benefit"
    name: str | None = None
    # Ordered like a rule of priority 0, before the rule set's factors of the same priority.
    priority: int = 0
    stop: str | None = None


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


class SkipReason(str):
    """A skip reason (in English) with the figures behind it, which the breakdown step keeps so
    an explanation can word the reason in the reader's language (patron.rules.explain). A str, so
    every place that passes reasons along stays as it is."""

    params: dict[str, Any]

    def __new__(cls, text: str, **params: Any) -> SkipReason:
        reason = super().__new__(cls, text)
        reason.params = params
        return reason


def _skip(rule: Any, reason: str) -> dict[str, Any]:
    params = getattr(reason, "params", {})
    return _step(rule, False, f"skipped: {reason}", reason=str(reason), **params)


def _units(lines: tuple[Line, ...], match: Match) -> Decimal:
    return sum((ln.quantity for ln in lines if match.matches(ln.sku, ln.category)), Decimal(0))


def _why_not(rule: Any, order: Order, member: MemberContext, local: datetime) -> str | None:
    """The reason a rule does not apply to this order, or None when it does. Each reason keeps
    the figures behind it (`condition` and its values), so an explanation words it in the
    reader's language (patron.rules.explain)."""
    if not rule.enabled:
        return SkipReason("disabled", condition="disabled")
    day = local.date()
    if rule.starts and day < rule.starts:
        when = rule.starts.isoformat()
        return SkipReason(f"starts {when}", condition="starts", date=when)
    if rule.ends and day > rule.ends:
        when = rule.ends.isoformat()
        return SkipReason(f"ended {when}", condition="ended", date=when)
    if rule.stores is not None and order.store not in rule.stores:
        got, allowed = order.store or "(none)", ", ".join(rule.stores)
        return SkipReason(
            f"store {got} is not one of {allowed}", condition="store", got=got, allowed=allowed
        )
    if rule.channels is not None and order.channel not in rule.channels:
        got, allowed = order.channel or "(none)", ", ".join(rule.channels)
        return SkipReason(
            f"channel {got} is not one of {allowed}", condition="channel", got=got, allowed=allowed
        )
    if rule.payment_methods is not None and order.payment_method not in rule.payment_methods:
        got, allowed = order.payment_method or "(none)", ", ".join(rule.payment_methods)
        return SkipReason(
            f"payment method {got} is not one of {allowed}",
            condition="payment_method",
            got=got,
            allowed=allowed,
        )
    if order.coupons and getattr(rule, "with_coupons", True) is False:
        used = ", ".join(order.coupons)
        return SkipReason(
            f"not with a coupon (this order uses {used})", condition="coupon", coupons=used
        )
    cond = rule.conditions
    if cond is None:
        return None
    if cond.min_amount is not None and order.total < cond.min_amount:
        total, needed = _num(order.total), _num(cond.min_amount)
        return SkipReason(
            f"order total {total} is below {needed}",
            condition="min_amount",
            total=total,
            needed=needed,
        )
    if cond.min_items is not None:
        units = _units(order.lines, cond.min_items.match)
        if units < cond.min_items.count:
            got, needed = _num(units), _num(cond.min_items.count)
            return SkipReason(
                f"{got} matching items, {needed} needed",
                condition="min_items",
                count=got,
                needed=needed,
            )
    if cond.tiers is not None and member.tier not in cond.tiers:
        got, allowed = member.tier or "(none)", ", ".join(cond.tiers)
        return SkipReason(
            f"tier {got} is not one of {allowed}", condition="tiers", got=got, allowed=allowed
        )
    if cond.attributes:
        for key, wanted in cond.attributes.items():
            if member.attributes.get(key) != wanted:
                return SkipReason(
                    f"member attribute {key} is not {wanted!r}",
                    condition="attribute",
                    key=key,
                    value=repr(wanted),
                )
    if cond.joined_within_days is not None and (
        member.joined_on is None or (day - member.joined_on).days > cond.joined_within_days
    ):
        return SkipReason(
            f"member joined more than {cond.joined_within_days} days ago",
            condition="joined_within_days",
            days=cond.joined_within_days,
        )
    if cond.birthday_month and (member.birthday is None or member.birthday.month != day.month):
        return SkipReason("not the member's birthday month", condition="birthday_month")
    if cond.segments is not None and member.segments.isdisjoint(cond.segments):
        return _segment_miss(cond.segments)
    if cond.counts_purchases():
        return _purchase_count_miss(cond, member)
    return None


def _segment_miss(codes: list[str]) -> SkipReason:
    """Why a member in none of the segments `codes` is not eligible."""
    listed = ", ".join(codes)
    if len(codes) == 1:
        return SkipReason(f"not in segment {listed}", condition="segments", segments=listed)
    return SkipReason(f"not in any of segments {listed}", condition="segments_any", segments=listed)


def _purchase_count_miss(cond: Conditions, member: MemberContext) -> SkipReason | None:
    """Why the member's purchase counts do not meet the conditions, or None when they do."""
    earlier = member.purchases
    number = earlier + 1  # this sale is the member's purchase number `number`
    if cond.min_purchases is not None and earlier < cond.min_purchases:
        return SkipReason(
            f"{earlier} earlier purchases, {cond.min_purchases} needed",
            condition="min_purchases",
            purchases=earlier,
            needed=cond.min_purchases,
        )
    if cond.first_purchase is True and earlier > 0:
        return SkipReason(
            f"not the first purchase ({earlier} earlier)",
            condition="first_purchase",
            purchases=earlier,
        )
    if cond.first_purchase is False and earlier == 0:
        return SkipReason(
            "the member's first purchase; only later ones count",
            condition="not_first_purchase",
            purchases=earlier,
        )
    if cond.nth_purchase is not None and number != cond.nth_purchase:
        return SkipReason(
            f"purchase {number}, not purchase {cond.nth_purchase}",
            condition="nth_purchase",
            purchases=earlier,
            number=number,
            nth=cond.nth_purchase,
        )
    if cond.within_first_purchases is not None and number > cond.within_first_purchases:
        return SkipReason(
            f"purchase {number}, only the first {cond.within_first_purchases} count",
            condition="within_first_purchases",
            purchases=earlier,
            number=number,
            limit=cond.within_first_purchases,
        )
    recent = cond.recent_purchases
    if recent is not None:
        count = member.recent_purchases.get(recent.days, 0)
        if recent.min is not None and count < recent.min:
            return SkipReason(
                f"{count} purchases in the last {recent.days} days, {recent.min} needed",
                condition="recent_purchases_min",
                count=count,
                days=recent.days,
                min=recent.min,
            )
        if recent.max is not None and count > recent.max:
            return SkipReason(
                f"{count} purchases in the last {recent.days} days, at most {recent.max}",
                condition="recent_purchases_max",
                count=count,
                days=recent.days,
                max=recent.max,
            )
    return None


def _time_weight_miss(rule: TimeWeight, local: datetime) -> str | None:
    weekday = DAYS[local.weekday()]
    if weekday not in rule.days:
        allowed = ", ".join(rule.days)
        return SkipReason(
            f"{weekday} is not one of {allowed}", condition="days", day=weekday, allowed=allowed
        )
    if rule.from_time is not None and rule.to_time is not None:
        now = local.time().replace(tzinfo=None)
        start, end = rule.from_time, rule.to_time
        inside = start <= now < end if start < end else (now >= start or now < end)
        if not inside:
            hours = f"{start:%H:%M}–{end:%H:%M}"
            return SkipReason(
                f"{now:%H:%M} is outside {hours}", condition="hours", time=f"{now:%H:%M}",
                hours=hours,
            )  # fmt: skip
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


def _by_priority(rule: Any) -> int:
    return -int(rule.priority)


def _stopped(rule: Any, by: str) -> dict[str, Any]:
    """The step of an applicable rule that a `stop` of rule `by` switched off."""
    return _skipped(rule, f"stopped by rule '{by}'", condition="stopped", stopped_by=by)


def _skipped(rule: Any, reason: str, **params: Any) -> dict[str, Any]:
    """A skipped step that keeps the figures behind its reason, for patron.rules.explain."""
    return _step(rule, False, f"skipped: {reason}", reason=reason, **params)


def _stop_factors(
    factor_rules: list[tuple[Any, Decimal]],
    halt_all: str | None,
    stops: list[dict[str, Any]],
) -> tuple[list[tuple[Any, Decimal]], str | None]:
    """Stage 5 under priorities and stops: the tier definition's multiplier takes its place as a
    factor of priority 0 (before the rule set's of the same priority), then a factor with `stop`
    switches off the factors after it. The factors that apply, and the rule stopping all later
    stages (if any); the steps of the stopped factors go to `stops`."""
    ordered = factor_rules
    if ordered and isinstance(ordered[0][0], TierBenefit):
        rest = ordered[1:]
        at = next((i for i, (r, _) in enumerate(rest) if r.priority <= 0), len(rest))
        ordered = [*rest[:at], ordered[0], *rest[at:]]
    kept: list[tuple[Any, Decimal]] = []
    halt = halt_all
    for rule, factor in ordered:
        if halt is not None:
            stops.append(_stopped(rule, halt))
            continue
        kept.append((rule, factor))
        if rule.stop is not None:
            halt = rule.id
            halt_all = rule.id if rule.stop == "all" else halt_all
    return kept, halt_all


def _fixed_rules(active: list[Any], prioritised: bool) -> list[Any]:
    """Stage 6 in order: product bonuses, then promotion and order bonuses (then by priority)."""
    ordered: list[Any] = []
    bonuses: list[Any] = []
    for rule in active:
        if isinstance(rule, ProductBonus):
            ordered.append(rule)
        elif isinstance(rule, OrderBonus) or (isinstance(rule, Promotion) and rule.bonus_points):
            bonuses.append(rule)
    ordered += bonuses
    if prioritised:
        ordered.sort(key=_by_priority)
    return ordered


def _first_rate_won(rule: Any, first: str | None) -> dict[str, Any]:
    reason = f"base rate {first} applied first"
    return _skipped(rule, reason, condition="base_rate_first", first=first)


def _described(match: Match) -> str:
    return ", ".join([*match.skus, *(f"category {c}" for c in match.categories)])


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
    prioritised = False
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
            reason = SkipReason("budget used up", condition="budget_used_up")
        if reason is None and isinstance(rule, TierMultiplier) and member.tier not in rule.factors:
            got = member.tier or "(none)"
            reason = SkipReason(f"tier {got} has no factor", condition="tier_no_factor", got=got)
        if reason is not None:
            steps.append(_skip(rule, reason))
        else:
            active.append(rule)
            if rule.priority:
                prioritised = True
    # Within a stage, higher priority first; the sort is stable, so ties keep document order.
    if prioritised:
        active.sort(key=_by_priority)
    # A rule with `stop` that applied: `halt` switches off the rest of its stage, `halt_all` every
    # later stage too, except the caps (a cap is a limit, not an earning rule).
    halt_all: str | None = None
    stopped: set[str] = set()

    # Stage 2: exclusions and the part paid with points.
    excluded: set[str] = set()
    halt: str | None = None
    for rule in (r for r in active if r.kind == "exclude"):
        if halt is not None:
            steps.append(_stopped(rule, halt))
            continue
        dropped = [
            ln for ln in lines if ln.id not in excluded and rule.match.matches(ln.sku, ln.category)
        ]
        if not dropped:
            steps.append(_skipped(rule, "no line matches", condition="no_line"))
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
        if rule.stop is not None:
            halt = rule.id
            halt_all = rule.id if rule.stop == "all" else None
    eligible = [Decimal(0) if ln.id in excluded else ln.amount for ln in lines]
    eligible_total = sum(eligible, Decimal(0))
    # A rate scoped to some lines earns on their part of what was not paid with points: their
    # full amounts × kept / whole, divided once, so all the lines give exactly the whole
    # amount (a sum of per-line scaled Decimals can miss it by 1e-24, and tip a rounding).
    full = list(eligible)
    whole = eligible_total
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

    # Stage 3: the base rates. "first": each line earns by the first base rate that applies to it
    # (a rate without `only` takes every line still free); "sum": each rate earns on its lines.
    summing = doc.base_rates == "sum"
    line_base = [0] * len(lines)
    first_rate: str | None = None  # the first base rate that applied
    taken_all = False  # "first": a rate without `only` applied, no line is left
    earned_on: set[int] = set()  # "first": the lines a scoped rate already earned on
    halt = halt_all
    for rule in (r for r in active if isinstance(r, BaseRate)):
        if halt is not None:
            steps.append(_stopped(rule, halt))
            continue
        if taken_all:
            steps.append(_first_rate_won(rule, first_rate))
            continue
        on_lines: list[int] | None = None  # None: every line, on the whole eligible amount
        if rule.only is not None:
            if not order.lines:
                reason = "the order has no lines, so no line can match only"
                steps.append(_skipped(rule, reason, condition="only_no_lines"))
                continue
            on_lines = [
                i
                for i, ln in enumerate(lines)
                if ln.id not in excluded and rule.only.matches(ln.sku, ln.category)
            ]
            if not on_lines:
                text = _described(rule.only)
                reason = f"no line matches only ({text})"
                steps.append(_skipped(rule, reason, condition="only_no_line", only_text=text))
                continue
        elif earned_on:
            on_lines = [i for i, ln in enumerate(lines) if ln.id not in excluded]
        if on_lines is not None and earned_on and not summing:
            on_lines = [i for i in on_lines if i not in earned_on]
            if not on_lines:
                steps.append(_first_rate_won(rule, first_rate))
                continue
        weights = eligible
        amount = eligible_total
        if on_lines is not None:
            weights = [Decimal(0)] * len(lines)
            for i in on_lines:
                weights[i] = eligible[i]
            amount = sum((full[i] for i in on_lines), Decimal(0))
            if whole and eligible_total != whole:
                amount = amount * eligible_total / whole
        if rule.mode == "per_full_unit":
            full_units = (amount / rule.per_amount).to_integral_value(rounding=ROUND_FLOOR)
            result = int(full_units) * rule.points
            how = f": {rule.points} points for each full {_grouped(rule.per_amount)}"
        else:
            result = round_points(amount * rule.points / rule.per_amount, Rounding(rule.rounding))
            how = f" × {rule.points}/{_grouped(rule.per_amount)}, rounded {rule.rounding}"
        scope: dict[str, Any] = {}
        on = ""
        if on_lines is not None:
            ids = [lines[i].id for i in on_lines]
            scope["lines"] = ids
            on = f"lines {', '.join(ids)}: "
            if rule.only is not None:
                scope["only"] = rule.only.model_dump(mode="json")
        steps.append(
            _step(
                rule,
                True,
                f"{on}{_grouped(amount)} {order.currency}{how} = {result}",
                amount=_num(amount),
                currency=order.currency,
                points_per=rule.points,
                per_amount=_num(rule.per_amount),
                mode=rule.mode,
                rounding=rule.rounding,
                result=result,
                **scope,
            )
        )
        if result:
            # Each rate's points are split over its own lines in proportion to their amounts.
            shares = split_proportionally(result, weights)
            line_base = [a + b for a, b in zip(line_base, shares, strict=True)]
        first_rate = first_rate or rule.id
        if not summing:
            if on_lines is None:
                taken_all = True
            else:
                earned_on.update(on_lines)
        if rule.stop is not None:
            halt = rule.id
            halt_all = rule.id if rule.stop == "all" else halt_all

    # Stage 4: product multipliers on the base points of matched lines.
    per_line_factors: list[list[Decimal]] = [[] for _ in lines]
    halt = halt_all
    for rule in (r for r in active if isinstance(r, ProductMultiplier)):
        if halt is not None:
            steps.append(_stopped(rule, halt))
            continue
        chosen = [
            i
            for i, ln in enumerate(lines)
            if ln.id not in excluded and rule.match.matches(ln.sku, ln.category)
        ]
        if not chosen:
            steps.append(_skipped(rule, "no line matches", condition="no_line"))
            continue
        if rule.stop is not None:
            halt = rule.id
            halt_all = rule.id if rule.stop == "all" else halt_all
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
    factor_stops: list[dict[str, Any]] = []
    if prioritised or halt_all is not None or any(r.stop for r, _ in factor_rules):
        factor_rules, halt_all = _stop_factors(factor_rules, halt_all, factor_stops)
        stopped.update(step["rule"] for step in factor_stops)
        if stopped:
            # A stopped promotion gives neither its factor nor its bonus, nor uses its budget.
            active = [r for r in active if r.id not in stopped]
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
    steps.extend(factor_stops)
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

    # Stage 6 is planned before the budgets, as a stop among the fixed points decides which
    # budgeted promotions give anything: product bonuses, then promotion and order bonuses. A
    # promotion with a factor belongs to stage 5, and its bonus comes with it.
    fixed: list[tuple[Any, list[tuple[int, int]], str | None]] = []
    halt = halt_all
    for rule in _fixed_rules(active, prioritised):
        own_stage = not (isinstance(rule, Promotion) and rule.factor != ONE)
        if own_stage and halt is not None:
            fixed.append((rule, [], halt))
            stopped.add(rule.id)
            continue
        per_unit: list[tuple[int, int]] = []
        if isinstance(rule, ProductBonus):
            per_unit = [
                (i, int(ln.quantity.to_integral_value(rounding=ROUND_FLOOR)))
                for i, ln in enumerate(lines)
                if ln.id not in excluded and rule.match.matches(ln.sku, ln.category)
            ]
            if not any(count for _, count in per_unit):
                fixed.append((rule, [], None))  # no line matches
                continue
        fixed.append((rule, per_unit, None))
        if own_stage and rule.stop is not None:
            halt = rule.id  # "all" as "stage": only the caps come later, and caps always apply
    if halt is not None and stopped:
        active = [r for r in active if r.id not in stopped]

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
    for rule, per_unit, by in fixed:
        if by is not None:
            steps.append(_stopped(rule, by))
            continue
        if not isinstance(rule, ProductBonus):
            added = rule.bonus_points if isinstance(rule, Promotion) else rule.points
            points += added
            steps.append(_step(rule, True, f"+{added}", added=added, after=points))
            continue
        unit_count = sum(count for _, count in per_unit)
        if unit_count == 0:
            steps.append(_skipped(rule, "no line matches", condition="no_line"))
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
            _give_back(budget_used, removed)
        else:
            steps.append(
                _skipped(
                    rule,
                    f"{points} is within the {rule.per.replace('_', ' ')} limit ({allowed} left)",
                    condition="cap_within",
                    earned=points,
                    per=rule.per,
                    left=allowed,
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


def _give_back(budget_used: dict[str, int], removed: int) -> None:
    """What a cap removes comes out of the budgeted promotions' use first (what they gave is
    what a cap takes back before the other points), shared in proportion to what each gave,
    the odd points by rule id: so the charge depends on neither the promotions' order nor on
    which of them came last (tests/rules/test_cap_budget_fairness.py)."""
    back = min(removed, sum(budget_used.values()))
    if back <= 0:
        return
    ids = sorted(budget_used)
    parts = split_proportionally(back, [Decimal(budget_used[i]) for i in ids])
    for rule_id, part in zip(ids, parts, strict=True):
        budget_used[rule_id] -= part


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
