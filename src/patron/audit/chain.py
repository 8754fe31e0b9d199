"""The tamper-evident audit log: records sealed into hash-chained blocks, and the check.

Writing an audit record stays a plain INSERT in the caller's transaction: nothing on the earn
path touches a shared row. A sealer (the jobs runner, `patron audit seal`) later takes the
records older than a grace period, in id order, and writes one `audit_seals` row per block of
up to `block_size` records. A seal lists every record of its id range (from_id, to_id] with a
digest of its canonical serialisation, and its hash commits to that list, to the range and to
the previous seal's hash. So editing a sealed record changes its digest, deleting one leaves a
listed id without its row, inserting one puts an unlisted id into a sealed range, and editing a
seal breaks its hash or the next seal's link. `verify` recomputes all of it and says where.

What it cannot prove: someone who can write to the database can recompute every seal. Keep the
head hash (printed by `patron audit seal` and `verify`) somewhere else and pass it back with
`--expect-head`; then a re-sealed or truncated chain no longer contains it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Row, column, func, select, table, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from patron.audit.models import AuditRecord, AuditSeal
from patron.clock import as_utc
from patron.db.engine import Database

GENESIS = "0" * 64
SEAL_FORMAT = "patron-audit-seal/1"
DEFAULT_GRACE = timedelta(seconds=5)
DEFAULT_BLOCK_SIZE = 1000
_MAX_RETRIES = 50

_TABLE = AuditRecord.__table__
# Table columns, not ORM attributes: plain rows, without the ORM's per-row loading.
_COLUMNS = tuple(
    _TABLE.c[name]
    for name in (
        "id",
        "at",
        "actor",
        "action",
        "subject_type",
        "subject_id",
        "program_id",
        "before",
        "after",
    )
)
_record_id = _TABLE.c.id
# Records an erasure redacted (patron.privacy): their digest when sealed and their digest now.
_REDACTIONS = table(
    "audit_redactions", column("record_id"), column("original_digest"), column("redacted_digest")
)


# --- canonical serialisation ------------------------------------------------------------------


def _datetime(value: datetime) -> str:
    # One fixed format, always UTC with microseconds: what SQLite and PostgreSQL both return.
    return as_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return _datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} in an audit record")


# The standard library's encoder, not a faster one: its output has been the same for years, and
# a seal must still verify after every upgrade.
_ENCODER = json.JSONEncoder(
    sort_keys=True,
    separators=(",", ":"),
    ensure_ascii=False,
    allow_nan=False,
    default=_json_default,
)


def canonical(row: Any) -> bytes:
    """Stable bytes for one audit record: every column, sorted keys, no whitespace."""
    doc = {
        "id": row.id,
        "at": _datetime(row.at),
        "actor": row.actor,
        "action": row.action,
        "subject_type": row.subject_type,
        "subject_id": row.subject_id,
        "program_id": row.program_id,
        "before": row.before,
        "after": row.after,
    }
    return _ENCODER.encode(doc).encode("utf-8")


def record_digest(row: Any) -> str:
    # 128 bits of SHA-256 per record: second preimages stay out of reach, seals stay small.
    return hashlib.sha256(canonical(row)).hexdigest()[:32]


@dataclass(frozen=True)
class Entry:
    id: int
    program_id: int | None
    digest: str


def format_entries(entries: Iterable[Entry]) -> str:
    return "\n".join(
        f"{e.id} {'-' if e.program_id is None else e.program_id} {e.digest}" for e in entries
    )


def parse_entries(value: str) -> list[Entry]:
    out = []
    for line in value.splitlines():
        ident, program, digest = line.split(" ")
        out.append(Entry(int(ident), None if program == "-" else int(program), digest))
    return out


def seal_hash(
    *, seq: int, prev_hash: str, from_id: int, to_id: int, record_count: int, entries: str
) -> str:
    listed = hashlib.sha256(entries.encode("utf-8")).hexdigest()
    header = f"{SEAL_FORMAT}\n{seq}\n{prev_hash}\n{from_id}\n{to_id}\n{record_count}\n{listed}"
    return hashlib.sha256(header.encode("ascii")).hexdigest()


def _stored_hash(seal: Any) -> str:
    return seal_hash(
        seq=seal.seq,
        prev_hash=seal.prev_hash,
        from_id=seal.from_id,
        to_id=seal.to_id,
        record_count=seal.record_count,
        entries=seal.entries,
    )


# --- sealing ----------------------------------------------------------------------------------


@dataclass
class SealReport:
    seals: int = 0
    records: int = 0
    retries: int = 0  # another sealer took the same place in the chain first
    head_seq: int = 0
    head_hash: str = GENESIS
    held_back: bool = False  # a transaction open too long kept newer records unsealed


@dataclass(frozen=True)
class _Block:
    seq: int
    prev_hash: str
    from_id: int
    to_id: int
    entries: list[Entry]


def _settled_id(session: Session, settle_timeout: float) -> int | None:
    """The highest id below which no record can still appear; None: unknown for now.

    Ids are handed out before commit, so a transaction still open may yet commit an id below
    ones already visible; sealing past it would later show its record as inserted into a
    sealed range. SQLite has one writer at a time, so what is visible has no gap left to
    fill. On PostgreSQL: read the sequence, then wait (briefly) until every writing
    transaction that began before that read has ended; any id it took is then committed or
    gone for good. A transaction beginning later can only take higher ids."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    last, read_at = session.execute(
        text(
            "SELECT pg_sequence_last_value(pg_get_serial_sequence('audit_log', 'id')::regclass),"
            " clock_timestamp()"
        )
    ).one()
    deadline = time.monotonic() + settle_timeout
    while True:
        session.execute(text("SELECT pg_stat_clear_snapshot()"))  # else frozen per transaction
        open_writers = session.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
                " AND xact_start <= :read_at"
            ),
            {"read_at": read_at},
        )
        if not open_writers:
            return int(last or 0)
        if time.monotonic() >= deadline:
            return -1  # a long transaction is open: seal nothing past it this time
        time.sleep(0.02)


