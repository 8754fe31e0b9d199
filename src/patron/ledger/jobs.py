"""Set-based, bounded, resumable jobs: expiry and pending release.

Each chunk (at most `batch_size` lots) is one transaction whose work happens in the database,
not row by row in Python, so an interrupted run keeps every chunk it committed and the next run
continues with what is left. Within a chunk:

1. the accounts owning the chunk's lots are locked in id order — the order every multi-account
   writer uses, while an earn locks a single account, so the job cannot deadlock with a till;
2. the chunk's lots are read again after the lock (a till may have spent from them meanwhile)
   and only lots of accounts this chunk locked are touched; for expiry, that is every open lot
   of those accounts due by the chunk's last instant, so an account's lots expiring at one
   instant are never split between chunks;
3. one expire entry per account and expiry instant (the sum of its lots' remainders, dated at
   that instant; `lot_id` set only when it covers one lot), one movement per lot (what ties the
   entry to its lots) and one points.expired event per entry (the outbox row, its JSON payload
   built by the database, equal to `patron.events.outbox.entry_payload`'s) are inserted with
   INSERT … SELECT, the lots' remainders are zeroed and the accounts' totals moved by one
   aggregated UPDATE … FROM.

On PostgreSQL step 3 is a single statement of data-modifying CTEs. SQLite has no INSERT in a
CTE, but a writer holds the database lock for its whole transaction (BEGIN IMMEDIATE), so the
entries just inserted are exactly those with an id above the largest one before the chunk.
See docs/decisions/0008-set-based-expiry.md. Releasing pending points writes no entry, so no
event either. Between the two, programs with a rolling policy (`ledger.rolling`) have the lots
of their still-active accounts moved to the rolling date, so only what is truly overdue expires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    and_,
    any_,
    bindparam,
    case,
    false,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from patron.audit import idempotency
from patron.db.engine import Database
from patron.events.kinds import ENTRY_EVENTS
from patron.events.models import DomainEvent
from patron.events.outbox import EVENT_COLUMNS, entry_payload_sql
from patron.ledger import rolling
from patron.ledger.models import Account, Entry, Lot, Movement
from patron.programs.models import Program

EXPIRED = "points expired"  # the reason of every expire entry


@dataclass
class ExpiryReport:
    dry_run: bool
    lots: int = 0
    points: int = 0
    accounts: int = 0
    entries: int = 0  # expire entries written: one per account and expiry instant (not dry runs)
    released_lots: int = 0
    released_points: int = 0
    idempotency_keys_purged: int = 0
    # Rolling policies: lots whose own date passed moved to their account's rolling date.
    rolled_lots: int = 0
    rolled_accounts: int = 0


@dataclass
class Chunk:
    """What one transaction did: lots (and their points) on these accounts.

    `found` is False once nothing is left to pick; a chunk can find lots yet change none when
    a till spent them between the pick and the lock.
    """

    found: bool = False
    lots: int = 0
    points: int = 0
    entries: int = 0
    account_ids: Sequence[int] = ()


def _due_expiry(now: datetime) -> ColumnElement[bool]:
    return and_(Lot.remaining > 0, Lot.expires_at.is_not(None), Lot.expires_at <= now)


def _due_release(now: datetime) -> ColumnElement[bool]:
    return and_(Lot.pending.is_(True), Lot.pending_until <= now)


def preview(session: Session, now: datetime) -> ExpiryReport:
    lots, points, accounts = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(Lot.remaining), 0),
            func.count(func.distinct(Lot.account_id)),
        ).where(_due_expiry(now))
    ).one()
    released, released_points = session.execute(
        select(func.count(), func.coalesce(func.sum(Lot.remaining), 0)).where(_due_release(now))
    ).one()
    report = ExpiryReport(
        dry_run=True,
        lots=lots,
        points=int(points),
        accounts=accounts,
        released_lots=released,
        released_points=int(released_points),
    )
    # Rolling accounts still active keep their lots: what a run would roll forward, not expire.
    found = rolling.policies(session)
    if found.programs:
        after = 0
        while True:
            rows = _rolling_candidates(session, now, found, after, 5000)
            if not rows:
                break
            after = rows[-1][0]
            kept = [aid for aid, at in rolling.untils(session, rows, found).items() if at > now]
            if kept:
                n, p = session.execute(
                    select(func.count(), func.coalesce(func.sum(Lot.remaining), 0)).where(
                        _due_expiry(now), Lot.account_id.in_(kept)
                    )
                ).one()
                report.lots -= n
                report.points -= int(p)
                report.accounts -= len(kept)
                report.rolled_accounts += len(kept)
                report.rolled_lots += n
    return report


# Bulk statements: the ORM need not fetch the rows back to refresh objects (there are none).
_BULK = {"synchronize_session": False}


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _order(session: Session, key: Any) -> list[Any]:
    """Chunks follow a partial index on `key`.

    On PostgreSQL a tie-break on id would sort every lot sharing the instant (points earned the
    same day expire at the same local midnight) for each chunk; index order is enough, since a
    done lot leaves the index's condition. SQLite's index ends with the rowid, so the tie-break
    is free there and makes the pick repeatable within the transaction.
    """
    return [key] if _is_postgresql(session) else [key, Lot.id]


def _ids(name: str, values: Sequence[int]) -> Any:
    return any_(bindparam(name, list(values), type_=ARRAY(BigInteger)))


def _pick_and_lock(
    session: Session, due: ColumnElement[bool], key: Any, batch_size: int
) -> tuple[list[Any], list[int]]:
    """PostgreSQL: the chunk's lots (id, account, `key`) and their accounts, now locked in id
    order."""
    # A chunk is a batch job's own transaction with a plan known in advance: compiling it to
    # machine code (its cost estimate is large) only adds time. Every row it touches is found
    # by id or by a partial index; a few thousand ids looked like a large share of a small
    # accounts table to the planner, which then read the whole table for them (37 ms a chunk
    # at 100 k accounts, growing with the table).
    session.execute(text("SET LOCAL jit = off"))
    session.execute(text("SET LOCAL enable_seqscan = off"))
    picked = session.execute(
        select(Lot.id, Lot.account_id, key)
        .where(due)
        .order_by(*_order(session, key))
        .limit(batch_size)
    ).all()
    account_ids = sorted({account_id for _, account_id, _ in picked})
    if account_ids:
        session.execute(
            select(Account.id)
            .where(Account.id == _ids("accounts", account_ids))
            .order_by(Account.id)
            .with_for_update()
        ).all()
    return list(picked), account_ids


# --- pending release ------------------------------------------------------------------------


def _release_chunk_postgresql(session: Session, now: datetime, batch_size: int) -> Chunk:
    picked, account_ids = _pick_and_lock(session, _due_release(now), Lot.pending_until, batch_size)
    lot_ids = [lot_id for lot_id, _, _ in picked]
    if not lot_ids:
        return Chunk()
    # Read again under the lock: a till may have changed these lots since the pick.
    chunk = and_(Lot.id == _ids("lots", lot_ids), _due_release(now))
    due = select(Lot.id, Lot.account_id, Lot.remaining).where(chunk).cte("due")
    released = update(Lot).where(chunk).values(pending=False)
    sums = (
        select(due.c.account_id, func.sum(due.c.remaining).label("points"))
        .group_by(due.c.account_id)
        .cte("sums")
    )
    moved = (
        update(Account)
        .where(Account.id == sums.c.account_id)
        .values(
            pending=Account.pending - sums.c.points, available=Account.available + sums.c.points
        )
    )
    lots, points = session.execute(
        select(func.count(), func.coalesce(func.sum(due.c.remaining), 0)).add_cte(
            released.cte("released"), moved.cte("moved")
        )
    ).one()
    return Chunk(found=True, lots=int(lots), points=int(points), account_ids=account_ids)


def _release_chunk_sqlite(session: Session, now: datetime, batch_size: int) -> Chunk:
    # The transaction holds the write lock and the pick is repeatable: each statement below
    # sees the same lots until the last one flips them.
    pick = (
        select(Lot.id)
        .where(_due_release(now))
        .order_by(*_order(session, Lot.pending_until))
        .limit(batch_size)
        .scalar_subquery()
    )
    lots, points = session.execute(
        select(func.count(), func.coalesce(func.sum(Lot.remaining), 0)).where(Lot.id.in_(pick))
    ).one()
    if not lots:
        return Chunk()
    sums = (
        select(Lot.account_id.label("account_id"), func.sum(Lot.remaining).label("points"))
        .where(Lot.id.in_(pick))
        .group_by(Lot.account_id)
        .subquery()
    )
    session.execute(
        update(Account)
        .where(Account.id == sums.c.account_id)
        .values(
            pending=Account.pending - sums.c.points, available=Account.available + sums.c.points
        ),
        execution_options=_BULK,
    )
    session.execute(
        update(Lot).where(Lot.id.in_(pick)).values(pending=False), execution_options=_BULK
    )
    return Chunk(found=True, lots=int(lots), points=int(points))


def _release_chunk(session: Session, now: datetime, batch_size: int) -> Chunk:
    if _is_postgresql(session):
        return _release_chunk_postgresql(session, now, batch_size)
    return _release_chunk_sqlite(session, now, batch_size)


# --- rolling policies ----------------------------------------------------------------------


def _rolling_candidates(
    session: Session, now: datetime, found: rolling.Policies, after: int, batch_size: int
) -> list[tuple[int, int, str | None]]:
    """Accounts (id, program, tier) after `after`, in id order, of the programs where a
    rolling policy applies, with a lot whose own date passed."""
    rows = session.execute(
        select(Account.id, Account.program_id, Account.tier)
        .where(
            Account.program_id.in_(found.programs),
            Account.id > after,
            select(Lot.id).where(Lot.account_id == Account.id, _due_expiry(now)).exists(),
        )
        .order_by(Account.id)
        .limit(batch_size)
    ).all()
    return [(aid, pid, tier) for aid, pid, tier in rows]


_LOTS = Lot.__table__
_ROLL = (
    update(_LOTS)  # type: ignore[arg-type]  # Core, not ORM: executemany by account
    .where(
        _LOTS.c.account_id == bindparam("a_id"),
        _LOTS.c.remaining > 0,
        _LOTS.c.expires_at < bindparam("until", type_=Lot.expires_at.type),
        rolling.never_expired(_LOTS.c.id),
    )
    .values(expires_at=bindparam("until", type_=Lot.expires_at.type))
)


def _roll_chunk(
    session: Session, now: datetime, found: rolling.Policies, after: int, batch_size: int
) -> tuple[int | None, int, int]:
    """Move the open lots of up to `batch_size` rolling accounts with a lot looking due to
    their rolling date (`ledger.rolling`); the accounts are locked in id order first. Returns
    the last account looked at (None: no more), the lots moved and the accounts moved."""
    rows = _rolling_candidates(session, now, found, after, batch_size)
    if not rows:
        return None, 0, 0
    ids = [aid for aid, _, _ in rows]
    if _is_postgresql(session):
        session.execute(
            select(Account.id)
            .where(Account.id == _ids("accounts", ids))
            .order_by(Account.id)
            .with_for_update()
        ).all()
    moves = rolling.untils(session, rows, found)
    # Accounts active within N keep their lots (counted); the others' lots older than their
    # rolling date move to it and expire there, in one entry, in the expiry step.
    kept = [{"a_id": aid, "until": at} for aid, at in sorted(moves.items()) if at > now]
    gone = [{"a_id": aid, "until": at} for aid, at in sorted(moves.items()) if at <= now]
    moved = session.connection().execute(_ROLL, kept).rowcount if kept else 0
    if gone:
        session.connection().execute(_ROLL, gone)
    return ids[-1], max(moved or 0, 0), len(kept)


def _roll(db: Database, now: datetime, batch_size: int, report: ExpiryReport) -> None:
    """Rolling policies first: only the lots of accounts inactive for N are then due."""
    with db.unit_of_work(readonly=True) as session:
        found = rolling.policies(session)
    if not found.programs:
        return  # no program rolls: nothing to read
    after = 0
    while True:
        with db.unit_of_work() as session:
            last, lots, accounts = _roll_chunk(session, now, found, after, batch_size)
        if last is None:
            break
        after = last
        report.rolled_lots += lots
        report.rolled_accounts += accounts


# --- expiry ---------------------------------------------------------------------------------

_ENTRY_COLUMNS = [
    "program_id",
    "account_id",
    "kind",
    "points",
    "qualifying",
    "lot_id",
    "occurred_at",
    "created_at",
    "actor",
    "reason",
]


def _entry_values(
    program_id: Any,
    account_id: Any,
    points: Any,
    lot_id: Any,
    expires_at: Any,
    now: datetime,
    actor: str,
) -> list[Any]:
    """An expire entry: `points` (negative) of the account's lots expiring at `expires_at`,
    dated at that instant; `lot_id` only when it covers a single lot."""
    return [
        program_id,
        account_id,
        literal("expire", Entry.kind.type),
        points,
        literal(0, Entry.qualifying.type),
        lot_id,
        expires_at,
        literal(now, Entry.created_at.type),
        literal(actor, Entry.actor.type),
        literal(EXPIRED, Entry.reason.type),
    ]


def _single_lot(lot_id: Any) -> Any:
    """The group's lot when it has exactly one, else NULL (an aggregate over the group)."""
    return case((func.count() == 1, func.min(lot_id)), else_=None)


