"""One chunk of a file written in one transaction, set-based: a member import's members,
their references, consent records, accounts, opening-balance lots (through the ledger's
planner and applier) and tiers; or a file's adjustments (the same planner's `adjust`).

Each writer first checks the chunk against the database (members already imported, phones
and e-mails already taken, adjustment keys already used) and, for a dry run, stops there."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import count
from typing import Any, cast

import orjson
import psycopg
from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Table,
    any_,
    bindparam,
    func,
    insert,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.models import AuditRecord
from patron.audit.service import Actor
from patron.bulk.fields import AdjustmentRow, MemberRow, RowError
from patron.bulk.models import AdjustmentKey, MemberImportRef
from patron.errors import PatronError
from patron.events.models import DomainEvent
from patron.ledger.expiry import ExpiryRule
from patron.ledger.models import Account
from patron.members import refs
from patron.members.consent import CHANNELS
from patron.members.models import Card, ConsentRecord, Member
from patron.members.schemas import MemberRef
from patron.sales import snapshot
from patron.sales.apply import apply
from patron.sales.plan import AccountState, Ids, Planner
from patron.sales.points import settled_read
from patron.sales.program_cache import ProgramConfig
from patron.tiers.models import TierChange

MEM = cast(Table, Member.__table__)
ACC = cast(Table, Account.__table__)
REF = cast(Table, MemberImportRef.__table__)
KEY = cast(Table, AdjustmentKey.__table__)
CONSENT = cast(Table, ConsentRecord.__table__)
TIER_CHANGE = cast(Table, TierChange.__table__)
EVENT = cast(Table, DomainEvent.__table__)
AUDIT = cast(Table, AuditRecord.__table__)
CARD = cast(Table, Card.__table__)


@dataclass(frozen=True)
class FixedExpiry(ExpiryRule):
    """An opening balance's own expiry (the old system's date), whatever the program's policy."""

    at: datetime | None = None

    def expires_at(self, earned_at: datetime, timezone: str) -> datetime | None:
        return self.at


@dataclass(frozen=True)
class TierMove:
    """What a tier given at import holds: until when, and the periods of grace."""

    valid_until: datetime | None
    grace: int


@dataclass
class Written:
    done: int = 0  # rows written (dry run: rows that would be)
    skipped: int = 0  # rows already imported or applied before
    errors: list[RowError] | None = None


def reserve(session: Session, table: str, n: int) -> Iterator[int]:
    """`n` new ids of `table`: sequence values on PostgreSQL; on SQLite, where the writer
    holds the database lock, the ids after the largest in use."""
    if session.get_bind().dialect.name == "postgresql":
        if n <= 0:
            return iter(())
        return iter(
            [
                int(v)
                for v in session.scalars(
                    select(literal_column(f"nextval('{table}_id_seq')", BigInteger)).select_from(
                        func.generate_series(1, n)
                    )
                )
            ]
        )
    last = session.scalar(
        select(func.coalesce(func.max(literal_column("id")), 0)).select_from(
            cast(Table, Member.metadata.tables[table])
        )
    )
    return count(int(last or 0) + 1)


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Many new rows into one table: COPY on PostgreSQL (the fastest way in), one
    executemany elsewhere; in the caller's transaction either way."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    columns = list(rows[0])
    json_columns = {c for c in columns if isinstance(table.c[c].type, JSON)}
    driver = conn.connection.driver_connection
    assert driver is not None
    sql = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    try:
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row([_json(row[c]) if c in json_columns else row[c] for c in columns])
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, None, exc, psycopg.Error) from exc
    except orjson.JSONEncodeError as exc:
        raise DBAPIError.instance(sql, None, psycopg.DataError(str(exc)), psycopg.Error) from exc


