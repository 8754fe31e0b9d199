"""The purchase hot path: a sale that earns points, in a handful of statements on Core.

A steady-state earn (a member with an account, no points spent) costs, besides BEGIN/COMMIT:

1. **lock**: the member's account `FOR UPDATE` (PostgreSQL; SQLite writers hold the database
   lock), joined to the member (status, what the rules read) and to the program's
   `config_version`, which validates this worker's cached configuration
   (`patron.ledger.program_cache`);
2. **read**, after the lock, so it sees every earlier writer of the account: ids for the new
   purchase, lot and entry (`nextval`; on SQLite, where writers are serialised, max + 1), whether
   any lot is due to expire or stop pending, the points expiring within 30 days (for the answer)
   and, only when the program upgrades tiers at once and the member is not at the top, the
   tier metric in the current window;
3. **write**: the purchase, its lot, its earn entry and the entry's points.earned event (the
   outbox row, built in Python like the other values), each inserted once with its final values
   (the purchase with its stored answer), and the account totals moved by SQL expressions. On
   PostgreSQL this is one statement (data-modifying CTEs behind `INSERT … ON CONFLICT DO
   NOTHING`); on SQLite, where a statement costs no round trip, five.

The purchase insert is the idempotency gate: an order id recorded before (or by a concurrent
request, which the unique index makes us wait for) inserts nothing, and the first answer is
replayed — no savepoint needed. Everything else is computed in Python between 2 and 3, so a
request that fails validation writes nothing; a failure also checks for a recorded order of the
same id first, so a replay gets its first answer whatever changed since, exactly as before.

What is rare takes the general path (`purchases._purchase_orm`, the ORM code this replaced, kept
as the reference): points spent, a member without an account in the program (or unknown), an
already expired lot (a sale older than the expiry period). Due lots are settled with the ORM
primitives before the write, a tier upgrade runs `tiers.upgrade_if_qualified`, and rules that
read caps, purchase counts or promotion budgets run their extra queries; all in the same
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import (
    BigInteger,
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from patron.audit.service import Actor
from patron.errors import Conflict, MemberBlocked, PatronError
from patron.events.kinds import ENTRY_EVENTS
from patron.events.models import DomainEvent
from patron.events.outbox import entry_payload
from patron.ledger.expiry import expires_at, pending_until
from patron.ledger.models import Account, Entry, Lot, Movement, Purchase
from patron.ledger.program_cache import ProgramConfig
from patron.ledger.schemas import EntryOut, PurchaseOut, PurchaseRequest, Totals
from patron.members.models import Card, Member
from patron.members.phone import normalise_phone
from patron.programs.models import Program
from patron.rules.engine import MemberContext, Order, evaluate
from patron.tiers.periods import Window, window_at

ACC = cast(Table, Account.__table__)
LOT = cast(Table, Lot.__table__)
ENT = cast(Table, Entry.__table__)
PUR = cast(Table, Purchase.__table__)
MOV = cast(Table, Movement.__table__)
MEM = cast(Table, Member.__table__)
CARD = cast(Table, Card.__table__)
PROG = cast(Table, Program.__table__)
EVT = cast(Table, DomainEvent.__table__)
b = bindparam


# --- statements, built once per shape ------------------------------------------------------

_statements: dict[tuple[Any, ...], Any] = {}


def _built(key: tuple[Any, ...], build: Any) -> Any:
    stmt = _statements.get(key)
    if stmt is None:
        stmt = _statements[key] = build()
    return stmt


def _account_of(kind: str) -> tuple[Any, list[Any]]:
    """FROM and WHERE that find the member's account by id, card, e-mail or phone (x_ref)."""
    source = ACC.join(MEM, MEM.c.id == ACC.c.member_id).join(PROG, PROG.c.id == ACC.c.program_id)
    if kind == "card":
        source = source.join(CARD, CARD.c.member_id == MEM.c.id)
    match = {
        "id": ACC.c.member_id == b("x_ref"),
        "card": CARD.c.number == b("x_ref"),
        "email": MEM.c.email == b("x_ref"),
        "phone": MEM.c.phone == b("x_ref"),
    }[kind]
    return source, [ACC.c.program_id == b("x_pid"), match]


