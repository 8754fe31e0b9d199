"""A program's rule set as data: what every rule kind looks like, validated with exact field names.

A rule set is a JSON (or YAML) document:

    {"combine": "multiply", "rounding": "down",
     "rules": [{"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"}, ...]}

Every rule has an `id`, can be switched off with `enabled: false`, and may be limited to a date
window (`starts`/`ends`, local dates, inclusive), stores, channels, payment methods and member or
order conditions. The engine (`patron.rules.engine`) applies the kinds in a fixed order of stages;
`docs/rules.md` describes the stages and how factors combine.
"""

from __future__ import annotations

import re
from datetime import date, time
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RULE_ID = r"^[a-z0-9][a-z0-9_-]{0,59}$"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Factor = Annotated[Decimal, Field(ge=0, le=100, max_digits=9, decimal_places=4)]
Points = Annotated[int, Field(ge=0, le=10_000_000)]
Money = Annotated[Decimal, Field(ge=0, le=Decimal("1e13"), max_digits=18, decimal_places=4)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Match(Strict):
    """Which basket lines a product rule is about: any sku or any category listed."""

    skus: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(
        default_factory=list, max_length=1000
    )
    categories: list[Annotated[str, Field(min_length=1, max_length=80)]] = Field(
        default_factory=list, max_length=1000
    )

    @model_validator(mode="after")
    def _not_empty(self) -> Match:
        if not self.skus and not self.categories:
            raise ValueError("match needs at least one sku or category")
        return self

    def matches(self, sku: str | None, category: str | None) -> bool:
        return (sku is not None and sku in self.skus) or (
            category is not None and category in self.categories
        )


class MinItems(Strict):
    """At least `count` units of the matched lines in the order."""

    match: Match
    count: Decimal = Field(gt=0, le=1_000_000)


class RecentPurchases(Strict):
    """How many earlier purchases the member made in the last `days` days before the sale:
    those at most `days` × 24 hours before it (both ends included)."""

    days: int = Field(ge=1, le=3650, description="The window: this many days before the sale")
    min: int | None = Field(None, ge=0, le=1_000_000, description="At least this many in it")
    max: int | None = Field(None, ge=0, le=1_000_000, description="At most this many in it")

    @model_validator(mode="after")
    def _bounded(self) -> RecentPurchases:
        if self.min is None and self.max is None:
            raise ValueError("give min and/or max: how many purchases in the window")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(
                f"min ({self.min}) is above max ({self.max}): the condition could never hold"
            )
        return self


class Conditions(Strict):
    """Eligibility: every condition given must hold for the rule to apply."""

    min_amount: Money | None = Field(None, description="Order total at least this much")
    min_items: MinItems | None = None
    tiers: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        None, max_length=50, description="Member's tier code is one of these"
    )
    attributes: dict[str, Any] | None = Field(
        None, description="Member attributes equal to these values"
    )
    joined_within_days: int | None = Field(
        None, ge=0, le=36500, description="Member joined at most this many days ago"
    )
    birthday_month: bool | None = Field(
        None, description="The sale is in the member's birthday month"
    )
    min_purchases: int | None = Field(
        None, ge=0, le=1_000_000, description="Member made at least this many earlier purchases"
    )
    # Purchase counts (docs/rules.md, "Purchase-count conditions"). "Earlier purchases" are the
    # member's recorded purchases that happened at or before this sale, this one not included;
    # a refund does not take one back.
    first_purchase: bool | None = Field(
        None,
        description="true: only the member's first purchase (no earlier purchase); "
        "false: only from the second purchase on",
    )
    nth_purchase: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Only the member's Nth purchase (exactly N - 1 earlier purchases)",
    )
    within_first_purchases: int | None = Field(
        None,
        ge=1,
        le=1_000_000,
        description="Only while this sale is one of the member's first N purchases "
        "(at most N - 1 earlier purchases)",
    )
    recent_purchases: RecentPurchases | None = Field(
        None,
        description="The member's earlier purchases in the last `days` days before this sale "
        "are at least `min` and/or at most `max`",
    )

    # Segments (docs/rules.md, "Segment conditions"; patron.segments): the member is in at least
    # one of them, as a live membership at the time of the sale.
    segments: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]] | None = Field(
        None,
        min_length=1,
        max_length=50,
        description="The member is in at least one of these segments (codes) at the time of "
        "the sale",
    )

    def counts_purchases(self) -> bool:
        """Whether any condition reads the member's earlier purchases."""
        return (
            self.min_purchases is not None
            or self.first_purchase is not None
            or self.nth_purchase is not None
            or self.within_first_purchases is not None
            or self.recent_purchases is not None
        )

    @model_validator(mode="after")
    def _purchase_counts_can_hold(self) -> Conditions:
        # The earlier-purchase counts each condition allows; an empty range could never apply.
        low, high, named = 0, 10**9, []
        if self.min_purchases is not None:
            low = max(low, self.min_purchases)
            named.append(f"min_purchases {self.min_purchases}")
        if self.first_purchase is not None:
            if self.first_purchase:
                high = min(high, 0)
            else:
                low = max(low, 1)
            named.append(f"first_purchase {str(self.first_purchase).lower()}")
        if self.nth_purchase is not None:
            low, high = max(low, self.nth_purchase - 1), min(high, self.nth_purchase - 1)
            named.append(f"nth_purchase {self.nth_purchase}")
        if self.within_first_purchases is not None:
            high = min(high, self.within_first_purchases - 1)
            named.append(f"within_first_purchases {self.within_first_purchases}")
        recent = self.recent_purchases
        if recent is not None and recent.min is not None and recent.min > 0:
            # Purchases in a window are earlier purchases too.
            low = max(low, recent.min)
            named.append(f"recent_purchases min {recent.min}")
        if low > high:
            raise ValueError(f"{', '.join(named)} can never all hold: the rule could never apply")
        return self