def _expired_events(
    dialect: str,
    *,
    program_id: Any,
    program_code: Any,
    member_id: Any,
    entry_id: Any,
    points: Any,
    occurred_at: Any,
    now: datetime,
) -> list[Any]:
    """The columns (EVENT_COLUMNS) of an expire entry's points.expired event; its payload is
    what `ledger.service.expire_lots` writes for the same entry (no order, store, channel or
    expiry: the entry has none)."""
    return [
        program_id,
        member_id,
        entry_id,
        literal(ENTRY_EVENTS["expire"], DomainEvent.kind.type),
        entry_payload_sql(
            dialect,
            program=program_code,
            member_id=member_id,
            entry_id=entry_id,
            entry_kind=literal("expire", Entry.kind.type),
            points=points,
            occurred_at=occurred_at,
            reason=literal(EXPIRED, Entry.reason.type),
        ),
        literal(now, DomainEvent.at.type),
        false(),
    ]


def _expiring(
    accounts: ColumnElement[bool], at_last: ColumnElement[bool], until: datetime
) -> ColumnElement[bool]:
    """The chunk after the lock: the open lots of its `accounts` due before its last instant
    `until`, and those at `until` of the accounts picked `at_last`.

    The pick runs in expiry order, so it holds every lot of its accounts due before `until`;
    it may stop among the lots of `until`. Taking the rest of those accounts' lots at `until`
    keeps an account's lots of one instant in one chunk, hence in one entry, at the cost of a
    few lots more than `batch_size`. `until` is at most `now`; a NULL never compares.
    """
    return and_(
        accounts,
        Lot.remaining > 0,
        Lot.expires_at <= until,
        or_(Lot.expires_at < until, at_last),
    )


