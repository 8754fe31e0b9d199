"""Batch ingestion: many purchases (offline tills, migrations) in few transactions.

Each chunk of purchases is one transaction (group commit), and each purchase runs in its own
SAVEPOINT inside it, so a bad purchase is rolled back and reported alone while the rest of its
chunk commits. Purchases stay idempotent one by one (by external_id), so a batch that failed
half-way, or timed out on the client, is simply sent again.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.exc import DataError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import PatronError
from patron.ledger import purchases
from patron.ledger.models import Account, Purchase
from patron.ledger.schemas import BatchItemOut, BatchReport, PurchaseRequest
from patron.members.models import Card, Member
from patron.members.phone import normalise_phone
from patron.members.service import default_region
from patron.programs.models import Program
from patron.programs.service import get_program

CHUNK_SIZE = 500
# A chunk that still meets a deadlock (say a new account inserted by two batches at once) or a
# busy SQLite file is rolled back whole; running it again is safe because nothing of it stayed.
CHUNK_ATTEMPTS = 5


def ingest(
    db: Database,
    program_code: str,
    items: Sequence[PurchaseRequest],
    *,
    actor: Actor,
    now: datetime,
    chunk_size: int = CHUNK_SIZE,
) -> BatchReport:
    """Record `items` in the given order, `chunk_size` purchases per transaction."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    with db.unit_of_work(readonly=True) as session:
        get_program(session, program_code)  # an unknown program fails the call before any work
    out: list[BatchItemOut] = []
    chunks = 0
    for start in range(0, len(items), chunk_size):
        out.extend(
            _ingest_chunk(
                db, program_code, items[start : start + chunk_size], start, actor=actor, now=now
            )
        )
        chunks += 1
    return report(out, chunks=chunks)


def report(items: list[BatchItemOut], *, chunks: int) -> BatchReport:
    statuses = [item.status for item in items]
    return BatchReport(
        total=len(items),
        created=statuses.count("created"),
        replayed=statuses.count("replayed"),
        errors=statuses.count("error"),
        chunks=chunks,
        items=items,
    )


def _ingest_chunk(
    db: Database,
    program_code: str,
    chunk: Sequence[PurchaseRequest],
    offset: int,
    *,
    actor: Actor,
    now: datetime,
) -> list[BatchItemOut]:
    for attempt in range(1, CHUNK_ATTEMPTS + 1):
        try:
            with db.unit_of_work() as session:
                program = get_program(session, program_code)
                _lock_accounts(session, program, chunk)
                recorded = _track_new_purchases(session)
                return [
                    _ingest_one(session, program, offset + i, req, recorded, actor=actor, now=now)
                    for i, req in enumerate(chunk)
                ]
        except OperationalError:
            if attempt == CHUNK_ATTEMPTS:
                raise
            time.sleep(random.uniform(0, 0.05 * attempt))  # so two retries do not meet again
    raise AssertionError("unreachable")  # pragma: no cover


def _lock_accounts(session: Session, program: Program, chunk: Sequence[PurchaseRequest]) -> None:
    """Lock the chunk's existing accounts up front, in id order.

    Purchases run in the order given, so without this two batches that touch the same members
    in different orders would each hold one account and wait for the other's (a deadlock).
    References that resolve to no member are skipped here and reported by the purchase itself.
    """
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: the writer already holds the database lock
    ids: set[int] = set()
    cards: set[str] = set()
    phones: set[str] = set()
    emails: set[str] = set()
    region = None
    for req in chunk:
        ref = req.member
        if "\x00" in (ref.card or ref.email or ref.phone or ""):
            continue  # PostgreSQL text cannot hold NUL; the purchase reports invalid_value
        if ref.id is not None:
            ids.add(ref.id)
        elif ref.card is not None:
            cards.add(ref.card)
        elif ref.email is not None:
            emails.add(ref.email.strip().lower())
        elif ref.phone is not None:
            region = region or default_region(session, program)
            with contextlib.suppress(PatronError):  # reported by the purchase itself
                phones.add(normalise_phone(ref.phone, region))
    if cards:
        ids.update(session.scalars(select(Card.member_id).where(Card.number.in_(cards))))
    if phones or emails:
        ids.update(
            session.scalars(
                select(Member.id).where(Member.phone.in_(phones) | Member.email.in_(emails))
            )
        )
    if ids:
        session.execute(
            select(Account.id)
            .where(Account.program_id == program.id, Account.member_id.in_(sorted(ids)))
            .order_by(Account.id)
            .with_for_update()
        ).all()


def _track_new_purchases(session: Session) -> list[Purchase]:
    """Purchases this session inserts: tells a created purchase from a replayed one."""
    inserted: list[Purchase] = []

    @event.listens_for(session, "pending_to_persistent")
    def _inserted(_session: Session, instance: Any) -> None:
        if isinstance(instance, Purchase):
            inserted.append(instance)

    return inserted


def _ingest_one(
    session: Session,
    program: Program,
    index: int,
    req: PurchaseRequest,
    inserted: list[Purchase],
    *,
    actor: Actor,
    now: datetime,
) -> BatchItemOut:
    before = len(inserted)
    try:
        with session.begin_nested():
            answer = purchases.purchase(session, program, req, actor=actor, now=now)
    except PatronError as exc:
        return _failed(index, req, exc.code, exc.detail)
    except DataError:
        return _failed(
            index,
            req,
            "invalid_value",
            "a value cannot be stored (out of range or contains characters such as NUL)",
        )
    except IntegrityError:
        return _failed(index, req, "conflict", "the purchase conflicts with existing data")
    # Replays (an earlier upload, or the same order twice in this one) insert no purchase row.
    created = any(row.external_id == req.external_id for row in inserted[before:])
    return BatchItemOut(
        index=index,
        external_id=req.external_id,
        status="created" if created else "replayed",
        member_id=answer["member_id"],
        points_earned=answer["points_earned"],
        points_spent=answer["points_spent"],
    )


def _failed(index: int, req: PurchaseRequest, code: str, detail: str) -> BatchItemOut:
    return BatchItemOut(
        index=index, external_id=req.external_id, status="error", error=code, detail=detail
    )
