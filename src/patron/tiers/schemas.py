"""Tier setup, manual changes, history and evaluation: what the API and CLI exchange."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from patron.programs.schemas import ExpiryPolicy

TIER_CODE = r"^[a-z0-9][a-z0-9_-]{0,39}$"
Metric = Literal["points", "spend", "visits"]
WindowKind = Literal["half_year", "year", "rolling", "lifetime"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PolicyIn(Strict):
    metric: Metric = Field(
        description="points: qualifying points earned; spend: amount bought; "
        "visits: purchases not fully refunded"
    )
    window: WindowKind = Field(
        description="half_year (Jan–Jun, Jul–Dec), year, rolling "
        "(rolling_months) or lifetime, in the program's timezone"
    )
    rolling_months: int = Field(12, ge=1, le=120)
    upgrade: Literal["immediate", "next_period"] = Field(
        "immediate",
        description="immediate: as soon as the threshold is reached in the window; "
        "next_period: at the period evaluation",
    )
    downgrade: Literal["to_earned", "one_level", "grace"] = Field(
        "to_earned",
        description="to_earned: the tier earned in the window; one_level: at most one "
        "level down per period; grace: keep for grace_periods more periods, then to_earned",
    )
    grace_periods: int = Field(1, ge=0, le=20)
    manual: Literal["keep", "reevaluate"] = Field(
        "keep",
        description="keep: a manual tier is kept until its end date; reevaluate: the next "
        "evaluation treats it like any other",
    )


class TierNames(Strict):
    en: str = Field(min_length=1, max_length=80)
    ko: str | None = Field(None, min_length=1, max_length=80)
    zh: str | None = Field(None, min_length=1, max_length=80)


class TierIn(Strict):
    code: str = Field(pattern=TIER_CODE, description="e.g. silver; what Account.tier holds")
    names: TierNames
    threshold: int = Field(
        ge=0,
        le=10**15,
        description="In the policy's metric: points, minor currency units, or purchases",
    )
    multiplier: Decimal = Field(
        Decimal(1),
        ge=0,
        le=100,
        max_digits=9,
        decimal_places=4,
        description="Earning multiplier the rules engine applies",
    )
    extra_expiry_months: int = Field(
        0,
        ge=0,
        le=120,
        description="Months added to the expiry of points earned in this tier, on top of "
        "whichever policy applies (the tier's own `expiry`, else the program's)",
    )
    expiry: ExpiryPolicy | None = Field(
        None,
        description="The tier's own expiry policy for points its members earn, as the "
        "program's; none: the program's policy. A `rolling` policy applies to all the open "
        "points of the members holding the tier (see docs/concepts.md, rolling expiry)",
    )
    benefits: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=50, description="Lines to show members"
    )


class TierSetup(Strict):
    """The program's whole tier configuration; PUT replaces the previous one."""

    policy: PolicyIn
    tiers: list[TierIn] = Field(
        min_length=1,
        max_length=50,
        description="Lowest first: thresholds strictly increasing, the first one 0",
    )


class PolicyOut(PolicyIn):
    model_config = ConfigDict(extra="ignore")


class TierOut(BaseModel):
    code: str
    names: dict[str, str]
    rank: int
    threshold: int
    multiplier: Decimal
    extra_expiry_months: int
    expiry: ExpiryPolicy | None = None
    benefits: list[str]


class TierSetupOut(BaseModel):
    program: str
    policy: PolicyOut | None
    tiers: list[TierOut]


class ManualTierRequest(Strict):
    tier: str = Field(pattern=TIER_CODE)
    reason: str = Field(min_length=3, max_length=500, description="Why (kept in the audit trail)")
    until: date | None = Field(
        None,
        description="Last local day the manual tier is kept "
        "(policy manual=keep); none: until changed again",
    )


class TierChangeOut(BaseModel):
    id: int
    from_tier: str | None
    to_tier: str | None
    at: datetime
    reason: str
    note: str | None
    actor: str
    period: str | None
    metric_value: int | None


class MemberTierOut(BaseModel):
    member_id: int
    tier: str | None
    tier_since: datetime | None
    tier_valid_until: datetime | None
    manual: bool
    manual_until: datetime | None
    change: TierChangeOut | None = None


class EvaluateRequest(Strict):
    as_of: datetime | date | None = Field(
        None,
        description="Evaluate the window that ended most recently at or before this "
        "instant (a date: its local midnight); default now",
    )
    dry_run: bool = False


class EvaluationSummary(BaseModel):
    program: str
    period: str
    window_start: datetime
    window_end: datetime | None
    as_of: datetime
    dry_run: bool
    status: str = Field(description="done, or running if interrupted (run again to resume)")
    already_done: bool = Field(
        False,
        description="This period was evaluated before: nothing "
        "changed, the stored summary is returned",
    )
    accounts: int
    moves: dict[str, int] = Field(description='Accounts per move, e.g. {"silver→gold": 12}')
    kept_in_grace: int
    kept_manual: int
    manual_ended: int