def _json(value: Any) -> str:
    """A JSON column's value as the text COPY reads (None is the JSON null, as Jsonb(None))."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def matching(
    conn: Connection, key: Any, value: Any, values: Sequence[Any], *where: Any
) -> list[Any]:
    """(key, value) of the rows whose `key` column is one of `values` (and `where`): on
    PostgreSQL one array parameter per 10,000 values (`= ANY`), elsewhere IN lists."""
    out: list[Any] = []
    for part in _in_chunks(values):
        if conn.dialect.name == "postgresql":
            test = key == any_(bindparam("values", part, type_=postgresql.ARRAY(key.type)))
        else:
            test = key.in_(part)
        out.extend(conn.execute(select(key, value).where(test, *where)).all())
    return out


def _in_chunks(values: Sequence[Any], size: int = 10_000) -> Iterator[list[Any]]:
    items = list(values)
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- members --------------------------------------------------------------------------------


def write_members(
    session: Session,
    config: ProgramConfig,
    rows: Sequence[MemberRow],
    *,
    job_id: int,
    tier_move: TierMove | None,
    actor: Actor,
    now: datetime,
    dry_run: bool,
) -> Written:
    conn = session.connection()
    keys = [r.key for r in rows if r.key is not None]
    known: dict[str, int] = dict(
        matching(conn, REF.c.external_ref, REF.c.member_id, keys, REF.c.program_id == config.id)
    )
    phones = [r.phone for r in rows if r.phone]
    emails = [r.email for r in rows if r.email]
    by_phone: dict[str, int] = dict(matching(conn, MEM.c.phone, MEM.c.id, phones))
    by_email: dict[str, int] = dict(matching(conn, MEM.c.email, MEM.c.id, emails))
    out = Written(errors=[])
    assert out.errors is not None
    fresh: list[MemberRow] = []
    for r in rows:
        if r.key is not None and r.key in known:
            out.skipped += 1
        elif r.phone and r.phone in by_phone:
            out.errors.append(
                RowError(
                    r.row,
                    "phone",
                    "duplicate_phone",
                    f"phone {r.phone} belongs to member {by_phone[r.phone]} already",
                )
            )
        elif r.email and r.email in by_email:
            out.errors.append(
                RowError(
                    r.row,
                    "email",
                    "duplicate_email",
                    f"e-mail {r.email} belongs to member {by_email[r.email]} already",
                )
            )
        else:
            fresh.append(r)
    out.done = len(fresh)
    if dry_run or not fresh:
        return out
    member_ids = list(_take(reserve(session, "members", len(fresh)), len(fresh)))
    bulk_insert(
        conn,
        MEM,
        [
            {
                "id": m_id,
                "name": r.name,
                "phone": r.phone,
                "email": r.email,
                "birthday": r.birthday,
                "gender": r.gender,
                "language": r.language or "en",
                "preferences": {},
                "attributes": r.attributes,
                "marketing_consent": bool(r.marketing_consent),
                "status": "active",
                "created_at": r.joined_at or now,
                "updated_at": now,
            }
            for r, m_id in zip(fresh, member_ids, strict=True)
        ],
    )
    bulk_insert(
        conn,
        REF,
        [
            {"program_id": config.id, "external_ref": r.key, "member_id": m_id, "job_id": job_id}
            for r, m_id in zip(fresh, member_ids, strict=True)
            if r.key is not None
        ],
    )
    consents = [
        {
            "member_id": m_id,
            "channel": channel,
            "granted": r.marketing_consent,
            "source": "import",
            "actor": str(actor),
            "at": now,
            "note": f"as the previous system recorded it (import job {job_id}, row {r.row})",
            "program_id": config.id,
        }
        for r, m_id in zip(fresh, member_ids, strict=True)
        if r.marketing_consent is not None
        for channel in CHANNELS
    ]
    bulk_insert(conn, CONSENT, consents)
    accounts = _open_accounts(
        session, config, fresh, member_ids, job_id=job_id, actor=actor, now=now
    )
    tiered = [(r, m_id) for r, m_id in zip(fresh, member_ids, strict=True) if r.tier is not None]
    if tiered and tier_move is not None:
        _set_tiers(
            session, config, tiered, accounts, tier_move, job_id=job_id, actor=actor, now=now
        )
    audit.record(
        session,
        actor=actor,
        action="members.imported",
        subject_type="bulk_job",
        subject_id=job_id,
        program_id=config.id,
        at=now,
        after={
            "rows": [rows[0].row, rows[-1].row],
            "members": len(fresh),
            "member_ids": [member_ids[0], member_ids[-1]],
            "opening_points": sum(r.opening_balance for r in fresh),
        },
    )
    return out


def _take(ids: Iterator[int], n: int) -> Iterator[int]:
    for _ in range(n):
        yield next(ids)


def _open_accounts(
    session: Session,
    config: ProgramConfig,
    fresh: Sequence[MemberRow],
    member_ids: Sequence[int],
    *,
    job_id: int,
    actor: Actor,
    now: datetime,
) -> dict[int, int]:
    """Each new member's account and opening balance, planned and applied as the ledger
    writes every credit (a lot with its expiry, an adjust entry, their outbox events); the
    account ids by member id."""
    account_ids = snapshot.reserve_accounts(session, len(fresh))
    with_points = sum(1 for r in fresh if r.opening_balance > 0)
    ids = Ids(
        iter(()),
        _take(reserve(session, "lots", with_points), with_points),
        _take(reserve(session, "entries", with_points), with_points),
    )
    states = {
        m_id: AccountState(
            account_id=a_id,
            member_id=m_id,
            tier=r.tier,
            available=0,
            pending=0,
            debt=0,
            earned=0,
            redeemed=0,
            expired=0,
            adjusted=0,
            member_status="active",
            attributes=r.attributes,
            birthday=r.birthday,
            member_created_at=r.joined_at or now,
            lots=[],
            new=True,
        )
        for r, m_id, a_id in zip(fresh, member_ids, account_ids, strict=True)
    }
    planner = Planner(config, states, ids=ids, actor=str(actor), now=now)
    for r, m_id in zip(fresh, member_ids, strict=True):
        planner.opening_balance(
            m_id,
            r.opening_balance,
            policy=FixedExpiry("fixed", at=r.expires_at) if r.expires_at is not None else None,
            reason=f"opening balance brought over (import job {job_id}, row {r.row})",
        )
    for event in planner.rows.events:
        # Webhooks hear of a migrated member; the member is not messaged (delivery.dispatch).
        event["payload"] = {**event["payload"], "import_job": job_id}
    apply(session.connection(), planner.rows)
    return {m_id: state.account_id for m_id, state in states.items()}


def _set_tiers(
    session: Session,
    config: ProgramConfig,
    tiered: Sequence[tuple[MemberRow, int]],
    accounts: dict[int, int],
    move: TierMove,
    *,
    job_id: int,
    actor: Actor,
    now: datetime,
) -> None:
    """The tier the member held in the old system, as `tiers.service.move` puts one: the
    account's tier and validity, a tier history row (reason "import") and tier.changed."""
    conn = session.connection()
    by_tier: dict[str, list[int]] = {}
    for r, m_id in tiered:
        by_tier.setdefault(cast(str, r.tier), []).append(accounts[m_id])
    for tier, ids in sorted(by_tier.items()):  # one UPDATE per tier, not one per account
        for part in _in_chunks(ids):
            if conn.dialect.name == "postgresql":
                test = ACC.c.id == any_(bindparam("ids", part, type_=postgresql.ARRAY(BigInteger)))
            else:
                test = ACC.c.id.in_(part)
            conn.execute(
                update(ACC)
                .where(test)
                .values(
                    tier=tier,
                    tier_since=now,
                    tier_valid_until=move.valid_until,
                    tier_grace_left=move.grace,
                    tier_manual=False,
                )
            )
    note = f"tier held in the previous system (import job {job_id}, row {{row}})"
    bulk_insert(
        conn,
        TIER_CHANGE,
        [
            {
                "account_id": accounts[m_id],
                "program_id": config.id,
                "from_tier": None,
                "to_tier": r.tier,
                "at": now,
                "reason": "import",
                "note": note.format(row=r.row),
                "actor": str(actor),
                "period": None,
                "metric_value": None,
            }
            for r, m_id in tiered
        ],
    )
    bulk_insert(
        conn,
        EVENT,
        [
            {
                "program_id": config.id,
                "member_id": m_id,
                "kind": "tier.changed",
                "entry_id": None,
                "at": now,
                "dispatched": False,
                "payload": {
                    "program": config.code,
                    "member_id": m_id,
                    "account_id": accounts[m_id],
                    "from": None,
                    "to": r.tier,
                    "reason": "import",
                    "period": None,
                    "at": now.isoformat(),
                    "import_job": job_id,
                },
            }
            for r, m_id in tiered
        ],
    )


