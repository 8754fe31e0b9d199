"""Liability and accounting: points outstanding and their value as of a date (beside the reward
coupons outstanding, patron.reports.rewards), a member's balance as of a date, breakage and
redemption rates, and the daily journal for the general ledger.

Time axis ("basis"): `occurred` sums entries by when the points moved (occurred_at; an expiry at
the lot's expiry instant), `recorded` by when Patron wrote them (created_at). Both are exact sums
of the append-only ledger; see docs/reports.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlalchemy import bindparam, case, func, literal, select, union_all
from sqlalchemy.orm import Session

from patron.errors import Invalid
from patron.ledger.expiry import add_months
from patron.ledger.models import Account, Entry, Lot, Movement
from patron.programs.models import Program
from patron.reports import period, rewards, rollup
from patron.reports.common import (
    Basis,
    DayRange,
    Figures,
    check_day,
    day_start,
    from_minor,
    money,
    ratio,
    share_half_up,
    today,
)
from patron.reports.models import ReportDaily

BREAKAGE_WINDOWS = (3, 6, 12)


def _not_future(program: Program, as_of: date, now: datetime) -> None:
    if as_of > today(program, now):
        raise Invalid(
            f"as_of: {as_of.isoformat()} is in the future (today is "
            f"{today(program, now).isoformat()} in {program.timezone})",
            code="as_of_in_future",
        )


def overdue_points(session: Session, program: Program, before: datetime) -> int:
    """Points in lots past their expiry at `before` that the expiry job has not written off yet.

    Nothing can take points from such a lot but the expiry (every write to an account settles
    its due lots first), so its remainder now is its remainder when it expired.
    """
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Lot.remaining), 0))
            .join(Account, Account.id == Lot.account_id)
            .where(
                Account.program_id == program.id,
                Lot.remaining > 0,
                Lot.expires_at.is_not(None),
                Lot.expires_at < before,
            )
        )
        or 0
    )


# --- liability ----------------------------------------------------------------------------------


class BreakageWindow(BaseModel):
    months: int
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
    issued: int = Field(description="earned − reversed + manual credits in the window")
    expired: int
    redeemed: int = Field(description="redeemed − restored in the window")
    breakage_rate: Decimal | None = Field(description="expired ÷ issued (null: nothing issued)")
    redemption_rate: Decimal | None = Field(description="redeemed ÷ issued")


class LiabilityOut(BaseModel):
    program: str
    currency: str
    point_value: Decimal
    as_of: date = Field(description="Local date; figures are at the end of that day")
    basis: Basis
    ledger_points: int = Field(description="Σ entries up to the end of as_of")
    overdue_points: int = Field(
        description="Points past their expiry not yet written off by the expiry job"
    )
    outstanding_points: int = Field(
        description="ledger_points − overdue_points: what members can still use (net of debt)"
    )
    outstanding_value: Decimal
    breakage: list[BreakageWindow]
    projection_months: int
    projected_breakage_points: int = Field(
        description="outstanding × the breakage rate of the projection window, half up"
    )
    projected_breakage_value: Decimal
    expected_redemption_value: Decimal = Field(
        description="outstanding_value − projected_breakage_value"
    )
    lifetime: dict[str, int] = Field(description="Totals of each kind up to the end of as_of")
    coupons_outstanding: int = Field(
        description="Reward coupons issued and not yet used, cancelled or expired at the end of "
        "as_of (their points are spent: they are not in outstanding_points)"
    )
    coupons_outstanding_value: Decimal = Field(
        description="What they are worth: each reward's value, a gift card's balance left"
    )
    total_liability_value: Decimal = Field(
        description="outstanding_value + coupons_outstanding_value"
    )


def window_bounds(as_of: date, months: int) -> tuple[date, date]:
    """The trailing window of `months` months ending with `as_of` (inclusive)."""
    return add_months(as_of, -months) + timedelta(days=1), as_of


def liability(
    session: Session,
    program: Program,
    *,
    as_of: date,
    now: datetime,
    basis: Basis = "occurred",
    projection_months: int = 12,
) -> LiabilityOut:
    """Points outstanding and their money value at the end of `as_of` (local date), and the
    reward coupons open then: total liability = points value + coupons value."""
    check_day(as_of, "as_of")
    _not_future(program, as_of, now)
    if projection_months not in BREAKAGE_WINDOWS:
        raise Invalid(
            f"projection_months: one of {', '.join(map(str, BREAKAGE_WINDOWS))}",
            code="invalid_window",
        )
    end = day_start(program, as_of + timedelta(days=1))
    longest, _ = window_bounds(as_of, max(BREAKAGE_WINDOWS))
    # lo bounds the live tail as first_day bounds the roll-up: without it, entries older than
    # `longest` still above the watermark were counted here and again in `before`.
    days = period.daily(
        session,
        program,
        first_day=longest,
        last_day=as_of,
        lo=day_start(program, longest),
        hi=end,
        basis=basis,
    )
    before = period.total(
        session,
        program,
        first_day=None,
        last_day=longest - timedelta(days=1),
        lo=None,
        hi=day_start(program, longest),
        basis=basis,
    )
    lifetime = Figures()
    lifetime.add(before)
    windows: dict[int, Figures] = {m: Figures() for m in BREAKAGE_WINDOWS}
    starts = {m: window_bounds(as_of, m)[0] for m in BREAKAGE_WINDOWS}
    for day, _key, figures in days:
        lifetime.add(figures)
        for m in BREAKAGE_WINDOWS:
            if day >= starts[m]:
                windows[m].add(figures)
    # The "recorded" basis counts an expiry when it is written; only "occurred" looks ahead.
    overdue = overdue_points(session, program, end) if basis == "occurred" else 0
    outstanding = lifetime.net - overdue
    chosen = windows[projection_months]
    projected = 0
    if outstanding > 0 and chosen.issued > 0:
        projected = min(outstanding, share_half_up(outstanding, chosen.expired, chosen.issued))
    value = money(program, outstanding)
    breakage_value = money(program, projected)
    # Coupons are dated as they happened on either basis (they have no recorded/occurred pair).
    coupons, coupons_minor = rewards.outstanding_total(session, program, end)
    coupons_value = from_minor(program, coupons_minor)
    return LiabilityOut(
        program=program.code,
        currency=program.currency,
        point_value=program.point_value,
        as_of=as_of,
        basis=basis,
        ledger_points=lifetime.net,
        overdue_points=overdue,
        outstanding_points=outstanding,
        outstanding_value=value,
        breakage=[
            BreakageWindow(
                months=m,
                first_day=starts[m],
                last_day=as_of,
                issued=windows[m].issued,
                expired=windows[m].expired,
                redeemed=windows[m].used,
                breakage_rate=ratio(windows[m].expired, windows[m].issued),
                redemption_rate=ratio(windows[m].used, windows[m].issued),
            )
            for m in BREAKAGE_WINDOWS
        ],
        projection_months=projection_months,
        projected_breakage_points=projected,
        projected_breakage_value=breakage_value,
        expected_redemption_value=value - breakage_value,
        lifetime={
            "earned": lifetime.earned,
            "reversed": lifetime.reversed,
            "redeemed": lifetime.redeemed,
            "restored": lifetime.restored,
            "expired": lifetime.expired + overdue,
            "adjusted_in": lifetime.adjusted_in,
            "adjusted_out": lifetime.adjusted_out,
            "other": lifetime.other,
        },
        coupons_outstanding=coupons,
        coupons_outstanding_value=coupons_value,
        total_liability_value=value + coupons_value,
    )


# --- points outstanding at many month ends, in one query ----------------------------------------

# The longest series one call computes: each point is one more CASE branch per row read.
MAX_SERIES_POINTS = 120


class OutstandingPoint(BaseModel):
    as_of: date = Field(description="Local date; figures are at the end of that day")
    outstanding_points: int = Field(description="As liability(as_of).outstanding_points")
    outstanding_value: Decimal


def month_ends(until: date, months: int = 12) -> list[date]:
    """The last day of each of the `months` − 1 months before `until`'s, then `until` itself
    (31 Oct, 30 Nov, 3 Dec: the month just ended is never skipped)."""
    start = until.replace(day=1)
    days = [add_months(start, -n) - timedelta(days=1) for n in range(months - 2, -1, -1)]
    days.append(until)
    return days


def outstanding_series(
    session: Session, program: Program, days: Sequence[date], *, now: datetime
) -> list[OutstandingPoint]:
    """Points outstanding and their value at the end of each of `days` (local dates, in any
    order): exactly `liability(as_of=day).outstanding_points` for every day, in one query.

    liability() reads the whole ledger up to its day; called once per month end it read the
    ledger twelve times (seconds on the demo). Here each roll-up row, live entry and overdue
    lot is read once and put in the bucket of the first day whose end it precedes (a CASE on
    the local day or the UTC instant), the buckets are summed in the database, and the series
    is their running sum: ledger points (roll-up + live tail, as liability() reads them) less
    the points in lots past their expiry by then (overdue_points).
    """
    if not days:
        return []
    if len(days) > MAX_SERIES_POINTS:
        raise Invalid(f"at most {MAX_SERIES_POINTS} days in a series", code="invalid_series")
    for day in days:
        check_day(day, "as_of")
        _not_future(program, day, now)
    ordered = sorted(set(days))
    ends = [day_start(program, d + timedelta(days=1)) for d in ordered]

    def bucket(column: Any, bounds: Sequence[Any], strict: bool) -> Any:
        # Bucket i: after bound i − 1, up to bound i (a local day: <=; an instant: <).
        whens = [((column < b) if strict else (column <= b), i) for i, b in enumerate(bounds)]
        return case(*whens, else_=len(bounds))

    rollup.prepare(session)
    mark = rollup.read_watermark(session)
    net = (
        ReportDaily.earned
        - ReportDaily.reversed
        - ReportDaily.redeemed
        + ReportDaily.restored
        - ReportDaily.expired
        + ReportDaily.adjusted_in
        - ReportDaily.adjusted_out
        + ReportDaily.other
    )
    rolled = select(
        bucket(ReportDaily.day, ordered, strict=False).label("bucket"),
        net.label("net"),
        literal(0).label("overdue"),
    ).where(ReportDaily.program_id == program.id, ReportDaily.day <= ordered[-1])
    # Above the watermark: as rollup.source reads the live tail (the mark in the SQL text).
    live = select(
        bucket(Entry.occurred_at, ends, strict=True).label("bucket"),
        Entry.points.label("net"),
        literal(0).label("overdue"),
    ).where(
        Entry.id > bindparam("watermark", mark, literal_execute=True),
        Entry.program_id == program.id,
        Entry.occurred_at < ends[-1],
    )
    overdue = (
        select(
            bucket(Lot.expires_at, ends, strict=True).label("bucket"),
            literal(0).label("net"),
            Lot.remaining.label("overdue"),
        )
        .join(Account, Account.id == Lot.account_id)
        .where(
            Account.program_id == program.id,
            Lot.remaining > 0,
            Lot.expires_at.is_not(None),
            Lot.expires_at < ends[-1],
        )
    )
    rows = union_all(rolled, live, overdue).subquery("moves")
    sums = {
        int(b): (int(n or 0), int(o or 0))
        for b, n, o in session.execute(
            select(rows.c.bucket, func.sum(rows.c.net), func.sum(rows.c.overdue)).group_by(
                rows.c.bucket
            )
        )
    }
    out: dict[date, OutstandingPoint] = {}
    ledger = late = 0
    for i, day in enumerate(ordered):
        moved, expired_unwritten = sums.get(i, (0, 0))
        ledger += moved
        late += expired_unwritten
        out[day] = OutstandingPoint(
            as_of=day,
            outstanding_points=ledger - late,
            outstanding_value=money(program, ledger - late),
        )
    return [out[d] for d in days]


# --- one member's balance as of an instant ------------------------------------------------------


class MemberBalanceOut(BaseModel):
    program: str
    member_id: int
    as_of: datetime = Field(description="The instant (UTC) the balance is for, inclusive")
    balance: int = Field(description="available − debt, as the member's totals showed then")
    available: int
    pending: int
    debt: int
    earned: int = Field(description="Earned less refund reversals, up to as_of")
    redeemed: int = Field(description="Redeemed less refund give-backs")
    expired: int
    adjusted: int
    value: Decimal = Field(description="balance × point value")
    currency: str


def parse_as_of(program: Program, value: str | None, now: datetime) -> datetime:
    """A date means the end of that local day; a datetime (no offset: program local time) is
    that instant. Returns the instant, inclusive."""
    if value is None:
        return now
    text = value.strip()
    tz = ZoneInfo(program.timezone)
    try:
        if len(text) == 10:
            day = check_day(date.fromisoformat(text), "as_of")
            return datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(
                UTC
            ) - timedelta(microseconds=1)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(
            f"as_of: {value!r} is not a date (2026-03-01) or a datetime (2026-03-01T18:00+09:00)",
            code="invalid_as_of",
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=tz)
    check_day(at.date(), "as_of")
    return at.astimezone(UTC)


def member_balance(
    session: Session, program: Program, account: Account, *, at: datetime, now: datetime
) -> MemberBalanceOut:
    """What the member's totals showed at instant `at` (by occurred_at), from the entries.

    Exactly `views.totals(…, now=at)` as it would have been computed then, provided no entry
    written later is dated at or before `at` (a backdated sale or refund changes the past).
    """
    if at > now:
        raise Invalid("as_of: the instant is in the future", code="as_of_in_future")
    before = at + timedelta(microseconds=1)
    kinds = session.execute(
        select(
            func.coalesce(func.sum(Entry.points), 0),
            func.coalesce(
                func.sum(
                    case(
                        (Entry.kind == "earn", Entry.points),
                        ((Entry.kind == "reverse") & (Entry.points < 0), Entry.points),
                        else_=0,
                    )
                ),
                0,
            ),
            func.coalesce(
                func.sum(
                    case(
                        (Entry.kind == "redeem", -Entry.points),
                        ((Entry.kind == "reverse") & (Entry.points > 0), -Entry.points),
                        else_=0,
                    )
                ),
                0,
            ),
            func.coalesce(func.sum(case((Entry.kind == "expire", -Entry.points), else_=0)), 0),
            func.coalesce(func.sum(case((Entry.kind == "adjust", Entry.points), else_=0)), 0),
        ).where(Entry.account_id == account.id, Entry.occurred_at < before)
    ).one()
    net, earned, redeemed, expired, adjusted = (int(v) for v in kinds)
    # Past their expiry at `at` but not yet written off: already gone for the member.
    overdue = int(
        session.scalar(
            select(func.coalesce(func.sum(Lot.remaining), 0)).where(
                Lot.account_id == account.id,
                Lot.remaining > 0,
                Lot.expires_at.is_not(None),
                Lot.expires_at < before,
            )
        )
        or 0
    )
    debt = -int(
        session.scalar(
            select(func.coalesce(func.sum(Movement.points), 0))
            .join(Entry, Entry.id == Movement.entry_id)
            .where(
                Entry.account_id == account.id,
                Entry.occurred_at < before,
                Movement.lot_id.is_(None),
            )
        )
        or 0
    )
    # Pending at `at`: lots credited by then, still held back, not expired; their remainder
    # then is their points plus the movements dated by then.
    moved = (
        select(Movement.lot_id, func.sum(Movement.points).label("moved"))
        .join(Entry, Entry.id == Movement.entry_id)
        .where(Entry.account_id == account.id, Entry.occurred_at < before)
        .group_by(Movement.lot_id)
        .subquery()
    )
    pending = int(
        session.scalar(
            select(func.coalesce(func.sum(Lot.points + func.coalesce(moved.c.moved, 0)), 0))
            .outerjoin(moved, moved.c.lot_id == Lot.id)
            .where(
                Lot.account_id == account.id,
                Lot.earned_at < before,
                # Held for a fraud review (no release date) while still pending, or released
                # after `at` (a confirmed review's release date is the decision's time).
                (Lot.pending_until > at) | (Lot.pending_until.is_(None) & Lot.pending.is_(True)),
                (Lot.expires_at.is_(None)) | (Lot.expires_at > at),
            )
        )
        or 0
    )
    total = net - overdue  # available + pending − debt
    available = total - pending + debt
    balance = available - debt
    return MemberBalanceOut(
        program=program.code,
        member_id=account.member_id,
        as_of=at,
        balance=balance,
        available=available,
        pending=pending,
        debt=debt,
        earned=earned,
        redeemed=redeemed,
        expired=expired + overdue,
        adjusted=adjusted,
        value=money(program, balance),
        currency=program.currency,
    )


# --- the journal --------------------------------------------------------------------------------


class JournalAccounts(BaseModel):
    """General-ledger account names (or numbers) the journal posts to."""

    liability: str = Field("Points liability", min_length=1, max_length=100)
    expense: str = Field("Loyalty expense", min_length=1, max_length=100)
    redemption: str = Field("Points redemption", min_length=1, max_length=100)
    breakage: str = Field("Breakage income", min_length=1, max_length=100)
    adjustment: str = Field("Loyalty expense", min_length=1, max_length=100)


class JournalLine(BaseModel):
    day: date = Field(serialization_alias="date")
    entry: str = Field(description="One journal entry per day and movement, e.g. 2026-03-02/issued")
    account: str
    debit: Decimal
    credit: Decimal
    points: int
    memo: str


class JournalDay(BaseModel):
    day: date = Field(serialization_alias="date")
    debit: Decimal
    credit: Decimal


class JournalOut(BaseModel):
    program: str
    currency: str
    point_value: Decimal
    basis: Basis
    first_day: date = Field(serialization_alias="from")
    last_day: date = Field(serialization_alias="to")
    accounts: JournalAccounts
    lines: list[JournalLine]
    days: list[JournalDay]


# (movement, figure, debit account, credit account, memo)
_POSTINGS: tuple[tuple[str, str, str, str, str], ...] = (
    ("issued", "earned", "expense", "liability", "points issued"),
    ("reversed", "reversed", "liability", "expense", "earned points taken back by refunds"),
    ("redeemed", "redeemed", "liability", "redemption", "points redeemed"),
    ("restored", "restored", "redemption", "liability", "redeemed points given back by refunds"),
    ("expired", "expired", "liability", "breakage", "points expired"),
    ("adjusted_in", "adjusted_in", "adjustment", "liability", "manual credits"),
    ("adjusted_out", "adjusted_out", "liability", "adjustment", "manual debits"),
)


def _postings(figures: Figures) -> list[tuple[str, int, str, str, str]]:
    out = [
        (name, getattr(figures, figure), debit, credit, memo)
        for name, figure, debit, credit, memo in _POSTINGS
    ]
    if figures.other > 0:
        out.append(("other_in", figures.other, "adjustment", "liability", "other credits"))
    elif figures.other < 0:
        out.append(("other_out", -figures.other, "liability", "adjustment", "other debits"))
    return out


def journal(
    session: Session,
    program: Program,
    rng: DayRange,
    *,
    basis: Basis = "occurred",
    accounts: JournalAccounts | None = None,
) -> JournalOut:
    """Per local day, a balanced pair of lines (debit, credit) for every kind of movement.

    Each pair's amount is its points × point value, half up to the currency's minor unit, so
    every day balances exactly and the liability account moves by the value of `net` (up to
    that rounding per line).
    """
    accounts = accounts or JournalAccounts()
    names: dict[str, Any] = accounts.model_dump()
    rows = period.daily(
        session,
        program,
        first_day=rng.first,
        last_day=rng.last,
        lo=rng.lo,
        hi=rng.hi,
        basis=basis,
    )
    lines: list[JournalLine] = []
    days: list[JournalDay] = []
    zero = money(program, 0)
    for day, _key, figures in sorted(rows, key=lambda r: r[0]):
        debit = credit = zero
        for name, points, debit_account, credit_account, memo in _postings(figures):
            if points == 0:
                continue
            amount = money(program, points)
            ref = f"{day.isoformat()}/{name}"
            lines.append(
                JournalLine(
                    day=day,
                    entry=ref,
                    account=names[debit_account],
                    debit=amount,
                    credit=zero,
                    points=points,
                    memo=memo,
                )
            )
            lines.append(
                JournalLine(
                    day=day,
                    entry=ref,
                    account=names[credit_account],
                    debit=zero,
                    credit=amount,
                    points=points,
                    memo=memo,
                )
            )
            debit += amount
            credit += amount
        if debit or credit:
            days.append(JournalDay(day=day, debit=debit, credit=credit))
    return JournalOut(
        program=program.code,
        currency=program.currency,
        point_value=program.point_value,
        basis=basis,
        first_day=rng.first,
        last_day=rng.last,
        accounts=accounts,
        lines=lines,
        days=days,
    )
