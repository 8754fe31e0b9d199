"""Read side of the ledger: totals as of now, dated history, lots, exports."""

from __future__ import annotations

import base64
import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import and_, or_, select, tuple_
from sqlalchemy.orm import Session

from patron.errors import Invalid, NotFound
from patron.ledger import rolling
from patron.ledger.models import Account, Entry, Lot
from patron.ledger.schemas import EntryOut, LotOut, Totals
from patron.programs.models import Program, Store

EXPIRING_WINDOW = timedelta(days=30)


def get_account(session: Session, program: Program, member_id: int) -> Account:
    account = session.scalars(
        select(Account).where(Account.program_id == program.id, Account.member_id == member_id)
    ).one_or_none()
    if account is None:
        raise NotFound(
            f"member {member_id} is not in program {program.code}", code="account_not_found"
        )
    return account


def totals(session: Session, account: Account, now: datetime, *, settled: bool = False) -> Totals:
    """Stored totals moved to `now`: pending points whose date passed count as available,
    overdue lots as expired, even before the job has written it down.

    `settled=True` says the caller just ran `settle_due` at `now`, so nothing is due. Under a
    rolling policy each lot's date is its effective one (`ledger.rolling`).
    """
    available, pending, expired = account.available, account.pending, account.expired
    rolled = rolling.until(session, account)
    if rolled is not None:
        # Rolling: every open lot's effective date, read once (a member's open lots).
        rows = [
            (
                remaining,
                is_pending,
                pending_until,
                rolling.effective(expires_at, rolled) if fresh else expires_at,
            )
            for remaining, is_pending, pending_until, expires_at, fresh in session.execute(
                select(
                    Lot.remaining,
                    Lot.pending,
                    Lot.pending_until,
                    Lot.expires_at,
                    rolling.never_expired(Lot.id),
                ).where(Lot.account_id == account.id, Lot.remaining > 0)
            )
        ]
        due = [
            row
            for row in rows
            if (row[3] is not None and row[3] <= now)
            or (row[1] and row[2] is not None and row[2] <= now)
        ]
        expiring = [
            row[0] for row in rows if row[3] is not None and now < row[3] <= now + EXPIRING_WINDOW
        ]
    else:
        due = (
            []
            if settled
            else list(
                session.execute(
                    select(Lot.remaining, Lot.pending, Lot.pending_until, Lot.expires_at).where(
                        Lot.account_id == account.id,
                        Lot.remaining > 0,
                        or_(
                            and_(Lot.pending.is_(True), Lot.pending_until <= now),
                            and_(Lot.expires_at.is_not(None), Lot.expires_at <= now),
                        ),
                    )
                )
            )
        )
        expiring = list(
            session.execute(
                select(Lot.remaining).where(
                    Lot.account_id == account.id,
                    Lot.remaining > 0,
                    Lot.expires_at > now,
                    Lot.expires_at <= now + EXPIRING_WINDOW,
                )
            )
            .scalars()
            .all()
        )
    for remaining, is_pending, _pending_until, expires_at in due:
        if expires_at is not None and expires_at <= now:
            expired += remaining
            if is_pending:
                pending -= remaining
            else:
                available -= remaining
        else:
            pending -= remaining
            available += remaining
    return Totals(
        balance=available - account.debt,
        available=available,
        pending=pending,
        debt=account.debt,
        earned=account.earned,
        redeemed=account.redeemed,
        expired=expired,
        adjusted=account.adjusted,
        expiring_30_days=sum(expiring),
    )


def store_codes(session: Session, program_id: int) -> dict[int, str]:
    rows = session.execute(select(Store.id, Store.code).where(Store.program_id == program_id))
    return {store_id: code for store_id, code in rows}


def entry_out(entry: Entry, stores: dict[int, str]) -> EntryOut:
    return EntryOut(
        id=entry.id,
        kind=entry.kind,
        points=entry.points,
        occurred_at=entry.occurred_at,
        created_at=entry.created_at,
        reason=entry.reason,
        store=stores.get(entry.store_id) if entry.store_id else None,
        channel=entry.channel,
        external_ref=entry.external_ref,
        actor=entry.actor,
        reverses_entry_id=entry.reverses_entry_id,
        rule_version=entry.rule_version,
        breakdown=entry.breakdown,
        details=entry.details,
    )


def local_day_bounds(
    program: Program, start: date | None, end: date | None
) -> tuple[datetime | None, datetime | None]:
    """Inclusive local dates → [start, end) instants in UTC."""
    tz = ZoneInfo(program.timezone)

    def midnight(day: date) -> datetime | None:
        # Only 0001-01-01 or 9999-12-31 overflow, and only at their own end of the calendar,
        # so "no bound" is exactly right there (it was a 500).
        try:
            return datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
        except OverflowError:
            return None

    lo = midnight(start) if start else None
    hi = None
    if end and end < date.max:
        hi = midnight(end + timedelta(days=1))
    if lo and hi and lo >= hi:
        raise Invalid("'from' must not be after 'to'", code="invalid_range")
    return lo, hi


def _history_query(
    account: Account, *, lo: datetime | None, hi: datetime | None, kinds: list[str] | None
):
    stmt = select(Entry).where(Entry.account_id == account.id)
    if lo is not None:
        stmt = stmt.where(Entry.occurred_at >= lo)
    if hi is not None:
        stmt = stmt.where(Entry.occurred_at < hi)
    if kinds:
        stmt = stmt.where(Entry.kind.in_(kinds))
    return stmt


