"""The scheduled notification jobs: expiring-points reminders, birthdays, monthly statements.

A job decides WHO gets WHICH reminder, exactly once, and writes it to the outbox as an event
(points.expiring, member.birthday, points.statement); the dispatcher turns events into messages
later (consent, quiet hours, frequency cap, templates) and webhooks. A job never sends anything.

Exactly once: every reminder has a `reminder_marks` row, unique per (program, member, kind, key)
— the expiry day, the year, the month — inserted in the same transaction as its event, and only
the marks a statement actually inserted get an event (INSERT … ON CONFLICT DO NOTHING RETURNING
on PostgreSQL; on SQLite the transaction holds the only write lock, so a NOT EXISTS filter is
enough and the new marks are those above the largest id before).

Bounded and resumable: a run walks the program's accounts in id order, `batch_size` accounts per
transaction. Its `job_runs` row (job, program, key = the local day or the month) keeps the last
account id done and the counts so far, and is locked by each chunk's transaction, so an
interrupted run resumes after its last committed chunk, a finished one is a no-op, and two
runners of the same run take turns instead of doing a chunk twice. The expiring and statement
chunks are set-based (one INSERT … SELECT per chunk); the birthday chunk credits each
birthday through the rules service, as the events API would, since the points need the rule set.

Days are the program's: the program timezone decides which day a lot expires on, whose birthday
it is and which entries fall in last month.
"""

from __future__ import annotations

import logging
import time as timer
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Date,
    DateTime,
    Interval,
    Select,
    String,
    and_,
    case,
    exists,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    text,
)
from sqlalchemy import cast as sql_cast
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from patron.audit import service as audit
from patron.audit.service import SYSTEM, Actor
from patron.config import get_settings
from patron.db.engine import Database
from patron.db.job_runs import JobRun
from patron.db.types import UTCDateTime
from patron.errors import PatronError
from patron.events.models import DomainEvent
from patron.events.outbox import emit
from patron.ledger import rolling
from patron.ledger.expiry import ExpiryRule, add_months
from patron.ledger.models import Account, Entry, Lot
from patron.members.models import Member
from patron.members.schemas import MemberRef
from patron.notify import settings as notify_settings
from patron.notify.models import ReminderMark
from patron.notify.settings import NotifySettings
from patron.programs.models import Program
from patron.programs.service import get_program

log = logging.getLogger("patron.notify.jobs")

# The worker greets birthdays (and sends a month's statements) up to this many days late when
# it was not running on the day; older days are left alone (a birthday greeting a week late is
# worse than none).
CATCH_UP_DAYS = 7


@dataclass
class JobReport:
    """What a run did (or, in a dry run, would do).

    `considered`: members the job looked at for the period (expiring: active members with
    points expiring in the window; birthday: active members whose birthday it is; statement:
    active members with a balance or last month's activity). `events`: events written (would
    be, in a dry run). `skipped`: reminders already made earlier (expiring counts member-days).
    `points`: expiring: points in the reminders written; birthday: points credited.
    The counts cover the whole period's run, across resumptions; `seconds` is this call's.
    """

    job: str
    program: str
    key: str
    dry_run: bool = False
    considered: int = 0
    events: int = 0
    skipped: int = 0
    points: int = 0
    chunks: int = 0
    seconds: float = 0.0
    # The period's run had finished before this call: nothing was done.
    already_done: bool = False
    # Another runner held the run (run_due only): this call did nothing; that runner goes on.
    busy: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Counts:
    considered: int = 0
    events: int = 0
    skipped: int = 0
    points: int = 0
    chunks: int = 0

    def add(self, other: _Counts) -> None:
        self.considered += other.considered
        self.events += other.events
        self.skipped += other.skipped
        self.points += other.points
        self.chunks += other.chunks

    def to_json(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> _Counts:
        data = data or {}
        return cls(**{name: int(data.get(name, 0)) for name in cls.__dataclass_fields__})


@dataclass
class _Plan:
    """One run: the job, the program and its period, fixed when the run starts."""

    job: str
    program_id: int
    program_code: str
    timezone: str
    key: str
    now: datetime
    actor: Actor
    settings: NotifySettings
    # expiring: lots expiring after `now` and before `until` (the local midnight after the
    # window's last day). statement: last month, [start, until). birthday: the local day.
    start: datetime | None = None
    until: datetime | None = None
    day: date | None = None
    # birthday: the program has an enabled rule for the event "birthday".
    has_rule: bool = False
    # expiring: the program's rolling expiry policies (`ledger.rolling`), by tier code (None:
    # no tier, or a code without a definition); empty when no policy of the program rolls.
    rolling: tuple[tuple[str | None, ExpiryRule | None], ...] = ()


Progress = Callable[[JobReport], None]
Chunk = Callable[[Session, _Plan, int, int, bool], _Counts]


# --- SQL that differs between the engines -----------------------------------------------------


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _sqlite_local_date(value: str | None, timezone: str) -> str | None:
    if value is None:
        return None
    instant = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return instant.astimezone(ZoneInfo(timezone)).date().isoformat()


def _sqlite_iso_instant(value: str | None) -> str | None:
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC).isoformat()


