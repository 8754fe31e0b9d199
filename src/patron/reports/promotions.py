"""Points issued per rule and promotion, from the breakdown every earn stores, and the budgets
of budgeted promotions.

An earn's points are split over the rules that made them: the base rate its result, a factor
(tier, time weight, promotion, product multiplier) what it added (after − before), a fixed bonus
its `added`, a cap or a budget limit what it removed, the final rounding its difference. The parts
add up to the entry's points; factors leave fractions, so each entry's parts are rounded to whole
points by largest remainder and still add up exactly. The report reads the breakdowns of the
earns in the range (streamed), so it costs one pass over those entries: fine for months of a shop,
slow for years of a big chain (docs/reports.md).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.errors import NotFound
from patron.ledger.models import Entry
from patron.programs.models import Program
from patron.reports.common import DayRange
from patron.rules import service as rules
from patron.rules.model import Promotion
from patron.rules.models import PromotionBudget

UNATTRIBUTED = "(unattributed)"
NO_BREAKDOWN = "(no breakdown)"
STREAM_BATCH = 2000
_NOT_POINTS = {"combined_factor", "paid_with_points", "exclude"}


def _dec(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def contributions(steps: Iterable[dict[str, Any]]) -> dict[str, Decimal]:
    """What each rule added to an earn (exact, possibly fractional, possibly negative)."""
    steps = [s for s in steps if isinstance(s, dict)]
    combined_before = next(
        (_dec(s.get("before")) for s in steps if s.get("kind") == "combined_factor"), None
    )
    out: dict[str, Decimal] = {}
    for step in steps:
        if not step.get("applied") or step.get("kind") in _NOT_POINTS:
            continue
        part: Decimal | None = None
        if "result" in step:
            part = _dec(step["result"])
        elif "added" in step:
            part = _dec(step["added"])
        elif "adds" in step:
            adds = _dec(step["adds"])
            part = combined_before * adds if combined_before is not None and adds else None
        elif "before" in step and "after" in step:
            before, after = _dec(step["before"]), _dec(step["after"])
            part = after - before if before is not None and after is not None else None
        if part is None or part == 0:
            continue
        rule = str(step.get("rule", UNATTRIBUTED))
        out[rule] = out.get(rule, Decimal(0)) + part
    return out


def attribute(steps: Iterable[dict[str, Any]], points: int) -> dict[str, int]:
    """Whole points per rule adding up to `points` exactly (largest remainder)."""
    parts = contributions(steps)
    rest = Decimal(points) - sum(parts.values(), Decimal(0))
    if rest:
        parts[UNATTRIBUTED] = parts.get(UNATTRIBUTED, Decimal(0)) + rest
    floors = {k: int(v.to_integral_value(rounding=ROUND_FLOOR)) for k, v in parts.items()}
    left = points - sum(floors.values())
    order = sorted(parts, key=lambda k: -(parts[k] - floors[k]))  # stable: ties keep step order
    for key in order[:left]:
        floors[key] += 1
    return {k: v for k, v in floors.items() if v}


class RuleRow(BaseModel):
    rule: str
    name: str | None = None
    kind: str | None = None
    points: int = Field(description="Points this rule added (negative: removed) in the range")
    earns: int = Field(description="Earn entries it changed")
    budget_points: int | None = None
    budget_used: int | None = Field(None, description="All time, from the budget counter")
    budget_left: int | None = None


class PromotionsReport(BaseModel):
    program: str
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
    earned: int = Field(description="Σ points of the earn entries in the range")
    earns: int
    by_rule_version: dict[int, int] = Field(description="Points per rule-set version")
    rows: list[RuleRow]
    generated_at: datetime


@dataclass
class _Tally:
    points: int = 0
    earns: int = 0
    names: set[str] = field(default_factory=set)
    kinds: set[str] = field(default_factory=set)


def promotions_report(
    session: Session, program: Program, rng: DayRange, *, now: datetime
) -> PromotionsReport:
    stmt = (
        select(Entry.points, Entry.rule_version, Entry.breakdown)
        .where(
            Entry.program_id == program.id,
            Entry.kind == "earn",
            Entry.occurred_at >= rng.lo,
            Entry.occurred_at < rng.hi,
        )
        .execution_options(yield_per=STREAM_BATCH)
    )
    tally: dict[str, _Tally] = {}
    versions: dict[int, int] = {}
    earned = earns = 0
    for points, version, breakdown in session.execute(stmt):
        earned += points
        earns += 1
        versions[version or 0] = versions.get(version or 0, 0) + points
        steps = breakdown if isinstance(breakdown, list) else []
        shares = attribute(steps, points) if steps else {NO_BREAKDOWN: points}
        for rule_id, share in shares.items():
            t = tally.setdefault(rule_id, _Tally())
            t.points += share
            t.earns += 1
        for step in steps:
            if isinstance(step, dict) and step.get("rule") in shares:
                t = tally[str(step["rule"])]
                if step.get("name"):
                    t.names.add(str(step["name"]))
                if step.get("kind"):
                    t.kinds.add(str(step["kind"]))

    try:
        doc = rules.document(session, program)
    except NotFound:  # a program without a published rule set
        doc = None
    current = {r.id: r for r in (doc.rules if doc else [])}
    used = {
        rule_id: int(n)
        for rule_id, n in session.execute(
            select(PromotionBudget.rule_id, PromotionBudget.used).where(
                PromotionBudget.program_id == program.id
            )
        )
    }
    budgeted = [
        r for r in current.values() if isinstance(r, Promotion) and r.budget_points is not None
    ]
    # Every promotion of the current rule set is listed, even with nothing in the range.
    for promotion in current.values():
        if isinstance(promotion, Promotion):
            tally.setdefault(promotion.id, _Tally())
    rows = []
    for rule_id, t in tally.items():
        rule = current.get(rule_id)
        budget = next((r.budget_points for r in budgeted if r.id == rule_id), None)
        spent = int(used.get(rule_id, 0)) if budget is not None or rule_id in used else None
        rows.append(
            RuleRow(
                rule=rule_id,
                name=(rule.name if rule is not None else None)
                or (min(t.names) if t.names else None),
                kind=(rule.kind if rule is not None else None)
                or (min(t.kinds) if t.kinds else None),
                points=t.points,
                earns=t.earns,
                budget_points=budget,
                budget_used=spent,
                budget_left=budget - (spent or 0) if budget is not None else None,
            )
        )
    rows.sort(key=lambda r: (-r.points, r.rule))
    return PromotionsReport(
        program=program.code,
        first_day=rng.first,
        last_day=rng.last,
        earned=earned,
        earns=earns,
        by_rule_version=dict(sorted(versions.items())),
        rows=rows,
        generated_at=now,
    )