# --- adjustments ----------------------------------------------------------------------------


def _member_of(
    session: Session, config: ProgramConfig, rows: Sequence[AdjustmentRow]
) -> dict[int, int | None]:
    """Each row's member id (by row number), None if no member matches its reference."""
    conn = session.connection()
    out: dict[int, int | None] = {}
    by_ref = [r for r in rows if r.ref_field == "external_ref"]
    known: dict[str, int] = {}
    for part in _in_chunks([r.ref for r in by_ref]):
        known.update(
            conn.execute(
                select(REF.c.external_ref, REF.c.member_id).where(
                    REF.c.program_id == config.id, REF.c.external_ref.in_(part)
                )
            ).all()
        )
    for r in by_ref:
        out[r.row] = known.get(r.ref)
    others = [r for r in rows if r.ref_field != "external_ref"]
    member_refs: list[MemberRef] = []
    kept: list[AdjustmentRow] = []
    for r in others:
        if r.ref_field == "member_id":
            if not r.ref.isdigit() or not 0 < int(r.ref) < 2**53:
                out[r.row] = None
                continue
            member_refs.append(MemberRef(id=int(r.ref)))
        else:
            member_refs.append(MemberRef.model_validate({r.ref_field: r.ref[:254]}))
        kept.append(r)
    if member_refs:
        found = refs.resolve(session, member_refs, config.country)
        for r, hit in zip(kept, found, strict=True):
            out[r.row] = hit.member_id if hit is not None else None
    return out


