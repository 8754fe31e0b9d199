"""Batch ingestion: many purchases (offline tills, migrations) in few transactions.

Each chunk of purchases is one transaction (group commit). A sale the hot path takes
(`patron.ledger.earn`: an earn by a member with an account) runs without a savepoint: it raises
its errors before writing anything, so a bad purchase is reported alone while the rest of the
chunk commits, at three statements per purchase. A sale the general path takes (points spent, a
member's first sale) runs in its own SAVEPOINT, as does every purchase of a chunk that met a
database error (a value PostgreSQL refuses, say): that chunk is rolled back and run again with a
savepoint per purchase, which reports the failing purchase alone. Purchases stay idempotent one
by one (by external_id), so a batch that failed half-way, or timed out on the client, is simply
sent again.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, insert, literal_column, or_, select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import PatronError
from patron.ledger import earn, program_cache, purchases
from patron.ledger.models import Account, Movement, Purchase
from patron.ledger.schemas import BatchItemOut, BatchReport, PurchaseRequest
from patron.members.models import Card, Member
from patron.members.phone import normalise_phone

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


class _Redo(Exception):
    """A database error in a chunk run without savepoints: run it again with them."""


def _ingest_chunk(
    db: Database,
    program_code: str,
    chunk: Sequence[PurchaseRequest],
    offset: int,
    *,
    actor: Actor,
    now: datetime,
) -> list[BatchItemOut]:
    careful = False
    attempt = 0
    while True:
        attempt += 1
        try:
            with db.unit_of_work() as session:
                program_id = program_cache.program_id(session, program_code)
                version = session.scalar(
                    select(program_cache.programs_version.c.config_version).where(
                        program_cache.programs_version.c.id == program_id
                    )
                )
                config = program_cache.current(session, program_id, version)
                wanted = config.needs
                if (
                    purchases.FAST_PATH
                    and not careful
                    and not (wanted.caps or wanted.purchases or wanted.budgets)
                ):
                    set_based = _SetBased(session, config, actor=actor, now=now)
                    try:
                        return set_based.run(program_id, chunk, offset)
                    except OperationalError:
                        raise
                    except DBAPIError as exc:  # a value the database refuses, say
                        raise _Redo() from exc
                _lock_accounts(session, program_id, config.country, chunk)
                return [
                    _ingest_one(
                        session, program_id, offset + i, req, careful=careful, actor=actor, now=now
                    )
                    for i, req in enumerate(chunk)
                ]
        except _Redo:
            careful = True  # nothing of the chunk stayed; not counted as an attempt
            attempt -= 1
        except OperationalError:
            if attempt >= CHUNK_ATTEMPTS:
                raise
            time.sleep(random.uniform(0, 0.05 * attempt))  # so two retries do not meet again


def _lock_accounts(
    session: Session, program_id: int, country: str, chunk: Sequence[PurchaseRequest]
) -> None:
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
            with contextlib.suppress(PatronError):  # reported by the purchase itself
                phones.add(normalise_phone(ref.phone, country))
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
            .where(Account.program_id == program_id, Account.member_id.in_(sorted(ids)))
            .order_by(Account.id)
            .with_for_update()
        ).all()


def _ingest_one(
    session: Session,
    program_id: int,
    index: int,
    req: PurchaseRequest,
    *,
    careful: bool,
    actor: Actor,
    now: datetime,
) -> BatchItemOut:
    digest = purchases.sale_digest(req)
    try:
        done = None
        if purchases.FAST_PATH and careful:
            with session.begin_nested():
                done = earn.try_purchase(session, program_id, req, digest, actor=actor, now=now)
        elif purchases.FAST_PATH:
            # The hot path writes nothing before it raises a PatronError; a database error
            # (which may leave the transaction unusable) runs the chunk again, carefully.
            try:
                done = earn.try_purchase(session, program_id, req, digest, actor=actor, now=now)
            except DBAPIError as exc:
                raise _Redo() from exc
        if done is None:
            with session.begin_nested():
                done = purchases.general(session, program_id, req, digest, actor=actor, now=now)
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
    answer, created = done
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


# --- set-based chunks ----------------------------------------------------------------------


class _SetBased:
    """One chunk of earns in a handful of statements: members, accounts (locked, in id order)
    and their lot and tier figures read for the whole chunk; each sale computed in Python on
    its account's running state (`earn.compute`, the hot path's own arithmetic); the rows
    inserted many at a time. A sale this cannot take (points spent, a first sale, due lots, a
    tier upgrade, an order id already used in the chunk by such a sale) is written after
    everything before it and runs alone (`_ingest_one`); its account is then read again."""

    def __init__(
        self,
        session: Session,
        config: program_cache.ProgramConfig,
        *,
        actor: Actor,
        now: datetime,
    ) -> None:
        from patron.ledger.views import EXPIRING_WINDOW

        self.session, self.config, self.actor, self.now = session, config, actor, now
        self.conn = session.connection()
        self.dialect = self.conn.dialect.name
        self.soon = now + EXPIRING_WINDOW
        self.states: dict[int, tuple[earn.Locked, bool, int, int]] = {}  # by member id
        self.answers: dict[str, tuple[str, dict[str, Any]]] = {}  # external id → (hash, answer)
        self.alone: set[str] = set()  # external ids a sale run alone used
        self.ids: list[tuple[int, int, int]] = []
        self.pending: list[tuple[dict[str, Any], earn.Plan]] = []
        self.window = earn.upgrade_window(config, None, now)

    # reads

    def members(self, chunk: Sequence[PurchaseRequest]) -> list[int | None]:
        """Each sale's member id (None: let the sale alone say why there is none), and the
        status of the cards used."""
        self.cards: dict[str, tuple[int, str]] = {}
        cards = {r.member.card for r in chunk if r.member.card is not None}
        emails = {r.member.email.strip().lower() for r in chunk if r.member.email is not None}
        phones: dict[str, str | None] = {}
        for r in chunk:
            if r.member.phone is not None and r.member.phone not in phones:
                try:
                    phones[r.member.phone] = normalise_phone(r.member.phone, self.config.country)
                except PatronError:
                    phones[r.member.phone] = None
        if cards:
            for number, member_id, status in self.session.execute(
                select(Card.number, Card.member_id, Card.status).where(Card.number.in_(cards))
            ):
                self.cards[number] = (member_id, status)
        by_email: dict[str, int] = {}
        by_phone: dict[str, int] = {}
        wanted_phones = {p for p in phones.values() if p is not None}
        if emails or wanted_phones:
            for member_id, email, phone in self.session.execute(
                select(Member.id, Member.email, Member.phone).where(
                    Member.email.in_(emails) | Member.phone.in_(wanted_phones)
                )
            ):
                if email is not None:
                    by_email[email] = member_id
                if phone is not None:
                    by_phone[phone] = member_id
        out: list[int | None] = []
        for r in chunk:
            ref = r.member
            if ref.id is not None:
                out.append(ref.id)
            elif ref.card is not None:
                out.append(self.cards[ref.card][0] if ref.card in self.cards else None)
            elif ref.email is not None:
                out.append(by_email.get(ref.email.strip().lower()))
            else:
                normal = phones.get(ref.phone or "")
                out.append(by_phone.get(normal) if normal is not None else None)
        return out

    def load(self, member_ids: set[int]) -> None:
        """Lock the accounts of `member_ids` (PostgreSQL, in id order) and read what a sale
        needs of each: totals and member (statement 1 of the hot path), whether a lot is due,
        the points expiring soon, the tier metric."""
        from patron.ledger.earn import ACC, ENT, LOT, MEM, PUR

        if not member_ids:
            return
        ids = sorted(member_ids)
        rows = self.conn.execute(
            select(
                ACC.c.id,
                ACC.c.available,
                ACC.c.pending,
                ACC.c.debt,
                ACC.c.earned,
                ACC.c.redeemed,
                ACC.c.expired,
                ACC.c.adjusted,
                ACC.c.tier,
                MEM.c.id,
                MEM.c.status,
                MEM.c.attributes,
                MEM.c.birthday,
                MEM.c.created_at,
            )
            .select_from(ACC.join(MEM, MEM.c.id == ACC.c.member_id))
            .where(ACC.c.program_id == self.config.id, ACC.c.member_id.in_(ids))
            .order_by(ACC.c.id)
            .with_for_update(of=ACC)
        ).all()
        accounts = [row[0] for row in rows]
        figures: dict[int, tuple[bool, int]] = {}
        if accounts:
            now = self.now
            due = or_(
                and_(LOT.c.pending.is_(True), LOT.c.pending_until <= now),
                and_(LOT.c.expires_at.is_not(None), LOT.c.expires_at <= now),
            )
            soon = and_(LOT.c.expires_at > now, LOT.c.expires_at <= self.soon)
            for account_id, is_due, expiring in self.conn.execute(
                select(
                    LOT.c.account_id,
                    func.max(case((due, 1), else_=0)),
                    func.coalesce(func.sum(case((soon, LOT.c.remaining), else_=0)), 0),
                )
                .where(LOT.c.account_id.in_(accounts), LOT.c.remaining > 0)
                .group_by(LOT.c.account_id)
            ):
                figures[account_id] = (bool(is_due), int(expiring or 0))
        metrics: dict[int, int] = {}
        window, policy = self.window, self.config.policy
        if accounts and window is not None and policy is not None:
            if policy.metric == "points":
                stmt = select(ENT.c.account_id, func.sum(ENT.c.qualifying)).where(
                    ENT.c.account_id.in_(accounts),
                    ENT.c.qualifying != 0,
                    ENT.c.occurred_at >= window.start,
                )
                if window.end is not None:
                    stmt = stmt.where(ENT.c.occurred_at < window.end)
                stmt = stmt.group_by(ENT.c.account_id)
            else:
                kept = PUR.c.amount_minor - PUR.c.refunded_minor
                value = func.sum(kept) if policy.metric == "spend" else func.count()
                stmt = select(PUR.c.account_id, value).where(
                    PUR.c.account_id.in_(accounts), PUR.c.occurred_at >= window.start, kept > 0
                )
                if window.end is not None:
                    stmt = stmt.where(PUR.c.occurred_at < window.end)
                stmt = stmt.group_by(PUR.c.account_id)
            metrics = {a: int(v or 0) for a, v in self.conn.execute(stmt)}
        for row in rows:
            locked = earn.Locked(*[*row, self.config.version, None])
            is_due, expiring = figures.get(locked.account_id, (False, 0))
            self.states[locked.member_id] = (
                locked,
                is_due,
                expiring,
                metrics.get(locked.account_id, 0),
            )

    def allocate(self, n: int) -> None:
        """Ids for the next `n` sales, after every id used so far (so ids follow the order of
        the upload, as they would one sale at a time)."""
        from patron.ledger.earn import ENT, LOT, PUR

        if n <= 0:
            self.ids = []
            return
        if self.dialect == "postgresql":
            rows: Any = self.conn.execute(
                select(
                    literal_column("nextval('purchases_id_seq')"),
                    literal_column("nextval('lots_id_seq')"),
                    literal_column("nextval('entries_id_seq')"),
                ).select_from(func.generate_series(1, n))
            )
            self.ids = [(int(r[0]), int(r[1]), int(r[2])) for r in rows]
        else:  # one writer: the next rowids are max + 1, + 2, …
            p, lot, e = self.conn.execute(
                select(
                    *[
                        select(func.coalesce(func.max(t.c.id), 0)).scalar_subquery()
                        for t in (PUR, LOT, ENT)
                    ]
                )
            ).one()
            self.ids = [(p + k, lot + k, e + k) for k in range(1, n + 1)]
        self.ids.reverse()  # popped from the end

    # writes

    def flush(self) -> None:
        """Insert what the chunk computed so far; an order id taken meanwhile by another upload
        (the insert returns fewer rows) runs the chunk again, one sale at a time."""
        from patron.ledger.earn import _account_update, _purchase_insert, _sqlite_write_stmts

        if not self.pending:
            return
        pending, self.pending = self.pending, []
        params = [p for p, _plan in pending]
        inserted = self.conn.execute(_purchase_insert(self.dialect), params).all()
        if len(inserted) != len(params):
            raise _Redo()
        _p, lot_ins, entry_ins, event_ins, _u = _sqlite_write_stmts()
        earning = [p for p, plan in pending if plan.result.points]
        if earning:
            self.conn.execute(lot_ins, earning)
            self.conn.execute(entry_ins, earning)
            # One points.earned event per earn entry, in the chunk's transaction.
            self.conn.execute(event_ins, earning)
            deltas: dict[int, dict[str, Any]] = {}
            for p in earning:
                d = deltas.setdefault(
                    p["x_acct"],
                    {"x_acct": p["x_acct"], **{f"x_d_{c}": 0 for c in earn._ACCOUNT_DELTAS}},
                )
                for c in earn._ACCOUNT_DELTAS:
                    d[f"x_d_{c}"] += p[f"x_d_{c}"]
            self.conn.execute(_account_update(), list(deltas.values()))
        moves = [m for _p, plan in pending if plan.debt_settled for m in earn.movements(plan)]
        if moves:
            self.conn.execute(insert(Movement), moves)

    # the chunk

    def run(
        self, program_id: int, chunk: Sequence[PurchaseRequest], offset: int
    ) -> list[BatchItemOut]:
        members = self.members(chunk)
        digests = [purchases.sale_digest(r) for r in chunk]
        known = {
            ext: (digest, response)
            for ext, digest, response in self.session.execute(
                select(Purchase.external_id, Purchase.request_hash, Purchase.response).where(
                    Purchase.program_id == program_id,
                    Purchase.external_id.in_({r.external_id for r in chunk}),
                )
            )
        }
        self.load({m for m in members if m is not None})
        self.allocate(len(chunk))
        out: list[BatchItemOut] = []
        for i, (req, member_id, digest) in enumerate(zip(chunk, members, digests, strict=True)):
            index = offset + i
            ext = req.external_id
            first = known.get(ext) or self.answers.get(ext)
            if first is not None and ext not in self.alone:
                out.append(self._replay(index, req, digest, *first))
                continue
            state = self.states.get(member_id) if member_id is not None else None
            if (
                state is None
                or state[1]  # lots due: settled by the general path
                or req.points_to_spend
                or req.coupons
                or ext in self.alone
            ):
                out.append(self._alone(program_id, index, req, member_id, len(chunk) - i - 1))
                continue
            locked, _due, expiring, metric = state
            if req.member.card is not None:
                locked = replace(locked, card_status=self.cards[req.member.card][1])
            try:
                occurred_at, order, store_id = earn.validate(self.config, locked, req, self.now)
                window = (
                    self.window if self.config.rank_of(locked.tier) < self.config.top_rank else None
                )
                plan = earn.compute(
                    self.config,
                    locked,
                    req,
                    now=self.now,
                    occurred_at=occurred_at,
                    order=order,
                    store_id=store_id,
                    ids=self.ids.pop(),
                    expiring=expiring,
                    window=window,
                    metric_before=metric,
                )
            except PatronError as exc:
                out.append(_failed(index, req, exc.code, exc.detail))
                continue
            if plan is None:
                out.append(self._alone(program_id, index, req, member_id, len(chunk) - i - 1))
                continue
            params, answer = earn.rows(
                self.config, plan, req, digest, actor=self.actor, now=self.now
            )
            self.pending.append((params, plan))
            self.answers[ext] = (digest, answer)
            after, metric_after = earn.after(locked, plan)
            self.states[after.member_id] = (
                replace(after, card_status=None),
                False,
                plan.totals.expiring_30_days,
                metric_after,
            )
            out.append(_created(index, req, answer))
            if earn.upgrade_due(self.config, plan):
                # Rare: the member moves up. Write what came before, move them (history,
                # event, audit), and read their account again.
                self.flush()
                earn._upgrade_if_qualified(
                    self.session, self.config, plan, actor=self.actor, now=self.now
                )
                self.load({after.member_id})
                self.allocate(len(chunk) - i - 1)
        self.flush()
        return out

    def _replay(
        self, index: int, req: PurchaseRequest, digest: str, first: str, answer: Any
    ) -> BatchItemOut:
        if first != digest or answer is None:
            return _failed(
                index,
                req,
                "duplicate_order",
                f"order {req.external_id!r} was already recorded with different details",
            )
        return BatchItemOut(
            index=index,
            external_id=req.external_id,
            status="replayed",
            member_id=answer["member_id"],
            points_earned=answer["points_earned"],
            points_spent=answer["points_spent"],
        )

    def _alone(
        self,
        program_id: int,
        index: int,
        req: PurchaseRequest,
        member_id: int | None,
        left: int,
    ) -> BatchItemOut:
        self.flush()
        item = _ingest_one(
            self.session, program_id, index, req, careful=False, actor=self.actor, now=self.now
        )
        self.alone.add(req.external_id)
        if member_id is None and item.member_id is not None:
            member_id = item.member_id
        if member_id is not None:
            self.states.pop(member_id, None)
            self.load({member_id})
        self.allocate(left)
        return item


def _created(index: int, req: PurchaseRequest, answer: dict[str, Any]) -> BatchItemOut:
    return BatchItemOut(
        index=index,
        external_id=req.external_id,
        status="created",
        member_id=answer["member_id"],
        points_earned=answer["points_earned"],
        points_spent=answer["points_spent"],
    )