def _expire_chunk_postgresql(session: Session, now: datetime, batch_size: int, actor: str) -> Chunk:
    picked, account_ids = _pick_and_lock(session, _due_expiry(now), Lot.expires_at, batch_size)
    if not picked:
        return Chunk()
    until = max(expires_at for _, _, expires_at in picked)
    at_last = sorted({account for _, account, expires_at in picked if expires_at == until})
    # Read again under the lock: this statement's snapshot sees every till that held these
    # accounts, and every sub-statement below sees that same snapshot. The accounts are named
    # by id, so each step is an index lookup (ix_lots_account_open) whatever the planner
    # estimates.
    chunk = _expiring(
        Lot.account_id == _ids("accounts", account_ids),
        Lot.account_id == _ids("at_last", at_last),
        until,
    )
    due = (
        select(Lot.id, Lot.account_id, Lot.remaining, Lot.pending, Lot.expires_at)
        .where(chunk)
        .cte("due")
    )
    # One entry per account and instant, its id drawn here so that its movements (one per
    # lot, from the group's arrays) and its event need no join back to the inserted rows.
    # The account's program and member by key, group by group: a join of CTEs would be
    # planned on guesses (a cached generic plan once guessed a few rows and looped 5,000 ×
    # 5,000).
    groups = (
        select(
            literal_column("nextval('entries_id_seq')", BigInteger).label("entry_id"),
            due.c.account_id,
            due.c.expires_at,
            (-func.sum(due.c.remaining)).cast(BigInteger).label("points"),
            _single_lot(due.c.id).label("lot_id"),
            func.array_agg(due.c.id).label("lot_ids"),
            func.array_agg(due.c.remaining).label("remainders"),
            select(Account.program_id)
            .where(Account.id == due.c.account_id)
            .scalar_subquery()
            .label("program_id"),
            select(Account.member_id)
            .where(Account.id == due.c.account_id)
            .scalar_subquery()
            .label("member_id"),
        )
        .group_by(due.c.account_id, due.c.expires_at)
        .cte("groups")
    )
    created = insert(Entry).from_select(
        ["id", *_ENTRY_COLUMNS],
        select(
            groups.c.entry_id,
            *_entry_values(
                groups.c.program_id,
                groups.c.account_id,
                groups.c.points,
                groups.c.lot_id,
                groups.c.expires_at,
                now,
                actor,
            ),
        ),
    )
    lots = (
        func.unnest(groups.c.lot_ids, groups.c.remainders)
        .table_valued("id", "remaining")
        .render_derived(name="lot")
    )
    paired = insert(Movement).from_select(
        ["entry_id", "lot_id", "points"],
        select(groups.c.entry_id, lots.c.id, -lots.c.remaining).select_from(
            groups.join(lots, true())
        ),
    )
    code = select(Program.code).where(Program.id == groups.c.program_id).scalar_subquery()
    reported = insert(DomainEvent).from_select(
        EVENT_COLUMNS,
        select(
            *_expired_events(
                "postgresql",
                program_id=groups.c.program_id,
                program_code=code,
                member_id=groups.c.member_id,
                entry_id=groups.c.entry_id,
                points=groups.c.points,
                occurred_at=groups.c.expires_at,
                now=now,
            )
        ).order_by(groups.c.entry_id),
    )
    emptied = update(Lot).where(chunk).values(remaining=0)
    sums = (
        select(
            due.c.account_id,
            func.sum(due.c.remaining).label("points"),
            func.sum(case((due.c.pending.is_(True), due.c.remaining), else_=0)).label("pending"),
        )
        .group_by(due.c.account_id)
        .cte("sums")
    )
    touched = (
        update(Account)
        .where(Account.id == sums.c.account_id)
        .values(
            expired=Account.expired + sums.c.points,
            pending=Account.pending - sums.c.pending,
            available=Account.available - (sums.c.points - sums.c.pending),
        )
        .returning(Account.id)
        .cte("touched")
    )
    lots_n, points, entries, account_ids = session.execute(
        select(
            select(func.count()).select_from(due).scalar_subquery(),
            select(func.coalesce(func.sum(due.c.remaining), 0)).scalar_subquery(),
            select(func.count()).select_from(groups).scalar_subquery(),
            select(func.array_agg(touched.c.id)).scalar_subquery(),
        ).add_cte(
            created.cte("created"),
            paired.cte("paired"),
            reported.cte("reported"),
            emptied.cte("emptied"),
        )
    ).one()
    return Chunk(
        found=True,
        lots=int(lots_n),
        points=int(points),
        entries=int(entries),
        account_ids=account_ids or (),
    )


