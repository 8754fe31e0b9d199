"""A segment definition compiled to ONE set-based SQL query of member ids.

`member_ids(program_id, definition, as_of=..., now=..., segments=...)` returns a SQLAlchemy Core
`Select` with one column, `member_id`: the members of the program the definition holds for at
`as_of` (None: now). Campaigns, A/B tests and the rules engine build on it; nothing here loops
over members. Every condition is a predicate on the outer account/member row, mostly
`accounts.id IN (SELECT account_id … GROUP BY … HAVING …)` — uncorrelated, so PostgreSQL runs
each as one hashed semi-join (decision 0025).

Membership as of a date reads history only: tiers from tier_changes, balances from ledger
entries, activity from purchases / entries / redemptions, consent from consent_records, all up
to that date. Member attributes, birthdays and status have no history: their current values
count (docs/engagement.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    cast,
    exists,
    extract,
    false,
    func,
    not_,
    or_,
    select,
)

from patron.coupons.models import Redemption, Reward
from patron.errors import Invalid
from patron.ledger.models import Account, Entry, Purchase
from patron.members.consent import PURPOSES
from patron.members.models import ConsentRecord, Member
from patron.programs.models import Store
from patron.segments.definition import (
    Activity,
    All,
    Any_,
    Attribute,
    Balance,
    Birthday,
    ChannelUsed,
    Condition,
    Consent,
    Definition,
    Dormant,
    InSegment,
    Joined,
    Not,
    Redeemed,
    StoreUsed,
    TierIs,
)
from patron.tiers.models import TierChange

MARKETING_CHANNELS = ("email", "sms")  # before any record, members.marketing_consent holds


class SegmentCycle(Invalid):
    code = "segment_cycle"


class UnknownSegment(Invalid):
    code = "unknown_segment"


def member_ids(
    program_id: int,
    definition: Definition,
    *,
    as_of: datetime | None,
    now: datetime,
    segments: Mapping[str, Definition],
    own_code: str | None = None,
) -> Select[Any]:
    """The member ids of the program's segment `definition` at `as_of` (None: live, now).

    `segments` maps the program's segment codes to their definitions (for `segment`
    conditions); `own_code` is the segment being compiled, so a reference back to it is a
    cycle."""
    compiler = _Compiler(program_id, as_of=as_of, now=now, segments=segments)
    stack = (own_code,) if own_code else ()
    predicate = compiler.condition(definition.condition, stack)
    query = (
        select(Account.member_id.label("member_id"))
        .join(Member, Member.id == Account.member_id)
        .where(Account.program_id == program_id, Member.status == "active", predicate)
    )
    if as_of is not None:
        query = query.where(Account.created_at <= as_of)
    return query


class _Compiler:
    def __init__(
        self,
        program_id: int,
        *,
        as_of: datetime | None,
        now: datetime,
        segments: Mapping[str, Definition],
    ) -> None:
        self.program_id = program_id
        self.as_of = as_of
        self.at = as_of or now
        self.segments = segments

    def condition(self, cond: Condition, stack: tuple[str, ...]) -> ColumnElement[bool]:
        if isinstance(cond, All):
            return and_(*(self.condition(c, stack) for c in cond.of))
        if isinstance(cond, Any_):
            return or_(*(self.condition(c, stack) for c in cond.of))
        if isinstance(cond, Not):
            return not_(self.condition(cond.condition, stack))
        if isinstance(cond, InSegment):
            return self.in_segment(cond, stack)
        method = getattr(self, f"_{cond.type}")
        result: ColumnElement[bool] = method(cond)
        return result

    def in_segment(self, cond: InSegment, stack: tuple[str, ...]) -> ColumnElement[bool]:
        if cond.segment in stack:
            path = " → ".join((*stack, cond.segment))
            raise SegmentCycle(f"segments may not refer to themselves, directly or not: {path}")
        target = self.segments.get(cond.segment)
        if target is None:
            raise UnknownSegment(f"no segment {cond.segment!r} in this program")
        # Inlined: the same outer account row, so the whole tree stays one query.
        return self.condition(target.condition, (*stack, cond.segment))

    # --- the window helpers -------------------------------------------------------------

    def _since(self, days: int | None) -> datetime | None:
        return None if days is None else self.at - timedelta(days=days)

    def _purchases(self, days: int | None = None) -> list[ColumnElement[bool]]:
        where = [Purchase.program_id == self.program_id, Purchase.occurred_at <= self.at]
        since = self._since(days)
        if since is not None:
            where.append(Purchase.occurred_at > since)
        return where

    def _ranged(
        self,
        rows: Select[Any],
        low: int | None,
        high: int | None,
        value: ColumnElement[Any],
    ) -> ColumnElement[bool]:
        """The account has a value (the aggregate over `rows`; 0 without any) within [low, high].

        A member with no rows has 0: when 0 is inside the range the test is "not among those
        whose value is outside it", else "among those whose value is inside it"."""
        inside = []
        outside = []
        if low is not None:
            inside.append(value >= low)
            outside.append(value < low)
        if high is not None:
            inside.append(value <= high)
            outside.append(value > high)
        zero_inside = (low is None or low <= 0) and (high is None or high >= 0)
        if zero_inside:
            # NOT EXISTS, not NOT IN: PostgreSQL turns it into a hash anti-join at any size,
            # where NOT IN falls back to a per-row scan once the set outgrows work_mem.
            out = rows.having(or_(*outside)).subquery()
            return ~exists(select(1).where(out.c.account_id == Account.id))
        return Account.id.in_(rows.having(and_(*inside)))

    # --- the conditions -----------------------------------------------------------------

    def _tier(self, cond: TierIs) -> ColumnElement[bool]:
        if self.as_of is None:
            return Account.tier.in_(cond.tiers)
        latest = (
            select(TierChange.account_id, func.max(TierChange.id).label("id"))
            .where(TierChange.program_id == self.program_id, TierChange.at <= self.as_of)
            .group_by(TierChange.account_id)
            .subquery()
        )
        held = (
            select(TierChange.account_id)
            .join(latest, latest.c.id == TierChange.id)
            .where(TierChange.to_tier.in_(cond.tiers))
        )
        return Account.id.in_(held)

    def _balance(self, cond: Balance) -> ColumnElement[bool]:
        if self.as_of is None:
            value = Account.available + Account.pending - Account.debt
            parts = []
            if cond.min is not None:
                parts.append(value >= cond.min)
            if cond.max is not None:
                parts.append(value <= cond.max)
            return and_(*parts)
        total = func.sum(Entry.points)
        rows = (
            select(Entry.account_id)
            .where(Entry.program_id == self.program_id, Entry.occurred_at <= self.as_of)
            .group_by(Entry.account_id)
        )
        return self._ranged(rows, cond.min, cond.max, total)

    def _activity(self, cond: Activity) -> ColumnElement[bool]:
        since = self._since(cond.days)
        if cond.metric in ("points_earned", "points_spent"):
            kind = "earn" if cond.metric == "points_earned" else "redeem"
            value: ColumnElement[Any] = func.sum(Entry.points if kind == "earn" else -Entry.points)
            rows = (
                select(Entry.account_id)
                .where(
                    Entry.program_id == self.program_id,
                    Entry.kind == kind,
                    Entry.occurred_at <= self.at,
                    Entry.occurred_at > since,
                )
                .group_by(Entry.account_id)
            )
        else:
            value = func.sum(Purchase.amount_minor) if cond.metric == "spend" else func.count()
            rows = (
                select(Purchase.account_id)
                .where(*self._purchases(cond.days))
                .group_by(Purchase.account_id)
            )
        return self._ranged(rows, cond.min, cond.max, value)

    def _bought(self, *where: ColumnElement[bool]) -> ColumnElement[bool]:
        """A purchase of the account matching `where` exists: correlated, so PostgreSQL plans a
        semi-join (or, negated, an anti-join) and may use the purchases' account index."""
        return exists(select(1).where(Purchase.account_id == Account.id, *where))

    def _dormant(self, cond: Dormant) -> ColumnElement[bool]:
        since = self._since(cond.days)
        assert since is not None
        recent = ~self._bought(*self._purchases(cond.days))
        if cond.include_never:
            return recent
        before = self._bought(Purchase.program_id == self.program_id, Purchase.occurred_at <= since)
        return and_(before, recent)

    def _birthday(self, cond: Birthday) -> ColumnElement[bool]:
        return extract("month", Member.birthday).in_(cond.months)

    def _joined(self, cond: Joined) -> ColumnElement[bool]:
        since = self._since(cond.days)
        return and_(Account.created_at > since, Account.created_at <= self.at)

    def _store(self, cond: StoreUsed) -> ColumnElement[bool]:
        stores = select(Store.id).where(
            Store.program_id == self.program_id, Store.code.in_(cond.stores)
        )
        return self._bought(*self._purchases(cond.days), Purchase.store_id.in_(stores))

    def _channel(self, cond: ChannelUsed) -> ColumnElement[bool]:
        return self._bought(*self._purchases(cond.days), Purchase.channel.in_(cond.channels))

    def _attribute(self, cond: Attribute) -> ColumnElement[bool]:
        # As text on both engines (SQLite's json_extract gives numbers back as numbers).
        value = cast(Member.attributes[cond.key].as_string(), String)
        if cond.op == "exists":
            return value.is_not(None)
        if cond.op == "eq":
            return value == cond.values[0]
        if cond.op == "ne":
            return or_(value.is_(None), value != cond.values[0])
        return value.in_(cond.values)

    def _consent(self, cond: Consent) -> ColumnElement[bool]:
        channel = PURPOSES[cond.purpose]
        records = [ConsentRecord.channel == channel, ConsentRecord.at <= self.at]
        latest = (
            select(func.max(ConsentRecord.id).label("id"))
            .where(*records)
            .group_by(ConsentRecord.member_id)
            .subquery()
        )
        granted_now = select(ConsentRecord.member_id).where(
            ConsentRecord.id.in_(select(latest.c.id)), ConsentRecord.granted.is_(True)
        )
        any_record = exists(select(1).where(ConsentRecord.member_id == Member.id, *records))
        default: ColumnElement[bool] = (
            Member.marketing_consent.is_(True) if channel in MARKETING_CHANNELS else false()
        )
        granted = or_(Member.id.in_(granted_now), and_(default, ~any_record))
        return granted if cond.granted else not_(granted)

    def _redeemed(self, cond: Redeemed) -> ColumnElement[bool]:
        where = [Redemption.program_id == self.program_id, Redemption.created_at <= self.at]
        since = self._since(cond.days)
        if since is not None:
            where.append(Redemption.created_at > since)
        if cond.reward is not None:
            where.append(
                Redemption.reward_id.in_(
                    select(Reward.id).where(
                        Reward.program_id == self.program_id, Reward.code == cond.reward
                    )
                )
            )
        done = exists(select(1).where(Redemption.account_id == Account.id, *where))
        return done if cond.has else not_(done)
