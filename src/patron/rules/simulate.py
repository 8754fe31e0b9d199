"""What-if: replay past purchases under the current and a proposed rule set, writing nothing.

Every purchase of the period is rebuilt as the rules core saw it (lines, store, channel, payment
method, the part paid with points) and evaluated twice, in time order. What the database would
normally supply at the till is kept in memory instead, separately for each rule set:

- member caps (day / month / year) count the points that rule set itself gave during the replay,
  on top of what was recorded earlier in the same period before `date_from`;
- promotion budgets start full and shrink with what the replay gives;
- the member's tier is the one they held when the sale was recorded (from the tier history; a
  move at the very instant of the sale counts as after it, as an upgrade the sale itself caused
  is), with that tier's multiplier from the tier definitions.

Purchases are replayed in the order they were recorded, as the till saw them: caps and budgets
count what was recorded before each sale, late sales included. What cannot be replayed is left
out of every total and counted apart: sales with coupons (the basket points were earned on, after
the discounts that earn nothing, is not stored). Event credits are not purchases and are never
part of the replay. Purchases earned under another rule-set version are replayed all the same and
counted, so a "current" total that differs from the recorded one can be told apart from a fault.

Points are attributed to rules from the breakdown steps, exactly (as Decimals), so the per-rule
figures of a rule set add up to its total; what final rounding adds or removes is shown under the
pseudo-rule ``rounding``.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.errors import Invalid
from patron.ledger.models import Account, Entry, Purchase
from patron.members.models import Member
from patron.money import quantum, round_money, spend_value
from patron.programs.models import Program, Store
from patron.rules import service as rules
from patron.rules.engine import Line, MemberContext, Order, evaluate
from patron.rules.model import RuleSetDoc, TierMultiplier, rule_label
from patron.segments.service import definitions as segment_definitions
from patron.segments.service import memberships
from patron.tiers.metrics import metric_values, qualify
from patron.tiers.models import TierChange, TierDefinition
from patron.tiers.periods import Window, window_at

ROUNDING_RULE = "rounding"
# In `add` mode the combined factor stops at 0; what that floor keeps back is shown under this.
FLOOR_RULE = "combined_factor"
# Only ever non-zero if a breakdown step is of a shape this module does not know.
UNATTRIBUTED = "unattributed"
PSEUDO_RULES = (ROUNDING_RULE, FLOOR_RULE, UNATTRIBUTED)
# The breakdown id of a tier definition's multiplier (engine.TierBenefit): "tier:gold".
TIER_PREFIX = "tier:"
ZERO = Decimal(0)


class RuleImpact(BaseModel):
    rule: str = Field(description="Rule id, or the pseudo-rule `rounding`")
    kind: str
    name: str
    in_current: bool
    in_proposed: bool
    current_points: Decimal = Field(
        description="Points this rule accounts for under the current "
        "rules (exact; fractions come back through rounding)"
    )
    proposed_points: Decimal
    delta: Decimal = Field(description="proposed_points − current_points")


class MemberImpact(BaseModel):
    member_id: int
    name: str
    purchases: int
    actual_points: int
    current_points: int
    proposed_points: int
    delta: int = Field(description="proposed_points − actual_points")
    change: int = Field(
        description="proposed_points − current_points: what the rule change does to the member"
    )


MAX_SHIFT_YEARS = 10
MAX_SUGGESTED_DAYS = 366


class ShiftedReplay(BaseModel):
    """A replay that can show a dated rule's effect: its own dates, over the purchases of the
    same dates `shift_years` earlier (0: they are in the past already)."""

    date_from: date
    date_to: date
    shift_years: int = Field(ge=0, le=MAX_SHIFT_YEARS)


class SimulationWarning(BaseModel):
    code: str = Field(description="`rule_outside_period`: a dated rule that cannot apply here")
    rule: str
    starts: date | None = None
    ends: date | None = None
    detail: str
    suggestion: ShiftedReplay | None = Field(
        None,
        description="Replay this instead to see the rule work: its own window, with the "
        "purchases of the same dates a year (or more) earlier when it is still to come",
    )


class TierMove(BaseModel):
    member_id: int
    name: str
    current_tier: str | None = Field(
        description="The tier the metric reaches under the current rules"
    )
    proposed_tier: str | None
    current_metric: int = Field(description="Qualifying points in the tier window, current rules")
    proposed_metric: int
    direction: str = Field(description="`up`: the change lifts the member; `down`: it drops them")


class TierCount(BaseModel):
    tier: str
    current_members: int = Field(description="Replayed members whose metric reaches this tier")
    proposed_members: int
    delta: int


class TierImpact(BaseModel):
    """Who would reach or lose a tier: the replayed purchases' qualifying points in the tier
    window holding `date_to`, the rest of that window as recorded."""

    window: str = Field(description="The tier window, e.g. 2026 or 2026H1")
    metric: str
    moves: list[TierMove] = Field(description="Members whose tier the change moves, by member id")
    tiers: list[TierCount]


class SimulationReport(BaseModel):
    program: str
    currency: str
    timezone: str
    point_value: Decimal
    date_from: date
    date_to: date
    shift_years: int = Field(
        0,
        description="The purchases replayed are those of date_from..date_to this many years "
        "earlier, every dated rule of both rule sets moved back with them",
    )
    replayed_from: date = Field(description="First local date whose purchases were replayed")
    replayed_to: date
    current_version: int = Field(description="Version of the current rule set replayed")
    purchases: int = Field(description="Purchases replayed")
    members: int
    actual_points: int = Field(description="Points recorded on these purchases when they happened")
    current_points: int = Field(description="Points under the current rule set, replayed")
    proposed_points: int
    delta: int = Field(description="proposed_points − actual_points")
    actual_value: Decimal = Field(description="Money value of actual_points in the currency")
    current_value: Decimal
    proposed_value: Decimal
    delta_value: Decimal
    rules: list[RuleImpact]
    top_members: list[MemberImpact] = Field(
        description="By the size of `change`, largest first; ties by member id"
    )
    other_version_purchases: int = Field(
        0,
        description="Replayed purchases whose points were recorded under another rule-set "
        "version than the current one (their current and recorded points may differ)",
    )
    excluded_purchases: int = Field(
        0,
        description="Purchases of the period left out of the replay and of every total: "
        "sales with coupons (the basket points were earned on is not stored)",
    )
    excluded_points: int = Field(0, description="Points recorded on the excluded purchases")
    warnings: list[SimulationWarning] = Field(default_factory=list)
    tier_impact: TierImpact | None = Field(
        None,
        description="Tier movement the change causes; none without tiers, or when tiers "
        "qualify on spend or visits (a rule change does not move those)",
    )


@dataclass
class _Replay:
    """One rule set's replay state: budgets, cap counters, totals and attribution."""

    doc: RuleSetDoc
    wanted: rules.Needs
    budgets: dict[str, int]
    earned: dict[tuple[int, str, Any], int] = field(default_factory=lambda: defaultdict(int))
    points: int = 0
    by_rule: dict[str, Decimal] = field(default_factory=lambda: defaultdict(Decimal))
    by_account: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    # Qualifying points of the replayed purchases inside the tier window (item: tier impact).
    qualifying: dict[int, int] = field(default_factory=lambda: defaultdict(int))

    @classmethod
    def start(cls, doc: RuleSetDoc) -> _Replay:
        wanted = rules.needs(doc)
        return cls(doc=doc, wanted=wanted, budgets=dict(wanted.budgets))