def _lock_stmt(kind: str) -> Select[Any]:
    """Statement 1: the account locked, with the member and the program's config token."""

    def build() -> Select[Any]:
        cols: list[Any] = [
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
            literal_column("programs.config_version", BigInteger),
        ]
        source, match = _account_of(kind)
        cols.append(CARD.c.status if kind == "card" else null())
        return select(*cols).select_from(source).where(*match).with_for_update(of=ACC)

    return _built(("lock", kind), build)


def _metric_subquery(metric: str, has_end: bool, account: Any) -> Any:
    """The tier metric of one account in [x_ws, x_we) before this sale (as tiers.metrics)."""
    if metric == "points":
        stmt = select(func.coalesce(func.sum(ENT.c.qualifying), 0)).where(
            ENT.c.account_id == account,
            ENT.c.qualifying != 0,
            ENT.c.occurred_at >= b("x_ws", type_=ENT.c.occurred_at.type),
        )
        if has_end:
            stmt = stmt.where(ENT.c.occurred_at < b("x_we", type_=ENT.c.occurred_at.type))
        return stmt.scalar_subquery()
    kept = PUR.c.amount_minor - PUR.c.refunded_minor
    value = func.coalesce(func.sum(kept), 0) if metric == "spend" else func.count()
    stmt = select(value).where(
        PUR.c.account_id == account,
        PUR.c.occurred_at >= b("x_ws", type_=PUR.c.occurred_at.type),
        kept > 0,
    )
    if has_end:
        stmt = stmt.where(PUR.c.occurred_at < b("x_we", type_=PUR.c.occurred_at.type))
    return stmt.scalar_subquery()


def _read_columns(dialect: str, metric: str | None, has_end: bool, account: Any) -> list[Any]:
    ids: list[Any]
    if dialect == "postgresql":
        ids = [
            literal_column(f"nextval('{name}_id_seq')", BigInteger)
            for name in ("purchases", "lots", "entries")
        ]
    else:  # writers are serialised: the next rowid is max + 1
        ids = [
            select(func.coalesce(func.max(t.c.id), 0) + 1).scalar_subquery()
            for t in (PUR, LOT, ENT)
        ]
    now = b("x_now", type_=LOT.c.expires_at.type)
    due = exists().where(
        LOT.c.account_id == account,
        LOT.c.remaining > 0,
        or_(
            and_(LOT.c.pending.is_(True), LOT.c.pending_until <= now),
            and_(LOT.c.expires_at.is_not(None), LOT.c.expires_at <= now),
        ),
    )
    expiring = (
        select(func.coalesce(func.sum(LOT.c.remaining), 0))
        .where(
            LOT.c.account_id == account,
            LOT.c.remaining > 0,
            LOT.c.expires_at > now,
            LOT.c.expires_at <= b("x_soon", type_=LOT.c.expires_at.type),
        )
        .scalar_subquery()
    )
    metric_col = _metric_subquery(metric, has_end, account) if metric else null()
    return [*ids, due, expiring, metric_col]


def _read_stmt(dialect: str, metric: str | None, has_end: bool) -> Select[Any]:
    """Statement 2 (after the lock): new ids, due lots, points expiring soon, tier metric."""

    def build() -> Select[Any]:
        return select(*_read_columns(dialect, metric, has_end, b("x_acct")))

    return _built(("read", dialect, metric, has_end), build)


def _pipelined_read_stmt(kind: str, metric: str | None, has_end: bool) -> Select[Any]:
    """PostgreSQL: statement 2 for the pipeline. It is sent with statement 1, before its
    answer is back, so it finds the account as statement 1 does; it runs after statement 1
    has the lock, with its own snapshot (READ COMMITTED), so it sees every earlier writer."""

    def build() -> Select[Any]:
        source, match = _account_of(kind)
        account = select(ACC.c.id).select_from(source).where(*match).cte("a")
        columns = _read_columns("postgresql", metric, has_end, account.c.id)
        return select(*columns).select_from(account)

    return _built(("pipelined", kind, metric, has_end), build)


_sql: dict[tuple[Any, ...], tuple[str, dict[str, Any]]] = {}


