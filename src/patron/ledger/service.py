"""Ledger primitives under the account lock: open an account, settle what is due.

Points move through the planner and applier of `patron.sales` (sales, refunds, adjustments,
rewards, events); what stays here is opening an account (with its member.enrolled event) and
bringing one account up to now (`settle_due`: pending points released, lots past their date
expired, as the nightly jobs write them). Every function expects the caller to hold the
account's row lock (`lock_account`) and never commits: the edge owns the transaction. Every
entry written here comes with its points.* event in the outbox (`_entry`), in that same
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from patron.events import outbox
from patron.ledger import rolling
from patron.ledger.models import Account, Entry, Lot, Movement
from patron.programs.models import Program, Store


@dataclass(frozen=True)
class Source:
    """Where a ledger write came from, copied onto its entries."""

    actor: str
    store_id: int | None = None
    channel: str | None = None
    external_ref: str | None = None
    purchase_id: int | None = None


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
    # RETURNING, not rowcount: an ORM-enabled INSERT run through the session reports rowcount
    # -1 on psycopg, so a conflict would read as "inserted" on PostgreSQL.
    key = list(model.__table__.primary_key.columns)
    return session.execute(stmt.returning(*key)).first() is not None


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


def settle_due(session: Session, account: Account, now: datetime, *, actor: str = "system") -> None:
    """Bring one account up to `now`: release matured pending points, expire overdue lots
    (one expire entry per expiry instant, as the nightly job writes them).

    Under a rolling policy (`ledger.rolling`) a lot whose own date passed may still be valid:
    when one looks overdue, the account's open lots are first moved to the rolling date, as
    the nightly job does; an account with nothing overdue costs nothing more."""
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
    if any(lot.expires_at is not None and lot.expires_at <= now for lot in due):
        _roll_forward(session, account)
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


def _roll_forward(session: Session, account: Account) -> None:
    """Move the account's open lots to its rolling date (no-op unless its policy rolls)."""
    until = rolling.until(session, account)
    if until is None:
        return
    for lot in session.scalars(
        select(Lot).where(
            Lot.account_id == account.id,
            Lot.remaining > 0,
            Lot.expires_at < until,
            rolling.never_expired(Lot.id),
        )
    ):
        lot.expires_at = until


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