def write_adjustments(
    session: Session,
    config: ProgramConfig,
    rows: Sequence[AdjustmentRow],
    *,
    job_id: int,
    actor: Actor,
    now: datetime,
    dry_run: bool,
) -> Written:
    conn = session.connection()
    used: set[str] = set()
    for part in _in_chunks([r.key for r in rows]):
        used.update(
            conn.scalars(
                select(KEY.c.key).where(KEY.c.program_id == config.id, KEY.c.key.in_(part))
            )
        )
    out = Written(errors=[])
    assert out.errors is not None
    pending = [r for r in rows if r.key not in used]
    out.skipped = len(rows) - len(pending)
    members = _member_of(session, config, pending)
    wanted = {m for m in members.values() if m is not None}
    with_account: set[int] = set()
    for part in _in_chunks(sorted(wanted)):
        with_account.update(
            conn.scalars(
                select(ACC.c.member_id).where(
                    ACC.c.program_id == config.id, ACC.c.member_id.in_(part)
                )
            )
        )
    todo: list[tuple[AdjustmentRow, int]] = []
    for r in pending:
        m_id = members.get(r.row)
        if m_id is None:
            out.errors.append(
                RowError(
                    r.row,
                    r.ref_field,
                    "member_not_found",
                    f"no member with {r.ref_field} {r.ref!r}",
                )
            )
        elif m_id not in with_account:
            out.errors.append(
                RowError(
                    r.row,
                    r.ref_field,
                    "account_not_found",
                    f"member {m_id} is not in program {config.code}",
                )
            )
        else:
            todo.append((r, m_id))
    if dry_run or not todo:
        out.done = len(todo)
        return out
    ids_of = {m_id for _r, m_id in todo}
    takers = {m_id for r, m_id in todo if r.points < 0}
    positive = sum(1 for r, _m in todo if r.points > 0)

    def read(config: ProgramConfig) -> snapshot.Read:
        return snapshot.read(
            session,
            config,
            ids_of,
            spenders=takers,
            takers=ids_of,
            external_ids=[],
            sales=0,
            spending=0,
            now=now,
            new_rows=(positive, len(todo)),
        )

    config, got = settled_read(session, config, read, now=now, actor=actor)
    assert got is not None and got.ids is not None
    planner = Planner(config, got.states, ids=got.ids, actor=str(actor), now=now)
    keys: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    for r, m_id in todo:
        state = got.states[m_id]
        before = state.available - state.debt
        try:
            entry = planner.adjust(m_id, r.points, reason=r.reason, qualifying=False)
        except PatronError as exc:
            out.errors.append(RowError(r.row, "points", exc.code, exc.detail))
            continue
        out.done += 1
        keys.append({"program_id": config.id, "key": r.key, "entry_id": entry.id, "job_id": job_id})
        audits.append(
            {
                "at": now,
                "actor": str(actor),
                "action": "points.adjusted",
                "subject_type": "member",
                "subject_id": str(m_id),
                "program_id": config.id,
                "before": {"balance": before},
                "after": {
                    "balance": state.available - state.debt,
                    "points": r.points,
                    "reason": r.reason,
                    "qualifying": False,
                    "entry": entry.id,
                    "job": job_id,
                    "row": r.row,
                    "key": r.key,
                },
            }
        )
    apply(session.connection(), planner.rows)
    if keys:
        conn.execute(insert(KEY), keys)
        conn.execute(insert(AUDIT), audits)
    return out
