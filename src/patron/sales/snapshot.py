"""What the planner needs about a round of sales, read in one round trip.

Five statements, sent together on PostgreSQL (one psycopg pipeline, one round trip with the
transaction's BEGIN) and one after another on SQLite (where a statement costs no round trip):

1. **lock**: the members' accounts in the program `FOR UPDATE`, in id order (the order every
   multi-account writer uses; SQLite writers hold the database lock), with the members;
2. **figures**, run after 1 holds the locks so it sees every earlier writer of those accounts:
   per account, whether a lot is due (points out of pending, or past their date), the points
   expiring soon and, when a sale may move the member up at once, the tier metric
   (`patron.tiers.metrics.metric_column`);
3. **replays**: the round's order ids already recorded, with their first answers;
4. **ids and configuration**: the program's configuration token (`program_cache`) and new row
   ids (sequence values on PostgreSQL; on SQLite, where writers are serialised, the largest
   ids in use);
5. **lots**, only for members who spend points: their spendable lots, soonest expiry first.

An account with lots due is settled by the ledger's `settle_due` and read again: the planner
always starts from accounts with nothing due. A member with no account yet gets a reserved id.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain, count
from typing import Any, cast

import psycopg
from sqlalchemy import (
    BigInteger,
    Connection,
    String,
    Table,
    and_,
    any_,
    bindparam,
    exists,
    func,
    literal_column,
    null,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from patron.db.config_version import programs_version
from patron.ledger import service as ledger
from patron.ledger.models import Account, Entry, Lot, Movement, Purchase, is_open
from patron.ledger.rolling import ACTIVITY_KINDS
from patron.ledger.views import EXPIRING_WINDOW
from patron.members.models import Member
from patron.sales.plan import AccountState, Expiry, Ids, LotState, OpenLot, upgrade_window
from patron.sales.program_cache import ProgramConfig
from patron.tiers.metrics import metric_column

ACC = cast(Table, Account.__table__)
LOT = cast(Table, Lot.__table__)
MEM = cast(Table, Member.__table__)
PUR = cast(Table, Purchase.__table__)
ENT = cast(Table, Entry.__table__)
MOV = cast(Table, Movement.__table__)
b = bindparam


@dataclass
class Read:
    version: int | None  # the program's configuration token
    states: dict[int, AccountState] = field(default_factory=dict)  # by member id
    due: set[int] = field(default_factory=set)  # accounts with lots due
    replays: dict[str, tuple[str | None, dict[str, Any] | None]] = field(default_factory=dict)
    ids: Ids | None = None


# --- statements, built once per shape --------------------------------------------------------

_built: dict[tuple[Any, ...], Any] = {}


def _once(key: tuple[Any, ...], build: Any) -> Any:
    found = _built.get(key)
    if found is None:
        found = _built[key] = build()
    return found


def _in(dialect: str, column: Any, name: str, type_: Any) -> Any:
    """`column IN (values of x_<name>)`: one array parameter on PostgreSQL, one JSON array
    through `json_each` on SQLite (the statement's text stays the same whatever the count)."""
    if dialect == "postgresql":
        return column == any_(b(name, type_=ARRAY(type_)))
    return column.in_(select(literal_column("value")).select_from(func.json_each(b(name))))


_OPEN = is_open(LOT.c.remaining)  # the partial index on open lots applies (ledger.models)


def _accounts(dialect: str) -> Any:
    return and_(
        ACC.c.program_id == b("x_pid"), _in(dialect, ACC.c.member_id, "x_members", BigInteger)
    )


def _lock_stmt(dialect: str) -> Any:
    def build() -> Any:
        return (
            select(
                ACC.c.id,
                ACC.c.tier,
                ACC.c.available,
                ACC.c.pending,
                ACC.c.debt,
                ACC.c.earned,
                ACC.c.redeemed,
                ACC.c.expired,
                ACC.c.adjusted,
                MEM.c.id,
                MEM.c.status,
                MEM.c.attributes,
                MEM.c.birthday,
                MEM.c.created_at,
            )
            .select_from(ACC.join(MEM, MEM.c.id == ACC.c.member_id))
            .where(_accounts(dialect))
            .order_by(ACC.c.id)
            .with_for_update(of=ACC)
        )

    return _once(("lock", dialect), build)


def _figures_stmt(dialect: str, metric: str | None, has_end: bool, rolling: bool) -> Any:
    def build() -> Any:
        now = b("x_now", type_=LOT.c.expires_at.type)
        due = exists().where(
            LOT.c.account_id == ACC.c.id,
            _OPEN,
            or_(
                and_(LOT.c.pending.is_(True), LOT.c.pending_until <= now),
                and_(LOT.c.expires_at.is_not(None), LOT.c.expires_at <= now),
            ),
        )
        expiring = (
            select(func.coalesce(func.sum(LOT.c.remaining), 0))
            .where(
                LOT.c.account_id == ACC.c.id,
                _OPEN,
                LOT.c.expires_at > now,
                LOT.c.expires_at <= b("x_soon", type_=LOT.c.expires_at.type),
            )
            .scalar_subquery()
        )
        when = ENT.c.occurred_at.type
        start, end = b("x_ws", type_=when), b("x_we", type_=when) if has_end else None
        value = metric_column(metric, start, end, ACC.c.id) if metric else null()
        # Under a rolling policy: the account's latest activity (ix_entries_account_time).
        latest = (
            select(func.max(ENT.c.occurred_at))
            .where(
                ENT.c.account_id == ACC.c.id,
                # No IN (…): these statements are compiled once, without expanding parameters.
                or_(*(ENT.c.kind == kind for kind in ACTIVITY_KINDS)),
            )
            .scalar_subquery()
            if rolling
            else null()
        )
        return select(ACC.c.id, due, expiring, value, latest).where(_accounts(dialect))

    return _once(("figures", dialect, metric, has_end, rolling), build)


def _replays_stmt(dialect: str) -> Any:
    def build() -> Any:
        return select(PUR.c.external_id, PUR.c.request_hash, PUR.c.response).where(
            PUR.c.program_id == b("x_pid"), _in(dialect, PUR.c.external_id, "x_exts", String)
        )

    return _once(("replays", dialect), build)


def _ids_stmt(dialect: str) -> Any:
    def build() -> Any:
        version = (
            select(programs_version.c.config_version)
            .where(programs_version.c.id == b("x_pid"))
            .scalar_subquery()
        )
        if dialect == "postgresql":
            return select(
                version,
                *[
                    select(func.array_agg(literal_column(f"nextval('{table}_id_seq')", BigInteger)))
                    .select_from(func.generate_series(1, b(f"x_n_{table}", type_=BigInteger)))
                    .scalar_subquery()
                    for table in ("purchases", "lots", "entries")
                ],
            )
        return select(
            version,
            *[
                select(func.coalesce(func.max(t.c.id), 0)).scalar_subquery()
                for t in (PUR, LOT, ENT)
            ],
        )

    return _once(("ids", dialect), build)


def _lots_stmt(dialect: str) -> Any:
    """Spendable lots of the members in x_spenders, and pending ones too for those of them
    also in x_takers (what a clawback may take), soonest expiry first."""

    def build() -> Any:
        now = b("x_now", type_=LOT.c.expires_at.type)
        accounts = select(ACC.c.id).where(
            ACC.c.program_id == b("x_pid"),
            _in(dialect, ACC.c.member_id, "x_spenders", BigInteger),
        )
        takers = select(ACC.c.id).where(
            ACC.c.program_id == b("x_pid"),
            _in(dialect, ACC.c.member_id, "x_takers", BigInteger),
        )
        spendable = and_(
            LOT.c.pending.is_(False), or_(LOT.c.expires_at.is_(None), LOT.c.expires_at > now)
        )
        return (
            select(LOT.c.id, LOT.c.account_id, LOT.c.remaining, LOT.c.expires_at, LOT.c.pending)
            .where(
                LOT.c.account_id.in_(accounts),
                _OPEN,
                or_(spendable, and_(LOT.c.pending.is_(True), LOT.c.account_id.in_(takers))),
            )
            .order_by(LOT.c.expires_at.is_(None), LOT.c.expires_at, LOT.c.id)
        )

    return _once(("lots", dialect), build)


def _expiries_stmt(dialect: str) -> Any:
    def build() -> Any:
        given = ENT.alias("given")
        back = (
            select(func.coalesce(func.sum(given.c.points), 0))
            .where(given.c.reverses_entry_id == ENT.c.id, given.c.kind == "adjust")
            .scalar_subquery()
        )
        return (
            select(ENT.c.id, ENT.c.account_id, ENT.c.occurred_at, -ENT.c.points - back)
            .where(
                ENT.c.account_id.in_(
                    select(ACC.c.id).where(
                        ACC.c.program_id == b("x_pid"),
                        _in(dialect, ACC.c.member_id, "x_late", BigInteger),
                    )
                ),
                ENT.c.kind == "expire",
                ENT.c.occurred_at > b("x_since", type_=ENT.c.occurred_at.type),
            )
            .order_by(ENT.c.occurred_at, ENT.c.id)
        )

    return _once(("expiries", dialect), build)


# --- running them --------------------------------------------------------------------------

_compiled: dict[int, tuple[str, dict[str, Any]]] = {}


def _driver_sql(stmt: Any, conn: Connection) -> tuple[str, dict[str, Any]]:
    """`stmt` compiled once for psycopg, with the values of its literal parameters."""
    found = _compiled.get(id(stmt))
    if found is None:
        compiled = stmt.compile(dialect=conn.dialect)
        fixed = {
            name: bind.effective_value
            for bind, name in compiled.bind_names.items()
            if not name.startswith("x_")
        }
        found = _compiled[id(stmt)] = (str(compiled), fixed)
    return found


def run_pipelined(conn: Connection, calls: Sequence[tuple[Any, dict[str, Any]]]) -> list[Any]:
    """PostgreSQL: the statements sent together, run in order; the rows of each."""
    driver = conn.connection.driver_connection
    assert driver is not None
    cursors = []
    sql = ""
    params: dict[str, Any] = {}
    try:
        with driver.pipeline():
            for stmt, values in calls:
                sql, fixed = _driver_sql(stmt, conn)
                params = {**fixed, **values}
                cursors.append(driver.execute(sql, params))
        return [cur.fetchall() for cur in cursors]
    except psycopg.Error as exc:
        # As SQLAlchemy raises it for its own statements (DataError for a NUL in a code,
        # OperationalError for a lost connection, …), so callers handle one kind.
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc


_sqlite_compiled: dict[int, tuple[str, list[tuple[str, Any, Any]], list[Any]]] = {}


def _sqlite_sql(stmt: Any, conn: Connection) -> tuple[str, list[tuple[str, Any, Any]], list[Any]]:
    """`stmt` compiled once for SQLite: its text, its parameters in order (name, the type's
    bind processor, the value of a literal one) and each result column's processor."""
    found = _sqlite_compiled.get(id(stmt))
    if found is None:
        dialect = conn.dialect
        compiled = stmt.compile(dialect=dialect)
        params = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            fixed = None if name.startswith("x_") else bind.effective_value
            params.append((name, bind.type._cached_bind_processor(dialect), fixed))
        results = [c.type._cached_result_processor(dialect, None) for c in stmt.selected_columns]
        found = _sqlite_compiled[id(stmt)] = (str(compiled), params, results)
    return found


def run_sqlite(conn: Connection, calls: Sequence[tuple[Any, dict[str, Any]]]) -> list[Any]:
    """SQLite: the statements one after another on the driver's cursor (in the connection's
    transaction), values bound and read as SQLAlchemy would: its per-statement work cost more
    than the statements."""
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    out: list[Any] = []
    sql = ""
    try:
        for stmt, values in calls:
            sql, params, results = _sqlite_sql(stmt, conn)
            bound = []
            for name, process, fixed in params:
                value = values[name] if name.startswith("x_") else fixed
                if isinstance(value, list):  # an IN list, read through json_each
                    value = json.dumps(value)
                elif process is not None:
                    value = process(value)
                bound.append(value)
            rows = cursor.execute(sql, bound).fetchall()
            out.append(
                [
                    tuple(v if f is None else f(v) for f, v in zip(results, row, strict=True))
                    for row in rows
                ]
            )
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc
    finally:
        cursor.close()
    return out


def read(
    session: Session,
    config: ProgramConfig,
    member_ids: set[int],
    *,
    spenders: set[int],
    external_ids: Sequence[str],
    sales: int,
    spending: int,
    now: datetime,
    late: set[int] | None = None,
    late_since: datetime | None = None,
    takers: set[int] | None = None,
    new_rows: tuple[int, int] | None = None,
) -> Read:
    """The five reads of the module's docstring (ids for `sales` sales, `spending` of them
    spending points; or for `new_rows` (lots, entries) when given)."""
    conn = session.connection()
    dialect = conn.dialect.name
    window = upgrade_window(config, None, now)
    metric = config.policy.metric if window is not None and config.policy else None
    members = sorted(member_ids)
    base = {"x_pid": config.id, "x_members": members}
    calls: list[tuple[Any, dict[str, Any]]] = []
    if members:
        calls.append((_lock_stmt(dialect), base))
        values = {**base, "x_now": now, "x_soon": now + EXPIRING_WINDOW}
        if window is not None:
            values["x_ws"] = window.start
            if window.end is not None:
                values["x_we"] = window.end
        has_end = window is not None and window.end is not None
        calls.append((_figures_stmt(dialect, metric, has_end, config.any_rolling), values))
    exts = sorted({e for e in external_ids if "\x00" not in e})
    calls.append((_replays_stmt(dialect), {"x_pid": config.id, "x_exts": exts}))
    calls.append(
        (
            _ids_stmt(dialect),
            {
                "x_pid": config.id,
                "x_n_purchases": sales,
                "x_n_lots": sales if new_rows is None else new_rows[0],
                "x_n_entries": 2 * sales + spending if new_rows is None else new_rows[1],
            },
        )
    )
    if spenders:
        calls.append(
            (
                _lots_stmt(dialect),
                {
                    "x_pid": config.id,
                    "x_spenders": sorted(spenders),
                    "x_takers": sorted(takers or ()),
                    "x_now": now,
                },
            )
        )
    if late and late_since is not None:
        calls.append(
            (
                _expiries_stmt(dialect),
                {"x_pid": config.id, "x_late": sorted(late), "x_since": late_since},
            )
        )
    run = run_pipelined if dialect == "postgresql" else run_sqlite
    results = run(conn, calls)
    if members:
        locked, figures, *results = results
    else:
        locked, figures = [], []
    replays, (ids_row,), *rest = results
    out = Read(version=ids_row[0])
    for row in locked:
        a_id, tier, available, pending, debt, earned, redeemed, expired, adjusted = row[:9]
        m_id, status, attributes, birthday, created_at = row[9:]
        out.states[m_id] = AccountState(
            account_id=a_id,
            member_id=m_id,
            tier=tier,
            available=available,
            pending=pending,
            debt=debt,
            earned=earned,
            redeemed=redeemed,
            expired=expired,
            adjusted=adjusted,
            member_status=status,
            attributes=attributes,
            birthday=birthday,
            member_created_at=created_at,
            lots=[] if m_id in spenders else None,
            pending_lots=[] if takers and m_id in takers else None,
        )
    by_account = {s.account_id: s for s in out.states.values()}
    soon = now + EXPIRING_WINDOW
    for account_id, is_due, expiring, value, latest in figures:
        state = by_account[account_id]
        if is_due:
            out.due.add(account_id)
        state.expiring = int(expiring or 0)
        state.rolling = config.rolling_rule(state.tier) if config.any_rolling else None
        if state.rolling is not None and latest is not None:
            # Every open lot expires at the rolling date, never before its own: past the
            # window, none of them expires in it (`ledger.rolling`). Before it, the lots'
            # own dates in the window are what the sum above counted.
            until = state.rolling.expires_at(_utc(latest), config.timezone)
            state.rolls_past_window = until is not None and until > soon
        if value is not None and config.rank_of(state.tier) < config.top_rank:
            state.metric = int(value)
    out.replays = {ext: (digest, answer) for ext, digest, answer in replays}
    if dialect == "postgresql":
        out.ids = Ids(*(iter(ids or []) for ids in ids_row[1:]))
    else:
        out.ids = Ids(count(ids_row[1] + 1), count(ids_row[2] + 1), count(ids_row[3] + 1))
    if spenders:
        for lot_id, account_id, remaining, expires, pending in rest.pop(0):
            state = by_account[account_id]
            lots = state.pending_lots if pending else state.lots
            assert lots is not None
            lots.append(LotState(lot_id, remaining, expires))
    if rest:
        restorable = 0
        for entry_id, account_id, at, points in rest.pop(0):
            if points > 0:
                by_account[account_id].expiries.append(Expiry(entry_id, _utc(at), int(points)))
                restorable += 1
        if restorable and dialect == "postgresql":
            # Each expiry a late sale draws on gives back points in a lot and an entry of its
            # own: ids for them too (SQLite's ids are counted on from the largest in use).
            # Every sale that spends may draw on every expiry: the most a round can use.
            extra = restorable * max(spending, 1)
            values = {"x_pid": config.id, "x_n_purchases": 0}
            values.update(x_n_lots=extra, x_n_entries=extra)
            (more,) = run_pipelined(conn, [(_ids_stmt(dialect), values)])[0]
            assert out.ids is not None
            out.ids.lots = chain(out.ids.lots, more[2] or [])
            out.ids.entries = chain(out.ids.entries, more[3] or [])
    return out


def _utc(value: datetime) -> datetime:
    """An instant read on the driver (PostgreSQL) or through SQLAlchemy, in UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def opened(session: Session, redemption_id: int) -> list[OpenLot]:
    """The lots a redemption took points from, with what each is still owed (taken, less
    what reversals gave back), as they stand: read under the account's lock."""
    conn = session.connection()
    taken = dict(
        conn.execute(
            select(MOV.c.lot_id, func.sum(MOV.c.points))
            .where(MOV.c.entry_id == redemption_id, MOV.c.lot_id.is_not(None))
            .group_by(MOV.c.lot_id)
        ).all()
    )
    given = dict(
        conn.execute(
            select(MOV.c.lot_id, func.sum(MOV.c.points))
            .join(ENT, ENT.c.id == MOV.c.entry_id)
            .where(
                ENT.c.reverses_entry_id == redemption_id,
                ENT.c.kind == "reverse",
                MOV.c.points > 0,
                MOV.c.lot_id.is_not(None),
            )
            .group_by(MOV.c.lot_id)
        ).all()
    )
    lots = conn.execute(
        select(LOT.c.id, LOT.c.remaining, LOT.c.expires_at, LOT.c.pending).where(
            LOT.c.id.in_(list(taken))
        )
    ).all()
    return [
        OpenLot(
            id=lot_id,
            remaining=remaining,
            expires_at=_utc(expires) if expires is not None else None,
            pending=pending,
            open=-int(taken[lot_id]) - int(given.get(lot_id, 0)),
        )
        for lot_id, remaining, expires, pending in lots
    ]


def settle(session: Session, account_ids: set[int], now: datetime, *, actor: str) -> None:
    """Bring accounts with lots due up to `now` (rare: points past their date or out of
    pending, before the nightly job got to them)."""
    for account_id in sorted(account_ids):
        account = session.get(Account, account_id, populate_existing=True)
        assert account is not None
        ledger.settle_due(session, account, now, actor=actor)
    session.flush()


def newcomers(session: Session, member_ids: Sequence[int], lots: bool = True) -> list[AccountState]:
    """Members with no account in the program yet: a new account each, its id reserved."""
    fresh = list(
        session.execute(
            select(MEM.c.id, MEM.c.status, MEM.c.attributes, MEM.c.birthday, MEM.c.created_at)
            .where(MEM.c.id.in_(list(member_ids)))
            .order_by(MEM.c.id)
        )
    )
    ids = reserve_accounts(session, len(fresh))
    return [
        AccountState(
            account_id=a_id,
            member_id=m_id,
            tier=None,
            available=0,
            pending=0,
            debt=0,
            earned=0,
            redeemed=0,
            expired=0,
            adjusted=0,
            member_status=status,
            attributes=attributes,
            birthday=birthday,
            member_created_at=created_at,
            lots=[],
            new=True,
        )
        for (m_id, status, attributes, birthday, created_at), a_id in zip(fresh, ids, strict=True)
    ]


def reserve_accounts(session: Session, n: int) -> list[int]:
    """`n` new account ids: sequence values on PostgreSQL; on SQLite, where the writer holds
    the database lock, the ids after the largest in use."""
    if n <= 0:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return [
            int(v)
            for v in session.scalars(
                select(literal_column("nextval('accounts_id_seq')", BigInteger)).select_from(
                    func.generate_series(1, n)
                )
            )
        ]
    last = int(session.scalar(select(func.coalesce(func.max(ACC.c.id), 0))) or 0)
    return list(range(last + 1, last + 1 + n))