def _encode(occurred_at: datetime, entry_id: int) -> str:
    return base64.urlsafe_b64encode(f"{occurred_at.isoformat()}|{entry_id}".encode()).decode()


def _decode(cursor: str) -> tuple[datetime, int]:
    try:
        stamp, entry_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        at = datetime.fromisoformat(stamp)
        if at.tzinfo is None or not 0 < int(entry_id) < 2**62:
            raise ValueError("not a cursor")
        return at, int(entry_id)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("cursor is not one this API returned", code="invalid_cursor") from None


def history(
    session: Session,
    account: Account,
    *,
    lo: datetime | None = None,
    hi: datetime | None = None,
    kinds: list[str] | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> tuple[list[Entry], str | None]:
    """Newest first, by when the points moved."""
    stmt = _history_query(account, lo=lo, hi=hi, kinds=kinds)
    if cursor:
        at, entry_id = _decode(cursor)
        stmt = stmt.where(tuple_(Entry.occurred_at, Entry.id) < tuple_(at, entry_id))
    rows = list(
        session.scalars(stmt.order_by(Entry.occurred_at.desc(), Entry.id.desc()).limit(limit + 1))
    )
    nxt = _encode(rows[limit - 1].occurred_at, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], nxt


def lots(
    session: Session,
    account: Account,
    *,
    now: datetime,
    expiring_within_days: int | None = None,
    include_empty: bool = False,
) -> list[LotOut]:
    """The account's lots, each with its effective expiry (under a rolling policy, its own
    date moved to the account's rolling date)."""
    rolled = rolling.until(session, account)
    stmt = select(Lot).where(Lot.account_id == account.id)
    if not include_empty:
        stmt = stmt.where(Lot.remaining > 0)
    if rolled is None:
        found = [(lot, lot.expires_at) for lot in session.scalars(stmt)]
    else:
        found = [
            (lot, rolling.effective(lot.expires_at, rolled) if fresh else lot.expires_at)
            for lot, fresh in session.execute(stmt.add_columns(rolling.never_expired(Lot.id)))
        ]
    if not include_empty:
        found = [(lot, at) for lot, at in found if at is None or at > now]
    if expiring_within_days is not None:
        soon = now + timedelta(days=expiring_within_days)
        found = [(lot, at) for lot, at in found if at is not None and now < at <= soon]
    found.sort(key=lambda pair: (pair[1] is None, pair[1] or now, pair[0].id))
    return [
        LotOut(
            id=lot.id,
            points=lot.points,
            remaining=lot.remaining,
            earned_at=lot.earned_at,
            pending_until=lot.pending_until,
            # No release date: held for a fraud review until staff decide (patron.fraud).
            pending=lot.pending and (lot.pending_until is None or lot.pending_until > now),
            expires_at=expires_at,
        )
        for lot, expires_at in found
    ]


def valid_until(expires_at: datetime, tz: ZoneInfo) -> date:
    """The last local day points can be used: expiry is the midnight that ends it."""
    return (expires_at - timedelta(microseconds=1)).astimezone(tz).date()


EXPORT_COLUMNS = [
    "entry",
    "date",
    "kind",
    "points",
    "running_total",
    "reason",
    "store",
    "channel",
    "order",
    "valid_until",
]


def export_rows(
    session: Session,
    program: Program,
    account: Account,
    *,
    lo: datetime | None,
    hi: datetime | None,
    kinds: list[str] | None,
) -> list[list[object]]:
    """Oldest first, with the running total after each entry, dates in the program's timezone."""
    tz = ZoneInfo(program.timezone)
    stores = store_codes(session, program.id)
    running = 0
    if lo is not None:
        before = session.scalars(
            select(Entry.points).where(Entry.account_id == account.id, Entry.occurred_at < lo)
        ).all()
        running = sum(before)
    out: list[list[object]] = []
    stmt = _history_query(account, lo=lo, hi=hi, kinds=None).order_by(Entry.occurred_at, Entry.id)
    for entry in session.scalars(stmt):
        running += entry.points
        if kinds and entry.kind not in kinds:
            continue
        expires = (entry.details or {}).get("expires_at")
        out.append(
            [
                entry.id,
                entry.occurred_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                entry.kind,
                entry.points,
                running,
                entry.reason or "",
                stores.get(entry.store_id, "") if entry.store_id else "",
                entry.channel or "",
                entry.external_ref or "",
                valid_until(datetime.fromisoformat(expires), tz).isoformat() if expires else "",
            ]
        )
    return out


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _no_formula(value: object) -> object:
    """Free text that a spreadsheet would run as a formula gets a leading apostrophe."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def to_csv(rows: list[list[object]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows([[_no_formula(v) for v in row] for row in rows])
    # A BOM so Excel opens Korean and Chinese text correctly.
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(rows: list[list[object]], *, title: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = title[:31]
    sheet.append(EXPORT_COLUMNS)
    for row in rows:
        # Reasons and order ids are free text; XLSX cannot hold control characters (was a 500).
        sheet.append(
            [
                ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v
                for v in map(_no_formula, row)
            ]
        )
    for column, width in zip("ABCDEFGHIJ", (10, 18, 9, 10, 14, 30, 10, 9, 20, 12), strict=True):
        sheet.column_dimensions[column].width = width
    sheet.freeze_panes = "A2"
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()