def _expire_chunk_sqlite(session: Session, now: datetime, batch_size: int, actor: str) -> Chunk:
    # The transaction holds the write lock (BEGIN IMMEDIATE): nothing else writes until it
    # ends, so this chunk's entries are exactly those above the largest id before it, and the
    # pick is repeatable until the last statement empties its lots.
    pick = (
        select(Lot.account_id, Lot.expires_at)
        .where(_due_expiry(now))
        .order_by(*_order(session, Lot.expires_at))
        .limit(batch_size)
        .subquery()
    )
    until = session.scalar(select(func.max(pick.c.expires_at)))
    if until is None:
        return Chunk()
    before = session.scalar(select(func.coalesce(func.max(Entry.id), 0)))
    chunk = _expiring(
        Lot.account_id.in_(select(pick.c.account_id)),
        Lot.account_id.in_(select(pick.c.account_id).where(pick.c.expires_at == until)),
        until,
    )
    session.execute(
        insert(Entry).from_select(
            _ENTRY_COLUMNS,
            select(
                *_entry_values(
                    Account.program_id,
                    Lot.account_id,
                    -func.sum(Lot.remaining),
                    _single_lot(Lot.id),
                    Lot.expires_at,
                    now,
                    actor,
                )
            )
            .join(Account, Account.id == Lot.account_id)
            .where(chunk)
            .group_by(Lot.account_id, Lot.expires_at, Account.program_id)
            .order_by(Lot.account_id, Lot.expires_at),
        )
    )
    mine = Entry.id > before
    # Each lot to its account's entry for its instant (ix_entries_account_time).
    session.execute(
        insert(Movement).from_select(
            ["entry_id", "lot_id", "points"],
            select(Entry.id, Lot.id, -Lot.remaining)
            .join(
                Entry,
                and_(Entry.account_id == Lot.account_id, Entry.occurred_at == Lot.expires_at, mine),
            )
            .where(chunk),
        )
    )
    session.execute(
        insert(DomainEvent).from_select(
            EVENT_COLUMNS,
            select(
                *_expired_events(
                    "sqlite",
                    program_id=Entry.program_id,
                    program_code=Program.code,
                    member_id=Account.member_id,
                    entry_id=Entry.id,
                    points=Entry.points,
                    occurred_at=Entry.occurred_at,
                    now=now,
                )
            )
            .join(Account, Account.id == Entry.account_id)
            .join(Program, Program.id == Entry.program_id)
            .where(mine)
            .order_by(Entry.id),
        )
    )
    sums = (
        select(
            Lot.account_id.label("account_id"),
            func.sum(Lot.remaining).label("points"),
            func.sum(case((Lot.pending.is_(True), Lot.remaining), else_=0)).label("pending"),
        )
        .where(chunk)
        .group_by(Lot.account_id)
        .subquery()
    )
    session.execute(
        update(Account)
        .where(Account.id == sums.c.account_id)
        .values(
            expired=Account.expired + sums.c.points,
            pending=Account.pending - sums.c.pending,
            available=Account.available - (sums.c.points - sums.c.pending),
        ),
        execution_options=_BULK,
    )
    lots, points = session.execute(
        select(func.count(), func.coalesce(-func.sum(Movement.points), 0)).where(
            Movement.entry_id > before
        )
    ).one()
    session.execute(update(Lot).where(chunk).values(remaining=0), execution_options=_BULK)
    account_ids = session.scalars(select(Entry.account_id).where(mine)).all()
    return Chunk(
        found=True,
        lots=int(lots),
        points=int(points),
        entries=len(account_ids),
        account_ids=sorted(set(account_ids)),
    )