def _driver_sql(key: tuple[Any, ...], stmt: Any, conn: Connection) -> tuple[str, dict[str, Any]]:
    """`stmt` compiled once for the driver (psycopg's %(name)s placeholders), with the values
    of its literal parameters; the caller gives the x_… ones."""
    found = _sql.get(key)
    if found is None:
        compiled = stmt.compile(dialect=conn.dialect)
        fixed = {
            name: bind.effective_value
            for bind, name in compiled.bind_names.items()
            if not name.startswith("x_")
        }
        found = _sql[key] = (str(compiled), fixed)
    return found


def _lock_and_read_pg(
    conn: Connection, config: ProgramConfig, kind: str, ref: Any, now: datetime
) -> tuple[Any, Any]:
    """Statements 1 and 2 in one round trip (psycopg pipeline mode), with the BEGIN psycopg
    sends first: the lock, then the read, which PostgreSQL runs after the lock is granted."""
    from patron.ledger.views import EXPIRING_WINDOW

    window = upgrade_window(config, None, now)
    metric = config.policy.metric if window is not None and config.policy else None
    has_end = window is not None and window.end is not None
    lock_sql, lock_fixed = _driver_sql(("lock", kind), _lock_stmt(kind), conn)
    read_sql, read_fixed = _driver_sql(
        ("pipelined", kind, metric, has_end), _pipelined_read_stmt(kind, metric, has_end), conn
    )
    params: dict[str, Any] = {"x_pid": config.id, "x_ref": ref}
    read_params = {**read_fixed, **params, "x_now": now, "x_soon": now + EXPIRING_WINDOW}
    if window is not None:
        read_params["x_ws"] = window.start
        if window.end is not None:
            read_params["x_we"] = window.end
    driver = conn.connection.driver_connection
    assert driver is not None
    lock_params = {**lock_fixed, **params}
    try:
        with driver.pipeline():
            lock_cur = driver.execute(lock_sql, lock_params)
            read_cur = driver.execute(read_sql, read_params)
        return lock_cur.fetchone(), read_cur.fetchone()
    except psycopg.Error as exc:
        # As SQLAlchemy raises it for its own statements (DataError for a NUL in a card
        # number, OperationalError for a lost connection, …), so callers handle one kind.
        raise DBAPIError.instance(lock_sql, lock_params, exc, psycopg.Error) from exc


_JSON_PARAMS = ("x_lines", "x_breakdown", "x_details", "x_response", "x_ev_payload")


def _execute_on_driver(
    conn: Connection, key: tuple[Any, ...], build: Any, params: dict[str, Any]
) -> Any:
    """The write statement straight on psycopg (its SQL compiled once): SQLAlchemy's per-call
    work for a 40-parameter statement costs more than the statement. JSON values are sent as
    SQLAlchemy sends them to a JSONB column (json.dumps; None as JSON null)."""
    sql, fixed = _driver_sql(key, build(key[1]), conn)
    values = {**fixed, **params}
    for name in _JSON_PARAMS:
        if name in values:
            values[name] = Jsonb(values[name])
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        return driver.execute(sql, values).fetchone()
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, values, exc, psycopg.Error) from exc


_PURCHASE_VALUES = {
    "id": "x_p_id",
    "program_id": "x_pid",
    "account_id": "x_acct",
    "external_id": "x_external_id",
    "store_id": "x_store_id",
    "channel": "x_channel",
    "payment_method": "x_payment_method",
    "occurred_at": "x_occurred_at",
    "created_at": "x_now",
    "amount_minor": "x_amount_minor",
    "lines": "x_lines",
    "points_earned": "x_points_earned",
    "points_spent": "x_points_spent",
    "earn_entry_id": "x_e_id",
    "redeem_entry_id": "x_r_id",
    "refunded_minor": "x_zero",
    "reversed_points": "x_zero",
    "restored_points": "x_zero",
    "request_hash": "x_request_hash",
    "response": "x_response",
}
_LOT_VALUES = {
    "id": "x_l_id",
    "account_id": "x_acct",
    "points": "x_points",
    "remaining": "x_remaining",
    "earned_at": "x_occurred_at",
    "pending_until": "x_pending_until",
    "pending": "x_pending",
    "expires_at": "x_expires_at",
}
_ENTRY_VALUES = {
    "id": "x_e_id",
    "program_id": "x_pid",
    "account_id": "x_acct",
    "kind": "x_kind",
    "points": "x_points",
    "qualifying": "x_qualifying",
    "lot_id": "x_l_id",
    "purchase_id": "x_p_id",
    "occurred_at": "x_occurred_at",
    "created_at": "x_now",
    "reason": "x_reason",
    "store_id": "x_store_id",
    "channel": "x_channel",
    "actor": "x_actor",
    "external_ref": "x_external_id",
    "rule_version": "x_rule_version",
    "breakdown": "x_breakdown",
    "details": "x_details",
}
# The earn entry's outbox event (kind and dispatched are constants of the statement).
_EVENT_VALUES = {
    "program_id": "x_pid",
    "member_id": "x_member_id",
    "entry_id": "x_e_id",
    "payload": "x_ev_payload",
    "at": "x_now",
}
_ACCOUNT_DELTAS = ("available", "pending", "debt", "earned")