def _sqlite_rolling_until(
    value: str | None, months: int, days: int, extra: int, timezone: str
) -> str | None:
    """`ledger.rolling`'s date for a latest activity, stored as SQLite stores instants."""
    if value is None:
        return None
    latest = datetime.fromisoformat(value).replace(tzinfo=UTC)
    until = ExpiryRule("rolling", months, days, extra).expires_at(latest, timezone)
    assert until is not None
    return until.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_functions(session: Session) -> None:
    """SQLite has no time zones: the program's local date comes from Python's zoneinfo, the
    same rules patron.ledger.expiry used to compute the instants. Registered per connection."""
    raw: Any = session.connection().connection.driver_connection
    raw.create_function("patron_local_date", 2, _sqlite_local_date, deterministic=True)
    raw.create_function("patron_iso_instant", 1, _sqlite_iso_instant, deterministic=True)
    raw.create_function("patron_rolling_until", 5, _sqlite_rolling_until, deterministic=True)


def _prepare(session: Session) -> None:
    """Per chunk transaction, before its statements."""
    if not _is_postgresql(session):
        _sqlite_functions(session)
        return
    # psycopg prepares a statement run a few times, and PostgreSQL then plans it once for any
    # parameters: that generic plan cannot see that a chunk is a narrow range of account ids and
    # took 25 s a chunk instead of 0.1 s (100 k members). Each chunk is planned for its range.
    session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
    # A batch job's statement with a plan known in advance: compiling it (JIT) only adds time.
    session.execute(text("SET LOCAL jit = off"))


def _text(value: str) -> ColumnElement[str]:
    return literal(value, String)


def _local_date(session: Session, instant: Any, timezone: str) -> ColumnElement[str]:
    """The program-local date ('2027-01-15') of a UTC instant column."""
    if _is_postgresql(session):
        return func.to_char(func.timezone(_text(timezone), instant), _text("YYYY-MM-DD"))
    return func.patron_local_date(instant, _text(timezone))


def _rolling_until(
    session: Session, rule: ExpiryRule, latest: Any, timezone: str
) -> ColumnElement[datetime]:
    """In SQL, `rule.expires_at(latest)` for a rolling rule: the local midnight after the day
    N days (then the extra months) or N months after the latest activity's local day."""
    if not _is_postgresql(session):
        return func.patron_rolling_until(
            latest, rule.months, rule.days, rule.extra_months, _text(timezone), type_=UTCDateTime
        )
    day = sql_cast(func.timezone(_text(timezone), latest), Date)
    if rule.days:
        # date + integer is a date; + make_interval(years, months) clamps to the month's end
        # as add_months does.
        shifted = sql_cast(day + rule.days, Date) + func.make_interval(
            0, rule.extra_months, type_=Interval
        )
    else:
        shifted = day + func.make_interval(0, rule.months + rule.extra_months, type_=Interval)
    last = sql_cast(shifted, Date)
    return func.timezone(_text(timezone), sql_cast(last + 1, DateTime), type_=UTCDateTime)


def _effective_expiry(session: Session, plan: _Plan, lo: int, hi: int) -> Any:
    """Each lot's expiry as the ledger reads it: under a rolling policy, its own date moved to
    the account's rolling date (`ledger.rolling.effective`), from the accounts' latest activity
    read in one grouped query for the chunk; else its own date."""
    if not plan.rolling:
        return Lot.expires_at
    activity = (
        select(Entry.account_id, func.max(Entry.occurred_at).label("latest"))
        .where(
            Entry.account_id > lo,
            Entry.account_id <= hi,
            Entry.kind.in_(rolling.ACTIVITY_KINDS),
        )
        .group_by(Entry.account_id)
        .subquery("activity")
    )
    latest = (
        select(activity.c.latest).where(activity.c.account_id == Lot.account_id).scalar_subquery()
    )
    by_tier = dict(plan.rolling)

    def until_of(rule: ExpiryRule | None) -> ColumnElement[Any]:
        return null() if rule is None else _rolling_until(session, rule, latest, plan.timezone)

    codes = [code for code in by_tier if code is not None]
    until: ColumnElement[Any] = (
        case(
            *[(Account.tier == code, until_of(by_tier[code])) for code in codes],
            else_=until_of(by_tier.get(None)),
        )
        if codes
        else until_of(by_tier.get(None))
    )
    return case(
        (and_(until > Lot.expires_at, rolling.never_expired(Lot.id)), until),
        else_=Lot.expires_at,
    )