def _expire_chunk(session: Session, now: datetime, batch_size: int, actor: str) -> Chunk:
    if _is_postgresql(session):
        return _expire_chunk_postgresql(session, now, batch_size, actor)
    return _expire_chunk_sqlite(session, now, batch_size, actor)


def run_expiry(
    db: Database,
    now: datetime,
    *,
    batch_size: int = 5000,
    dry_run: bool = False,
    actor: str = "system",
    progress: Callable[[ExpiryReport], None] | None = None,
    idempotency_ttl: timedelta | None = None,
) -> ExpiryReport:
    """Release matured pending points, then expire every lot past its date, chunk by chunk.

    With `idempotency_ttl`, stored answers to Idempotency-Keys older than that are dropped too.
    """
    assert batch_size > 0
    if dry_run:
        with db.unit_of_work(readonly=True) as session:
            return preview(session, now)
    report = ExpiryReport(dry_run=False)
    while True:
        with db.unit_of_work() as session:
            chunk = _release_chunk(session, now, batch_size)
        report.released_lots += chunk.lots
        report.released_points += chunk.points
        if not chunk.found:
            break
    _roll(db, now, batch_size, report)
    # Distinct accounts over the whole run: an account whose lots fall in several
    # chunks counts once, as in the dry-run preview.
    touched: set[int] = set()
    while True:
        with db.unit_of_work() as session:
            chunk = _expire_chunk(session, now, batch_size, actor)
        report.lots += chunk.lots
        report.points += chunk.points
        report.entries += chunk.entries
        touched.update(chunk.account_ids)
        report.accounts = len(touched)
        if progress is not None:
            progress(report)
        if not chunk.found:
            break
    if idempotency_ttl is not None:
        with db.unit_of_work() as session:
            report.idempotency_keys_purged = idempotency.purge(
                session, before=now - idempotency_ttl
            )
    return report