JUST_BEFORE = timedelta(microseconds=1)


def _period_keys(local: datetime) -> dict[str, Any]:
    day = local.date()
    return {"member_day": day, "member_month": (day.year, day.month), "member_year": day.year}


def attribute(steps: Iterable[dict[str, Any]]) -> dict[str, Decimal]:
    """Points per rule id from a breakdown; the values add up to the evaluation's points.

    base rate → its result; multiplier and weight steps → after − before (in `add` mode each
    factor's share of the combined step: before × what it adds); bonuses → what they added; caps,
    budget limits and rounding → after − before.
    """
    out: dict[str, Decimal] = defaultdict(Decimal)
    adds: list[tuple[str, Decimal]] = []
    for step in steps:
        if not step.get("applied", True):
            continue
        rule, kind = str(step["rule"]), step.get("kind")
        if kind == "base_rate":
            out[rule] += Decimal(step["result"])
        elif "added" in step:
            out[rule] += Decimal(step["added"])
        elif "adds" in step:
            adds.append((rule, Decimal(step["adds"])))
        elif kind == "combined_factor":
            before = Decimal(step["before"])
            shares = [(factor_rule, before * extra) for factor_rule, extra in adds]
            for factor_rule, share in shares:
                out[factor_rule] += share
            floor = Decimal(step["after"]) - before - sum((s for _, s in shares), ZERO)
            if floor:
                out[FLOOR_RULE] += floor
            adds = []
        elif "before" in step and "after" in step:
            out[rule] += Decimal(str(step["after"])) - Decimal(str(step["before"]))
    return out