class RuleBase(Strict):
    id: str = Field(pattern=RULE_ID, description="Unique within the rule set; shown in breakdowns")
    name: str | None = Field(None, max_length=200)
    enabled: bool = True
    starts: date | None = Field(None, description="First local date the rule applies (inclusive)")
    ends: date | None = Field(None, description="Last local date the rule applies (inclusive)")
    stores: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        None, max_length=500
    )
    channels: list[Literal["pos", "online", "app"]] | None = Field(None, max_length=3)
    payment_methods: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        None, max_length=50
    )
    conditions: Conditions | None = None
    # Order within a stage and "stop here" (docs/rules.md, "Scoped rates, summed rates, priority
    # and stop"). A priority of 0 is left out of stored documents, so older ones stay as they were.
    priority: int = Field(
        0,
        ge=-1000,
        le=1000,
        exclude_if=lambda value: value == 0,
        description="Within a stage, higher priority first; ties keep document order",
    )
    stop: Literal["stage", "all"] | None = Field(
        None,
        description="When this rule applies, later rules of the same stage (stage) or of this "
        "and every later stage (all) do not apply; caps always apply",
    )

    @model_validator(mode="after")
    def _window(self) -> RuleBase:
        if self.starts and self.ends and self.ends < self.starts:
            raise ValueError(
                f"ends ({self.ends}) is before starts ({self.starts}): the rule could never apply"
            )
        for name in ("stores", "channels", "payment_methods"):
            if getattr(self, name) == []:
                raise ValueError(f"{name} is empty: the rule could never apply (omit it for all)")
        return self


class BaseRate(RuleBase):
    """Points for the order's eligible amount (or that of the lines in `only`). By the rule set's
    `base_rates`, each line earns by the first base rate that applies to it, or by every one."""

    kind: Literal["base_rate"]
    mode: Literal["per_full_unit", "proportional"] = "per_full_unit"
    points: Points
    per_amount: Decimal = Field(gt=0, le=Decimal("1e13"), max_digits=18, decimal_places=4)
    rounding: Literal["down", "half_up", "up"] = "down"
    only: Match | None = Field(
        None, description="Lines this rate earns on; all lines not excluded when omitted"
    )


class Exclude(RuleBase):
    """Matched lines earn nothing (gift cards, tobacco)."""

    kind: Literal["exclude"]
    match: Match


class ProductBonus(RuleBase):
    """Fixed extra points per unit of the matched lines (seasonal cake: +200)."""

    kind: Literal["product_bonus"]
    match: Match
    points_per_unit: Points
    qualifying: bool = Field(True, description="Points from this rule count towards tiers")


class ProductMultiplier(RuleBase):
    """Multiply the base points of the matched lines."""

    kind: Literal["product_multiplier"]
    match: Match
    factor: Factor


class TierMultiplier(RuleBase):
    """A factor by the member's tier code (silver 1.5, gold 2); other tiers ×1."""

    kind: Literal["tier_multiplier"]
    factors: dict[Annotated[str, Field(min_length=1, max_length=40)], Factor] = Field(min_length=1)


def _every_day() -> list[Day]:
    return ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class TimeWeight(RuleBase):
    """A factor on given weekdays and/or hours, in the program's timezone."""

    kind: Literal["time_weight"]
    days: list[Day] = Field(default_factory=_every_day, min_length=1, max_length=7)
    from_time: time | None = Field(None, description="Local time of day, inclusive")
    to_time: time | None = Field(None, description="Local time of day, exclusive")
    factor: Factor

    @model_validator(mode="after")
    def _hours(self) -> TimeWeight:
        if (self.from_time is None) != (self.to_time is None):
            raise ValueError("give both from_time and to_time, or neither")
        if self.from_time is not None and self.from_time == self.to_time:
            raise ValueError("from_time equals to_time: the window is empty")
        return self


