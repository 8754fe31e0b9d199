"""Batch ingestion: many purchases (offline tills, migrations) in few transactions.

Each chunk of purchases is one transaction through the sale pipeline (`patron.sales.pipeline`):
the chunk's accounts are read once, every sale planned on its account's running state, and the
rows written with one statement per table. A purchase that fails a check is reported alone
while the rest of the chunk commits. Purchases stay idempotent one by one (by external_id), so
a batch that failed half-way, or timed out on the client, is simply sent again.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from patron.audit.service import Actor
from patron.db.engine import Database
from patron.ledger.models import Account
from patron.members import refs
from patron.sales import pipeline, program_cache, purchases
from patron.sales.schemas import BatchItemOut, BatchReport, PurchaseRequest

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
        # An unknown program fails the call before any work.
        program_cache.program_id(session, program_code)
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
    """One chunk, one transaction. A value the database refuses (a NUL character in a code
    on PostgreSQL, say) fails the transaction: the chunk is then recorded in two halves, and
    so on down to the purchase at fault, which is reported alone (log2(n) extra attempts for
    one bad purchase, no savepoints)."""
    digests = [purchases.sale_digest(req) for req in chunk]
    attempt = 0
    while True:
        attempt += 1
        try:
            with db.unit_of_work() as session:
                program_id = program_cache.program_id(session, program_code)
                _lock_accounts(session, program_id, chunk)
                sold = pipeline.record(
                    session,
                    program_id,
                    list(zip(chunk, digests, strict=True)),
                    actor=actor,
                    now=now,
                )
                return [
                    _item(offset + i, req, s)
                    for i, (req, s) in enumerate(zip(chunk, sold, strict=True))
                ]
        except OperationalError:
            if attempt >= CHUNK_ATTEMPTS:
                raise
            time.sleep(random.uniform(0, 0.05 * attempt))  # so two retries do not meet again
        except DBAPIError as exc:
            if len(chunk) > 1:
                half = len(chunk) // 2
                return [
                    *_ingest_chunk(db, program_code, chunk[:half], offset, actor=actor, now=now),
                    *_ingest_chunk(
                        db, program_code, chunk[half:], offset + half, actor=actor, now=now
                    ),
                ]
            if isinstance(exc, IntegrityError):
                return [
                    _failed(
                        offset, chunk[0], "conflict", "the purchase conflicts with existing data"
                    )
                ]
            return [
                _failed(
                    offset,
                    chunk[0],
                    "invalid_value",
                    "a value cannot be stored (out of range or contains characters such as NUL)",
                )
            ]


def _lock_accounts(session: Session, program_id: int, chunk: Sequence[PurchaseRequest]) -> None:
    """Lock the chunk's existing accounts up front, in id order.

    A chunk runs in rounds (a sale with coupons alone, a tier move ends a round), each locking
    its own accounts; without this, two batches that touch the same members in different
    orders could each hold one account and wait for the other's (a deadlock). References that
    resolve to no member are skipped here and reported by the sale itself.
    """
    if session.get_bind().dialect.name != "postgresql":
        return  # SQLite: the writer already holds the database lock
    config = program_cache.cached(session, program_id) or program_cache.load(session, program_id)
    country = config.country
    found = refs.resolve(session, [req.member for req in chunk], country)
    ids = sorted({hit.member_id for hit in found if hit is not None})
    if ids:
        session.execute(
            select(Account.id)
            .where(Account.program_id == program_id, Account.member_id.in_(ids))
            .order_by(Account.id)
            .with_for_update()
        ).all()


def _item(index: int, req: PurchaseRequest, sold: pipeline.Sold) -> BatchItemOut:
    if sold.error is not None:
        return _failed(index, req, sold.error.code, sold.error.detail)
    answer = sold.answer
    assert answer is not None
    return BatchItemOut(
        index=index,
        external_id=req.external_id,
        status="created" if sold.created else "replayed",
        member_id=answer["member_id"],
        points_earned=answer["points_earned"],
        points_spent=answer["points_spent"],
    )


def _failed(index: int, req: PurchaseRequest, code: str, detail: str) -> BatchItemOut:
    return BatchItemOut(
        index=index, external_id=req.external_id, status="error", error=code, detail=detail
    )