def _head(session: Session) -> tuple[int, str, int]:
    """(seq, hash, to_id) of the last seal; (0, GENESIS, 0) before the first."""
    row = session.execute(
        select(AuditSeal.seq, AuditSeal.hash, AuditSeal.to_id)
        .order_by(AuditSeal.seq.desc())
        .limit(1)
    ).first()
    return (row.seq, row.hash, row.to_id) if row is not None else (0, GENESIS, 0)


def _next_block(
    session: Session, *, now: datetime, grace: timedelta, block_size: int, settled: int | None
) -> _Block | None:
    seq, prev_hash, after_id = _head(session)
    cutoff = now - grace
    stmt = select(*_COLUMNS).where(_record_id > after_id)
    if settled is not None:
        stmt = stmt.where(_record_id <= settled)
    rows = session.execute(stmt.order_by(_record_id).limit(block_size)).all()
    entries = []
    for row in rows:
        # A prefix in id order: the first record too young ends the block, so no later one
        # is sealed past a gap that may still fill.
        if as_utc(row.at) >= cutoff:
            break
        entries.append(Entry(row.id, row.program_id, record_digest(row)))
    if not entries:
        return None
    return _Block(seq + 1, prev_hash, after_id, entries[-1].id, entries)


def seal_pending(
    db: Database,
    *,
    now: datetime,
    grace: timedelta = DEFAULT_GRACE,
    block_size: int = DEFAULT_BLOCK_SIZE,
    max_blocks: int | None = None,
    settle_timeout: float = 2.0,
) -> SealReport:
    """Seal every record older than `grace`, a block at a time; safe to run concurrently.

    Each block is read and hashed in a read-only transaction and written in a short one (on
    SQLite the writer lock is held for one INSERT). Two sealers racing for the same seq: the
    unique index refuses the second, which reads the new head and goes on from there."""
    report = SealReport()
    with db.unit_of_work(readonly=True) as session:
        _, _, after_id = _head(session)
        oldest = session.execute(
            select(_TABLE.c.at).where(_record_id > after_id).order_by(_record_id).limit(1)
        ).scalar()
        # Nothing old enough to seal (the usual case between runs): no need to wait for others.
        due = oldest is not None and as_utc(oldest) < now - grace
        settled = _settled_id(session, settle_timeout) if due else None
    report.held_back = settled == -1
    while due and (max_blocks is None or report.seals < max_blocks):
        with db.unit_of_work(readonly=True) as session:
            block = _next_block(
                session, now=now, grace=grace, block_size=block_size, settled=settled
            )
        if block is None:
            break
        listed = format_entries(block.entries)
        seal = AuditSeal(
            seq=block.seq,
            prev_hash=block.prev_hash,
            from_id=block.from_id,
            to_id=block.to_id,
            record_count=len(block.entries),
            entries=listed,
            hash=seal_hash(
                seq=block.seq,
                prev_hash=block.prev_hash,
                from_id=block.from_id,
                to_id=block.to_id,
                record_count=len(block.entries),
                entries=listed,
            ),
            sealed_at=now,
        )
        try:
            with db.unit_of_work() as session:
                session.add(seal)
                session.flush()
        except IntegrityError:
            report.retries += 1
            if report.retries > _MAX_RETRIES:
                raise
            continue
        report.seals += 1
        report.records += seal.record_count
    with db.unit_of_work(readonly=True) as session:
        report.head_seq, report.head_hash, _ = _head(session)
    return report