# Replayable local dates: their UTC bounds (a day later, in any timezone) stay representable.
EARLIEST = date(1900, 1, 1)
LATEST = date(9998, 12, 31)


def _utc_bounds(date_from: date, date_to: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    start = datetime.combine(date_from, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(date_to + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def _from_minor(minor: int, currency: str) -> Decimal:
    return Decimal(minor) * quantum(currency)


def _seed_before(
    session: Session,
    program: Program,
    start: datetime,
    tz: ZoneInfo,
    replays: list[_Replay],
    need_counts: bool,
) -> dict[int, int]:
    """Cap counters for the part of each period before the replay starts, and purchase counts.

    Caps count purchase points already earned in the member's day, month and year; the year
    holding `date_from` began before the replay, so what was recorded then counts, for both rule
    sets alike (there is no replay of it under the proposed rules).
    """
    counts: dict[int, int] = {}
    if need_counts:
        counts = {
            account_id: int(n)
            for account_id, n in session.execute(
                select(Purchase.account_id, func.count())
                .where(Purchase.program_id == program.id, Purchase.occurred_at < start)
                .group_by(Purchase.account_id)
            )
        }
    if any(r.wanted.caps for r in replays):
        local_start = start.astimezone(tz)
        year_start = datetime.combine(
            local_start.date().replace(month=1, day=1), time(0), tzinfo=tz
        ).astimezone(UTC)
        rows = session.execute(
            select(Purchase.account_id, Purchase.occurred_at, Purchase.points_earned).where(
                Purchase.program_id == program.id,
                Purchase.occurred_at >= year_start,
                Purchase.occurred_at < start,
                Purchase.points_earned > 0,
            )
        )
        for account_id, occurred_at, points in rows:
            keys = _period_keys(occurred_at.astimezone(tz))
            for replay in replays:
                for per in replay.wanted.caps:
                    replay.earned[(account_id, per, keys[per])] += int(points)
    return counts


def _times_before(
    session: Session, program: Program, start: datetime, days: int
) -> dict[int, list[datetime]]:
    """Each account's purchase times in the `days` days before the replay starts, sorted: the
    part of a `recent_purchases` window that lies before `date_from`."""
    out: dict[int, list[datetime]] = defaultdict(list)
    if days <= 0:
        return out
    rows = session.execute(
        select(Purchase.account_id, Purchase.occurred_at)
        .where(
            Purchase.program_id == program.id,
            Purchase.occurred_at >= start - timedelta(days=days),
            Purchase.occurred_at < start,
        )
        .order_by(Purchase.occurred_at)
    )
    for account_id, occurred_at in rows:
        out[account_id].append(occurred_at)
    return out


def _recent_counts(
    windows: list[int], at: datetime, before: list[datetime], replayed: list[datetime]
) -> dict[int, int]:
    """Earlier purchases at most `days` × 24 h before `at`, per window: those before the replay
    (`before`, sorted) and the sales recorded before this one (`replayed`, sorted) that
    happened at or before `at`."""
    out: dict[int, int] = {}
    for days in windows:
        since = at - timedelta(days=days)
        out[days] = (
            len(before)
            - bisect.bisect_left(before, since)
            + bisect.bisect_right(replayed, at)
            - bisect.bisect_left(replayed, since)
        )
    return out


def years_back(day: date, years: int) -> date:
    """The same calendar date `years` earlier (29 February becomes the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def shifted(doc: RuleSetDoc, years: int) -> RuleSetDoc:
    """`doc` with every dated rule's window moved `years` back."""
    if not years:
        return doc
    moved = [
        rule.model_copy(
            update={
                "starts": None if rule.starts is None else years_back(rule.starts, years),
                "ends": None if rule.ends is None else years_back(rule.ends, years),
            }
        )
        if rule.starts is not None or rule.ends is not None
        else rule
        for rule in doc.rules
    ]
    return doc.model_copy(update={"rules": moved})


def _suggestion(
    starts: date | None, ends: date | None, date_from: date, date_to: date
) -> ShiftedReplay | None:
    """Where to replay to see a rule of window starts..ends that misses date_from..date_to: its
    own window (as long as the period asked for where one end is open, at most a year), and for
    a rule still to come the purchases of the same dates the fewest whole years earlier that
    end by date_to."""
    longest = timedelta(days=MAX_SUGGESTED_DAYS - 1)
    length = min(date_to - date_from, longest)
    try:
        if starts is not None:
            first = starts
            last = min(ends or starts + length, starts + longest)
        elif ends is not None:
            first, last = ends - length, ends
        else:
            return None
    except OverflowError:
        return None
    if last < date_from:  # already past: its own purchases are there to replay
        return ShiftedReplay(date_from=first, date_to=last, shift_years=0)
    for years in range(1, MAX_SHIFT_YEARS + 1):
        if years_back(last, years) <= date_to:
            if years_back(first, years) < EARLIEST:
                return None
            return ShiftedReplay(date_from=first, date_to=last, shift_years=years)
    return None


def outside_period(doc: RuleSetDoc, date_from: date, date_to: date) -> list[SimulationWarning]:
    """Enabled dated rules whose window does not overlap [date_from, date_to]: over this period
    they give nothing, so the replay shows no effect whatever they would do in their own. Each
    warning suggests a replay that would show it (see `_suggestion`)."""
    out = []
    for rule in doc.rules:
        if not rule.enabled or (rule.starts is None and rule.ends is None):
            continue
        if (rule.starts is not None and rule.starts > date_to) or (
            rule.ends is not None and rule.ends < date_from
        ):
            window = f"{rule.starts or '…'}..{rule.ends or '…'}"
            out.append(
                SimulationWarning(
                    code="rule_outside_period",
                    rule=rule.id,
                    starts=rule.starts,
                    ends=rule.ends,
                    detail=f"rule {rule.id} applies {window}, outside the replayed period "
                    f"{date_from}..{date_to}: it shows no effect here",
                    suggestion=_suggestion(rule.starts, rule.ends, date_from, date_to),
                )
            )
    return out


class _TierHistory:
    """The tier each account held at any instant, from the tier history."""

    def __init__(self, session: Session, program: Program) -> None:
        self.factors: dict[str, Decimal] = {
            code: Decimal(multiplier)
            for code, multiplier in session.execute(
                select(TierDefinition.code, TierDefinition.multiplier).where(
                    TierDefinition.program_id == program.id
                )
            )
        }
        self.moves: dict[int, tuple[list[datetime], list[str | None], str | None]] = {}
        rows = session.execute(
            select(TierChange.account_id, TierChange.at, TierChange.from_tier, TierChange.to_tier)
            .where(TierChange.program_id == program.id)
            .order_by(TierChange.account_id, TierChange.at, TierChange.id)
        )
        for account_id, at, from_tier, to_tier in rows:
            found = self.moves.get(account_id)
            if found is None:
                found = self.moves[account_id] = ([], [], from_tier)
            found[0].append(at)
            found[1].append(to_tier)

    def at(self, account_id: int, when: datetime, now_tier: str | None) -> str | None:
        """The tier at `when`; a move at exactly `when` counts as after it (the upgrade a sale
        causes is recorded at the sale's own instant)."""
        found = self.moves.get(account_id)
        if found is None:
            return now_tier
        times, tiers, first = found
        index = bisect.bisect_left(times, when)
        return first if index == 0 else tiers[index - 1]

    def factor(self, tier: str | None) -> Decimal | None:
        return self.factors.get(tier) if tier is not None else None


def simulate(
    session: Session,
    program: Program,
    proposed: RuleSetDoc,
    *,
    date_from: date,
    date_to: date,
    top: int = 10,
    shift_years: int = 0,
) -> SimulationReport:
    """Replay the program's purchases in [date_from, date_to] (local dates, inclusive) — or,
    with `shift_years`, those of the same dates that many years earlier, with every dated rule
    of both rule sets moved back as far (a December promotion tried on last December)."""
    if date_to < date_from:
        raise Invalid(
            f"date_to ({date_to}) is before date_from ({date_from})", code="invalid_period"
        )
    if not 0 <= shift_years <= MAX_SHIFT_YEARS:
        raise Invalid(f"shift_years must be between 0 and {MAX_SHIFT_YEARS}", code="invalid_period")
    replay_from, replay_to = years_back(date_from, shift_years), years_back(date_to, shift_years)
    if replay_from < EARLIEST or date_to > LATEST:
        raise Invalid(f"the period must lie between {EARLIEST} and {LATEST}", code="invalid_period")
    warnings = outside_period(proposed, date_from, date_to)
    proposed = shifted(proposed, shift_years)
    tz = ZoneInfo(program.timezone)
    start, end = _utc_bounds(replay_from, replay_to, tz)
    current_doc = shifted(rules.document(session, program), shift_years)
    current, new = _Replay.start(current_doc), _Replay.start(proposed)
    replays = [current, new]
    need_counts = current.wanted.purchases or new.wanted.purchases
    counts = _seed_before(session, program, start, tz, replays, need_counts)
    recent_days = sorted(set(current.wanted.recent_days) | set(new.wanted.recent_days))
    # Segment conditions: each replayed sale reads the member's segments as of just before it
    # happened, as the till read them before writing it (one query per sale, for the segments
    # either rule set names; none without them).
    segment_codes = sorted(set(current.wanted.segments) | set(new.wanted.segments))
    saved_segments = segment_definitions(session, program) if segment_codes else {}
    before_start = _times_before(session, program, start, max(recent_days, default=0))
    history = _TierHistory(session, program)
    tier_window = _tier_window(session, program, end)
    recorded_in_window: dict[int, int] = defaultdict(int)
    stores: dict[int, str] = {
        store_id: code
        for store_id, code in session.execute(
            select(Store.id, Store.code).where(Store.program_id == program.id)
        )
    }

    rows = session.execute(
        select(
            Purchase.account_id,
            Purchase.occurred_at,
            Purchase.created_at,
            Purchase.amount_minor,
            Purchase.lines,
            Purchase.store_id,
            Purchase.channel,
            Purchase.payment_method,
            Purchase.points_earned,
            Purchase.points_spent,
            Purchase.response["coupons"],
            Entry.rule_version,
            Entry.qualifying,
            Account.tier,
            Member.id,
            Member.name,
            Member.attributes,
            Member.birthday,
            Member.created_at,
        )
        .join(Account, Account.id == Purchase.account_id)
        .join(Member, Member.id == Account.member_id)
        .outerjoin(Entry, Entry.id == Purchase.earn_entry_id)
        .where(
            Purchase.program_id == program.id,
            Purchase.occurred_at >= start,
            Purchase.occurred_at < end,
        )
        # The order the till saw them in: caps and budgets count what was recorded before.
        .order_by(Purchase.id)
    )

    currency = program.currency
    actual_total = purchase_count = excluded = excluded_points = other_versions = 0
    actual_by_account: dict[int, int] = defaultdict(int)
    purchases_by_account: dict[int, int] = defaultdict(int)
    # Each account's replayed purchase times, sorted: purchases before a late sale still count.
    seen_at: dict[int, list[datetime]] = defaultdict(list)
    members: dict[int, tuple[int, str]] = {}
    contexts: dict[int, MemberContext] = {}
    for (
        account_id,
        occurred_at,
        created_at,
        amount_minor,
        lines,
        store_id,
        channel,
        payment_method,
        points_earned,
        points_spent,
        coupons,
        rule_version,
        recorded_qualifying,
        now_tier,
        member_id,
        name,
        attributes,
        birthday,
        joined_at,
    ) in rows:
        if coupons:
            # Not replayed, but a purchase all the same: later sales count it, as the till did.
            bisect.insort(seen_at[account_id], occurred_at)
            excluded += 1
            excluded_points += points_earned
            continue
        purchase_count += 1
        actual_total += points_earned
        actual_by_account[account_id] += points_earned
        purchases_by_account[account_id] += 1
        if rule_version is not None and rule_version != program.rule_version:
            other_versions += 1
        if account_id not in members:
            members[account_id] = (member_id, name)
            contexts[account_id] = MemberContext(
                attributes=attributes or {},
                joined_on=joined_at.astimezone(tz).date(),
                birthday=birthday,
            )
        order = Order(
            currency=currency,
            total=_from_minor(amount_minor, currency),
            occurred_at=occurred_at,
            timezone=program.timezone,
            lines=tuple(
                Line(
                    id=str(ln["id"]),
                    amount=_from_minor(ln["amount_minor"], currency),
                    quantity=Decimal(str(ln.get("quantity", "1"))),
                    sku=ln.get("sku"),
                    category=ln.get("category"),
                )
                for ln in lines or ()
            ),
            store=stores.get(store_id) if store_id is not None else None,
            channel=channel,
            payment_method=payment_method,
            paid_with_points=spend_value(points_spent, program.point_value, program.currency),
            earn_on_redeemed=program.earn_on_redeemed,
        )
        keys = _period_keys(occurred_at.astimezone(tz))
        times = seen_at[account_id]
        # `times` holds the sales recorded before this one: those that happened at or before
        # it are its earlier purchases, as the till counted them (occurred_at <= this sale's).
        earlier = counts.get(account_id, 0) + bisect.bisect_right(times, occurred_at)
        recent = _recent_counts(recent_days, occurred_at, before_start.get(account_id, []), times)
        bisect.insort(times, occurred_at)
        tier = history.at(account_id, created_at, now_tier)
        base = contexts[account_id]
        in_window = tier_window is not None and tier_window[1].start <= occurred_at
        if in_window:
            recorded_in_window[account_id] += recorded_qualifying or 0
        member_segments = (
            frozenset(
                memberships(
                    session,
                    program,
                    segment_codes,
                    [member_id],
                    at=occurred_at - JUST_BEFORE,
                    known=True,
                    history=True,
                    saved=saved_segments,
                ).get(member_id, ())
            )
            if segment_codes
            else frozenset()
        )
        for replay in replays:
            figures = {
                per: replay.earned.get((account_id, per, keys[per]), 0)
                for per in replay.wanted.caps
            }
            context = MemberContext(
                tier=tier,
                tier_factor=history.factor(tier),
                attributes=base.attributes,
                joined_on=base.joined_on,
                birthday=base.birthday,
                purchases=earlier,
                recent_purchases=recent,
                earned_day=figures.get("member_day", 0),
                earned_month=figures.get("member_month", 0),
                earned_year=figures.get("member_year", 0),
                segments=member_segments,
            )
            result = evaluate(replay.doc, order, context, replay.budgets)
            for rule_id, used in result.budget_used.items():
                replay.budgets[rule_id] = replay.budgets.get(rule_id, 0) - used
            for per in replay.wanted.caps:
                replay.earned[(account_id, per, keys[per])] += result.points
            replay.points += result.points
            replay.by_account[account_id] += result.points
            if in_window:
                replay.qualifying[account_id] += rules.qualifying_points(replay.doc, result)
            shares = attribute(result.steps)
            left = Decimal(result.points) - sum(shares.values(), ZERO)
            if left:
                shares[UNATTRIBUTED] = shares.get(UNATTRIBUTED, ZERO) + left
            for rule_id, share in shares.items():
                replay.by_rule[rule_id] += share

    def value(points: int) -> Decimal:
        return round_money(Decimal(points) * program.point_value, currency)

    impacts = [
        MemberImpact(
            member_id=members[a][0],
            name=members[a][1],
            purchases=purchases_by_account[a],
            actual_points=actual_by_account[a],
            current_points=current.by_account[a],
            proposed_points=new.by_account[a],
            delta=new.by_account[a] - actual_by_account[a],
            change=new.by_account[a] - current.by_account[a],
        )
        for a in members
    ]
    impacts.sort(key=lambda m: (-abs(m.change), m.member_id))
    return SimulationReport(
        program=program.code,
        currency=currency,
        timezone=program.timezone,
        point_value=program.point_value,
        date_from=date_from,
        date_to=date_to,
        shift_years=shift_years,
        replayed_from=replay_from,
        replayed_to=replay_to,
        current_version=program.rule_version,
        purchases=purchase_count,
        members=len(members),
        actual_points=actual_total,
        current_points=current.points,
        proposed_points=new.points,
        delta=new.points - actual_total,
        actual_value=value(actual_total),
        current_value=value(current.points),
        proposed_value=value(new.points),
        delta_value=value(new.points - actual_total),
        rules=_rule_impacts(current, new),
        top_members=impacts[: max(top, 0)],
        other_version_purchases=other_versions,
        excluded_purchases=excluded,
        excluded_points=excluded_points,
        warnings=warnings,
        tier_impact=(
            _tier_impact(session, program, tier_window, recorded_in_window, members, current, new)
            if tier_window is not None
            else None
        ),
    )


def _tier_window(session: Session, program: Program, end: datetime) -> tuple[str, Window] | None:
    """The tier metric and the window holding the replay's last instant, if points qualify."""
    from patron.tiers.service import get_policy

    policy = get_policy(session, program.id)
    if policy is None or policy.metric != "points":
        return None
    last = end - timedelta(microseconds=1)
    window = window_at(policy.window, last, program.timezone, rolling_months=policy.rolling_months)
    return policy.metric, window


def _tier_impact(
    session: Session,
    program: Program,
    tier_window: tuple[str, Window],
    recorded_in_window: dict[int, int],
    members: dict[int, tuple[int, str]],
    current: _Replay,
    new: _Replay,
) -> TierImpact:
    """Each replayed member's metric = the window as recorded, with the replayed purchases'
    qualifying points in place of the recorded ones (refunds and adjustments stay as recorded)."""
    from patron.tiers.service import definitions

    metric, window = tier_window
    tiers = definitions(session, program.id)
    recorded = metric_values(session, program_id=program.id, metric=metric, window=window)
    moves: list[TierMove] = []
    counts = {tier.code: [0, 0] for tier in tiers}
    for account_id in sorted(members, key=lambda a: members[a][0]):
        base = recorded.get(account_id, 0) - recorded_in_window.get(account_id, 0)
        now_metric = base + current.qualifying.get(account_id, 0)
        then_metric = base + new.qualifying.get(account_id, 0)
        now_tier, then_tier = qualify(tiers, now_metric), qualify(tiers, then_metric)
        for index, reached in enumerate((now_tier, then_tier)):
            if reached is not None:
                counts[reached.code][index] += 1
        if now_tier is not then_tier:
            now_rank = now_tier.rank if now_tier is not None else -1
            then_rank = then_tier.rank if then_tier is not None else -1
            moves.append(
                TierMove(
                    member_id=members[account_id][0],
                    name=members[account_id][1],
                    current_tier=now_tier.code if now_tier is not None else None,
                    proposed_tier=then_tier.code if then_tier is not None else None,
                    current_metric=now_metric,
                    proposed_metric=then_metric,
                    direction="up" if then_rank > now_rank else "down",
                )
            )
    return TierImpact(
        window=window.key,
        metric=metric,
        moves=moves,
        tiers=[
            TierCount(tier=code, current_members=a, proposed_members=b, delta=b - a)
            for code, (a, b) in counts.items()
        ],
    )


def _has_tier_rule(doc: RuleSetDoc) -> bool:
    return any(isinstance(rule, TierMultiplier) and rule.enabled for rule in doc.rules)


def _rule_impacts(current: _Replay, new: _Replay) -> list[RuleImpact]:
    described: dict[str, tuple[str, str]] = {}
    for doc in (new.doc, current.doc):
        for rule in doc.rules:
            if rule.kind != "event":
                described.setdefault(rule.id, (rule.kind, rule_label(rule)))
    ids = [rule.id for rule in new.doc.rules if rule.kind != "event"]
    ids += [rule.id for rule in current.doc.rules if rule.kind != "event" and rule.id not in ids]
    in_current = {rule.id for rule in current.doc.rules}
    in_proposed = {rule.id for rule in new.doc.rules}
    # The tier definitions' multipliers (`tier:<code>`), which apply unless a rule set has its
    # own tier_multiplier rule: one row per tier, so the rows still add up to the totals.
    for tier_id in sorted({*current.by_rule, *new.by_rule}):
        if tier_id.startswith(TIER_PREFIX):
            ids.append(tier_id)
            described[tier_id] = ("tier_benefit", tier_id.removeprefix(TIER_PREFIX))
            if not _has_tier_rule(current.doc):
                in_current.add(tier_id)
            if not _has_tier_rule(new.doc):
                in_proposed.add(tier_id)
    for extra in PSEUDO_RULES:
        if current.by_rule.get(extra) or new.by_rule.get(extra):
            ids.append(extra)
            described[extra] = (extra, extra)
    out = []
    for rule_id in ids:
        kind, name = described[rule_id]
        now_points = current.by_rule.get(rule_id, ZERO)
        then_points = new.by_rule.get(rule_id, ZERO)
        out.append(
            RuleImpact(
                rule=rule_id,
                kind=kind,
                name=name,
                in_current=rule_id in in_current or rule_id in PSEUDO_RULES,
                in_proposed=rule_id in in_proposed or rule_id in PSEUDO_RULES,
                current_points=_tidy(now_points),
                proposed_points=_tidy(then_points),
                delta=_tidy(then_points - now_points),
            )
        )
    return out


def _tidy(value: Decimal) -> Decimal:
    """Exact, without trailing zeros or exponent (62.50 → 62.5, 2E+2 → 200)."""
    if value == value.to_integral_value():
        return Decimal(int(value))
    return Decimal(format(value.normalize(), "f"))


CSV_COLUMNS = [
    "section",
    "item",
    "name",
    "kind",
    "purchases",
    "actual_points",
    "current_points",
    "proposed_points",
    "delta",
    "actual_value",
    "current_value",
    "proposed_value",
    "delta_value",
    "currency",
]
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _text(value: str) -> str:
    # Names are free text; a spreadsheet would run one starting with = as a formula.
    return "'" + value if value.startswith(_FORMULA_START) else value


def to_csv(report: SimulationReport) -> bytes:
    """The report as one CSV; `section` says what a row is: summary, rule, member, warning
    (a dated rule outside the period) or tier_move (points columns: the tier metric)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    writer.writerow(
        [
            "summary",
            f"{report.date_from.isoformat()}..{report.date_to.isoformat()}",
            _text(report.program),
            "total",
            report.purchases,
            report.actual_points,
            report.current_points,
            report.proposed_points,
            report.delta,
            report.actual_value,
            report.current_value,
            report.proposed_value,
            report.delta_value,
            report.currency,
        ]
    )
    for rule in report.rules:
        writer.writerow(
            [
                "rule",
                rule.rule,
                _text(rule.name),
                rule.kind,
                "",
                "",
                rule.current_points,
                rule.proposed_points,
                rule.delta,
                "",
                "",
                "",
                "",
                "",
            ]
        )
    for member in report.top_members:
        writer.writerow(
            [
                "member",
                member.member_id,
                _text(member.name),
                "",
                member.purchases,
                member.actual_points,
                member.current_points,
                member.proposed_points,
                member.delta,
                "",
                "",
                "",
                "",
                "",
            ]
        )
    blank = [""] * 5
    for warning in report.warnings:
        writer.writerow(
            [
                "warning",
                warning.rule,
                _text(warning.detail),
                warning.code,
                "",
                "",
                "",
                "",
                "",
                *blank,
            ]
        )
    for move in report.tier_impact.moves if report.tier_impact is not None else ():
        writer.writerow(
            [
                "tier_move",
                move.member_id,
                _text(move.name),
                f"{move.current_tier or ''}->{move.proposed_tier or ''}",
                "",
                "",
                move.current_metric,
                move.proposed_metric,
                move.proposed_metric - move.current_metric,
                *blank,
            ]
        )
    # A BOM so Excel opens Korean and Chinese names correctly.
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")