def _values(table: Any, names: dict[str, str]) -> dict[str, Any]:
    return {col: b(param, type_=table.c[col].type) for col, param in names.items()}


def _event_columns() -> dict[str, Any]:
    values = _values(EVT, _EVENT_VALUES)
    values["kind"] = literal(ENTRY_EVENTS["earn"], EVT.c.kind.type)
    values["dispatched"] = false()
    return values


def _account_update() -> Any:
    return (
        update(ACC)
        .where(ACC.c.id == b("x_acct"))
        .values({col: ACC.c[col] + b(f"x_d_{col}", type_=BigInteger) for col in _ACCOUNT_DELTAS})
    )


def _purchase_insert(dialect: str) -> Any:
    ins = pg_insert(PUR) if dialect == "postgresql" else sqlite_insert(PUR)
    return (
        ins.values(_values(PUR, _PURCHASE_VALUES))
        .on_conflict_do_nothing(index_elements=["program_id", "external_id"])
        .returning(PUR.c.id)
    )


def _pg_write_stmt(earns: bool) -> Any:
    """PostgreSQL: purchase, lot, entry, its event and account totals in one statement. The
    lot, the entry, the event and the totals are written only if the purchase was (FROM p /
    EXISTS p), and the foreign keys between them are checked at the end of the statement."""

    def build() -> Any:
        p = _purchase_insert("postgresql").cte("p")
        if not earns:
            return select(p.c.id)
        lot_v = _values(LOT, _LOT_VALUES)
        lot = insert(LOT).from_select(list(lot_v), select(*lot_v.values()).select_from(p))
        entry_v = _values(ENT, _ENTRY_VALUES)
        entry = insert(ENT).from_select(list(entry_v), select(*entry_v.values()).select_from(p))
        event_v = _event_columns()
        event = insert(EVT).from_select(list(event_v), select(*event_v.values()).select_from(p))
        totals = _account_update().where(exists(select(p.c.id)))
        return select(p.c.id).add_cte(lot.cte("l"), entry.cte("e"), event.cte("v"), totals.cte("u"))

    return _built(("pg_write", earns), build)


def _sqlite_write_stmts() -> tuple[Any, Any, Any, Any, Any]:
    """(purchase, lot, entry, event, totals), one statement each: SQLite's write, and the
    batch's statements on either engine (run with many rows at once)."""

    def build() -> tuple[Any, Any, Any, Any, Any]:
        return (
            _purchase_insert("sqlite"),
            insert(LOT).values(_values(LOT, _LOT_VALUES)),
            insert(ENT).values(_values(ENT, _ENTRY_VALUES)),
            insert(EVT).values(_event_columns()),
            _account_update(),
        )

    return _built(("sqlite_write",), build)


# --- the earn ------------------------------------------------------------------------------


@dataclass
class Locked:
    """Statement 1's row."""

    account_id: int
    available: int
    pending: int
    debt: int
    earned: int
    redeemed: int
    expired: int
    adjusted: int
    tier: str | None
    member_id: int
    member_status: str
    attributes: dict[str, Any] | None
    birthday: Any
    member_created_at: datetime
    version: int
    card_status: str | None


def _ref(req: PurchaseRequest, config: ProgramConfig) -> tuple[str, Any]:
    ref = req.member
    if ref.id is not None:
        return "id", ref.id
    if ref.card is not None:
        return "card", ref.card
    if ref.email is not None:
        return "email", ref.email.strip().lower()
    assert ref.phone is not None
    return "phone", normalise_phone(ref.phone, config.country)


