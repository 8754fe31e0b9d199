"""Ledger primitives: credit, debit, restore and settle, all under the account lock.

Every function here expects the caller to hold the account's row lock
(`lock_account`) and never commits: the edge owns the transaction. Every entry written here
comes with its points.* event in the outbox (`_entry`), and a new account with member.enrolled
(`open_account`), in that same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from patron.errors import InsufficientPoints
from patron.events import outbox
from patron.ledger.models import Account, Entry, Lot, Movement
from patron.programs.models import Program, Store

Shortfall = Literal["reject", "allow_debt", "write_off"]


@dataclass(frozen=True)
class Source:
    """Where a ledger write came from, copied onto its entries."""

    actor: str
    store_id: int | None = None
    channel: str | None = None
    external_ref: str | None = None
    purchase_id: int | None = None


@dataclass
class DebitResult:
    entry: Entry | None
    taken: int  # points taken from lots
    debt_added: int
    written_off: int


def insert_ignore(
    session: Session, model: type[Any], values: dict[str, Any], keys: list[str]
) -> bool:
    """INSERT … ON CONFLICT DO NOTHING on either engine; whether the row was inserted."""
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt: Any = pg_insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(model).values(**values).on_conflict_do_nothing(index_elements=keys)
    return bool(session.execute(stmt).rowcount)  # type: ignore[attr-defined]


def lock_account(session: Session, account_id: int) -> Account:
    """Take the account's row lock (SQLite: writers already hold the database lock)."""
    stmt = (
        select(Account)
        .where(Account.id == account_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.scalars(stmt).one()


def open_account(session: Session, *, program_id: int, member_id: int, now: datetime) -> Account:
    """The member's account in the program, created if needed (with its member.enrolled
    event: enrolling, a first sale or a first event all open it here), locked."""
    account = session.scalars(
        select(Account)
        .where(Account.program_id == program_id, Account.member_id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if account is not None:
        return account
    # Two first sales for one member may race here: ON CONFLICT lets exactly one insert win,
    # and only the winner reports the enrolment.
    created = insert_ignore(
        session,
        Account,
        {
            "program_id": program_id,
            "member_id": member_id,
            "available": 0,
            "pending": 0,
            "debt": 0,
            "earned": 0,
            "redeemed": 0,
            "expired": 0,
            "adjusted": 0,
            "created_at": now,
        },
        ["program_id", "member_id"],
    )
    if created:
        program = session.get(Program, program_id)
        assert program is not None
        outbox.enrolled(
            session, program_id=program_id, program=program.code, member_id=member_id, at=now
        )
    account_id = session.scalar(
        select(Account.id).where(Account.program_id == program_id, Account.member_id == member_id)
    )
    assert account_id is not None
    return lock_account(session, account_id)


def _entry(
    session: Session,
    account: Account,
    *,
    kind: str,
    points: int,
    now: datetime,
    occurred_at: datetime,
    source: Source,
    reason: str | None = None,
    lot_id: int | None = None,
    reverses: Entry | None = None,
    breakdown: list[dict[str, Any]] | None = None,
    rule_version: int | None = None,
    details: dict[str, Any] | None = None,
    qualifying: int = 0,
    expires_at: datetime | None = None,
) -> Entry:
    """The one place the ORM writes an entry, and with it the entry's points.* event.

    `expires_at` is the expiry of the lot a credit created (for the event's payload)."""
    entry = Entry(
        program_id=account.program_id,
        account_id=account.id,
        kind=kind,
        points=points,
        qualifying=qualifying,
        lot_id=lot_id,
        reverses_entry_id=reverses.id if reverses is not None else None,
        purchase_id=source.purchase_id,
        occurred_at=occurred_at,
        created_at=now,
        reason=reason,
        store_id=source.store_id,
        channel=source.channel,
        actor=source.actor,
        external_ref=source.external_ref,
        rule_version=rule_version,
        breakdown=breakdown,
        details=details,
    )
    session.add(entry)
    session.flush()
    _entry_event(session, account, entry, expires_at)
    return entry


def _entry_event(
    session: Session, account: Account, entry: Entry, expires_at: datetime | None
) -> None:
    # The program and the store are usually in the identity map already (the caller loaded
    # them to validate the request), so this costs no query in the common case.
    program = session.get(Program, account.program_id)
    assert program is not None
    store = session.get(Store, entry.store_id) if entry.store_id is not None else None
    outbox.entry_event(
        session,
        program_id=account.program_id,
        program=program.code,
        member_id=account.member_id,
        entry_id=entry.id,
        entry_kind=entry.kind,
        points=entry.points,
        occurred_at=entry.occurred_at,
        at=entry.created_at,
        reason=entry.reason,
        order=entry.external_ref,
        store=store.code if store is not None else None,
        channel=entry.channel,
        expires_at=expires_at,
    )


def _take(account: Account, lot: Lot, points: int) -> None:
    lot.remaining -= points
    if lot.pending:
        account.pending -= points
    else:
        account.available -= points


def _give(account: Account, lot: Lot, points: int) -> None:
    lot.remaining += points
    if lot.pending:
        account.pending += points
    else:
        account.available += points


def _settle_debt(session: Session, account: Account, entry: Entry, lots: list[Lot]) -> int:
    """Pay the account's debt from freshly credited lots (debt > 0 means every lot is empty)."""
    settled = 0
    for lot in lots:
        if account.debt <= 0:
            break
        part = min(account.debt, lot.remaining)
        if part <= 0:
            continue
        _take(account, lot, part)
        account.debt -= part
        settled += part
        session.add(Movement(entry_id=entry.id, lot_id=lot.id, points=-part))
        session.add(Movement(entry_id=entry.id, lot_id=None, points=part))
    return settled


def credit(
    session: Session,
    account: Account,
    *,
    kind: Literal["earn", "adjust"],
    points: int,
    now: datetime,
    occurred_at: datetime,
    source: Source,
    expires_at: datetime | None,
    pending_until: datetime | None = None,
    reason: str | None = None,
    breakdown: list[dict[str, Any]] | None = None,
    rule_version: int | None = None,
    qualifying: int | None = None,
) -> Entry:
    """New points in a new lot; any debt is paid from it first.

    `qualifying` is the part that counts towards tiers: by default all of an earn, none of an
    adjustment.
    """
    assert points > 0
    if qualifying is None:
        qualifying = points if kind == "earn" else 0
    pending = pending_until is not None and pending_until > now
    lot = Lot(
        account_id=account.id,
        points=points,
        remaining=0,
        earned_at=occurred_at,
        pending_until=pending_until,
        pending=pending,
        expires_at=expires_at,
    )
    session.add(lot)
    session.flush()
    _give(account, lot, points)
    if kind == "earn":
        account.earned += points
    else:
        account.adjusted += points
    entry = _entry(
        session,
        account,
        kind=kind,
        points=points,
        now=now,
        occurred_at=occurred_at,
        source=source,
        reason=reason,
        lot_id=lot.id,
        breakdown=breakdown,
        rule_version=rule_version,
        qualifying=qualifying,
        expires_at=expires_at,
        details={
            "expires_at": expires_at.isoformat() if expires_at else None,
            "pending_until": pending_until.isoformat() if pending_until and pending else None,
        },
    )
    settled = _settle_debt(session, account, entry, [lot])
    if settled:
        entry.details = {**(entry.details or {}), "debt_settled": settled}
    return entry


def _spendable_lots(session: Session, account: Account, now: datetime) -> list[Lot]:
    stmt = (
        select(Lot)
        .where(
            Lot.account_id == account.id,
            Lot.remaining > 0,
            Lot.pending.is_(False),
            or_(Lot.expires_at.is_(None), Lot.expires_at > now),
        )
        .order_by(Lot.expires_at.is_(None), Lot.expires_at, Lot.id)
    )
    return list(session.scalars(stmt))


def _pending_lots(session: Session, account: Account, now: datetime) -> list[Lot]:
    stmt = (
        select(Lot)
        .where(Lot.account_id == account.id, Lot.remaining > 0, Lot.pending.is_(True))
        .order_by(Lot.expires_at.is_(None), Lot.expires_at, Lot.id)
    )
    return list(session.scalars(stmt))


def debit(
    session: Session,
    account: Account,
    *,
    kind: Literal["redeem", "reverse", "adjust"],
    points: int,
    now: datetime,
    occurred_at: datetime,
    source: Source,
    shortfall: Shortfall = "reject",
    clawback_lot_id: int | None = None,
    reverses: Entry | None = None,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    qualifying: int = 0,
) -> DebitResult:
    """Take points from lots, soonest-to-expire first.

    A redemption spends only available points. A clawback (reverse, negative
    adjust) takes the named lot first, then available, then pending points, and
    handles what is still missing by `shortfall`. `qualifying` (zero or negative) is what the
    entry takes off the member's tier qualification.
    """
    assert points > 0
    lots = _spendable_lots(session, account, now)
    if kind != "redeem":
        lots = lots + _pending_lots(session, account, now)
        if clawback_lot_id is not None:
            first = [lot for lot in lots if lot.id == clawback_lot_id]
            lots = first + [lot for lot in lots if lot.id != clawback_lot_id]
    on_hand = sum(lot.remaining for lot in lots)
    missing = max(0, points - on_hand)
    if missing and shortfall == "reject":
        what = "available" if kind == "redeem" else "left"
        raise InsufficientPoints(f"{points} points needed but only {on_hand} are {what}")

    planned: list[tuple[Lot, int]] = []
    need = points
    for lot in lots:
        if need == 0:
            break
        part = min(need, lot.remaining)
        planned.append((lot, part))
        need -= part

    taken = points - missing
    debt_added = missing if shortfall == "allow_debt" else 0
    written_off = missing if shortfall == "write_off" else 0
    entry_points = -(taken + debt_added)
    if entry_points == 0:
        return DebitResult(entry=None, taken=0, debt_added=0, written_off=written_off)

    extra = dict(details or {})
    if debt_added:
        extra["debt_added"] = debt_added
    if written_off:
        extra["written_off"] = written_off
    entry = _entry(
        session,
        account,
        kind=kind,
        points=entry_points,
        now=now,
        occurred_at=occurred_at,
        source=source,
        reason=reason,
        reverses=reverses,
        details=extra or None,
        qualifying=qualifying,
    )
    for lot, part in planned:
        _take(account, lot, part)
        session.add(Movement(entry_id=entry.id, lot_id=lot.id, points=-part))
    if debt_added:
        account.debt += debt_added
        session.add(Movement(entry_id=entry.id, lot_id=None, points=-debt_added))

    total = taken + debt_added
    if kind == "redeem":
        account.redeemed += total
    elif kind == "adjust":
        account.adjusted -= total
    else:
        assert reverses is not None and reverses.kind == "earn"
        account.earned -= total
    session.flush()
    return DebitResult(entry=entry, taken=taken, debt_added=debt_added, written_off=written_off)


def reverse_qualifying(
    session: Session,
    account: Account,
    *,
    earn: Entry,
    qualifying: int,
    now: datetime,
    occurred_at: datetime,
    source: Source,
    reason: str | None = None,
) -> Entry:
    """A zero-point reversal that only takes qualifying points back.

    Used when a refund could take no points (they expired, or were written off): the member
    still did not earn them towards a tier.
    """
    assert qualifying < 0 and earn.kind == "earn"
    return _entry(
        session,
        account,
        kind="reverse",
        points=0,
        now=now,
        occurred_at=occurred_at,
        source=source,
        reason=reason,
        reverses=earn,
        qualifying=qualifying,
        details={"qualifying_only": True},
    )


def restore(
    session: Session,
    account: Account,
    *,
    redemption: Entry,
    points: int,
    now: datetime,
    occurred_at: datetime,
    source: Source,
    reason: str | None = None,
) -> Entry:
    """Give back spent points to exactly the lots the redemption took them from."""
    assert points > 0 and redemption.kind == "redeem"
    taken_rows = session.execute(
        select(Movement.lot_id, func.sum(Movement.points))
        .where(Movement.entry_id == redemption.id, Movement.lot_id.is_not(None))
        .group_by(Movement.lot_id)
    ).all()
    restored_rows = session.execute(
        select(Movement.lot_id, func.sum(Movement.points))
        .join(Entry, Entry.id == Movement.entry_id)
        .where(
            Entry.reverses_entry_id == redemption.id,
            Entry.kind == "reverse",
            Movement.points > 0,
            Movement.lot_id.is_not(None),
        )
        .group_by(Movement.lot_id)
    ).all()
    restored = {lot_id: int(total) for lot_id, total in restored_rows}
    open_per_lot = {lot_id: -int(total) - restored.get(lot_id, 0) for lot_id, total in taken_rows}
    lots = list(session.scalars(select(Lot).where(Lot.id.in_(list(open_per_lot)))))
    # Latest expiry first: the member gets back the points that stay valid longest.
    lots.sort(
        key=lambda lot: (
            lot.expires_at is not None,
            -lot.expires_at.timestamp() if lot.expires_at else 0.0,
            -lot.id,
        )
    )
    if sum(open_per_lot.values()) < points:
        raise InsufficientPoints(
            f"only {sum(open_per_lot.values())} points of this redemption are left to give back"
        )

    entry = _entry(
        session,
        account,
        kind="reverse",
        points=points,
        now=now,
        occurred_at=occurred_at,
        source=source,
        reason=reason,
        reverses=redemption,
    )
    need = points
    touched: list[Lot] = []
    for lot in lots:
        if need == 0:
            break
        part = min(need, open_per_lot[lot.id])
        if part <= 0:
            continue
        _give(account, lot, part)
        session.add(Movement(entry_id=entry.id, lot_id=lot.id, points=part))
        touched.append(lot)
        need -= part
    account.redeemed -= points
    _settle_debt(session, account, entry, touched)
    session.flush()
    return entry


def settle_due(session: Session, account: Account, now: datetime, *, actor: str = "system") -> None:
    """Bring one account up to `now`: release matured pending points, expire overdue lots
    (one expire entry per expiry instant, as the nightly job writes them)."""
    due = list(
        session.scalars(
            select(Lot)
            .where(
                Lot.account_id == account.id,
                Lot.remaining > 0,
                or_(
                    and_(Lot.pending.is_(True), Lot.pending_until <= now),
                    Lot.expires_at <= now,
                ),
            )
            .order_by(Lot.id)
        )
    )
    expiring: dict[datetime, list[Lot]] = {}
    for lot in due:
        if lot.pending and lot.pending_until is not None and lot.pending_until <= now:
            account.pending -= lot.remaining
            account.available += lot.remaining
            lot.pending = False
        if lot.expires_at is not None and lot.expires_at <= now:
            expiring.setdefault(lot.expires_at, []).append(lot)
    for expires_at in sorted(expiring):
        expire_lots(session, account, expiring[expires_at], now=now, actor=actor)
    session.flush()


def expire_lots(
    session: Session, account: Account, lots: list[Lot], *, now: datetime, actor: str
) -> Entry:
    """One expire entry for the account's `lots`, which all expire at the same instant: their
    remainders, dated at that instant, with a movement per lot (`lot_id` names the lot only
    when there is one). `ledger.jobs` writes the same rows set-based."""
    expires_at = lots[0].expires_at
    assert expires_at is not None and all(lot.expires_at == expires_at for lot in lots)
    parts = [(lot, lot.remaining) for lot in lots]
    assert all(points > 0 for _, points in parts)
    total = sum(points for _, points in parts)
    entry = _entry(
        session,
        account,
        kind="expire",
        points=-total,
        now=now,
        occurred_at=expires_at,
        source=Source(actor=actor),
        lot_id=lots[0].id if len(lots) == 1 else None,
        reason="points expired",
    )
    for lot, points in parts:
        _take(account, lot, points)
        session.add(Movement(entry_id=entry.id, lot_id=lot.id, points=-points))
    account.expired += total
    return entry
