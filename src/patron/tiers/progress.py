"""A member's tier progress: where they stand in the current window and what it takes to move.

Read-only: nothing here changes a tier. The numbers are those the evaluation job would use
(`metrics.metric_values` over `periods.window_at`), so what a member sees is what they get.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.errors import NotFound
from patron.ledger.models import Account
from patron.money import quantum
from patron.programs.models import Program
from patron.tiers.metrics import metric_values, qualify
from patron.tiers.models import TierDefinition, TierPolicy
from patron.tiers.periods import Window, window_at
from patron.tiers.schemas import TierOut
from patron.tiers.service import _tier_out, held_until

UNIT_BY_METRIC = {"points": "points", "visits": "purchases"}  # spend: the program's currency


class TiersNotConfigured(NotFound):
    code = "tiers_not_configured"


@dataclass(frozen=True)
class TierConfig:
    """A program's policy and its tiers, lowest rank first."""

    policy: TierPolicy
    tiers: list[TierDefinition]

    @property
    def entry(self) -> TierDefinition:
        return self.tiers[0]

    def by_code(self, code: str | None) -> TierDefinition | None:
        return next((t for t in self.tiers if t.code == code), None) if code else None

    def above(self, rank: int) -> TierDefinition | None:
        """The lowest tier ranked strictly above `rank`."""
        return next((t for t in self.tiers if t.rank > rank), None)


def load_config(session: Session, program: Program) -> TierConfig:
    policy = session.scalars(select(TierPolicy).where(TierPolicy.program_id == program.id)).first()
    tiers = list(
        session.scalars(
            select(TierDefinition)
            .where(TierDefinition.program_id == program.id)
            .order_by(TierDefinition.rank, TierDefinition.id)
        )
    )
    if policy is None or not tiers:
        raise TiersNotConfigured(
            f"program {program.code} has no tiers configured; "
            f"set them with PUT /api/v1/programs/{program.code}/tiers"
        )
    return TierConfig(policy, tiers)


def unit(metric: str, currency: str) -> str:
    """What a metric value counts: points, purchases, or money in the program's currency."""
    return UNIT_BY_METRIC.get(metric, currency)


def as_money(metric: str, value: int, currency: str) -> Decimal | None:
    """Spend values are minor units; show them as money too (KRW 0 decimals, CNY 2)."""
    if metric != "spend":
        return None
    return Decimal(value) * quantum(currency)


class WindowOut(BaseModel):
    kind: str = Field(description="half_year | year | rolling | lifetime")
    key: str = Field(description="e.g. 2026H1, 2026, R2026-03-02, lifetime")
    start: datetime
    end: datetime | None = Field(description="Exclusive; null for lifetime")
    last_day: date | None = Field(description="The window's last local day (program timezone)")


class ProgressOut(BaseModel):
    program: str
    member_id: int
    metric: str = Field(description="points | spend | visits")
    unit: str = Field(description="points, purchases, or the currency code for spend")
    tier: TierOut | None = Field(description="The member's current tier (null: none yet)")
    tier_code: str | None = Field(description="Account's tier code, even if no longer defined")
    since: datetime | None
    valid_until: datetime | None
    manual: bool = Field(description="Set by staff (e.g. an appeal)")
    manual_until: datetime | None
    window: WindowOut
    value: int = Field(
        description="The metric so far in the current window, in `unit` (minor units for spend)"
    )
    value_money: Decimal | None = Field(None, description="Spend only: `value` as money")
    next_tier: TierOut | None = Field(
        description="The next tier above both the current and the projected tier; null at the top"
    )
    at_top: bool = Field(description="True when no tier is above: to_next is 0")
    to_next: int = Field(description="More needed in this window to reach next_tier; 0 at the top")
    to_next_money: Decimal | None = None
    to_keep: int = Field(
        description="More needed by the window's end to keep the current tier "
        "(its threshold minus value, at least 0)"
    )
    to_keep_money: Decimal | None = None
    projected_tier: TierOut | None = Field(
        description="The tier the value earns if the window ended now"
    )


def tier_out(tier: TierDefinition) -> TierOut:
    return _tier_out(tier)


def window_out(kind: str, window: Window, timezone: str) -> WindowOut:
    last_day = None
    if window.end is not None:
        last_day = (window.end - timedelta(microseconds=1)).astimezone(ZoneInfo(timezone)).date()
    return WindowOut(
        kind=kind, key=window.key, start=window.start, end=window.end, last_day=last_day
    )


def progress(session: Session, program: Program, account: Account, now: datetime) -> ProgressOut:
    setup = load_config(session, program)
    policy = setup.policy
    window = window_at(policy.window, now, program.timezone, rolling_months=policy.rolling_months)
    # The same set-based query the evaluation runs, narrowed to this one account.
    value = metric_values(
        session,
        program_id=program.id,
        metric=policy.metric,
        window=window,
        account_range=(account.id - 1, account.id),
    ).get(account.id, 0)
    current = setup.by_code(account.tier)
    projected = qualify(setup.tiers, value)
    # "Next" is above whichever is higher: a gold member earning silver numbers aims for
    # platinum, and a member whose numbers already earn gold (upgrade at the next period)
    # aims past gold.
    floor_rank = max(current.rank if current else -1, projected.rank if projected else -1)
    nxt = setup.above(floor_rank)
    to_next = max(nxt.threshold - value, 0) if nxt else 0
    to_keep = max(current.threshold - value, 0) if current else 0
    valid_until = held_until(session, account)
    if account.tier_manual and policy.manual == "keep" and account.tier_manual_until is None:
        # Kept by hand with no end date: the evaluation leaves it alone (it only raises it),
        # so it is valid until staff change it, and there is nothing to earn to keep it.
        valid_until, to_keep = None, 0
    money = program.currency
    return ProgressOut(
        program=program.code,
        member_id=account.member_id,
        metric=policy.metric,
        unit=unit(policy.metric, money),
        tier=tier_out(current) if current else None,
        tier_code=account.tier,
        since=account.tier_since,
        valid_until=valid_until,
        manual=account.tier_manual,
        manual_until=account.tier_manual_until,
        window=window_out(policy.window, window, program.timezone),
        value=value,
        value_money=as_money(policy.metric, value, money),
        next_tier=tier_out(nxt) if nxt else None,
        at_top=nxt is None,
        to_next=to_next,
        to_next_money=as_money(policy.metric, to_next, money),
        to_keep=to_keep,
        to_keep_money=as_money(policy.metric, to_keep, money),
        projected_tier=tier_out(projected) if projected else None,
    )