def _lock(
    session: Session, conn: Connection, program_id: int, req: PurchaseRequest, now: datetime
) -> tuple[ProgramConfig, Locked | None, Any]:
    """(configuration, the locked account, statement 2's row if it came with the lock)."""
    from patron.ledger import program_cache

    config = program_cache.cached(session, program_id) or program_cache.load(session, program_id)
    pipeline = conn.dialect.name == "postgresql"
    for _attempt in range(3):
        kind, value = _ref(req, config)
        read = None
        if pipeline:
            row, read = _lock_and_read_pg(conn, config, kind, value, now)
        else:
            row = conn.execute(_lock_stmt(kind), {"x_pid": program_id, "x_ref": value}).first()
        if row is None:
            return config, None, None
        locked = Locked(*row)
        if locked.version == config.version:
            return config, locked, read
        fresh = program_cache.load(session, program_id)
        if kind != "phone" or fresh.country == config.country:
            return fresh, locked, None  # statement 2 runs again with this configuration
        config = fresh  # the phone was read in the old country's format: look it up again
    return config, None, None  # pragma: no cover - the country changed twice during one sale


def try_purchase(
    session: Session,
    program_id: int,
    req: PurchaseRequest,
    digest: str,
    *,
    actor: Actor,
    now: datetime,
) -> tuple[dict[str, Any], bool] | None:
    """(answer, created) for a sale, or None, before anything is written, for the general path.

    `created` is False for a replay. A PatronError is raised before anything is written but
    settling due lots (which any later write would do first anyway)."""
    from patron.ledger import purchases

    if req.points_to_spend or req.coupons:
        return None
    conn = session.connection()
    try:
        config, locked, read = _lock(session, conn, program_id, req, now)
        if locked is None:
            return None
        plan = _plan(session, conn, config, locked, req, actor=actor, now=now, read=read)
    except PatronError:
        # A sale recorded before answers with its first answer, whatever fails now.
        found = purchases._existing_purchase(session, program_id, req.external_id)
        if found is not None:
            return purchases._replay_purchase(found, digest), False
        raise
    if plan is None:
        return None
    return _write(session, conn, config, plan, req, digest, actor=actor, now=now)


@dataclass
class Plan:
    account_id: int
    member_id: int
    tier: str | None
    ids: tuple[int, int, int]
    occurred_at: datetime
    store_id: int | None
    order: Any
    result: Any
    spent_per_line: list[int]
    qualifying: int
    expiry: datetime | None
    pending_until: datetime | None
    pending: bool
    debt_settled: int
    totals: Totals
    window: Window | None
    metric_before: int
    metric: str | None = None  # the tier policy's metric, when `window` is set


def validate(
    config: ProgramConfig, locked: Locked, req: PurchaseRequest, now: datetime
) -> tuple[datetime, Order, int | None]:
    """What the general path checks before any write, in its order: (occurred_at, order,
    store id)."""
    from patron.ledger import purchases

    if locked.card_status is not None and locked.card_status != "active":
        raise Conflict(f"card {req.member.card} is {locked.card_status}", code="card_not_active")
    if locked.member_status != "active":
        raise MemberBlocked(f"member {locked.member_id} is blocked and cannot earn or redeem")
    occurred_at = purchases.check_occurred_at(req.occurred_at, now)
    order, store_id = purchases._order(
        config, req, occurred_at=occurred_at, points_to_spend=0, store_id_of=config.store_id_of
    )
    return occurred_at, order, store_id


def upgrade_window(config: ProgramConfig, tier: str | None, now: datetime) -> Window | None:
    """The tier window to read the metric in: only if the program upgrades at once and the
    member is not at the top already."""
    policy = config.policy
    if policy is None or policy.upgrade != "immediate" or config.rank_of(tier) >= config.top_rank:
        return None
    return window_at(policy.window, now, config.timezone, rolling_months=policy.rolling_months)