class Promotion(RuleBase):
    """A factor and/or a fixed bonus per order over a date range, with an optional budget."""

    kind: Literal["promotion"]
    factor: Factor = Decimal(1)
    bonus_points: Points = 0
    budget_points: int | None = Field(
        None, ge=1, le=10**12, description="Stops once it has given this many extra points"
    )
    qualifying: bool = Field(True, description="Points from this rule count towards tiers")
    with_coupons: bool = Field(
        True, description="Also on orders that use coupons; false: not when a coupon is used"
    )

    @model_validator(mode="after")
    def _does_something(self) -> Promotion:
        if self.factor == 1 and self.bonus_points == 0:
            raise ValueError("a promotion needs a factor other than 1 or bonus_points")
        return self


class OrderBonus(RuleBase):
    """Fixed points for an order that meets the conditions (at least 50,000 KRW; 3 cakes)."""

    kind: Literal["order_bonus"]
    points: Points = Field(gt=0)
    qualifying: bool = Field(True, description="Points from this rule count towards tiers")
    with_coupons: bool = Field(
        True, description="Also on orders that use coupons; false: not when a coupon is used"
    )


class Cap(RuleBase):
    """An upper bound on purchase points: per order, or per member per day/month/year."""

    kind: Literal["cap"]
    per: Literal["order", "member_day", "member_month", "member_year"]
    max_points: int = Field(ge=0, le=10**12)

    @model_validator(mode="after")
    def _no_stop(self) -> Cap:
        # A cap is a limit, not an earning rule: every cap always applies, and none switches off
        # another (a stop could only ever let a sale earn more than a limit allows).
        if self.stop is not None:
            raise ValueError("stop does not apply to a cap: caps are limits and always all apply")
        return self


class Event(RuleBase):
    """Fixed points for something that is not a purchase, recorded through the events API."""

    kind: Literal["event"]
    event: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,59}$",
        description="signup, birthday, profile_completed, review, newsletter, "
        "referral or any custom name",
    )
    points: int = Field(gt=0, le=10_000_000)
    limit: Literal["once", "per_day", "per_month", "per_year", "unlimited"] = "once"
    qualifying: bool = Field(True, description="Points from this rule count towards tiers")

    @model_validator(mode="after")
    def _no_stop(self) -> Event:
        if self.stop is not None:
            raise ValueError(
                "stop does not apply to an event rule: events are not part of a purchase's stages"
            )
        return self


Rule = Annotated[
    BaseRate
    | Exclude
    | ProductBonus
    | ProductMultiplier
    | TierMultiplier
    | TimeWeight
    | Promotion
    | OrderBonus
    | Cap
    | Event,
    Field(discriminator="kind"),
]
RULE_KINDS = (
    "base_rate",
    "exclude",
    "product_bonus",
    "product_multiplier",
    "tier_multiplier",
    "time_weight",
    "promotion",
    "order_bonus",
    "cap",
    "event",
)


class RedemptionRules(Strict):
    """Where and on what points may pay; point value, minimum, step and share are program settings."""

    excluded: Match | None = Field(None, description="Lines that cannot be paid with points")
    stores: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        None, max_length=500
    )
    channels: list[Literal["pos", "online", "app"]] | None = Field(None, max_length=3)


class RuleSetDoc(Strict):
    """The editable document: how factors combine, final rounding, the rules in order."""

    combine: Literal["multiply", "add"] = Field(
        "multiply",
        description="How order factors (tier, time, promotion) combine: multiply "
        "(×1.5 and ×2 → ×3) or add their extra parts (×1.5 and ×2 → ×2.5)",
    )
    rounding: Literal["down", "half_up", "up"] = Field(
        "down", description="Rounding of purchase points after factors"
    )
    base_rates: Literal["first", "sum"] = Field(
        "first",
        exclude_if=lambda value: value == "first",
        description="first: each line earns by the first applicable base rate (the first "
        "applicable base rate wins); sum: every applicable base rate adds its points",
    )
    rules: list[Rule] = Field(default_factory=list, max_length=200)
    redemption: RedemptionRules = Field(default_factory=RedemptionRules)

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for index, rule in enumerate(rules):
            if rule.id in seen:
                raise ValueError(f"rules[{index}].id {rule.id!r} is used twice")
            seen.add(rule.id)
        events = [r.event for r in rules if r.kind == "event" and r.enabled]
        for name in events:
            if events.count(name) > 1:
                raise ValueError(f"two enabled event rules for event {name!r}")
        return rules


def rule_label(rule: Any) -> str:
    return rule.name or re.sub(r"[-_]", " ", rule.id)
