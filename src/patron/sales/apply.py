"""The applier: a plan's rows written with one statement per table (many rows each).

Accounts opened by the plan and purchases go first, each `INSERT … ON CONFLICT DO NOTHING`:
they are the gates another writer may have passed first (a member's first sale at two tills,
an order id sent twice at once). If fewer rows go in than were planned, `Taken` is raised
before anything else is written; the caller plans those sales again, now seeing what the other
writer recorded. Then lots, entries, movements, the outbox events, what was taken from lots and
the account totals (one UPDATE per account, the batch's deltas summed), in the caller's
transaction: on PostgreSQL all in one statement, on SQLite one `executemany` per table on the
driver's cursor.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from typing import Any, cast

import orjson
import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError

from patron.events.models import DomainEvent
from patron.ledger.models import Account, Entry, Lot, Movement, Purchase
from patron.sales.plan import DELTA_COLUMNS, Rows

ACC = cast(Table, Account.__table__)
LOT = cast(Table, Lot.__table__)
ENT = cast(Table, Entry.__table__)
PUR = cast(Table, Purchase.__table__)
MOV = cast(Table, Movement.__table__)
EVT = cast(Table, DomainEvent.__table__)


class Taken(Exception):
    """An account or an order id the plan writes was written by another writer meanwhile."""


def apply(conn: Connection, rows: Rows) -> None:
    """Write `rows` (see the module's docstring); `Taken` if a gate was passed by another."""
    if conn.dialect.name == "postgresql":
        _apply_postgresql(conn, rows)
    else:
        _apply_sqlite(conn, rows)


# --- SQLite: one executemany per table on the driver's cursor ---------------------------------


def _sqlite_time(value: datetime) -> str:
    """An instant as SQLAlchemy stores `UTCDateTime` on SQLite (UTC, no offset, microseconds)."""
    v = value.astimezone(UTC)
    return (
        f"{v.year:04d}-{v.month:02d}-{v.day:02d} "
        f"{v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}"
    )


def _json_text(value: Any) -> str:
    """A JSON column's text, by orjson as on PostgreSQL (json_to_recordset): the same values
    as json.dumps gives, read back alike, in a fifth of the time."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _sqlite_converter(kind: str) -> Any:
    """How a value of a column of `kind` is bound on SQLite, exactly as SQLAlchemy binds it
    (JSON columns store None as the JSON text null, as SQLAlchemy's JSON type does)."""
    if kind == "timestamptz":
        return lambda v: None if v is None else _sqlite_time(v)
    if kind == "jsonb":
        return _json_text
    if kind == "boolean":
        return lambda v: None if v is None else int(v)
    return None


_SQLITE_INSERT: dict[str, tuple[str, list[tuple[str, Any]]]] = {}


def _sqlite_insert(table: str) -> tuple[str, list[tuple[str, Any]]]:
    found = _SQLITE_INSERT.get(table)
    if found is None:
        name = {"accounts": ACC.name, "purchases": PUR.name, **_NAMES}[table]
        columns = _COLUMNS[table]
        sql = (
            f"INSERT INTO {name} ({', '.join(c for c, _t in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        if table == "accounts":
            sql += " ON CONFLICT (program_id, member_id) DO NOTHING"
        elif table == "purchases":
            sql += " ON CONFLICT (program_id, external_id) DO NOTHING"
        found = _SQLITE_INSERT[table] = (sql, [(c, _sqlite_converter(t)) for c, t in columns])
    return found


_SQLITE_TAKE = "UPDATE lots SET remaining = remaining - ? WHERE id = ?"
_SQLITE_MOVE = (
    "UPDATE accounts SET " + ", ".join(f"{c} = {c} + ?" for c in DELTA_COLUMNS) + " WHERE id = ?"
)


def _apply_sqlite(conn: Connection, rows: Rows) -> None:
    """The plan's rows through the driver's cursor, in the connection's transaction (the
    writer holds the database lock): SQLAlchemy's per-statement work was most of a sale's
    cost here. Values are bound as SQLAlchemy binds them, so the rows read back the same."""
    driver = conn.connection.driver_connection
    assert driver is not None
    cursor = driver.cursor()
    sql = ""
    try:
        for table in ("accounts", "purchases", *_GATED):
            batch = getattr(rows, table)
            if not batch:
                continue
            sql, columns = _sqlite_insert(table)
            cursor.executemany(
                sql,
                [
                    tuple(row[c] if convert is None else convert(row[c]) for c, convert in columns)
                    for row in batch
                ],
            )
            if table in ("accounts", "purchases") and cursor.rowcount != len(batch):
                raise Taken()
        if rows.lot_takes:
            sql = _SQLITE_TAKE
            cursor.executemany(sql, [(t, lot) for lot, t in sorted(rows.lot_takes.items())])
        moved = [
            (*(d[c] for c in DELTA_COLUMNS), account)
            for account, d in sorted(rows.deltas.items())
            if any(d.values())
        ]
        if moved:
            sql = _SQLITE_MOVE
            cursor.executemany(sql, moved)
    except sqlite3.Error as exc:
        raise DBAPIError.instance(sql, None, exc, sqlite3.Error) from exc
    except orjson.JSONEncodeError as exc:  # a value JSON cannot hold: as PostgreSQL's path
        raise DBAPIError.instance(sql, None, sqlite3.DataError(str(exc)), sqlite3.Error) from exc
    finally:
        cursor.close()


# --- PostgreSQL: the whole plan in one statement ----------------------------------------------

# Each table's columns as the plan's rows name them, with their PostgreSQL array types.
_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "accounts": [
        ("id", "bigint"),
        ("program_id", "bigint"),
        ("member_id", "bigint"),
        *[(c, "bigint") for c in ("available", "pending", "debt", "earned", "redeemed")],
        ("expired", "bigint"),
        ("adjusted", "bigint"),
        ("created_at", "timestamptz"),
    ],
    "purchases": [
        ("id", "bigint"),
        ("program_id", "bigint"),
        ("account_id", "bigint"),
        ("external_id", "text"),
        ("store_id", "bigint"),
        ("channel", "text"),
        ("payment_method", "text"),
        ("occurred_at", "timestamptz"),
        ("created_at", "timestamptz"),
        ("amount_minor", "bigint"),
        ("lines", "jsonb"),
        ("points_earned", "bigint"),
        ("points_spent", "bigint"),
        ("earn_entry_id", "bigint"),
        ("redeem_entry_id", "bigint"),
        ("refunded_minor", "bigint"),
        ("reversed_points", "bigint"),
        ("restored_points", "bigint"),
        ("request_hash", "text"),
        ("response", "jsonb"),
    ],
    "lots": [
        ("id", "bigint"),
        ("account_id", "bigint"),
        ("points", "bigint"),
        ("remaining", "bigint"),
        ("earned_at", "timestamptz"),
        ("pending_until", "timestamptz"),
        ("pending", "boolean"),
        ("expires_at", "timestamptz"),
    ],
    "entries": [
        ("id", "bigint"),
        ("program_id", "bigint"),
        ("account_id", "bigint"),
        ("kind", "text"),
        ("points", "bigint"),
        ("qualifying", "bigint"),
        ("lot_id", "bigint"),
        ("reverses_entry_id", "bigint"),
        ("purchase_id", "bigint"),
        ("occurred_at", "timestamptz"),
        ("created_at", "timestamptz"),
        ("reason", "text"),
        ("store_id", "bigint"),
        ("channel", "text"),
        ("actor", "text"),
        ("external_ref", "text"),
        ("rule_version", "bigint"),
        ("breakdown", "jsonb"),
        ("details", "jsonb"),
    ],
    "movements": [("entry_id", "bigint"), ("lot_id", "bigint"), ("points", "bigint")],
    "events": [
        ("program_id", "bigint"),
        ("member_id", "bigint"),
        ("entry_id", "bigint"),
        ("kind", "text"),
        ("payload", "jsonb"),
        ("at", "timestamptz"),
        ("dispatched", "boolean"),
    ],
}
_GATED = ("lots", "entries", "movements", "events")
_NAMES = {"lots": LOT.name, "entries": ENT.name, "movements": MOV.name, "events": EVT.name}


# Up to this many rows of a table go as VALUES with one parameter per value (a sale at the
# till); more as one JSON document per table, unpacked by json_to_recordset (a batch, an
# import: the statement's text stays the same whatever the count, and the rows are serialised
# by orjson in one call — psycopg dumping one array per column, each JSONB value and each text
# escaped in Python, was most of a large plan's cost; decision 0033).
FEW = 4


def _unnest(table: str, n: int) -> str:
    """The rows of `table`: VALUES (%(t__i__c)s::type, …), … for `n` rows, or for n = 0
    SELECT … FROM json_to_recordset(%(t__json)s::json), one document for all the rows. A JSON
    null in a jsonb column is the JSON value null, as Jsonb(None) and SQLite store it."""
    columns = _COLUMNS[table]
    if n:
        rows = [
            "(" + ", ".join(f"%({table}__{i}__{c})s::{t}" for c, t in columns) + ")"
            for i in range(n)
        ]
        return "VALUES " + ", ".join(rows)
    picked = ", ".join(
        f"coalesce(r.\"{c}\", 'null'::jsonb)" if t == "jsonb" else f'r."{c}"' for c, t in columns
    )
    defined = ", ".join(f'"{c}" {t}' for c, t in columns)
    return f"SELECT {picked} FROM json_to_recordset(%({table}__json)s::json) AS r({defined})"


def _count(rows: list[Any]) -> int:
    """How a table's rows are sent: their number if few (VALUES), 0 for unnest, -1 if none."""
    if not rows:
        return -1
    return len(rows) if len(rows) <= FEW else 0


_pg_sql: dict[tuple[Any, ...], tuple[str, list[str]]] = {}
_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _numbered(sql: str) -> tuple[str, list[str]]:
    """%(name)s placeholders as $1, $2, … and the names in that order: run on a RawCursor,
    the statement's text is not parsed again on every sale (psycopg caches the parsing of
    short statements with few parameters only)."""
    names: list[str] = []
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in numbers:
            names.append(name)
            numbers[name] = len(names)
        return f"${numbers[name]}"

    return _PLACEHOLDER.sub(number, sql), names


def _pg_statement(shape: tuple[Any, ...]) -> tuple[str, list[str]]:
    """The plan's statement for the tables it writes: data-modifying CTEs whose inserts after
    the gates (new accounts, purchases) happen only if every gated row went in; foreign keys
    between the new rows are checked at the end of the statement."""
    found = _pg_sql.get(shape)
    if found is not None:
        return found
    n_accounts, n_purchases, has_takes, has_moves, *others = shape
    has_accounts, has_purchases = n_accounts >= 0, n_purchases >= 0
    ctes: list[str] = []
    if has_accounts:
        cols = ", ".join(c for c, _t in _COLUMNS["accounts"])
        ctes.append(
            f"a AS (INSERT INTO accounts ({cols}) {_unnest('accounts', n_accounts)} "
            "ON CONFLICT (program_id, member_id) DO NOTHING RETURNING id)"
        )
    if has_purchases:
        cols = ", ".join(c for c, _t in _COLUMNS["purchases"])
        gate = "WHERE (SELECT count(*) FROM a) = %(n_accounts)s " if has_accounts else ""
        rows = _unnest("purchases", n_purchases)
        ctes.append(
            f"p AS (INSERT INTO purchases ({cols}) SELECT * FROM ({rows}) s "
            f"{gate}ON CONFLICT (program_id, external_id) DO NOTHING RETURNING id)"
        )
    checks = []
    if has_accounts:
        checks.append("(SELECT count(*) FROM a) = %(n_accounts)s")
    if has_purchases:
        checks.append("(SELECT count(*) FROM p) = %(n_purchases)s")
    ok = " AND ".join(checks) or "true"
    ctes.append(f"ok AS (SELECT {ok} AS ok)")
    for table, n in zip(_GATED, others, strict=True):
        if n < 0:
            continue
        cols = ", ".join(c for c, _t in _COLUMNS[table])
        ctes.append(
            f"w_{table} AS (INSERT INTO {_NAMES[table]} ({cols}) "
            f"SELECT * FROM ({_unnest(table, n)}) s WHERE (SELECT ok FROM ok))"
        )
    if has_takes:
        ctes.append(
            "t AS (UPDATE lots SET remaining = lots.remaining - s.taken "
            "FROM unnest(%(take_ids)s::bigint[], %(take_points)s::bigint[]) AS s(id, taken) "
            "WHERE lots.id = s.id AND (SELECT ok FROM ok))"
        )
    if has_moves:
        sets = ", ".join(f"{c} = accounts.{c} + s.{c}" for c in DELTA_COLUMNS)
        arrays = ", ".join(f"%(d_{c})s::bigint[]" for c in ("id", *DELTA_COLUMNS))
        ctes.append(
            f"u AS (UPDATE accounts SET {sets} FROM unnest({arrays}) "
            f"AS s(id, {', '.join(DELTA_COLUMNS)}) WHERE accounts.id = s.id "
            "AND (SELECT ok FROM ok))"
        )
    found = _pg_sql[shape] = _numbered("WITH " + ", ".join(ctes) + " SELECT (SELECT ok FROM ok)")
    return found


def _params(table: str, rows: list[dict[str, Any]], n: int) -> dict[str, Any]:
    """The parameters of `_unnest(table, n)` for `rows`."""
    out: dict[str, Any] = {}
    columns = _COLUMNS[table]
    if n:
        for i, row in enumerate(rows):
            for column, kind in columns:
                value = row[column]
                out[f"{table}__{i}__{column}"] = Jsonb(value) if kind == "jsonb" else value
        return out
    names = _NAMES_OF[table]
    if any(row.keys() != names for row in rows):
        rows = [{c: row[c] for c in names} for row in rows]
    out[f"{table}__json"] = orjson.dumps(rows, option=orjson.OPT_NON_STR_KEYS).decode()
    return out


_NAMES_OF = {table: {c for c, _t in columns} for table, columns in _COLUMNS.items()}


def _apply_postgresql(conn: Connection, rows: Rows) -> None:
    moved = sorted((a, d) for a, d in rows.deltas.items() if any(d.values()))
    shape = (
        _count(rows.accounts),
        _count(rows.purchases),
        bool(rows.lot_takes),
        bool(moved),
        *[_count(getattr(rows, table)) for table in _GATED],
    )
    params: dict[str, Any] = {
        "n_accounts": len(rows.accounts),
        "n_purchases": len(rows.purchases),
    }
    for table, n in (
        ("accounts", shape[0]),
        ("purchases", shape[1]),
        *zip(_GATED, shape[4:], strict=True),
    ):
        if n >= 0:
            try:
                params.update(_params(table, getattr(rows, table), n))
            except orjson.JSONEncodeError as exc:  # a value JSON cannot hold: as psycopg would
                raise DBAPIError.instance(
                    table, None, psycopg.DataError(str(exc)), psycopg.Error
                ) from exc
    if rows.lot_takes:
        takes = sorted(rows.lot_takes.items())
        params["take_ids"] = [lot for lot, _p in takes]
        params["take_points"] = [p for _l, p in takes]
    if moved:
        params["d_id"] = [account for account, _d in moved]
        for column in DELTA_COLUMNS:
            params[f"d_{column}"] = [d[column] for _a, d in moved]
    sql, names = _pg_statement(shape)
    driver = conn.connection.driver_connection
    assert driver is not None
    try:
        with psycopg.RawCursor(driver) as cursor:
            row = cursor.execute(sql, [params[name] for name in names]).fetchone()
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc
    if row is None or not row[0]:
        raise Taken()
