"""Set-based, batched, resumable jobs: expiry and pending release.

Each batch is its own transaction, so an interrupted run keeps what it did and
the next run continues from what is left. Accounts in a batch are locked in id
order (the same order every writer uses), then their lots are re-read under
the lock, so a till redeeming at the same moment never sees half a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, case, func, insert, literal, select, update
from sqlalchemy.orm import Session

from patron.audit import idempotency
from patron.db.engine import Database
from patron.ledger.models import Account, Entry, Lot, Movement


@dataclass
class ExpiryReport:
    dry_run: bool
    lots: int = 0
    points: int = 0
    accounts: int = 0
    released_lots: int = 0
    released_points: int = 0
    idempotency_keys_purged: int = 0


def _due_expiry(now: datetime):
    return and_(Lot.remaining > 0, Lot.expires_at.is_not(None), Lot.expires_at <= now)


def _due_release(now: datetime):
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
    return ExpiryReport(
        dry_run=True,
        lots=lots,
        points=int(points),
        accounts=accounts,
        released_lots=released,
        released_points=int(released_points),
    )


def _lock_accounts(session: Session, account_ids: list[int]) -> None:
    session.execute(
        select(Account.id).where(Account.id.in_(account_ids)).order_by(Account.id).with_for_update()
    ).all()


def _release_batch(session: Session, now: datetime, batch_size: int) -> tuple[int, int]:
    account_ids = list(
        session.scalars(
            select(Lot.account_id)
            .where(_due_release(now))
            .distinct()
            .order_by(Lot.account_id)
            .limit(batch_size)
        )
    )
    if not account_ids:
        return 0, 0
    _lock_accounts(session, account_ids)
    due = and_(_due_release(now), Lot.account_id.in_(account_ids))
    sums = (
        select(Lot.account_id.label("account_id"), func.sum(Lot.remaining).label("points"))
        .where(due)
        .group_by(Lot.account_id)
        .subquery()
    )
    count, points = session.execute(
        select(func.count(), func.coalesce(func.sum(Lot.remaining), 0)).where(due)
    ).one()
    session.execute(
        update(Account)
        .where(Account.id == sums.c.account_id)
        .values(
            pending=Account.pending - sums.c.points, available=Account.available + sums.c.points
        )
    )
    session.execute(update(Lot).where(due).values(pending=False))
    return count, int(points)


def _expire_batch(
    session: Session, now: datetime, batch_size: int, actor: str
) -> tuple[int, int, list[int]]:
    # Ordered by expiry, the pick walks the partial index of lots with points left
    # (ix_lots_expiry_open), so each batch reads only due lots; ordered by id, the planner
    # walked the primary key past every lot earlier batches had already emptied.
    lot_ids = list(
        session.scalars(
            select(Lot.id)
            .where(_due_expiry(now))
            .order_by(Lot.expires_at, Lot.id)
            .limit(batch_size)
        )
    )
    if not lot_ids:
        return 0, 0, []
    account_ids = sorted(set(session.scalars(select(Lot.account_id).where(Lot.id.in_(lot_ids)))))
    _lock_accounts(session, account_ids)
    due = and_(Lot.id.in_(lot_ids), _due_expiry(now))  # re-checked under the lock
    created = session.execute(
        insert(Entry)
        .from_select(
            [
                "program_id",
                "account_id",
                "kind",
                "points",
                "lot_id",
                "occurred_at",
                "created_at",
                "actor",
                "reason",
            ],
            select(
                Account.program_id,
                Lot.account_id,
                literal("expire", Entry.kind.type),
                -Lot.remaining,
                Lot.id,
                Lot.expires_at,
                literal(now, Entry.created_at.type),
                literal(actor, Entry.actor.type),
                literal("points expired", Entry.reason.type),
            )
            .join(Account, Account.id == Lot.account_id)
            .where(due),
        )
        .returning(Entry.id, Entry.lot_id, Entry.points, Entry.account_id)
    ).all()
    if not created:
        return 0, 0, []
    session.execute(
        insert(Movement),
        [
            {"entry_id": entry_id, "lot_id": lot_id, "points": points}
            for entry_id, lot_id, points, _ in created
        ],
    )
    sums = (
        select(
            Lot.account_id.label("account_id"),
            func.sum(Lot.remaining).label("points"),
            func.sum(case((Lot.pending.is_(True), Lot.remaining), else_=0)).label("pending_points"),
        )
        .where(due)
        .group_by(Lot.account_id)
        .subquery()
    )
    session.execute(
        update(Account)
        .where(Account.id == sums.c.account_id)
        .values(
            expired=Account.expired + sums.c.points,
            pending=Account.pending - sums.c.pending_points,
            available=Account.available - (sums.c.points - sums.c.pending_points),
        )
    )
    session.execute(update(Lot).where(due).values(remaining=0))
    points = -sum(p for _, _, p, _ in created)
    return len(created), points, sorted({account_id for *_, account_id in created})


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
    """Release matured pending points, then expire every lot past its date, batch by batch.

    With `idempotency_ttl`, stored answers to Idempotency-Keys older than that are dropped too.
    """
    if dry_run:
        with db.unit_of_work(readonly=True) as session:
            return preview(session, now)
    report = ExpiryReport(dry_run=False)
    while True:
        with db.unit_of_work() as session:
            lots, points = _release_batch(session, now, batch_size)
        report.released_lots += lots
        report.released_points += points
        if lots == 0:
            break
    # Distinct accounts over the whole run: an account whose lots fall in several
    # batches counts once, as in the dry-run preview.
    touched: set[int] = set()
    while True:
        with db.unit_of_work() as session:
            lots, points, account_ids = _expire_batch(session, now, batch_size, actor)
        report.lots += lots
        report.points += points
        touched.update(account_ids)
        report.accounts = len(touched)
        if progress is not None:
            progress(report)
        if lots == 0:
            break
    if idempotency_ttl is not None:
        with db.unit_of_work() as session:
            report.idempotency_keys_purged = idempotency.purge(
                session, before=now - idempotency_ttl
            )
    return report
