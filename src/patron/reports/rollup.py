"""Exact daily roll-ups of the ledger, kept behind a watermark (decision 0007).

`report_daily` holds the sums of every entry with id ≤ the watermark. A report reads the roll-up
rows for its range and, merged in the same query, a live GROUP BY over the entries above the
watermark, so it is exact at every moment however stale the roll-up is. `refresh` moves the
watermark forward; nothing on the earn path writes a report row.

Why the watermark is safe: on PostgreSQL ids come from a sequence and transactions commit out of
id order, so "max(id) now" may sit above an id whose transaction has not committed yet. `refresh`
therefore reads max(id) under `LOCK TABLE entries IN SHARE MODE`, which waits for every
transaction holding ROW EXCLUSIVE (every writer of entries) to end; an INSERT takes that lock
before it draws its id, so every id at or below the max read is committed, and every later entry
gets a larger id. The lock is released at once (its own short transaction) and the aggregation
runs in the next one. SQLite serialises writers: max(id) read inside the write transaction is
exact.

Readers and the refresh: a report reads the watermark with a share lock on its row (PostgreSQL),
so no refresh can commit between that read and the report's query; refreshes serialise on an
advisory lock and touch the watermark row only at the end of a chunk, so a report waits at most
for a commit, never for an aggregation. SQLite readers keep one snapshot per transaction.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    ColumnElement,
    Date,
    Select,
    and_,
    bindparam,
    case,
    cast,
    delete,
    func,
    literal,
    or_,
    select,
    text,
    true,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from patron.db.engine import Database
from patron.ledger.models import Entry, Purchase
from patron.programs.models import Program
from patron.reports.models import MEASURES, ReportDaily, ReportWatermark
from patron.tiers.models import TierChange

WATERMARK = "entries"
# Entry ids aggregated per refresh transaction. SQLite's is small: the chunk holds the database's
# one write lock (a second or two that tills wait); PostgreSQL's refresh blocks no writer.
DEFAULT_CHUNK = {"postgresql": 1_000_000, "sqlite": 100_000}
# A report first refreshes the roll-up when more entries than this wait above the watermark.
DEFAULT_MAX_TAIL = 20_000
# The most entry ids a report request rolls up before it answers.
REQUEST_REFRESH_LIMIT = 200_000
# How long `refresh` waits for in-flight writers before giving up (PostgreSQL).
LOCK_TIMEOUT = "5s"

# Up to this many entry ids, a refresh chunk reads only its own accounts' tier history.
SMALL_CHUNK = 100_000
# The advisory lock (PostgreSQL) that lets one refresh run at a time.
REFRESH_LOCK = 7_007_001
# Memory for the refresh's and the reports' GROUP BY (PostgreSQL; per transaction).
REFRESH_WORK_MEM = "256MB"
REPORT_WORK_MEM = "64MB"
# A refresh that covered more entry ids than this updates the planner's statistics of the
# roll-up, so reports read it with a plan for its real size.
ANALYZE_AFTER = 20_000

KEY = ("program_id", "day", "recorded_day", "store_id", "channel", "tier")


# --- local days -----------------------------------------------------------------------------


@lru_cache(maxsize=128)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _sqlite_local_day(stamp: str | None, zone: str | None) -> str | None:
    """SQLite has no time zones: the local date of a stored UTC timestamp, computed in Python."""
    if stamp is None or zone is None:
        return None
    at = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
    return at.astimezone(_zone(zone)).date().isoformat()


def prepare(session: Session) -> None:
    """Ready this transaction for report queries: SQLite gets the local-day function,
    PostgreSQL enough memory to group a year of roll-up rows without spilling to disk, no JIT."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{REPORT_WORK_MEM}'"))
        # Compiling a report query costs more than running it (the planner's row estimates for
        # the live tail are pessimistic and would trigger JIT on every request).
        session.execute(text("SET LOCAL jit = off"))
        return
    raw = session.connection().connection.driver_connection
    assert raw is not None
    raw.create_function("patron_local_day", 2, _sqlite_local_day, deterministic=True)


