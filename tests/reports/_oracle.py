"""Report figures recomputed the slow, obvious way: every entry read into Python.

Independent of patron.reports: local days through zoneinfo, tiers by walking the tier history,
sales from the purchase rows. Tests compare the reports with these sums.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron import clock
from patron.clock import as_utc
from patron.db.engine import Database
from patron.ledger.models import Account, Entry, Lot, Purchase
from patron.programs.models import Program
from patron.programs.service import get_program
from patron.reports import common, finance, period, rollup
from patron.tiers.models import TierChange

KINDS = ("earn", "reverse", "redeem", "expire", "adjust")


def figure_of(kind: str, points: int) -> str:
    if kind == "earn":
        return "earned"
    if kind == "redeem":
        return "redeemed"
    if kind == "expire":
        return "expired"
    if kind == "reverse":
        return "reversed" if points < 0 else "restored"
    if kind == "adjust":
        return "adjusted_in" if points > 0 else "adjusted_out"
    return "other"


def _tier_at(history: list[tuple[datetime, int, str | None]], instant: datetime) -> str | None:
    tier = None
    for changed_at, _id, to_tier in history:
        if changed_at < instant:
            tier = to_tier
        else:
            break
    return tier


def daily(
    session: Session, program: Program, *, basis: str = "occurred", by: str | None = None
) -> dict[tuple[date, Any], dict[str, int]]:
    """{(local day, group value): {figure: magnitude, purchases, sales_minor, net}}."""
    tz = ZoneInfo(program.timezone)
    histories: dict[int, list[tuple[datetime, int, str | None]]] = defaultdict(list)
    for account_id, changed_at, change_id, to_tier in session.execute(
        select(TierChange.account_id, TierChange.at, TierChange.id, TierChange.to_tier).where(
            TierChange.program_id == program.id
        )
    ):
        histories[account_id].append((as_utc(changed_at), change_id, to_tier))
    for history in histories.values():
        history.sort()
    sales = {
        p.id: (p.amount_minor, p.earn_entry_id)
        for p in session.scalars(select(Purchase).where(Purchase.program_id == program.id))
    }
    out: dict[tuple[date, Any], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for e in session.scalars(select(Entry).where(Entry.program_id == program.id)):
        instant = as_utc(e.occurred_at if basis == "occurred" else e.created_at)
        day = instant.astimezone(tz).date()
        group: Any = None
        if by == "store":
            group = e.store_id
        elif by == "channel":
            group = e.channel
        elif by == "tier":
            group = _tier_at(histories.get(e.account_id, []), as_utc(e.occurred_at))
        sums = out[(day, group)]
        name = figure_of(e.kind, e.points)
        sums[name] += e.points if name == "other" else abs(e.points)
        sums["net"] += e.points
        if e.purchase_id is not None:
            amount, earn_entry = sales[e.purchase_id]
            if e.kind == "earn" or (e.kind == "redeem" and earn_entry is None):
                sums["purchases"] += 1
                sums["sales_minor"] += amount
    # A group whose entries all sum to nothing (a 0-point entry alone on its day and channel,
    # say) has no row in a report, as in the roll-up.
    return {
        k: nonzero for k, sums in out.items() if (nonzero := {f: v for f, v in sums.items() if v})
    }


def outstanding(session: Session, program: Program, before: datetime) -> int:
    """Σ entries dated before `before`, less lots already past their date but not written off."""
    total = sum(
        session.scalars(
            select(Entry.points).where(Entry.program_id == program.id, Entry.occurred_at < before)
        )
    )
    overdue = sum(
        session.scalars(
            select(Lot.remaining)
            .join(Account, Account.id == Lot.account_id)
            .where(
                Account.program_id == program.id,
                Lot.remaining > 0,
                Lot.expires_at.is_not(None),
                Lot.expires_at < before,
            )
        )
    )
    return int(total) - int(overdue)


FIGURES = (
    "earned",
    "reversed",
    "redeemed",
    "restored",
    "expired",
    "adjusted_in",
    "adjusted_out",
    "other",
    "purchases",
    "sales_minor",
)


def assert_reports_match(db: Database, code: str, first: date, last: date) -> None:
    """Every day's figures (by store, channel, tier; both bases) and the liability as of recent
    days equal the oracle's; the roll-up check passes."""
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, code)
        rng = common.day_range(program, first=first, last=last, now=clock.now())
        for basis in ("occurred", "recorded"):
            for by in (None, "store", "channel", "tier"):
                rows = period.daily(
                    session,
                    program,
                    first_day=rng.first,
                    last_day=rng.last,
                    lo=rng.lo,
                    hi=rng.hi,
                    basis=basis,  # type: ignore[arg-type]
                    group_by=by,  # type: ignore[arg-type]
                )
                got = {}
                for day, key, f in rows:
                    sums = {name: getattr(f, name) for name in FIGURES} | {"net": f.net}
                    # The roll-up stores "no store/channel/tier" as 0 or "".
                    got[(day, key or None)] = {k: v for k, v in sums.items() if v}
                want = daily(session, program, basis=basis, by=by)
                assert {k: v for k, v in got.items() if v} == want, (basis, by)
        today = common.today(program, clock.now())
        for offset in (0, 3, 10, 30, 45):
            day = today - timedelta(days=offset)
            owed = finance.liability(session, program, as_of=day, now=clock.now())
            before = common.day_start(program, day + timedelta(days=1))
            assert owed.outstanding_points == outstanding(session, program, before), day
        assert rollup.check(session).ok
