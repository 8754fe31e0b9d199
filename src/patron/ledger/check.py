"""The ledger's part of `patron check` (`patron.check`): prove the cached sums equal the
ledger, and the outbox reports every entry once, with set-based queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, and_, case, func, select
from sqlalchemy.orm import Session, aliased

from patron.events.kinds import ENTRY_EVENTS
from patron.events.models import DomainEvent
from patron.ledger.models import Account, Entry, Lot, Movement

# Entry kinds whose positive entries create a lot (merge_in, transfer_in: docs/moves.md).
LOT_KINDS = ["earn", "adjust", "merge_in", "transfer_in"]


@dataclass
class CheckReport:
    accounts: int = 0
    entries: int = 0
    lots: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def add(report: CheckReport, label: str, rows: Sequence[Any], limit: int = 20) -> None:
    for row in rows[:limit]:
        report.violations.append(f"{label}: {tuple(row)}")
    if len(rows) > limit:
        report.violations.append(f"{label}: … and {len(rows) - limit} more")


def check_ledger(session: Session) -> CheckReport:
    report = CheckReport()
    report.accounts = session.scalar(select(func.count()).select_from(Account)) or 0
    report.entries = session.scalar(select(func.count()).select_from(Entry)) or 0
    report.lots = session.scalar(select(func.count()).select_from(Lot)) or 0

    # 1. Each lot's remaining = its points + the movements on it, within [0, points].
    moved = (
        select(Movement.lot_id, func.sum(Movement.points).label("moved"))
        .where(Movement.lot_id.is_not(None))
        .group_by(Movement.lot_id)
        .subquery()
    )
    rows = session.execute(
        select(Lot.id, Lot.points, Lot.remaining, func.coalesce(moved.c.moved, 0))
        .outerjoin(moved, moved.c.lot_id == Lot.id)
        .where(
            (Lot.points + func.coalesce(moved.c.moved, 0) != Lot.remaining)
            | (Lot.remaining < 0)
            | (Lot.remaining > Lot.points)
        )
    ).all()
    add(
        report,
        "lot remaining != points + movements, or out of range (lot, points, remaining, moved)",
        rows,
    )

    # 2. Each entry's points = the lot it created + its movements.
    created = aliased(Lot)
    entry_moves = (
        select(Movement.entry_id, func.sum(Movement.points).label("moved"))
        .group_by(Movement.entry_id)
        .subquery()
    )
    created_points = case(
        (Entry.kind.in_(LOT_KINDS) & (Entry.points > 0), func.coalesce(created.points, 0)),
        else_=0,
    )
    rows = session.execute(
        select(
            Entry.id,
            Entry.kind,
            Entry.points,
            created_points,
            func.coalesce(entry_moves.c.moved, 0),
        )
        .outerjoin(created, and_(created.id == Entry.lot_id, Entry.points > 0))
        .outerjoin(entry_moves, entry_moves.c.entry_id == Entry.id)
        .where(Entry.points != created_points + func.coalesce(entry_moves.c.moved, 0))
    ).all()
    add(report, "entry points != lot created + movements (entry, kind, points, lot, moved)", rows)

    # 3. Account totals = sums of entries by kind; available/pending = lot remainders; debt = debt movements.
    reversed_entry = aliased(Entry)
    reversal_of = reversed_entry.kind
    sums = (
        select(
            Entry.account_id.label("account_id"),
            func.sum(Entry.points).label("net"),
            func.sum(
                case(
                    (Entry.kind == "earn", Entry.points),
                    (and_(Entry.kind == "reverse", reversal_of == "earn"), Entry.points),
                    else_=0,
                )
            ).label("earned"),
            func.sum(
                case(
                    (Entry.kind == "redeem", -Entry.points),
                    (and_(Entry.kind == "reverse", reversal_of == "redeem"), -Entry.points),
                    else_=0,
                )
            ).label("redeemed"),
            func.sum(case((Entry.kind == "expire", -Entry.points), else_=0)).label("expired"),
            func.sum(case((Entry.kind == "adjust", Entry.points), else_=0)).label("adjusted"),
        )
        .outerjoin(reversed_entry, reversed_entry.id == Entry.reverses_entry_id)
        .group_by(Entry.account_id)
        .subquery()
    )
    lot_sums = (
        select(
            Lot.account_id.label("account_id"),
            func.sum(case((Lot.pending.is_(False), Lot.remaining), else_=0)).label("available"),
            func.sum(case((Lot.pending.is_(True), Lot.remaining), else_=0)).label("pending"),
        )
        .group_by(Lot.account_id)
        .subquery()
    )
    debt = (
        select(Entry.account_id.label("account_id"), (-func.sum(Movement.points)).label("debt"))
        .join(Movement, Movement.entry_id == Entry.id)
        .where(Movement.lot_id.is_(None))
        .group_by(Entry.account_id)
        .subquery()
    )
    z = lambda col: func.coalesce(col, 0).cast(Integer)  # noqa: E731
    rows = session.execute(
        select(
            Account.id,
            Account.available,
            z(lot_sums.c.available),
            Account.pending,
            z(lot_sums.c.pending),
            Account.debt,
            z(debt.c.debt),
            Account.earned,
            z(sums.c.earned),
            Account.redeemed,
            z(sums.c.redeemed),
            Account.expired,
            z(sums.c.expired),
            Account.adjusted,
            z(sums.c.adjusted),
            z(sums.c.net),
        )
        .outerjoin(sums, sums.c.account_id == Account.id)
        .outerjoin(lot_sums, lot_sums.c.account_id == Account.id)
        .outerjoin(debt, debt.c.account_id == Account.id)
        .where(
            (Account.available != z(lot_sums.c.available))
            | (Account.pending != z(lot_sums.c.pending))
            | (Account.debt != z(debt.c.debt))
            | (Account.earned != z(sums.c.earned))
            | (Account.redeemed != z(sums.c.redeemed))
            | (Account.expired != z(sums.c.expired))
            | (Account.adjusted != z(sums.c.adjusted))
            | (z(sums.c.net) != Account.available + Account.pending - Account.debt)
            | (Account.debt < 0)
            | ((Account.debt > 0) & (Account.available + Account.pending > 0))
        )
    ).all()
    add(
        report,
        "account totals differ from the ledger (account, available, lots, pending, lots, "
        "debt, movements, earned, sum, redeemed, sum, expired, sum, adjusted, sum, net)",
        rows,
    )

    # 4. Redemptions and expiries only take (negative movements, on the account's own lots);
    #    an expire entry takes from lots expiring at its own instant (it covers an account's
    #    lots of one instant) and names a lot only when that is its one lot; reversals give
    #    back no more per lot than the redemption took from it.
    expire = Entry.kind == "expire"
    rows = session.execute(
        select(Entry.id, Movement.lot_id, Movement.points)
        .join(Movement, Movement.entry_id == Entry.id)
        .outerjoin(Lot, Lot.id == Movement.lot_id)
        .where(
            (Movement.lot_id.is_not(None) & (Lot.account_id != Entry.account_id))
            | (
                (Entry.kind.in_(["redeem", "expire"]))
                & ((Movement.points >= 0) | Movement.lot_id.is_(None))
            )
            | (expire & Lot.expires_at.is_distinct_from(Entry.occurred_at))
            | (expire & Entry.lot_id.is_not(None) & (Entry.lot_id != Movement.lot_id))
        )
    ).all()
    add(
        report,
        "movement on a foreign lot, a redemption/expiry that gives points, or an expiry of a lot"
        " not due at its entry's instant or not the lot it names (entry, lot, points)",
        rows,
    )

    taken = (
        select(Movement.entry_id, Movement.lot_id, (-func.sum(Movement.points)).label("taken"))
        .join(Entry, Entry.id == Movement.entry_id)
        .where(Entry.kind == "redeem")
        .group_by(Movement.entry_id, Movement.lot_id)
        .subquery()
    )
    given = (
        select(
            Entry.reverses_entry_id.label("entry_id"),
            Movement.lot_id,
            func.sum(Movement.points).label("given"),
        )
        .join(Movement, Movement.entry_id == Entry.id)
        .join(reversed_entry, reversed_entry.id == Entry.reverses_entry_id)
        .where(
            Entry.kind == "reverse",
            reversed_entry.kind == "redeem",
            Movement.points > 0,
            Movement.lot_id.is_not(None),
        )
        .group_by(Entry.reverses_entry_id, Movement.lot_id)
        .subquery()
    )
    rows = session.execute(
        select(given.c.entry_id, given.c.lot_id, given.c.given, func.coalesce(taken.c.taken, 0))
        .outerjoin(
            taken, and_(taken.c.entry_id == given.c.entry_id, taken.c.lot_id == given.c.lot_id)
        )
        .where(given.c.given > func.coalesce(taken.c.taken, 0))
    ).all()
    add(
        report,
        "a refund gave back more to a lot than the redemption took (redemption, lot, given, taken)",
        rows,
    )
    _check_events(session, report)
    return report


def _check_events(session: Session, report: CheckReport) -> None:
    """No event without its change, no change without its event: each entry has exactly one
    outbox event, and each points event names an existing entry, of the matching kind, member
    and program."""
    # 5. Entries with no event, or with several.
    per_entry = (
        select(DomainEvent.entry_id.label("entry_id"), func.count().label("events"))
        .where(DomainEvent.entry_id.is_not(None))
        .group_by(DomainEvent.entry_id)
        .subquery()
    )
    events = func.coalesce(per_entry.c.events, 0)
    rows = session.execute(
        select(Entry.id, Entry.kind, events)
        .outerjoin(per_entry, per_entry.c.entry_id == Entry.id)
        .where(events != 1)
        .order_by(Entry.id)
    ).all()
    add(report, "entry without exactly one outbox event (entry, kind, events)", rows)

    # 6. Points events whose entry does not exist, or is not the one they describe.
    expected = case(*((Entry.kind == kind, event) for kind, event in ENTRY_EVENTS.items()))
    rows = session.execute(
        select(DomainEvent.id, DomainEvent.kind, DomainEvent.entry_id, Entry.kind)
        .outerjoin(Entry, Entry.id == DomainEvent.entry_id)
        .outerjoin(Account, Account.id == Entry.account_id)
        .where(
            (DomainEvent.entry_id.is_not(None) | DomainEvent.kind.in_(ENTRY_EVENTS.values()))
            & (
                Entry.id.is_(None)
                | (DomainEvent.kind != expected)
                | (DomainEvent.member_id.is_distinct_from(Account.member_id))
                | (DomainEvent.program_id.is_distinct_from(Entry.program_id))
            )
        )
        .order_by(DomainEvent.id)
    ).all()
    add(
        report,
        "points event for no entry, or not matching its entry (event, kind, entry, entry kind)",
        rows,
    )