def local_day(dialect: str, column: Any, zone: Any) -> ColumnElement[date]:
    """The date of a UTC timestamp column in an IANA zone, DST included, on either engine."""
    if dialect == "postgresql":
        return cast(func.timezone(zone, column), Date)
    return type_coerce(func.patron_local_day(column, zone), Date)


# --- the per-entry rows both the refresh and the live tail aggregate ---------------------------


def _tier_spans(account_ids: Any | None = None, program_id: int | None = None) -> Any:
    """Tier history as spans: the tier `to_tier` holds for instants in (starts, ends]."""
    ends = func.lead(TierChange.at).over(
        partition_by=TierChange.account_id, order_by=(TierChange.at, TierChange.id)
    )
    stmt = select(
        TierChange.account_id.label("account_id"),
        TierChange.to_tier.label("tier"),
        TierChange.at.label("starts"),
        ends.label("ends"),
    )
    if program_id is not None:
        stmt = stmt.where(TierChange.program_id == program_id)
    if account_ids is not None:
        stmt = stmt.where(TierChange.account_id.in_(account_ids))
    return stmt.subquery("tier_spans")


def entry_rows(
    dialect: str,
    *conditions: ColumnElement[bool],
    tier_accounts: Any | None = None,
    program_id: int | None = None,
    with_tier: bool = True,
) -> Select[Any]:
    """One row per entry matching `conditions`: its key columns and its share of each measure.
    `with_tier=False` leaves the tier empty (NO_TIER) and the tier history unread."""
    # A sale's amount is counted once: on its earn entry, or on its redemption if it earned
    # nothing. Each entry looks its purchase up by key: the cost follows the entries read, not
    # the size of the purchases table (a hash join would read all purchases for every chunk).
    is_sale = or_(
        Entry.kind == "earn", and_(Entry.kind == "redeem", Purchase.earn_entry_id.is_(None))
    )
    sale = (
        select(Purchase.amount_minor).where(Purchase.id == Entry.purchase_id, is_sale)
    ).scalar_subquery()
    base = select(
        Entry.program_id,
        Entry.account_id,
        Entry.kind,
        Entry.points,
        Entry.occurred_at,
        Entry.created_at,
        Entry.store_id,
        Entry.channel,
        sale.label("sale"),
    ).where(*conditions)
    # OFFSET 0 keeps the subquery whole: flattened, the purchase look-up would run once for
    # each of the two columns that use it.
    e = base.offset(0).subquery("e")
    spans = _tier_spans(tier_accounts, program_id) if with_tier else None
    known = ("earn", "reverse", "redeem", "expire", "adjust")
    zero = literal(0)
    rows = (
        select(
            e.c.program_id.label("program_id"),
            local_day(dialect, e.c.occurred_at, Program.timezone).label("day"),
            local_day(dialect, e.c.created_at, Program.timezone).label("recorded_day"),
            func.coalesce(e.c.store_id, 0).label("store_id"),
            func.coalesce(e.c.channel, "").label("channel"),
            (func.coalesce(spans.c.tier, "") if spans is not None else literal("")).label("tier"),
            case((e.c.kind == "earn", e.c.points), else_=zero).label("earned"),
            case((and_(e.c.kind == "reverse", e.c.points < 0), -e.c.points), else_=zero).label(
                "reversed"
            ),
            case((e.c.kind == "redeem", -e.c.points), else_=zero).label("redeemed"),
            case((and_(e.c.kind == "reverse", e.c.points > 0), e.c.points), else_=zero).label(
                "restored"
            ),
            case((e.c.kind == "expire", -e.c.points), else_=zero).label("expired"),
            case((and_(e.c.kind == "adjust", e.c.points > 0), e.c.points), else_=zero).label(
                "adjusted_in"
            ),
            case((and_(e.c.kind == "adjust", e.c.points < 0), -e.c.points), else_=zero).label(
                "adjusted_out"
            ),
            case((e.c.kind.not_in(known), e.c.points), else_=zero).label("other"),
            literal(1).label("entries"),
            case((e.c.kind == "earn", 1), else_=zero).label("earn_entries"),
            case((e.c.kind == "redeem", 1), else_=zero).label("redeem_entries"),
            case((e.c.sale.is_not(None), 1), else_=zero).label("purchases"),
            func.coalesce(e.c.sale, 0).label("sales_minor"),
        )
        .select_from(e)
        .join(Program, Program.id == e.c.program_id)
    )
    if spans is None:
        return rows
    return rows.outerjoin(
        spans,
        and_(
            spans.c.account_id == e.c.account_id,
            spans.c.starts < e.c.occurred_at,
            or_(spans.c.ends.is_(None), e.c.occurred_at <= spans.c.ends),
        ),
    )