# --- verification -----------------------------------------------------------------------------

EDITED = "edited"
DELETED = "deleted"
INSERTED = "inserted"
SEAL_ALTERED = "seal_altered"
CHAIN_BROKEN = "chain_broken"
HEAD_MISSING = "head_missing"


@dataclass(frozen=True)
class Finding:
    kind: str  # edited | deleted | inserted | seal_altered | chain_broken | head_missing
    seal_seq: int | None
    record_id: int | None
    program_id: int | None
    detail: str

    def __str__(self) -> str:
        where = f"seal #{self.seal_seq}" if self.seal_seq is not None else "chain"
        what = f", record {self.record_id}" if self.record_id is not None else ""
        return f"{self.kind} ({where}{what}): {self.detail}"


@dataclass
class VerifyReport:
    seals: int = 0
    sealed_records: int = 0
    unsealed_records: int = 0
    first_unsealed_id: int | None = None
    head_seq: int = 0
    head_hash: str = GENESIS
    verified_up_to: datetime | None = None  # `at` of the newest sealed record checked
    checked_from_seq: int = 1  # > 1 when only the newest seals were checked
    expected_head_seq: int | None = None  # where --expect-head was found
    findings: list[Finding] = field(default_factory=list)
    redacted_records: int = 0  # sealed records an erasure redacted, each accepted as such

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first_record(self) -> int | None:
        """The first record found tampered with (edited, deleted or inserted), if any."""
        ids = [f.record_id for f in self.findings if f.record_id is not None]
        return min(ids) if ids else None


def _seal_pages(session: Session, first_seq: int, page: int = 20) -> Iterable[Row[Any]]:
    # Plain rows, not ORM objects: nothing piles up in the caller's session.
    last_seq = first_seq - 1
    while True:
        batch = session.execute(
            select(*AuditSeal.__table__.c)
            .where(AuditSeal.seq > last_seq)
            .order_by(AuditSeal.seq)
            .limit(page)
        ).all()
        if not batch:
            return
        yield from batch
        last_seq = batch[-1].seq


def _is_redacted(row: Row[Any], digest: str, sealed: str, redactions: dict[int, Any]) -> bool:
    """An erasure replaced this record's before/after by the redaction marker, and kept its
    digest as sealed and as it is now: nothing else about the record may have changed."""
    found = redactions.get(row.id)
    return (
        found is not None
        and found.original_digest == sealed
        and found.redacted_digest == digest
        and row.before is None
        and isinstance(row.after, dict)
        and row.after.get("redacted") is True
    )


def _compare(
    seal_seq: int,
    listed: Sequence[Entry],
    rows: Sequence[Row[Any]],
    report: VerifyReport,
    redactions: dict[int, Any] | None = None,
) -> None:
    by_id = {e.id: e for e in listed}
    present = set()
    for row in rows:
        present.add(row.id)
        entry = by_id.get(row.id)
        if entry is None:
            report.findings.append(
                Finding(INSERTED, seal_seq, row.id, row.program_id, "not in the sealed block")
            )
        elif (digest := record_digest(row)) != entry.digest:
            if _is_redacted(row, digest, entry.digest, redactions or {}):
                report.redacted_records += 1
                continue
            report.findings.append(
                Finding(EDITED, seal_seq, row.id, entry.program_id, "differs from when sealed")
            )
    for entry in listed:
        if entry.id not in present:
            report.findings.append(
                Finding(DELETED, seal_seq, entry.id, entry.program_id, "sealed but missing")
            )


def _tail_start(session: Session, head_seq: int, records: int) -> int:
    """The first of the newest seals holding about `records` records (at least one seal)."""
    total, first = 0, head_seq
    counts = session.execute(
        select(AuditSeal.seq, AuditSeal.record_count).order_by(AuditSeal.seq.desc()).limit(1000)
    )
    for seq, count in counts:
        if total and total + count > records:
            break
        total, first = total + count, seq
    return max(first, 1)


