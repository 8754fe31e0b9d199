"""Tier reports: members just short of a tier (near-miss) and what proposed thresholds would do.

Both are set-based: one metric query for the whole program (`metrics.metric_values`) and one
streamed query over its accounts — never a query per member.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from itertools import pairwise
from typing import Annotated, Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.errors import Invalid
from patron.ledger.models import Account
from patron.ledger.views import _no_formula
from patron.members.models import Member
from patron.programs.models import Program
from patron.tiers.metrics import metric_values, qualify
from patron.tiers.models import TierDefinition
from patron.tiers.periods import Window, previous_window, window_at
from patron.tiers.progress import TierConfig, WindowOut, as_money, load_config, unit, window_out

WindowChoice = Literal["current", "last"]
MetricKind = Literal["points", "spend", "visits"]
WindowKind = Literal["half_year", "year", "rolling", "lifetime"]
ID_CHUNK = 500
STREAM_BATCH = 5000
HUNDRED = Decimal(100)


def percent(part: int, whole: int) -> Decimal:
    """part ÷ whole as a percentage, two decimals, half up (for display only)."""
    return (Decimal(part) * HUNDRED / Decimal(whole)).quantize(Decimal("0.01"), ROUND_HALF_UP)


# --- near-miss ------------------------------------------------------------------------------


class NearMissRow(BaseModel):
    member_id: int
    name: str
    phone: str | None
    current_tier: str | None
    value: int = Field(description="The metric in the window (minor units for spend)")
    value_money: Decimal | None = None
    target_tier: str = Field(description="The next tier above the projected one")
    threshold: int
    threshold_money: Decimal | None = None
    short_by: int
    short_by_money: Decimal | None = None
    short_by_percent: Decimal = Field(description="short_by ÷ threshold × 100, two decimals")


class NearMissOut(BaseModel):
    program: str
    metric: str
    unit: str
    window: WindowOut
    within: int | None
    within_percent: Decimal | None
    count: int
    rows: list[NearMissRow]


@dataclass(frozen=True)
class _Miss:
    target: TierDefinition
    short_by: int


def _miss(
    setup: TierConfig, value: int, within: int | None, within_percent: Decimal | None
) -> _Miss | None:
    """The next tier above the one `value` earns, if `value` is close enough below it."""
    projected = qualify(setup.tiers, value)
    target = setup.above(projected.rank if projected else -1)
    if target is None:
        return None
    short = target.threshold - value
    if short <= 0:  # only when no tier qualifies and the entry threshold is 0; cannot happen
        return None
    # Exact comparisons: no rounding decides who is on the list.
    by_points = within is not None and short <= within
    by_percent = within_percent is not None and short * HUNDRED <= within_percent * target.threshold
    return _Miss(target, short) if by_points or by_percent else None


def report_window(
    setup: TierConfig, program: Program, which: WindowChoice, now: datetime
) -> Window:
    policy = setup.policy
    pick = window_at if which == "current" else previous_window
    return pick(policy.window, now, program.timezone, rolling_months=policy.rolling_months)


MemberRow = tuple[int, int, str | None, str, str | None]


def _members(
    session: Session, program: Program, account_ids: list[int] | None
) -> Iterator[MemberRow]:
    """(account id, member id, tier, name, phone) for the given accounts, or for all of them."""
    base = (
        select(Account.id, Account.member_id, Account.tier, Member.name, Member.phone)
        .join(Member, Member.id == Account.member_id)
        .where(Account.program_id == program.id)
    )
    if account_ids is None:
        for a, m, tier, name, phone in session.execute(
            base.execution_options(yield_per=STREAM_BATCH)
        ):
            yield a, m, tier, name, phone
        return
    for i in range(0, len(account_ids), ID_CHUNK):
        chunk = account_ids[i : i + ID_CHUNK]
        for a, m, tier, name, phone in session.execute(base.where(Account.id.in_(chunk))):
            yield a, m, tier, name, phone


def near_miss(
    session: Session,
    program: Program,
    *,
    window: WindowChoice,
    now: datetime,
    within: int | None = None,
    within_percent: Decimal | None = None,
) -> NearMissOut:
    """Members whose metric is at most `within` (metric units) or `within_percent` (% of the
    threshold) below the next tier above the one they would earn — either bound suffices."""
    if within is None and within_percent is None:
        raise Invalid("give within, within_percent or both", code="near_miss_bound_missing")
    if (within is not None and within < 0) or (within_percent is not None and within_percent < 0):
        raise Invalid("within and within_percent must not be negative", code="invalid_bound")
    setup = load_config(session, program)
    metric = setup.policy.metric
    span = report_window(setup, program, window, now)
    values = metric_values(session, program_id=program.id, metric=metric, window=span)
    misses = {
        account_id: m
        for account_id, value in values.items()
        if (m := _miss(setup, value, within, within_percent)) is not None
    }
    # Members with no activity in the window have 0; they belong on the list only when the
    # bound reaches the lowest threshold above 0, and then every idle member does.
    idle = _miss(setup, 0, within, within_percent)
    wanted = None if idle is not None else sorted(misses)
    rows: list[NearMissRow] = []
    currency = program.currency
    for account_id, member_id, tier, name, phone in _members(session, program, wanted):
        found = misses.get(account_id) if account_id in values else idle
        if found is None:
            continue
        value = values.get(account_id, 0)
        threshold = found.target.threshold
        rows.append(
            NearMissRow(
                member_id=member_id,
                name=name,
                phone=phone,
                current_tier=tier,
                value=value,
                value_money=as_money(metric, value, currency),
                target_tier=found.target.code,
                threshold=threshold,
                threshold_money=as_money(metric, threshold, currency),
                short_by=found.short_by,
                short_by_money=as_money(metric, found.short_by, currency),
                short_by_percent=percent(found.short_by, threshold),
            )
        )
    # Closest first, in the one measure that compares across tiers.
    rows.sort(key=lambda r: (Decimal(r.short_by) / r.threshold, r.member_id))
    return NearMissOut(
        program=program.code,
        metric=metric,
        unit=unit(metric, currency),
        window=window_out(setup.policy.window, span, program.timezone),
        within=within,
        within_percent=within_percent,
        count=len(rows),
        rows=rows,
    )


NEAR_MISS_COLUMNS = [
    "member_id",
    "name",
    "phone",
    "current_tier",
    "window",
    "unit",
    "value",
    "target_tier",
    "threshold",
    "short_by",
    "short_by_percent",
]


def near_miss_table(report: NearMissOut) -> list[list[object]]:
    """Rows for CSV and the terminal; spend is shown as money in the program's currency."""
    money = report.metric == "spend"
    out: list[list[object]] = []
    for r in report.rows:
        value, threshold, short = (
            (r.value_money, r.threshold_money, r.short_by_money)
            if money
            else (r.value, r.threshold, r.short_by)
        )
        out.append(
            [
                r.member_id,
                r.name,
                r.phone or "",
                r.current_tier or "",
                report.window.key,
                report.unit,
                value,
                r.target_tier,
                threshold,
                short,
                r.short_by_percent,
            ]
        )
    return out