def read_watermark(session: Session) -> int:
    """The watermark, held for the rest of the transaction (PostgreSQL: a share lock on its
    row), so the roll-up rows this transaction reads next belong to exactly this watermark."""
    stmt = select(ReportWatermark.last_entry_id).where(ReportWatermark.name == WATERMARK)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(read=True)
    return int(session.scalar(stmt) or 0)


def _above(mark: int) -> ColumnElement[bool]:
    # The watermark is written into the SQL text: with a parameter PostgreSQL's generic plan
    # would guess a third of the table lies above it and scan it all.
    return Entry.id > bindparam("watermark", mark, literal_execute=True)


def source(
    session: Session,
    program: Program,
    *,
    basis: str = "occurred",
    first_day: date | None = None,
    last_day: date | None = None,
    lo: datetime | None = None,
    hi: datetime | None = None,
    tiers: bool = True,
) -> Any:
    """Roll-up rows for the days [first_day, last_day] plus the live rows above the watermark
    whose instant is in [lo, hi) — the same days, as UTC instants. The watermark is read (and
    held) first, so the roll-up and the tail never overlap nor leave a gap.

    Columns: day (on the chosen basis), store_id, channel, tier and every measure. With
    `tiers=False` the live rows' tier is left empty: for a caller that neither groups nor
    filters by tier, the join with the tier history is most of the live tail's cost.
    """
    prepare(session)
    dialect = session.get_bind().dialect.name
    day_col = ReportDaily.day if basis == "occurred" else ReportDaily.recorded_day
    rolled = select(
        day_col.label("day"),
        ReportDaily.store_id,
        ReportDaily.channel,
        ReportDaily.tier,
        *[getattr(ReportDaily, m).label(m) for m in MEASURES],
    ).where(ReportDaily.program_id == program.id)
    if first_day is not None:
        rolled = rolled.where(day_col >= first_day)
    if last_day is not None:
        rolled = rolled.where(day_col <= last_day)

    mark = read_watermark(session)
    instant = Entry.occurred_at if basis == "occurred" else Entry.created_at
    conditions: list[ColumnElement[bool]] = [_above(mark), Entry.program_id == program.id]
    if lo is not None:
        conditions.append(instant >= lo)
    if hi is not None:
        conditions.append(instant < hi)
    tail_accounts = select(Entry.account_id).where(_above(mark), Entry.program_id == program.id)
    live = entry_rows(
        dialect,
        *conditions,
        tier_accounts=tail_accounts,
        program_id=program.id,
        with_tier=tiers,
    ).subquery("live")
    tail = select(
        (live.c.day if basis == "occurred" else live.c.recorded_day).label("day"),
        live.c.store_id,
        live.c.channel,
        live.c.tier,
        *[live.c[m] for m in MEASURES],
    )
    return union_all(rolled, tail).subquery("figures")


# --- refresh ----------------------------------------------------------------------------------


@dataclass
class RefreshReport:
    from_entry_id: int
    to_entry_id: int
    chunks: int = 0
    seconds: float = 0.0

    @property
    def entries_covered(self) -> int:
        """Entry ids newly covered (an upper bound on entries: ids can have gaps)."""
        return self.to_entry_id - self.from_entry_id


def _dialect_insert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert


def _ensure_watermark(session: Session) -> None:
    insert = _dialect_insert(session.get_bind().dialect.name)
    session.execute(
        insert(ReportWatermark)
        .values(name=WATERMARK, last_entry_id=0, refreshed_at=None)
        .on_conflict_do_nothing(index_elements=["name"])
    )


