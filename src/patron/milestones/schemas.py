"""What a milestone is made of, as the API and the admin editor take it, and what progress and
a job run answer."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CODE = r"^[a-z0-9][a-z0-9_-]{0,39}$"
Kind = Literal["visits", "spend", "points", "stores", "streak"]
Window = Literal["ever", "month", "rolling"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Texts(Strict):
    """One text per language (ko, zh, en); the badge's name needs at least one."""

    ko: str | None = Field(None, max_length=200)
    zh: str | None = Field(None, max_length=200)
    en: str | None = Field(None, max_length=200)

    def given(self) -> dict[str, str]:
        return {k: v.strip() for k, v in self.model_dump().items() if v and v.strip()}


class MilestoneIn(Strict):
    code: str = Field(pattern=CODE, description="e.g. ten-visits")
    status: Literal["active", "archived"] = "active"
    kind: Kind = Field(
        description="visits: purchases not fully refunded; spend: amount bought less refunds "
        "(minor units); points: qualifying points earned; stores: bought in every one of "
        "`stores` (empty: every store of the program); streak: `target` calendar months in a "
        "row (program timezone) with at least one purchase"
    )
    target: int = Field(
        0, ge=0, le=10**12, description="The figure to reach; stores: 0 (all the stores)"
    )
    stores: list[str] = Field(default_factory=list, max_length=100)
    window: Window = Field("ever", description="ever | month (calendar, program tz) | rolling")
    window_days: int | None = Field(None, ge=1, le=3650, description="rolling: the last N days")
    repeat: bool = Field(False, description="month only: can be achieved again every month")
    names: Texts
    descriptions: Texts = Field(default_factory=Texts)
    points: int = Field(0, ge=0, le=10**9, description="Points credited when achieved")
    reward: str | None = Field(None, max_length=40, description="A reward's code: one coupon")

    @model_validator(mode="after")
    def _consistent(self) -> MilestoneIn:
        if not self.names.given():
            raise ValueError("names: give the badge a name in at least one language")
        if self.kind == "stores":
            if self.target != 0:
                raise ValueError("target: a stores goal is every listed store; leave target 0")
        elif self.target < 1:
            raise ValueError("target: must be at least 1")
        elif self.stores:
            raise ValueError("stores: only a stores goal lists stores")
        if self.kind == "streak":
            if self.window != "ever":
                raise ValueError("window: a streak counts months in a row: window must be ever")
            if self.target > 120:
                raise ValueError("target: a streak is at most 120 months")
        if (self.window == "rolling") != (self.window_days is not None):
            raise ValueError("window_days: given exactly when window is rolling")
        if self.repeat and self.window != "month":
            raise ValueError("repeat: only a month goal can be achieved again (every month)")
        if len(set(self.stores)) != len(self.stores):
            raise ValueError("stores: a store is listed twice")
        return self


class MilestoneOut(MilestoneIn):
    version: int
    updated_at: datetime
    updated_by: str
    achievers: int | None = Field(None, description="Members who achieved it (any period)")


class ProgressItem(BaseModel):
    code: str
    kind: str
    names: dict[str, str]
    descriptions: dict[str, str]
    name: str = Field(description="In the requested language (else English, else any)")
    description: str
    window: str
    repeat: bool
    period: str = Field(description="ever, or the month being counted (YYYY-MM)")
    target: int
    value: int = Field(description="The member's figure for the period so far")
    percent: int = Field(description="0–100")
    achieved: bool = Field(description="Achieved (this month, for a repeated goal)")
    achieved_at: datetime | None
    times: int = Field(description="How often achieved (repeated goals: months)")
    points: int
    reward: str | None


class ProgressOut(BaseModel):
    member_id: int
    items: list[ProgressItem]


class RunItem(BaseModel):
    milestone: str
    period: str
    achieved: int = Field(description="New achievements written by this run")
    points: int = Field(description="Points credited for them")
    coupons: int
    seconds: float


class RunOut(BaseModel):
    program: str
    items: list[RunItem]