def near_miss_csv(report: NearMissOut) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(NEAR_MISS_COLUMNS)
    # Names are free text: a spreadsheet must not run one as a formula. Phones are E.164
    # (+ and digits), never a formula, and staff dial them: they stay as they are.
    writer.writerows(
        [
            [v if i == 2 else _no_formula(v) for i, v in enumerate(row)]
            for row in near_miss_table(report)
        ]
    )
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")  # BOM: Excel reads Korean/Chinese


# --- what-if ----------------------------------------------------------------------------------


class WhatIfRequest(BaseModel):
    model_config = {"extra": "forbid"}

    thresholds: dict[str, Annotated[int, Field(ge=0, le=10**15)]] = Field(
        description="Proposed threshold per tier code, in the metric's unit (minor currency "
        "units for spend); tiers left out keep theirs",
        max_length=100,
    )
    window: WindowKind | None = Field(None, description="Another window kind to try")
    rolling_months: int | None = Field(
        None, ge=1, le=120, description="For window rolling; default the policy's"
    )
    metric: MetricKind | None = Field(
        None,
        description="Another metric to try; then every tier "
        "with a non-zero threshold needs a proposed one",
    )


class WhatIfRow(BaseModel):
    tier: str
    names: dict[str, str]
    rank: int
    threshold_today: int
    threshold_proposed: int
    today: int = Field(description="Members in this tier now (no tier counts as the entry tier)")
    proposed: int = Field(description="Members the last complete window would put here")
    change: int