def _committed_max_id(db: Database) -> int:
    """The largest entry id below which every entry is committed (see the module docstring)."""
    with db.unit_of_work() as session:
        session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        session.execute(text("LOCK TABLE entries IN SHARE MODE"))
        return int(session.scalar(select(func.coalesce(func.max(Entry.id), 0))) or 0)


def _aggregate_into_rollup(session: Session, lo: int, hi: int) -> None:
    """Add the entries with ids in (lo, hi] into report_daily."""
    prepare(session)
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{REFRESH_WORK_MEM}'"))
    in_chunk = (
        Entry.id > bindparam("lo", lo, literal_execute=True),
        Entry.id <= bindparam("hi", hi, literal_execute=True),
    )
    # A small chunk reads the tier history of its own accounts only; a big one all of it (the
    # account list would cost another pass over the chunk).
    accounts = select(Entry.account_id).where(*in_chunk) if hi - lo <= SMALL_CHUNK else None
    rows = entry_rows(dialect, *in_chunk, tier_accounts=accounts).subquery("rows")
    grouped = (
        select(
            *[rows.c[k] for k in KEY],
            *[func.sum(rows.c[m]).label(m) for m in MEASURES],
        )
        # SQLite reads "INSERT … SELECT … ON CONFLICT" unambiguously only with a WHERE.
        .where(true())
        .group_by(*[rows.c[k] for k in KEY])
    )
    insert = _dialect_insert(dialect)
    stmt = insert(ReportDaily).from_select([*KEY, *MEASURES], grouped)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(KEY),
        set_={m: getattr(ReportDaily, m) + getattr(stmt.excluded, m) for m in MEASURES},
    )
    session.execute(stmt)


def refresh(
    db: Database, *, now: datetime, chunk: int | None = None, limit: int | None = None
) -> RefreshReport:
    """Roll every committed entry above the watermark into report_daily, `chunk` ids per
    transaction; with `limit`, stop after that many ids (the rest waits for the next run).

    Safe at any time, from several processes at once (they take turns) and to interrupt: each
    chunk adds its sums and moves the watermark in one transaction.
    """
    started = time.perf_counter()
    chunk = chunk or DEFAULT_CHUNK.get(db.dialect, 100_000)
    with db.unit_of_work() as session:
        _ensure_watermark(session)
    postgres = db.dialect == "postgresql"
    target = _committed_max_id(db) if postgres else None
    report: RefreshReport | None = None
    while True:
        with db.unit_of_work() as session:
            if postgres:
                session.execute(select(func.pg_advisory_xact_lock(REFRESH_LOCK)))
            mark = int(
                session.scalar(
                    select(ReportWatermark.last_entry_id).where(ReportWatermark.name == WATERMARK)
                )
                or 0
            )
            if report is None:
                report = RefreshReport(from_entry_id=mark, to_entry_id=mark)
            top = target
            if top is None:  # SQLite: this transaction holds the write lock
                top = int(session.scalar(select(func.coalesce(func.max(Entry.id), 0))) or 0)
            if limit is not None:
                top = min(top, report.from_entry_id + limit)
            if top <= mark:
                break
            hi = min(top, mark + chunk)
            _aggregate_into_rollup(session, mark, hi)
            # Last, so a report's share lock on this row holds us only for the commit.
            session.execute(
                update(ReportWatermark)
                .where(ReportWatermark.name == WATERMARK)
                .values(last_entry_id=hi, refreshed_at=now)
            )
            report.to_entry_id = hi
            report.chunks += 1
    assert report is not None
    if postgres and report.entries_covered > ANALYZE_AFTER:
        with db.unit_of_work() as session:
            session.execute(text("ANALYZE report_daily"))
    report.seconds = time.perf_counter() - started
    return report


@dataclass
class Freshness:
    watermark: int
    max_entry_id: int
    refreshed_at: datetime | None

    @property
    def behind(self) -> int:
        """Entry ids above the watermark (an upper bound on entries the reports read live)."""
        return max(0, self.max_entry_id - self.watermark)