def _iso_instant(session: Session, instant: Any) -> ColumnElement[str]:
    """The instant as Python's isoformat() writes it, as every other event payload has it."""
    if not _is_postgresql(session):
        return func.patron_iso_instant(instant)
    utc = func.timezone(_text("UTC"), instant)
    fraction = case(
        (func.date_trunc(_text("second"), instant) == instant, _text("")),
        else_=func.to_char(utc, _text(".US")),
    )
    return func.concat(
        func.to_char(utc, _text('YYYY-MM-DD"T"HH24:MI:SS')), fraction, _text("+00:00")
    )


def _month_day(session: Session, day: Any) -> ColumnElement[str]:
    if _is_postgresql(session):
        return func.to_char(day, _text("MM-DD"))
    return func.strftime(_text("%m-%d"), day)


def _json_object(session: Session, fields: dict[str, Any]) -> ColumnElement[Any]:
    build = func.jsonb_build_object if _is_postgresql(session) else func.json_object
    args: list[Any] = []
    for name, value in fields.items():
        args += [_text(name), value]
    return build(*args)


def _insert_ignoring_duplicates(session: Session, table: Any) -> Any:
    dialect = postgresql if _is_postgresql(session) else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


# --- marks and events, set-based --------------------------------------------------------------

_MARK_COLUMNS = ["program_id", "member_id", "kind", "key", "at"]
_EVENT_COLUMNS = ["program_id", "member_id", "kind", "payload", "at", "dispatched"]


def _marked(plan: _Plan, mark_kind: str, member_id: Any, key: Any) -> Any:
    return exists().where(
        ReminderMark.program_id == plan.program_id,
        ReminderMark.member_id == member_id,
        ReminderMark.kind == mark_kind,
        ReminderMark.key == key,
    )


def _mark_rows(plan: _Plan, mark_kind: str, rows: Any) -> Select[Any]:
    return select(
        literal(plan.program_id, BigInteger),
        rows.member_id,
        _text(mark_kind),
        rows.key,
        literal(plan.now, UTCDateTime),
    )


def _event_rows(
    session: Session,
    plan: _Plan,
    event_kind: str,
    rows: Any,
    payload: Callable[[Any], dict[str, Any]],
) -> Select[Any]:
    return select(
        literal(plan.program_id, BigInteger),
        rows.member_id,
        _text(event_kind),
        _json_object(session, payload(rows)),
        literal(plan.now, UTCDateTime),
        false(),
    )


def _mark_and_emit(
    session: Session,
    plan: _Plan,
    *,
    mark_kind: str,
    event_kind: str,
    due: Select[Any],
    payload: Callable[[Any], dict[str, Any]],
    write: bool,
) -> _Counts:
    """One event per row of `due` (member_id, key, points, …) not marked yet, with its mark.

    Counts: `considered` distinct members in `due`, `events` rows newly marked, `skipped` the
    rest (marked before, or by a concurrent runner a moment ago), `points` the sum of `points`
    over the rows with a new event.
    """
    if not write:
        rows = due.subquery("due")
        fresh = ~_marked(plan, mark_kind, rows.c.member_id, rows.c.key)
        total, members, events, points = session.execute(
            select(
                func.count(),
                func.count(func.distinct(rows.c.member_id)),
                func.coalesce(func.sum(case((fresh, 1), else_=0)), 0),
                func.coalesce(func.sum(case((fresh, rows.c.points), else_=0)), 0),
            )
        ).one()
        return _Counts(
            considered=int(members),
            events=int(events),
            skipped=int(total) - int(events),
            points=int(points),
        )

    if _is_postgresql(session):
        # One statement: the marks that got inserted decide which events are written. Each row
        # is checked against the unique key by the insert itself (an index probe per row); an
        # anti-join with the marks, planned on statistics taken before the run added 170 k of
        # them, read all of them for every row (50 s a chunk at 1 M members).
        due_cte = due.cte("due")
        marked = (
            _insert_ignoring_duplicates(session, ReminderMark)
            .from_select(_MARK_COLUMNS, _mark_rows(plan, mark_kind, due_cte.c))
            .returning(ReminderMark.member_id, ReminderMark.key)
            .cte("marked")
        )
        won = (
            select(due_cte)
            .join(
                marked,
                and_(marked.c.member_id == due_cte.c.member_id, marked.c.key == due_cte.c.key),
            )
            .cte("won")
        )
        written = (
            insert(DomainEvent)
            .from_select(
                _EVENT_COLUMNS,
                _event_rows(session, plan, event_kind, won.c, payload).order_by(
                    won.c.member_id, won.c.key
                ),
            )
            .returning(DomainEvent.id)
            .cte("written")
        )
        total, members, events, points = session.execute(
            select(
                select(func.count()).select_from(due_cte).scalar_subquery(),
                select(func.count(func.distinct(due_cte.c.member_id))).scalar_subquery(),
                select(func.count()).select_from(written).scalar_subquery(),
                select(func.coalesce(func.sum(won.c.points), 0)).scalar_subquery(),
            )
        ).one()
    else:
        # The transaction holds SQLite's only write lock (BEGIN IMMEDIATE): no other writer can
        # add a mark meanwhile, so NOT EXISTS is the whole check, and this chunk's marks are
        # exactly those above the largest id before it.
        before = session.scalar(select(func.coalesce(func.max(ReminderMark.id), 0)))
        rows = due.subquery("due")
        session.execute(
            insert(ReminderMark).from_select(
                _MARK_COLUMNS,
                _mark_rows(plan, mark_kind, rows.c).where(
                    ~_marked(plan, mark_kind, rows.c.member_id, rows.c.key)
                ),
            )
        )
        mine = (
            select(ReminderMark.member_id, ReminderMark.key)
            .where(ReminderMark.id > before, ReminderMark.kind == mark_kind)
            .subquery("mine")
        )
        new = and_(mine.c.member_id == rows.c.member_id, mine.c.key == rows.c.key)
        session.execute(
            insert(DomainEvent).from_select(
                _EVENT_COLUMNS,
                _event_rows(session, plan, event_kind, rows.c, payload)
                .join(mine, new)
                .order_by(rows.c.member_id, rows.c.key),
            )
        )
        total, members = session.execute(
            select(func.count(), func.count(func.distinct(rows.c.member_id)))
        ).one()
        events, points = session.execute(
            select(func.count(), func.coalesce(func.sum(rows.c.points), 0)).select_from(
                rows.join(mine, new)
            )
        ).one()
    return _Counts(
        considered=int(members),
        events=int(events),
        skipped=int(total) - int(events),
        points=int(points),
    )