class WhatIfOut(BaseModel):
    program: str
    metric: str
    unit: str
    window: WindowOut = Field(description="The last complete window the proposal is applied to")
    members: int
    moved_up: int
    moved_down: int
    unchanged: int
    rows: list[WhatIfRow]


def _proposed_thresholds(setup: TierConfig, req: WhatIfRequest, metric: str) -> dict[str, int]:
    known = {t.code for t in setup.tiers}
    unknown = sorted(set(req.thresholds) - known)
    if unknown:
        raise Invalid(
            f"no such tier: {', '.join(unknown)} (tiers: {', '.join(sorted(known))})",
            code="unknown_tier",
        )
    if metric != setup.policy.metric:
        # Today's thresholds are in another unit; only 0 means the same in every metric.
        missing = [t.code for t in setup.tiers if t.threshold != 0 and t.code not in req.thresholds]
        if missing:
            raise Invalid(
                f"metric {metric} is not the program's ({setup.policy.metric}): "
                f"give thresholds for {', '.join(missing)} too",
                code="thresholds_incomplete",
            )
    proposed = {t.code: req.thresholds.get(t.code, t.threshold) for t in setup.tiers}
    ordered = [proposed[t.code] for t in setup.tiers]
    # The same rules as the tier setup API: the entry tier at 0, then strictly rising.
    if ordered[0] != 0 or any(lo >= hi for lo, hi in pairwise(ordered)):
        listing = ", ".join(f"{t.code}={proposed[t.code]}" for t in setup.tiers)
        raise Invalid(
            f"the entry tier's threshold must be 0 and each next one higher: {listing}",
            code="thresholds_not_ordered",
        )
    return proposed


def what_if(session: Session, program: Program, req: WhatIfRequest, *, now: datetime) -> WhatIfOut:
    """How many members each tier would hold if the last complete window were evaluated with
    the proposed thresholds (as the downgrade policy `to_earned` would place them; manual tiers
    and grace periods are not modelled), next to today's distribution."""
    setup = load_config(session, program)
    policy = setup.policy
    metric = req.metric or policy.metric
    kind = req.window or policy.window
    months = req.rolling_months or policy.rolling_months
    proposed = _proposed_thresholds(setup, req, metric)
    # Detached copies with the proposed thresholds, so qualify() ranks them exactly as the job.
    trial = [
        TierDefinition(code=t.code, rank=t.rank, threshold=proposed[t.code]) for t in setup.tiers
    ]
    span = previous_window(kind, now, program.timezone, rolling_months=months)
    values = metric_values(session, program_id=program.id, metric=metric, window=span)
    rank = {t.code: t.rank for t in setup.tiers}
    entry = setup.entry.code
    today = dict.fromkeys(rank, 0)
    after = dict.fromkeys(rank, 0)
    up = down = total = 0
    rows = session.execute(
        select(Account.id, Account.tier)
        .where(Account.program_id == program.id)
        .execution_options(yield_per=STREAM_BATCH)
    )
    for account_id, tier in rows:
        total += 1
        now_code = tier if tier in rank else entry
        earned = qualify(trial, values.get(account_id, 0))
        new_code = earned.code if earned is not None else entry
        today[now_code] += 1
        after[new_code] += 1
        if rank[new_code] > rank[now_code]:
            up += 1
        elif rank[new_code] < rank[now_code]:
            down += 1
    return WhatIfOut(
        program=program.code,
        metric=metric,
        unit=unit(metric, program.currency),
        window=window_out(kind, span, program.timezone),
        members=total,
        moved_up=up,
        moved_down=down,
        unchanged=total - up - down,
        rows=[
            WhatIfRow(
                tier=t.code,
                names=dict(t.names),
                rank=t.rank,
                threshold_today=t.threshold,
                threshold_proposed=proposed[t.code],
                today=today[t.code],
                proposed=after[t.code],
                change=after[t.code] - today[t.code],
            )
            for t in setup.tiers
        ],
    )