def freshness(session: Session) -> Freshness:
    row = session.execute(
        select(ReportWatermark.last_entry_id, ReportWatermark.refreshed_at).where(
            ReportWatermark.name == WATERMARK
        )
    ).one_or_none()
    top = int(session.scalar(select(func.coalesce(func.max(Entry.id), 0))) or 0)
    if row is None:
        return Freshness(0, top, None)
    return Freshness(int(row[0]), top, row[1])


def ensure_fresh(
    db: Database,
    *,
    now: datetime,
    max_tail: int = DEFAULT_MAX_TAIL,
    at_most: int = REQUEST_REFRESH_LIMIT,
) -> RefreshReport | None:
    """Refresh first when more than `max_tail` entry ids wait above the watermark, rolling up
    at most `at_most` ids (a request does bounded work; a far-behind roll-up is for
    `patron report refresh`). Reports are exact either way: this only keeps the live part of
    their query small."""
    with db.unit_of_work(readonly=True) as session:
        if freshness(session).behind <= max_tail:
            return None
    return refresh(db, now=now, limit=at_most)


# --- check ------------------------------------------------------------------------------------

CHECK_KEY = ("program_id", "day", "recorded_day", "store_id", "channel")


@dataclass
class RollupCheck:
    watermark: int
    groups: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations


def _grouped(session: Session, stmt: Select[Any]) -> dict[tuple[Any, ...], tuple[int, ...]]:
    out: dict[tuple[Any, ...], tuple[int, ...]] = {}
    for row in session.execute(stmt):
        key = tuple(row[: len(CHECK_KEY)])
        out[key] = tuple(int(v or 0) for v in row[len(CHECK_KEY) :])
    return out


def check(session: Session, *, limit: int = 20) -> RollupCheck:
    """Prove report_daily equals the raw sums of the entries up to the watermark, per program,
    day, recording day, store and channel (tier comes from the tier history, not the entry)."""
    prepare(session)
    dialect = session.get_bind().dialect.name
    mark = read_watermark(session)
    top = int(session.scalar(select(func.coalesce(func.max(Entry.id), 0))) or 0)
    out = RollupCheck(watermark=mark)
    if mark > top:
        out.violations.append(f"report watermark {mark} is above the last entry id {top}")
    rows = entry_rows(dialect, Entry.id <= bindparam("hi", mark, literal_execute=True)).subquery(
        "rows"
    )
    raw = _grouped(
        session,
        select(*[rows.c[k] for k in CHECK_KEY], *[func.sum(rows.c[m]) for m in MEASURES]).group_by(
            *[rows.c[k] for k in CHECK_KEY]
        ),
    )
    rolled = _grouped(
        session,
        select(
            *[getattr(ReportDaily, k) for k in CHECK_KEY],
            *[func.sum(getattr(ReportDaily, m)) for m in MEASURES],
        ).group_by(*[getattr(ReportDaily, k) for k in CHECK_KEY]),
    )
    out.groups = len(rolled)
    bad: list[str] = []
    for key in sorted(set(raw) | set(rolled), key=lambda k: tuple(str(v) for v in k)):
        want, have = raw.get(key), rolled.get(key)
        if want == have or (want is None and have is not None and not any(have)):
            continue
        diff = {
            m: (w, h)
            for m, w, h in zip(
                MEASURES, want or (0,) * len(MEASURES), have or (0,) * len(MEASURES), strict=True
            )
            if w != h
        }
        bad.append(f"report roll-up differs from the ledger at {key}: (ledger, roll-up) {diff}")
    out.violations.extend(bad[:limit])
    if len(bad) > limit:
        out.violations.append(f"report roll-up: … and {len(bad) - limit} more")
    return out


def rebuild(db: Database, *, now: datetime, chunk: int | None = None) -> RefreshReport:
    """Drop the roll-up and build it again from the ledger: after a program's timezone changed,
    or a tier history correction that should change past tier attributions."""
    with db.unit_of_work() as session:
        _ensure_watermark(session)
        if db.dialect == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(REFRESH_LOCK)))
        session.execute(delete(ReportDaily))
        session.execute(
            update(ReportWatermark)
            .where(ReportWatermark.name == WATERMARK)
            .values(last_entry_id=0, refreshed_at=now)
        )
    return refresh(db, now=now, chunk=chunk)