# --- the three jobs ---------------------------------------------------------------------------


def _local_midnight(day: date, timezone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def _expiring_chunk(session: Session, plan: _Plan, lo: int, hi: int, write: bool) -> _Counts:
    """Per member and local expiry day: the open, non-pending points expiring in the window."""
    _prepare(session)
    # Under a rolling policy a lot expires at its effective date, never before its own: the
    # own date still bounds the range, and a lot whose own date passed may yet be valid.
    expires = _effective_expiry(session, plan, lo, hi)
    # The lot range rides the partial index ix_lots_account_open (account_id, expires_at) WHERE
    # remaining > 0: one index range per chunk, whatever the program's size.
    open_lots = (
        select(
            Account.member_id,
            Account.available.label("balance"),
            _local_date(session, expires, plan.timezone).label("key"),
            Lot.remaining,
            expires.label("expires_at"),
        )
        .select_from(Lot)
        .join(Account, Account.id == Lot.account_id)
        .join(Member, Member.id == Account.member_id)
        .where(
            Lot.account_id > lo,
            Lot.account_id <= hi,
            Lot.remaining > 0,
            Lot.pending.is_(False),
            (expires if plan.rolling else Lot.expires_at) > plan.now,
            Lot.expires_at < plan.until,
            *([expires < plan.until] if plan.rolling else []),
            # The same range on accounts: read by primary key, never the whole table.
            Account.id > lo,
            Account.id <= hi,
            Account.program_id == plan.program_id,
            Member.status == "active",
        )
        .subquery("open_lots")
    )
    # Grouped over a subquery: the local-date expression, with its parameters, is computed once.
    due = select(
        open_lots.c.member_id,
        open_lots.c.key,
        func.max(open_lots.c.balance).label("balance"),
        func.sum(open_lots.c.remaining).label("points"),
        func.min(open_lots.c.expires_at).label("first_at"),
    ).group_by(open_lots.c.member_id, open_lots.c.key)

    def payload(rows: Any) -> dict[str, Any]:
        return {
            "program": _text(plan.program_code),
            "member_id": rows.member_id,
            "points": rows.points,
            "expires_at": _iso_instant(session, rows.first_at),
            "expiry_date": rows.key,
            "balance": rows.balance,
        }

    return _mark_and_emit(
        session,
        plan,
        mark_kind="expiring",
        event_kind="points.expiring",
        due=due,
        payload=payload,
        write=write,
    )


def _birthday_chunk(session: Session, plan: _Plan, lo: int, hi: int, write: bool) -> _Counts:
    """Each member of the chunk whose birthday it is: the rule's points, then the greeting.

    Few members a day have a birthday, so they go one by one through the rules service, which
    credits the program's birthday rule within its limit (event_claims) as the events API does.
    """
    assert plan.day is not None
    _prepare(session)
    days = [plan.day.strftime("%m-%d")]
    if plan.day.month == 2 and plan.day.day == 28 and not _is_leap(plan.day.year):
        days.append("02-29")  # born on 29 February: celebrated on the 28th in other years
    year = str(plan.day.year)
    rows = session.execute(
        select(Account.member_id, _marked(plan, "birthday", Account.member_id, _text(year)))
        .join(Member, Member.id == Account.member_id)
        .where(
            Account.program_id == plan.program_id,
            Account.id > lo,
            Account.id <= hi,
            Member.status == "active",
            Member.birthday.is_not(None),
            _month_day(session, Member.birthday).in_(days),
        )
        .order_by(Account.id)
    ).all()
    counts = _Counts(considered=len(rows))
    for member_id, already in rows:
        if already:
            counts.skipped += 1
        elif not write or _greet(session, plan, member_id, year, counts):
            counts.events += 1
        else:
            counts.skipped += 1
    return counts


def _greet(session: Session, plan: _Plan, member_id: int, year: str, counts: _Counts) -> bool:
    """Mark, credit and greet one member; False if another runner marked them first."""
    # The mark goes first: a concurrent run for another day of the same year (a manual run
    # with --at) waits here for the other transaction and then inserts nothing, so the points
    # and the greeting below happen once.
    claimed = session.execute(
        _insert_ignoring_duplicates(session, ReminderMark).values(
            program_id=plan.program_id,
            member_id=member_id,
            kind="birthday",
            key=year,
            at=plan.now,
        )
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return False
    points = _birthday_points(session, plan, member_id) if plan.has_rule else 0
    counts.points += points
    emit(
        session,
        kind="member.birthday",
        program_id=plan.program_id,
        member_id=member_id,
        payload={
            "program": plan.program_code,
            "member_id": member_id,
            "year": int(year),
            "points": points,
        },
        at=plan.now,
    )
    return True


def _birthday_points(session: Session, plan: _Plan, member_id: int) -> int:
    from patron.earning.events import record_event
    from patron.rules.events import EventRequest

    assert plan.day is not None
    program = session.get(Program, plan.program_id)
    assert program is not None
    today = plan.now.astimezone(ZoneInfo(plan.timezone)).date()
    # Late (the worker catching up a missed day): the birthday happened on its own day, which
    # decides the rule's period (the year) and the points' expiry.
    occurred_at = (
        plan.now
        if plan.day >= today
        else datetime.combine(plan.day, time(12), tzinfo=ZoneInfo(plan.timezone)).astimezone(UTC)
    )
    request = EventRequest(
        member=MemberRef(id=member_id), event="birthday", occurred_at=occurred_at
    )
    try:
        # A refusal (the rule's limit already used this year, a condition not met) undoes only
        # what record_event did; the greeting still goes out, with no points.
        with session.begin_nested():
            return record_event(session, program, request, actor=plan.actor, now=plan.now).points
    except PatronError as exc:
        log.info("birthday points for member %s not credited: %s", member_id, exc.code)
        return 0


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _statement_chunk(session: Session, plan: _Plan, lo: int, hi: int, write: bool) -> _Counts:
    """Each active account with a balance or any entry last month: last month's sums by kind
    (as the account's counters move: a refund's clawback counts against earned, a cancelled
    redemption against redeemed) and the next expiry."""
    assert plan.start is not None and plan.until is not None
    _prepare(session)
    reversed_entry = aliased(Entry)

    def total(condition: ColumnElement[bool], sign: int = 1) -> Any:
        return func.coalesce(func.sum(case((condition, Entry.points * sign), else_=0)), 0)

    reversing = Entry.kind == "reverse"
    sums = (
        select(
            Entry.account_id,
            total(or_(Entry.kind == "earn", and_(reversing, reversed_entry.kind == "earn"))).label(
                "earned"
            ),
            total(
                or_(Entry.kind == "redeem", and_(reversing, reversed_entry.kind == "redeem")), -1
            ).label("redeemed"),
            total(Entry.kind == "expire", -1).label("expired"),
            total(Entry.kind == "adjust").label("adjusted"),
        )
        .select_from(Entry)
        .outerjoin(reversed_entry, reversed_entry.id == Entry.reverses_entry_id)
        .where(
            Entry.account_id > lo,
            Entry.account_id <= hi,
            Entry.occurred_at >= plan.start,
            Entry.occurred_at < plan.until,
        )
        .group_by(Entry.account_id)
        .subquery("sums")
    )
    open_lots = (
        select(
            Lot.account_id,
            _local_date(session, Lot.expires_at, plan.timezone).label("day"),
            Lot.remaining,
        )
        .where(
            Lot.account_id > lo,
            Lot.account_id <= hi,
            Lot.remaining > 0,
            Lot.pending.is_(False),
            Lot.expires_at > plan.now,
        )
        .subquery("open_lots")
    )
    per_day = (
        select(
            open_lots.c.account_id,
            open_lots.c.day,
            func.sum(open_lots.c.remaining).label("points"),
            func.row_number()
            .over(partition_by=open_lots.c.account_id, order_by=open_lots.c.day)
            .label("n"),
        )
        .group_by(open_lots.c.account_id, open_lots.c.day)
        .subquery("per_day")
    )
    upcoming = select(per_day).where(per_day.c.n == 1).subquery("upcoming")
    due = (
        select(
            Account.member_id,
            _text(plan.key).label("key"),
            Account.available.label("balance"),
            func.coalesce(sums.c.earned, 0).label("earned"),
            func.coalesce(sums.c.redeemed, 0).label("redeemed"),
            func.coalesce(sums.c.expired, 0).label("expired"),
            func.coalesce(sums.c.adjusted, 0).label("adjusted"),
            func.coalesce(upcoming.c.points, 0).label("expiring_points"),
            upcoming.c.day.label("expiring_date"),
            literal(0, BigInteger).label("points"),
        )
        .join(Member, Member.id == Account.member_id)
        .outerjoin(sums, sums.c.account_id == Account.id)
        .outerjoin(upcoming, upcoming.c.account_id == Account.id)
        .where(
            Account.program_id == plan.program_id,
            Account.id > lo,
            Account.id <= hi,
            Member.status == "active",
            or_(
                Account.available != 0,
                Account.pending != 0,
                Account.debt != 0,
                sums.c.account_id.is_not(None),
            ),
        )
    )

    def payload(rows: Any) -> dict[str, Any]:
        return {
            "program": _text(plan.program_code),
            "member_id": rows.member_id,
            "month": rows.key,
            "balance": rows.balance,
            "earned": rows.earned,
            "redeemed": rows.redeemed,
            "expired": rows.expired,
            "adjusted": rows.adjusted,
            "expiring_points": rows.expiring_points,
            "expiring_date": rows.expiring_date,
        }

    return _mark_and_emit(
        session,
        plan,
        mark_kind="statement",
        event_kind="points.statement",
        due=due,
        payload=payload,
        write=write,
    )


# --- runs: chunks, the job_runs row, resumption -----------------------------------------------


def _chunk_end(session: Session, program_id: int, after: int, size: int) -> int | None:
    """The last account id of the next `size` accounts after `after`; None when none are left."""
    ids = (
        select(Account.id)
        .where(Account.program_id == program_id, Account.id > after)
        .order_by(Account.id)
        .limit(size)
        .subquery()
    )
    last = session.scalar(select(func.max(ids.c.id)))
    return int(last) if last is not None else None


def _run_row(session: Session, plan: _Plan, *, lock: bool, skip_locked: bool) -> JobRun | None:
    stmt = select(JobRun).where(
        JobRun.job == plan.job, JobRun.program_id == plan.program_id, JobRun.key == plan.key
    )
    if lock:
        stmt = stmt.with_for_update(skip_locked=skip_locked)
    return session.scalars(stmt).one_or_none()


def _start_run(session: Session, plan: _Plan) -> None:
    """The period's run row, unless a concurrent runner created it first."""
    session.execute(
        _insert_ignoring_duplicates(session, JobRun).values(
            job=plan.job,
            program_id=plan.program_id,
            key=plan.key,
            status="running",
            cursor=0,
            counts={},
            started_at=plan.now,
        )
    )


def _report(plan: _Plan, counts: _Counts, started: float, **flags: bool) -> JobReport:
    return JobReport(
        job=plan.job,
        program=plan.program_code,
        key=plan.key,
        considered=counts.considered,
        events=counts.events,
        skipped=counts.skipped,
        points=counts.points,
        chunks=counts.chunks,
        seconds=round(timer.perf_counter() - started, 3),
        **flags,
    )


def _run(
    db: Database,
    plan: _Plan,
    chunk: Chunk,
    *,
    dry_run: bool,
    batch_size: int | None,
    progress: Progress | None,
    skip_if_busy: bool,
) -> JobReport:
    started = timer.perf_counter()
    size = batch_size or get_settings().job_batch_size
    assert size > 0
    if dry_run:
        # One read-only transaction, all the chunks a real run would do, nothing written.
        counts = _Counts()
        with db.unit_of_work(readonly=True) as session:
            run = _run_row(session, plan, lock=False, skip_locked=False)
            if run is not None and run.status == "done":
                return _report(
                    plan, _Counts.from_json(run.counts), started, dry_run=True, already_done=True
                )
            last = 0
            while (upto := _chunk_end(session, plan.program_id, last, size)) is not None:
                counts.add(chunk(session, plan, last, upto, False))
                counts.chunks += 1
                last = upto
                if progress is not None:
                    progress(_report(plan, counts, started, dry_run=True))
        return _report(plan, counts, started, dry_run=True)

    with db.unit_of_work() as session:
        run = _run_row(session, plan, lock=False, skip_locked=False)
        if run is not None and run.status == "done":
            return _report(plan, _Counts.from_json(run.counts), started, already_done=True)
        if run is None:
            _start_run(session, plan)
    while True:
        with db.unit_of_work() as session:
            # Held to the end of the chunk: a second runner of this run waits (or, for the
            # worker, skips) and then continues from the cursor this chunk leaves.
            run = _run_row(session, plan, lock=True, skip_locked=skip_if_busy)
            if run is None:
                return _report(plan, _Counts(), started, busy=True)
            counts = _Counts.from_json(run.counts)
            if run.status == "done":  # finished by a concurrent runner meanwhile
                return _report(plan, counts, started, already_done=True)
            upto = _chunk_end(session, plan.program_id, run.cursor, size)
            if upto is None:
                run.status = "done"
                run.finished_at = plan.now
                audit.record(
                    session,
                    actor=plan.actor,
                    action=f"notifications.{plan.job}_job_done",
                    subject_type="program",
                    subject_id=plan.program_code,
                    program_id=plan.program_id,
                    at=plan.now,
                    after={"job": plan.job, "key": plan.key, **counts.to_json()},
                )
                return _report(plan, counts, started)
            counts.add(chunk(session, plan, run.cursor, upto, True))
            counts.chunks += 1
            run.cursor = upto
            run.counts = counts.to_json()
        if progress is not None:
            progress(_report(plan, counts, started))


def _plan(
    session: Session, job: str, program_code: str, now: datetime, actor: Actor
) -> tuple[_Plan, date]:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    program = get_program(session, program_code)
    today = now.astimezone(ZoneInfo(program.timezone)).date()
    plan = _Plan(
        job=job,
        program_id=program.id,
        program_code=program.code,
        timezone=program.timezone,
        key=today.isoformat(),
        now=now.astimezone(UTC),
        actor=actor,
        settings=notify_settings.load(session, program.id),
    )
    return plan, today


def run_expiring(
    db: Database,
    program_code: str,
    *,
    now: datetime,
    dry_run: bool = False,
    batch_size: int | None = None,
    actor: Actor = SYSTEM,
    progress: Progress | None = None,
    skip_if_busy: bool = False,
) -> JobReport:
    """points.expiring for every active member with open points expiring on a local day from
    today to today + expiring_days_before: one event per member and expiry day, ever."""
    with db.unit_of_work(readonly=True) as session:
        plan, today = _plan(session, "expiring", program_code, now, actor)
        found = rolling.policies(session)
        program_id = plan.program_id
        tiers = [code for (pid, code) in found.by_key if pid == program_id]
        if program_id in found.programs:
            plan.rolling = tuple(
                (code, r.rule if (r := found.of(program_id, code)) is not None else None)
                for code in tiers
            )
    last_day = today + timedelta(days=plan.settings.expiring_days_before)
    plan.until = _local_midnight(last_day + timedelta(days=1), plan.timezone)
    return _run(
        db,
        plan,
        _expiring_chunk,
        dry_run=dry_run,
        batch_size=batch_size,
        progress=progress,
        skip_if_busy=skip_if_busy,
    )


def run_birthdays(
    db: Database,
    program_code: str,
    *,
    now: datetime,
    dry_run: bool = False,
    batch_size: int | None = None,
    actor: Actor = SYSTEM,
    progress: Progress | None = None,
    skip_if_busy: bool = False,
    day: date | None = None,
) -> JobReport:
    """member.birthday (with the birthday rule's points) for every active member of the program
    whose birthday is today in the program's timezone (or `day`, a missed day caught up late);
    29 February birthdays are on 28 February in other years. Once per member and year."""
    with db.unit_of_work(readonly=True) as session:
        plan, today = _plan(session, "birthday", program_code, now, actor)
        plan.day = day or today
        plan.key = plan.day.isoformat()
        plan.has_rule = _has_birthday_rule(session, plan.program_id)
    if plan.day > today:
        raise ValueError("a birthday run cannot be for a day that has not come yet")
    return _run(
        db,
        plan,
        _birthday_chunk,
        dry_run=dry_run,
        batch_size=batch_size,
        progress=progress,
        skip_if_busy=skip_if_busy,
    )


def _has_birthday_rule(session: Session, program_id: int) -> bool:
    from patron.rules import service as rules
    from patron.rules.model import Event

    program = session.get(Program, program_id)
    assert program is not None
    try:
        doc = rules.document(session, program)
    except PatronError:  # no rule set yet
        return False
    return any(isinstance(r, Event) and r.enabled and r.event == "birthday" for r in doc.rules)


def run_statements(
    db: Database,
    program_code: str,
    *,
    now: datetime,
    dry_run: bool = False,
    batch_size: int | None = None,
    actor: Actor = SYSTEM,
    progress: Progress | None = None,
    skip_if_busy: bool = False,
) -> JobReport:
    """points.statement for last month (in the program's timezone) for every active member with
    a balance or any entry that month: once per member and month."""
    with db.unit_of_work(readonly=True) as session:
        plan, today = _plan(session, "statement", program_code, now, actor)
    this_month = today.replace(day=1)
    last_month = add_months(this_month, -1)
    plan.key = last_month.strftime("%Y-%m")
    plan.start = _local_midnight(last_month, plan.timezone)
    plan.until = _local_midnight(this_month, plan.timezone)
    return _run(
        db,
        plan,
        _statement_chunk,
        dry_run=dry_run,
        batch_size=batch_size,
        progress=progress,
        skip_if_busy=skip_if_busy,
    )


# --- the worker's schedule --------------------------------------------------------------------


@dataclass
class _Due:
    job: str
    program_code: str
    day: date | None = None


def _due_jobs(session: Session, now: datetime) -> list[_Due]:
    """What each program should run now: its local jobs_hour reached today, the period's run
    not done (expiring and birthday daily, statement on statement_day; birthdays and statements
    missed while no worker ran are caught up for CATCH_UP_DAYS)."""
    wanted: list[_Due] = []
    for program in session.scalars(select(Program).order_by(Program.id)):
        settings = notify_settings.load(session, program.id)
        local = now.astimezone(ZoneInfo(program.timezone))
        if local.hour < settings.jobs_hour:
            continue  # nothing before the program's hour, late runs included
        today = local.date()
        month = add_months(today.replace(day=1), -1).strftime("%Y-%m")
        runs = {
            (job, key): status
            for job, key, status in session.execute(
                select(JobRun.job, JobRun.key, JobRun.status)
                .where(JobRun.program_id == program.id)
                # Keys are ISO days and months ("2026-11" sorts before its days): since the
                # start of last month covers the statement's key and the catch-up week.
                .where(JobRun.key >= month)
            )
        }
        first_birthday_run = session.scalar(
            select(func.min(JobRun.key)).where(
                JobRun.program_id == program.id, JobRun.job == "birthday"
            )
        )
        if runs.get(("expiring", today.isoformat())) != "done":
            wanted.append(_Due("expiring", program.code))
        # Birthdays: today's, and missed days of the last week — only days after the job's
        # first run, so a new installation does not greet anyone late.
        for back in range(CATCH_UP_DAYS - 1, -1, -1):
            day = today - timedelta(days=back)
            status = runs.get(("birthday", day.isoformat()))
            if status == "done":
                continue
            never_ran_by_then = first_birthday_run is None or first_birthday_run >= day.isoformat()
            if day < today and status is None and never_ran_by_then:
                continue
            wanted.append(_Due("birthday", program.code, day))
        # Statements: on statement_day, or up to a week later if the worker missed it.
        late = (today - today.replace(day=settings.statement_day)).days
        if 0 <= late < CATCH_UP_DAYS and runs.get(("statement", month)) != "done":
            wanted.append(_Due("statement", program.code))
    return wanted


def run_due(db: Database, *, now: datetime) -> list[JobReport]:
    """Run every job that is due (see _due_jobs); what the worker calls every minute.

    Safe with several workers: each run's job_runs row decides, and a worker finding a run
    held by another skips it (that worker finishes it, or the next call resumes it). Returns
    the reports of the runs this call did work on; a failing run is logged, not raised, so one
    program cannot stop the others.
    """
    from patron.rewards.jobs import expire_coupons

    try:
        # Coupons past their date, every program (cheap when none are due: a partial index).
        expired = expire_coupons(db, now)
        if expired.coupons:
            log.info("expired %d unused coupons", expired.coupons)
    except Exception:
        log.exception("the coupon expiry failed")
    try:
        # The audit log's hash chain: seal what is older than a few seconds (a bounded step).
        from patron.audit.chain import seal_pending

        sealed = seal_pending(db, now=now, max_blocks=100)
        if sealed.records:
            log.info("sealed %d audit records", sealed.records)
    except Exception:
        log.exception("sealing the audit log failed")
    try:
        # Milestones: once an hour per program with active goals (patron.milestones.jobs).
        from patron.milestones.jobs import run_due as run_milestones

        run_milestones(db, now=now)
    except Exception:
        log.exception("the milestones job failed")
    with db.unit_of_work(readonly=True) as session:
        wanted = _due_jobs(session, now)
    reports: list[JobReport] = []
    for due in wanted:
        try:
            if due.job == "expiring":
                report = run_expiring(db, due.program_code, now=now, skip_if_busy=True)
            elif due.job == "birthday":
                report = run_birthdays(
                    db, due.program_code, now=now, day=due.day, skip_if_busy=True
                )
            else:
                report = run_statements(db, due.program_code, now=now, skip_if_busy=True)
        except Exception:
            log.exception("the %s job of program %s failed", due.job, due.program_code)
            continue
        if not report.busy and not report.already_done:
            log.info(
                "%s job of %s for %s: %d events, %d already made, %d members, %.1f s",
                report.job,
                report.program,
                report.key,
                report.events,
                report.skipped,
                report.considered,
                report.seconds,
            )
            reports.append(report)
    return reports