def _plan(
    session: Session,
    conn: Connection,
    config: ProgramConfig,
    locked: Locked,
    req: PurchaseRequest,
    *,
    actor: Actor,
    now: datetime,
    read: Any = None,
) -> Plan | None:
    from patron.ledger import service as ledger
    from patron.ledger.views import EXPIRING_WINDOW
    from patron.rules import service as rules

    occurred_at, order, store_id = validate(config, locked, req, now)
    window = upgrade_window(config, locked.tier, now)
    stmt = _read_stmt(
        conn.dialect.name,
        config.policy.metric if window is not None and config.policy else None,
        window is not None and window.end is not None,
    )
    params: dict[str, Any] = {
        "x_acct": locked.account_id,
        "x_now": now,
        "x_soon": now + EXPIRING_WINDOW,
    }
    if window is not None:
        params["x_ws"] = window.start
        if window.end is not None:
            params["x_we"] = window.end
    if read is None:
        read = conn.execute(stmt, params).one()
    p_id, l_id, e_id, due, expiring, metric_before = read
    if window is None:
        metric_before = 0  # read for the program's window; the member is at the top already
    if due:
        # Rare: lots past their date or out of pending. The ORM primitive settles them.
        account = session.get(Account, locked.account_id, populate_existing=True)
        assert account is not None
        ledger.settle_due(session, account, now)
        locked = replace(
            locked, available=account.available, pending=account.pending, expired=account.expired
        )
        # New ids after the settlement's entries, as the general path numbers them (SQLite:
        # max + 1 was just taken by an expire entry).
        p_id, l_id, e_id, _due, expiring, metric_before = conn.execute(stmt, params).one()

    figures: dict[str, int] = {}
    purchases_before = 0
    wanted = config.needs
    if wanted.caps or wanted.purchases:
        figures, purchases_before = rules.member_figures(
            session, config.timezone, locked.account_id, occurred_at, wanted
        )
    budgets = rules.budgets_left(session, config.id, wanted, lock=True) if wanted.budgets else {}
    return compute(
        config,
        locked,
        req,
        now=now,
        occurred_at=occurred_at,
        order=order,
        store_id=store_id,
        ids=(int(p_id), int(l_id), int(e_id)),
        expiring=int(expiring or 0),
        window=window,
        metric_before=int(metric_before or 0),
        figures=figures,
        purchases_before=purchases_before,
        budgets=budgets,
    )


def compute(
    config: ProgramConfig,
    locked: Locked,
    req: PurchaseRequest,
    *,
    now: datetime,
    occurred_at: datetime,
    order: Order,
    store_id: int | None,
    ids: tuple[int, int, int],
    expiring: int,
    window: Window | None,
    metric_before: int,
    figures: dict[str, int] | None = None,
    purchases_before: int = 0,
    budgets: dict[str, int] | None = None,
) -> Plan | None:
    """The sale on the account as locked (settled at `now`): the rules, the new lot, the
    totals for the answer. None when the general path must take it (points expired at once)."""
    from patron.ledger import purchases
    from patron.ledger.views import EXPIRING_WINDOW
    from patron.rules import service as rules

    figures = figures or {}
    doc = config.doc
    tier = config.tier_by_code.get(locked.tier) if locked.tier is not None else None
    context = MemberContext(
        tier=locked.tier,
        tier_factor=tier.multiplier if tier is not None else None,
        attributes=locked.attributes or {},
        joined_on=locked.member_created_at.astimezone(ZoneInfo(config.timezone)).date(),
        birthday=locked.birthday,
        purchases=purchases_before,
        earned_day=figures.get("member_day", 0),
        earned_month=figures.get("member_month", 0),
        earned_year=figures.get("member_year", 0),
    )
    available, pending_total, debt = locked.available, locked.pending, locked.debt
    can_pay, blocked = rules.payable_amount(doc, order)
    purchases.check_spend(config, can_pay, 0, available - debt, blocked)
    result = evaluate(doc, order, context, budgets or {})
    spent_per_line = purchases._spent_per_line(doc, order, 0)

    points = result.points
    expiry = until = None
    is_pending = False
    settled = 0
    qualifying = 0
    if points:
        extra = tier.extra_expiry_months if tier is not None else 0
        expiry = expires_at(
            occurred_at,
            kind=config.expiry_kind,
            months=config.expiry_months + extra,
            timezone=config.timezone,
        )
        if expiry is not None and expiry <= now:
            return None  # points expired at birth: the general path writes their expiry too
        until = pending_until(occurred_at, days=config.pending_days)
        is_pending = until is not None and until > now
        qualifying = rules.qualifying_points(doc, result)
        settled = min(debt, points) if debt > 0 else 0
        if is_pending:
            pending_total += points - settled
        else:
            available += points - settled
        debt -= settled
        if expiry is not None and now < expiry <= now + EXPIRING_WINDOW and points > settled:
            expiring += points - settled
    totals = Totals(
        balance=available - debt,
        available=available,
        pending=pending_total,
        debt=debt,
        earned=locked.earned + points,
        redeemed=locked.redeemed,
        expired=locked.expired,
        adjusted=locked.adjusted,
        expiring_30_days=expiring,
    )
    return Plan(
        account_id=locked.account_id,
        member_id=locked.member_id,
        tier=locked.tier,
        ids=ids,
        occurred_at=occurred_at,
        store_id=store_id,
        order=order,
        result=result,
        spent_per_line=spent_per_line,
        qualifying=qualifying,
        expiry=expiry,
        pending_until=until,
        pending=is_pending,
        debt_settled=settled,
        totals=totals,
        window=window,
        metric_before=metric_before,
        metric=config.policy.metric if window is not None and config.policy else None,
    )