def verify(
    session: Session,
    *,
    program_id: int | None = None,
    expect_head: str | None = None,
    last_seals: int | None = None,
    last_records: int | None = None,
) -> VerifyReport:
    """Recompute the chain and compare every sealed record with its seal.

    `program_id` narrows record findings and counts to one program (the chain itself is
    always checked whole: it is one chain). `last_seals` or `last_records` check only the
    newest seals, for a quick look (the admin page); `expect_head` is a head hash kept outside
    the database."""
    report = VerifyReport()
    head_seq, _, _ = _head(session)
    first_seq = max(1, head_seq - last_seals + 1) if last_seals else 1
    if last_records:
        first_seq = _tail_start(session, head_seq, last_records)
    report.checked_from_seq = first_seq
    prev: Row[Any] | None = None
    prev_seq, prev_hash, prev_to = first_seq - 1, None, None
    if first_seq > 1:
        anchor = session.execute(
            select(AuditSeal.hash, AuditSeal.to_id).where(AuditSeal.seq == first_seq - 1)
        ).first()
        if anchor is not None:
            prev_hash, prev_to = anchor.hash, anchor.to_id
    else:
        prev_hash, prev_to = GENESIS, 0
    for seal in _seal_pages(session, first_seq):
        prev = seal
        report.seals += 1
        if _stored_hash(seal) != seal.hash:
            report.findings.append(
                Finding(SEAL_ALTERED, seal.seq, None, None, "the seal does not match its hash")
            )
        if seal.seq != prev_seq + 1:
            report.findings.append(
                Finding(
                    CHAIN_BROKEN,
                    seal.seq,
                    None,
                    None,
                    f"seals {prev_seq + 1}..{seal.seq - 1} are missing",
                )
            )
        if prev_hash is not None and seal.prev_hash != prev_hash:
            report.findings.append(
                Finding(
                    CHAIN_BROKEN, seal.seq, None, None, "does not link to the previous seal's hash"
                )
            )
        if prev_to is not None and seal.from_id != prev_to:
            report.findings.append(
                Finding(
                    CHAIN_BROKEN,
                    seal.seq,
                    None,
                    None,
                    f"covers ids after {seal.from_id}, the previous seal ends at {prev_to}",
                )
            )
        if expect_head is not None and seal.hash == expect_head:
            report.expected_head_seq = seal.seq
        # Records are read over the range as it should be, from the previous seal's end, so
        # a record in a hole left by a removed seal shows up as inserted.
        low = prev_to if prev_to is not None else seal.from_id
        try:
            listed = parse_entries(seal.entries)
        except ValueError:
            listed = []
            report.findings.append(
                Finding(SEAL_ALTERED, seal.seq, None, None, "the record list cannot be read")
            )
        rows = session.execute(
            select(*_COLUMNS).where(_record_id > low, _record_id <= seal.to_id).order_by(_record_id)
        ).all()
        redactions = {
            r.record_id: r
            for r in session.execute(
                select(_REDACTIONS).where(
                    _REDACTIONS.c.record_id > low, _REDACTIONS.c.record_id <= seal.to_id
                )
            )
        }
        _compare(seal.seq, listed, rows, report, redactions)
        mine = [r for r in rows if program_id is None or r.program_id == program_id]
        report.sealed_records += len(mine)
        if rows:
            report.verified_up_to = rows[-1].at
        prev_seq, prev_hash, prev_to = seal.seq, seal.hash, seal.to_id
    if prev is not None:
        report.head_seq, report.head_hash = prev.seq, prev.hash
    if expect_head is not None and report.expected_head_seq is None:
        report.findings.append(
            Finding(
                HEAD_MISSING,
                None,
                None,
                None,
                f"the expected head {expect_head} is not in the chain: it was re-sealed or cut",
            )
        )
    if program_id is not None:
        report.findings = [
            f for f in report.findings if f.record_id is None or f.program_id == program_id
        ]
    unsealed = select(AuditRecord.id).where(AuditRecord.id > (prev_to or 0))
    if program_id is not None:
        unsealed = unsealed.where(AuditRecord.program_id == program_id)
    ids = unsealed.subquery()
    count, first = session.execute(select(func.count(ids.c.id), func.min(ids.c.id))).one()
    report.unsealed_records, report.first_unsealed_id = count, first
    return report
