"""What a campaign is made of, as the API and the admin form take it, and its results."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from patron.rules.model import Rule

CODE = r"^[a-z0-9][a-z0-9_-]{0,39}$"
ARM = r"^[a-z][a-z0-9_]{0,19}$"
CONTROL = "control"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Action(Strict):
    """What the members of an arm get: bonus points (one adjustment each), a coupon of a
    reward (issued without points), earning rules (a rule experiment: while the campaign runs,
    the arm's members earn by the program's rule set plus these rules), or nothing (a variant
    that only measures)."""

    kind: Literal["points", "coupon", "rules", "none"]
    points: int | None = Field(None, ge=1, le=1_000_000)
    reward: str | None = Field(None, max_length=40, description="The reward's code (coupon)")
    rules: list[Rule] | None = Field(
        None,
        min_length=1,
        max_length=20,
        description="Earning rules (rules): the same JSON as the rule set's rules; added to the "
        "program's rule set for the arm's members while the campaign runs. No event rules and "
        "no promotion budgets: the campaign's results count what they cost.",
    )

    @model_validator(mode="after")
    def _fields(self) -> Action:
        if self.kind == "points" and self.points is None:
            raise ValueError("a points action needs points")
        if self.kind == "coupon" and not self.reward:
            raise ValueError("a coupon action needs a reward")
        if self.kind == "rules" and not self.rules:
            raise ValueError("a rules action needs rules")
        if self.kind != "points":
            self.points = None
        if self.kind != "coupon":
            self.reward = None
        if self.kind != "rules":
            self.rules = None
        return self


class Variant(Strict):
    key: str = Field(pattern=ARM, description="e.g. a, b, coupon")
    name: str = Field("", max_length=100)
    share: int = Field(ge=1, le=100, description="Percent of the members outside the holdout")
    action: Action
    message: bool = Field(
        False,
        description="Send the arm's members a campaign.offer message at launch (and live "
        "members as they join): e-mail or SMS by the program's notification settings, with "
        "marketing consent only",
    )


class CampaignIn(Strict):
    code: str = Field(pattern=CODE)
    name: str = Field(min_length=1, max_length=200)
    segment: str = Field(min_length=1, max_length=40, description="The target segment's code")
    targeting: Literal["snapshot", "live"] = Field(
        "snapshot",
        description="snapshot: the segment's members at launch; live: members who enter the "
        "segment while the campaign runs join it too (the run job)",
    )
    starts_at: AwareDatetime | None = Field(None, description="Default: at launch")
    ends_at: AwareDatetime | None = None
    budget_points: int | None = Field(None, ge=0, le=10**12, description="None: no limit")
    budget_coupons: int | None = Field(None, ge=0, le=10**9, description="None: no limit")
    holdout_pct: int = Field(10, ge=0, le=50, description="Control group, given nothing")
    variants: list[Variant] = Field(min_length=1, max_length=5)

    @model_validator(mode="after")
    def _consistent(self) -> CampaignIn:
        keys = [v.key for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError("variant keys must be unique")
        if CONTROL in keys:
            raise ValueError("'control' is the holdout's name, not a variant key")
        if sum(v.share for v in self.variants) != 100:
            raise ValueError("the variants' shares must add up to 100")
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class CampaignOut(BaseModel):
    code: str
    name: str
    status: str = Field(description="draft | scheduled | running | stopped | ended")
    segment: str
    targeting: str
    snapshot_id: int | None
    starts_at: datetime | None
    ends_at: datetime | None
    budget_points: int | None
    budget_coupons: int | None
    holdout_pct: int
    variants: list[Variant]
    points_given: int
    coupons_given: int
    members: int = Field(description="Members assigned to an arm so far")
    launched_at: datetime | None
    launched_by: str | None
    stopped_at: datetime | None
    version: int
    updated_at: datetime
    updated_by: str


class ReachOut(BaseModel):
    """What a launch would do now: the segment's members and each arm's expected size, and
    the most the budget allows."""

    segment: str
    members: int
    arms: dict[str, int]
    points_needed: int
    coupons_needed: int
    budget_points: int | None
    budget_coupons: int | None


class ArmResult(BaseModel):
    arm: str
    name: str
    action: str
    members: int
    reached: int
    points_given: int = Field(description="Bonus points given at launch (a points action)")
    rule_points: int = Field(
        description="Points the arm's earning rules added to its members' sales (a rules "
        "action), net of the program's own rules"
    )
    messages: int = Field(description="campaign.offer messages queued for the arm's members")
    coupons_given: int
    coupons_redeemed: int
    coupon_redemption_rate: float | None
    visits: int
    visits_per_member: float
    visit_rate: float = Field(description="Share of the arm's members with a visit")
    visit_rate_lo: float
    visit_rate_hi: float
    spend: Decimal
    spend_per_member: Decimal
    points_cost: int = Field(
        description="Campaign bonus points plus points earned in the window (which include "
        "what a rule arm's rules added)"
    )
    points_cost_per_member: float


class Uplift(BaseModel):
    arm: str
    metric: Literal["visits", "spend", "points_cost", "visit_rate"]
    unit: Literal["%", "pp"] = Field(description="% relative to control; pp percentage points")
    estimate: float | None
    lo: float | None
    hi: float | None
    finding: Literal["raised", "lowered", "unclear", "not_enough"]
    verdict: str


class ResultsOut(BaseModel):
    campaign: str
    status: str
    period: Literal["during", "after"]
    window_from: datetime | None
    window_to: datetime | None
    confidence: float
    method: str
    currency: str
    arms: list[ArmResult]
    uplifts: list[Uplift]