def after(locked: Locked, plan: Plan) -> tuple[Locked, int]:
    """The account as `plan` leaves it, and the tier metric after it (for the next sale of
    the same account in a batch)."""
    t = plan.totals
    state = replace(locked, available=t.available, pending=t.pending, debt=t.debt, earned=t.earned)
    return state, metric_after(plan, plan.order.currency)


def metric_after(plan: Plan, currency: str) -> int:
    from patron.ledger import purchases

    window = plan.window
    value = plan.metric_before
    if window is None:
        return value
    occurred = plan.occurred_at
    if occurred >= window.start and (window.end is None or occurred < window.end):
        metric = plan.metric
        if metric == "points":
            value += plan.qualifying
        elif metric == "spend":
            value += purchases.to_minor(plan.order.total, currency)
        else:
            value += 1
    return value


def upgrade_due(config: ProgramConfig, plan: Plan) -> bool:
    """Whether the member reaches a higher tier with this sale (the immediate upgrade's test
    on figures already read)."""
    from patron.tiers.metrics import qualify

    if plan.window is None:
        return False
    target = qualify(config.tiers, metric_after(plan, config.currency))  # type: ignore[arg-type]
    return target is not None and target.rank > config.rank_of(plan.tier)


def rows(
    config: ProgramConfig,
    plan: Plan,
    req: PurchaseRequest,
    digest: str,
    *,
    actor: Actor,
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bound parameters of the sale's rows (purchase, lot, entry, event, account deltas)
    and its answer, stored with the purchase."""
    from patron.ledger import purchases

    result, order = plan.result, plan.order
    points = result.points
    p_id, l_id, e_id = plan.ids
    currency = config.currency
    lines = [
        {
            "id": line.id,
            "sku": line.sku,
            "category": line.category,
            "quantity": str(line.quantity),
            "amount_minor": purchases.to_minor(line.amount, currency),
            "points_earned": earned,
            "points_spent": spent,
            "refunded_quantity": "0",
        }
        for line, earned, spent in zip(
            order.lines, result.line_points, plan.spent_per_line, strict=True
        )
    ]
    details: dict[str, Any] = {
        "expires_at": plan.expiry.isoformat() if plan.expiry else None,
        "pending_until": plan.pending_until.isoformat()
        if plan.pending_until and plan.pending
        else None,
    }
    if plan.debt_settled:
        details = {**details, "debt_settled": plan.debt_settled}
    reason = f"purchase {req.external_id}"
    store = config.store_codes.get(plan.store_id) if plan.store_id else None
    entries = []
    if points:
        entries.append(
            EntryOut(
                id=e_id,
                kind="earn",
                points=points,
                occurred_at=plan.occurred_at,
                created_at=now,
                reason=reason,
                store=store,
                channel=req.channel,
                external_ref=req.external_id,
                actor=str(actor),
                reverses_entry_id=None,
                rule_version=config.rule_version,
                breakdown=result.steps,
                details=details,
            )
        )
    out = PurchaseOut(
        external_id=req.external_id,
        member_id=plan.member_id,
        amount=order.total,
        points_earned=points,
        points_spent=0,
        spend_value=order.paid_with_points,
        occurred_at=plan.occurred_at,
        entries=entries,
        totals=plan.totals,
    )
    response = out.answer()
    params: dict[str, Any] = {
        "x_p_id": p_id,
        "x_pid": config.id,
        "x_acct": plan.account_id,
        "x_external_id": req.external_id,
        "x_store_id": plan.store_id,
        "x_channel": req.channel,
        "x_payment_method": req.payment_method,
        "x_occurred_at": plan.occurred_at,
        "x_now": now,
        "x_amount_minor": purchases.to_minor(order.total, currency),
        "x_lines": lines,
        "x_points_earned": points,
        "x_points_spent": 0,
        "x_e_id": e_id if points else None,
        "x_r_id": None,
        "x_zero": 0,
        "x_request_hash": digest,
        "x_response": response,
    }
    if points:
        remaining = points - plan.debt_settled
        params.update(
            {
                "x_l_id": l_id,
                "x_points": points,
                "x_remaining": remaining,
                "x_pending_until": plan.pending_until,
                "x_pending": plan.pending,
                "x_expires_at": plan.expiry,
                "x_kind": "earn",
                "x_qualifying": plan.qualifying,
                "x_reason": reason,
                "x_actor": str(actor),
                "x_rule_version": config.rule_version,
                "x_breakdown": result.steps,
                "x_details": details,
                "x_d_available": 0 if plan.pending else remaining,
                "x_d_pending": remaining if plan.pending else 0,
                "x_d_debt": -plan.debt_settled,
                "x_d_earned": points,
                "x_member_id": plan.member_id,
                "x_ev_payload": entry_payload(
                    program=config.code,
                    member_id=plan.member_id,
                    entry_id=e_id,
                    entry_kind="earn",
                    points=points,
                    occurred_at=plan.occurred_at,
                    reason=reason,
                    order=req.external_id,
                    store=store,
                    channel=req.channel,
                    expires_at=plan.expiry,
                ),
            }
        )
    return params, response


def _write(
    session: Session,
    conn: Connection,
    config: ProgramConfig,
    plan: Plan,
    req: PurchaseRequest,
    digest: str,
    *,
    actor: Actor,
    now: datetime,
) -> tuple[dict[str, Any], bool]:
    from patron.ledger import purchases
    from patron.rules import service as rules

    params, response = rows(config, plan, req, digest, actor=actor, now=now)
    points = plan.result.points
    if conn.dialect.name == "postgresql":
        inserted = _execute_on_driver(conn, ("pg_write", bool(points)), _pg_write_stmt, params)
    else:
        purchase_ins, lot_ins, entry_ins, event_ins, totals_upd = _sqlite_write_stmts()
        inserted = conn.execute(purchase_ins, params).first()
        if inserted is not None and points:
            conn.execute(lot_ins, params)
            conn.execute(entry_ins, params)
            conn.execute(event_ins, params)
            conn.execute(totals_upd, params)
    if inserted is None:
        # The order id is taken (by an earlier request, or one that committed while we waited
        # on the unique index): its first answer, or duplicate_order.
        found = purchases._existing_purchase(session, config.id, req.external_id)
        assert found is not None
        return purchases._replay_purchase(found, digest), False
    if plan.debt_settled:
        conn.execute(insert(MOV), movements(plan))
    if plan.result.budget_used:
        rules.spend_budgets(session, config.id, plan.result.budget_used)
    _upgrade_if_qualified(session, config, plan, actor=actor, now=now)
    return response, True


def movements(plan: Plan) -> list[dict[str, Any]]:
    """A debt paid from the new lot: taken from the lot, given to the debt."""
    _p_id, l_id, e_id = plan.ids
    return [
        {"entry_id": e_id, "lot_id": l_id, "points": -plan.debt_settled},
        {"entry_id": e_id, "lot_id": None, "points": plan.debt_settled},
    ]


def _upgrade_if_qualified(
    session: Session, config: ProgramConfig, plan: Plan, *, actor: Actor, now: datetime
) -> None:
    """The move itself (rare) is `tiers.upgrade_if_qualified`, which reads the metric again
    and writes the history, the event and the audit record."""
    from patron.tiers import service as tiers

    if not upgrade_due(config, plan):
        return
    program = session.get(Program, config.id)
    account = session.get(Account, plan.account_id, populate_existing=True)
    assert program is not None and account is not None
    tiers.upgrade_if_qualified(session, program, account, now=now, actor=actor)
