"""The period evaluation: re-place every member of a program by what they earned in the window.

`evaluate` first takes a snapshot of the metric of every account it may change — one GROUP BY
over the program's window, up to watermarks read after every writer in flight has committed,
joined with the accounts — into a temporary table on the run's own connection. Then it walks
the accounts in chunks of consecutive ids; each chunk is one transaction in which the database
does the work, set-based, whatever its size:

1. the accounts it decides are locked in id order, before anything about them is read
   (PostgreSQL; SQLite's chunk holds the write lock from its start): those in the snapshot —
   which leaves out settled members (a tier that is not manual, the rank they earned, grace
   whole: nothing happens to them) —, those with rows written since, and those without a tier;
2. one INSERT … SELECT joins them with their metric — the snapshot's, or, for accounts with
   entries (purchases, refunds) written since the snapshot, a live GROUP BY — applies the policy
   with CASE expressions and keeps their decisions in a temporary table (on PostgreSQL the same
   statement counts the chunk's accounts, from the one read of them);
3. the counts for the summary come from one GROUP BY over the decisions;
4. the history rows and `tier.changed` domain events of the accounts that moved are inserted
   with INSERT … SELECT, and the accounts whose columns change are updated with one
   UPDATE … FROM — only those: how long a kept tier holds is the same for the whole period and
   is kept once, on the run's row (decision 0015, `service.held_until`);
5. the period's `TierEvaluationRun` records the last account id done and the counts so far.

So:

- a run that is interrupted resumes after the last batch it committed;
- a period already done is never evaluated again (the stored summary is returned);
- a dry run computes the same summary and writes nothing.

Policy (see docs): upgrades are always allowed; downgrades go to the tier earned (to_earned), at
most one level per period (one_level), or wait `grace_periods` evaluations first (grace). A manual
tier is kept until its end date (manual=keep) or re-evaluated like any other (reevaluate). A
member who moved after the window ended (an immediate upgrade in the new window) is not moved
down by it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    and_,
    case,
    delete,
    false,
    func,
    insert,
    literal,
    not_,
    null,
    or_,
    select,
    text,
    true,
    union_all,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import SYSTEM, Actor
from patron.clock import as_utc
from patron.db.engine import READONLY, Database
from patron.db.types import UTCDateTime
from patron.errors import Invalid, NotFound
from patron.events.models import DomainEvent
from patron.ledger.models import Account, Entry, Purchase, Refund
from patron.programs.models import Program
from patron.tiers import service
from patron.tiers.models import (
    TierChange,
    TierEvaluationRun,
    TierPolicy,
)
from patron.tiers.periods import Window, previous_window, window_at
from patron.tiers.schemas import EvaluationSummary

Progress = Callable[[int, int], None]  # (accounts done, accounts in total)
# Accounts per chunk (one transaction): large, since a chunk costs a few statements whatever
# its size; bounded, since its accounts stay locked until it commits.
DEFAULT_BATCH = 20_000
# How long taking the watermarks waits for writers in flight (PostgreSQL).
LOCK_TIMEOUT = "5s"
# Memory for the snapshot's GROUP BY over the program's window (PostgreSQL; one transaction),
# and for the run's temporary tables (its connection).
SNAPSHOT_WORK_MEM = "256MB"
SNAPSHOT_TEMP_BUFFERS = "256MB"


def as_of_instant(value: datetime | date | None, timezone: str, now: datetime) -> datetime:
    """A date means its local midnight in the program's timezone."""
    if value is None:
        return now
    if isinstance(value, datetime):
        return (
            as_utc(value)
            if value.tzinfo is not None
            else as_utc(value.replace(tzinfo=ZoneInfo(timezone)))
        )
    return as_utc(datetime.combine(value, time(0), tzinfo=ZoneInfo(timezone)))


def evaluation_window(policy: TierPolicy, timezone: str, as_of: datetime) -> Window:
    """The window that ended most recently at or before `as_of`; for rolling and lifetime
    windows (no period boundary) the one at `as_of`."""
    months = policy.rolling_months
    if policy.window in ("half_year", "year"):
        return previous_window(policy.window, as_of, timezone, rolling_months=months)
    return window_at(policy.window, as_of, timezone, rolling_months=months)


def period_key(policy: TierPolicy, window: Window, timezone: str, as_of: datetime) -> str:
    if policy.window == "lifetime":
        # One lifetime window, evaluated again on any later day.
        return f"L{as_of.astimezone(ZoneInfo(timezone)).date().isoformat()}"
    return window.key


@dataclass
class Counts:
    accounts: int = 0
    moves: Counter[str] = field(default_factory=Counter)
    kept_in_grace: int = 0
    kept_manual: int = 0
    manual_ended: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "accounts": self.accounts,
            "moves": dict(sorted(self.moves.items())),
            "kept_in_grace": self.kept_in_grace,
            "kept_manual": self.kept_manual,
            "manual_ended": self.manual_ended,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Counts:
        data = data or {}
        return cls(
            accounts=int(data.get("accounts", 0)),
            moves=Counter(data.get("moves", {})),
            kept_in_grace=int(data.get("kept_in_grace", 0)),
            kept_manual=int(data.get("kept_manual", 0)),
            manual_ended=int(data.get("manual_ended", 0)),
        )


@dataclass(frozen=True)
class Rules:
    """The parts of a program's tier policy the evaluation applies (a plain copy: the plan
    outlives the transaction that read it)."""

    metric: str
    window: str
    downgrade: str
    grace_periods: int
    manual: str


@dataclass(frozen=True)
class Tier:
    code: str
    rank: int
    threshold: int


@dataclass(frozen=True)
class Plan:
    """What one evaluation does: the program, its policy and tiers, the window."""

    program_id: int
    program_code: str
    timezone: str
    policy: Rules
    tiers: Sequence[Tier]
    window: Window
    period: str
    as_of: datetime
    since: datetime  # tier_since for moves: the period boundary
    valid: datetime | None  # until when a tier held after this evaluation holds (the run's)
    actor: Actor


def _label(code: str | None) -> str:
    return code or "none"


# The run's own temporary tables (on its own connection): the metric of every account as of the
# run's start, and one chunk's decisions, emptied after each chunk.
_TEMP = MetaData()
_METRIC = Table(  # indexed once filled (see _take_snapshot)
    "tier_metric",
    _TEMP,
    Column("account_id", BigInteger),
    Column("value", BigInteger),
    prefixes=["TEMPORARY"],
)
_DECIDED = Table(
    "tier_decided",
    _TEMP,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("member_id", BigInteger),
    Column("value", BigInteger),
    Column("from_tier", String(40)),
    Column("tier", String(40)),
    Column("tier_since", UTCDateTime),
    Column("tier_valid_until", UTCDateTime),
    Column("tier_manual", Boolean),
    Column("tier_manual_until", UTCDateTime),
    Column("tier_grace_left", Integer),
    Column("moved", Boolean),
    Column("changed", Boolean),
    Column("kept_manual", Boolean),
    Column("kept_in_grace", Boolean),
    Column("manual_ended", Boolean),
    prefixes=["TEMPORARY"],
)


@dataclass(frozen=True)
class Watermarks:
    """The largest ids at the run's start of the rows the metric is made of: every row at or
    below is committed and in the snapshot; a later row has a larger id."""

    entries: int = 0
    purchases: int = 0
    refunds: int = 0


def _watermarks(session: Session, plan: Plan, *, wait_for_writers: bool) -> Watermarks:
    """Read the watermarks (in their own short transaction).

    On PostgreSQL ids are drawn before commit, so "max(id) now" may sit above an id not yet
    committed. A SHARE lock on the tables waits for every writer in flight (each holds ROW
    EXCLUSIVE, taken before it draws an id) and is released at once — as the report roll-up's
    refresh does (decision 0007). SQLite serialises writers: max(id) is exact.
    """
    tables = ["entries"] if plan.policy.metric == "points" else ["purchases", "refunds"]
    if wait_for_writers and session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        session.execute(text(f"LOCK TABLE {', '.join(tables)} IN SHARE MODE"))
    top = lambda column: func.coalesce(func.max(column), 0)  # noqa: E731
    if plan.policy.metric == "points":
        return Watermarks(entries=int(session.scalar(select(top(Entry.id))) or 0))
    # Two statements: one SELECT of both aggregates would scan purchases × refunds.
    purchases = session.scalar(select(top(Purchase.id))) or 0
    refunds = session.scalar(select(top(Refund.id))) or 0
    return Watermarks(purchases=int(purchases), refunds=int(refunds))


def _metric(plan: Plan, *scope: ColumnElement[bool]) -> Select:
    """(account_id, value) of the accounts with activity in the window, within `scope`.

    points: qualifying points (earn entries and qualifying adjustments, less reversals);
    spend: amount bought in minor units, less what was refunded; visits: purchases not fully
    refunded — the figures of `metrics.metric_values`.
    """
    window = plan.window
    if plan.policy.metric == "points":
        stmt = select(Entry.account_id, func.sum(Entry.qualifying).label("value")).where(
            *scope, Entry.qualifying != 0, Entry.occurred_at >= window.start
        )
        if window.end is not None:
            stmt = stmt.where(Entry.occurred_at < window.end)
        return stmt.group_by(Entry.account_id)
    kept = Purchase.amount_minor - Purchase.refunded_minor
    value = func.sum(kept) if plan.policy.metric == "spend" else func.count()
    stmt = select(Purchase.account_id, value.label("value")).where(
        *scope, kept > 0, Purchase.occurred_at >= window.start
    )
    if window.end is not None:
        stmt = stmt.where(Purchase.occurred_at < window.end)
    return stmt.group_by(Purchase.account_id)


def _ranks(plan: Plan, tier: Any, value: Any) -> tuple[Any, Any]:
    """(the rank of the tier held, the rank `value` earns), -1 for none, as SQL."""
    tiers = sorted(plan.tiers, key=lambda t: t.rank)
    current = case({t.code: t.rank for t in tiers}, value=tier, else_=-1)
    earned = case(*[(value >= t.threshold, t.rank) for t in reversed(tiers)], else_=-1)
    return current, earned


def _settled(plan: Plan, tier: Any, manual: Any, grace_left: Any, value: Any) -> Any:
    """A member nothing happens to: a tier that is not manual, the rank they earned, their grace
    periods whole — no move, no grace used or restored, nothing to count."""
    current, earned = _ranks(plan, tier, value)
    grace_periods = literal(plan.policy.grace_periods, Integer)
    return and_(manual.is_(False), earned == current, grace_left == grace_periods)


def _take_snapshot(session: Session, plan: Plan, marks: Watermarks, after: int) -> None:
    """The metric over the rows up to the watermarks of every account after `after` that the
    evaluation may change: one pass over the program's window joined with its accounts, however
    many chunks follow.

    Settled members (most of them: see `_settled`) are left out, so the chunks neither lock nor
    decide them — unless rows written since make them count again (`_touched`). Accounts
    without a tier are kept whatever their figure (an account opened later has none and is not
    here: its figure is 0 or read live).
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"SET LOCAL work_mem = '{SNAPSHOT_WORK_MEM}'"))
    if plan.policy.metric == "points":
        upto = [Entry.program_id == plan.program_id, Entry.id <= marks.entries]
    else:
        upto = [Purchase.program_id == plan.program_id, Purchase.id <= marks.purchases]
    metric = _metric(plan, *upto).subquery("m")
    value = func.coalesce(metric.c.value, 0)
    settled = _settled(plan, Account.tier, Account.tier_manual, Account.tier_grace_left, value)
    unsettled = (
        select(Account.id, value)
        .select_from(Account)
        .outerjoin(metric, metric.c.account_id == Account.id)
        .where(
            Account.program_id == plan.program_id,
            Account.id > after,
            or_(Account.tier.is_(None), not_(settled)),
        )
    )
    session.execute(insert(_METRIC).from_select(["account_id", "value"], unsettled))
    # Built after the load: cheaper than keeping an index up to date row by row.
    session.execute(text(f"CREATE UNIQUE INDEX tier_metric_account ON {_METRIC.name} (account_id)"))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ANALYZE {_METRIC.name}"))


def _candidates(
    plan: Plan, marks: Watermarks, lo: int, hi: int, id_: Any = Account.id, tier: Any = Account.tier
) -> ColumnElement[bool]:
    """The accounts of (lo, hi] the chunk decides: those in the snapshot, those touched since,
    and those without a tier (one opened since the snapshot)."""
    in_snapshot = select(_METRIC.c.account_id).where(
        _METRIC.c.account_id > lo, _METRIC.c.account_id <= hi
    )
    touched = _touched(plan, marks, lo, hi).subquery("touched_ids")
    return or_(
        tier.is_(None),
        id_.in_(in_snapshot),
        id_.in_(select(touched.c.account_id)),
    )


def _chunk_accounts(plan: Plan, lo: int, hi: int) -> Select:
    """The program's accounts in (lo, hi], with the columns the policy reads."""
    return select(
        Account.id,
        Account.member_id,
        Account.tier,
        Account.tier_since,
        Account.tier_valid_until,
        Account.tier_manual,
        Account.tier_manual_until,
        Account.tier_grace_left,
    ).where(Account.program_id == plan.program_id, Account.id > lo, Account.id <= hi)


def _touched(plan: Plan, marks: Watermarks, lo: int, hi: int) -> Select:
    """Accounts in (lo, hi] with rows written since the snapshot: their metric is read live."""
    if plan.policy.metric == "points":
        return select(Entry.account_id).where(
            Entry.id > marks.entries, Entry.account_id > lo, Entry.account_id <= hi
        )
    bought = select(Purchase.account_id).where(
        Purchase.id > marks.purchases, Purchase.account_id > lo, Purchase.account_id <= hi
    )
    refunded = (
        select(Purchase.account_id)
        .join(Refund, Refund.purchase_id == Purchase.id)
        .where(Refund.id > marks.refunds, Purchase.account_id > lo, Purchase.account_id <= hi)
    )
    return union_all(bought, refunded)  # type: ignore[return-value]


def _chunk_metric(plan: Plan, marks: Watermarks, lo: int, hi: int) -> Any:
    """The metric of the accounts in (lo, hi] now: the snapshot's, or a live GROUP BY for the
    accounts touched since it was taken."""
    touched = _touched(plan, marks, lo, hi).subquery("touched")
    account_id = Entry.account_id if plan.policy.metric == "points" else Purchase.account_id
    stored = select(_METRIC.c.account_id, _METRIC.c.value).where(
        _METRIC.c.account_id > lo,
        _METRIC.c.account_id <= hi,
        _METRIC.c.account_id.not_in(select(touched.c.account_id)),
    )
    live = _metric(plan, account_id.in_(select(touched.c.account_id)))
    return union_all(stored, live).subquery("metric")


def _decisions(plan: Plan, marks: Watermarks, lo: int, hi: int, chunk: Any) -> Select:
    """The policy (see the module docstring) for the accounts of `chunk` (`_chunk_accounts`:
    those in (lo, hi]) that may change or count in the summary (`_candidates`), in SQL.

    Three levels: the account with its metric and ranks; the rank and grace it ends with; the
    columns it ends with.
    """
    policy, tiers = plan.policy, sorted(plan.tiers, key=lambda t: t.rank)
    metric = _chunk_metric(plan, marks, lo, hi)
    value = func.coalesce(metric.c.value, 0)
    c = chunk.c
    a = (
        select(
            c.id,
            c.member_id,
            c.tier,
            c.tier_since,
            c.tier_valid_until,
            c.tier_manual,
            c.tier_manual_until,
            c.tier_grace_left,
            value.label("value"),
        )
        .select_from(chunk)
        .outerjoin(metric, metric.c.account_id == c.id)
        .where(_candidates(plan, marks, lo, hi, c.id, c.tier))
        .subquery("a")
    )

    current, earned = _ranks(plan, a.c.tier, a.c.value)
    manual = a.c.tier_manual.is_(True)
    if policy.manual == "keep":
        open_ended = or_(a.c.tier_manual_until.is_(None), a.c.tier_manual_until > plan.as_of)
        kept_manual: ColumnElement[bool] = and_(manual, open_ended, earned <= current)
        manual_ended: ColumnElement[bool] = and_(manual, not_(open_ended))
    else:
        kept_manual = manual_ended = false()
    # Moved after the window ended (an immediate upgrade in the new window): only upgrades.
    recent: ColumnElement[bool] = (
        and_(not_(manual), a.c.tier_since.is_not(None), a.c.tier_since >= plan.window.end)
        if plan.window.end is not None
        else false()
    )
    up = earned >= current
    grace_periods = literal(policy.grace_periods, Integer)
    to_rank: list[tuple[ColumnElement[bool], Any]] = [(up, earned), (recent, current)]
    to_grace: list[tuple[ColumnElement[bool], Any]] = [(up, grace_periods)]
    to_grace.append((recent, a.c.tier_grace_left))
    in_grace: ColumnElement[bool] = false()
    if policy.downgrade == "one_level":
        to_rank.append((true(), current - 1))
    elif policy.downgrade == "grace":
        in_grace = a.c.tier_grace_left > 0
        to_rank.append((in_grace, current))
        to_grace.append((in_grace, a.c.tier_grace_left - 1))
        in_grace = and_(not_(up), not_(recent), in_grace)
    # Settled members (a candidate may be one: touched, or without a tier) are left out before
    # the policy's expressions are worked out.
    settled = _settled(plan, a.c.tier, a.c.tier_manual, a.c.tier_grace_left, a.c.value)
    ranked = (
        select(
            a,
            current.label("current_rank"),
            case(*to_rank, else_=earned).label("target_rank"),
            case(*to_grace, else_=grace_periods).label("grace"),
            kept_manual.label("kept_manual"),
            and_(in_grace, not_(kept_manual)).label("kept_in_grace"),
            manual_ended.label("manual_ended"),
        )
        .where(not_(settled))
        # OFFSET 0 keeps each level a subquery of its own: flattened, every use of a level's
        # column would repeat its whole CASE expression (the target rank in each of the
        # placed columns), a few times the work per account and per plan.
        .offset(0)
        .subquery("ranked")
    )

    r = ranked.c
    code = case({t.rank: t.code for t in tiers}, value=r.target_rank, else_=null())
    # The same rank keeps the code, even one no longer defined (it ranks -1).
    target = case((r.target_rank == r.current_rank, r.tier), else_=code)
    moved = and_(not_(r.kept_manual), target.is_distinct_from(r.tier))
    reset = or_(moved, r.manual_ended)
    placed = (
        select(
            r.id,
            r.member_id,
            r.value,
            r.tier.label("from_tier"),
            case((r.kept_manual, r.tier), else_=target).label("tier"),
            case((moved, literal(plan.since, UTCDateTime)), else_=r.tier_since).label("tier_since"),
            case((reset, literal(plan.valid, UTCDateTime)), else_=r.tier_valid_until).label(
                "tier_valid_until"
            ),
            case((reset, false()), else_=r.tier_manual).label("tier_manual"),
            case((reset, null()), else_=r.tier_manual_until).label("tier_manual_until"),
            case((r.kept_manual, r.tier_grace_left), else_=r.grace).label("tier_grace_left"),
            moved.label("moved"),
            r.kept_manual,
            r.kept_in_grace,
            r.manual_ended,
            r.tier_grace_left.label("grace_before"),
        )
        .offset(0)
        .subquery("placed")
    )

    p = placed.c
    valid_until: Any = p.tier_valid_until
    if plan.valid is not None:
        # Everyone who keeps a tier holds it until the end of the current window. The run's
        # row says so once for the period (`service.held_until`); an account written anyway
        # gets it too, so its own column agrees with what readers show.
        valid = literal(plan.valid, UTCDateTime)
        extend = and_(
            p.tier.is_not(None),
            p.tier_manual.is_(False),
            or_(p.tier_valid_until.is_(None), p.tier_valid_until < valid),
        )
        valid_until = case((extend, valid), else_=p.tier_valid_until)
    # Only a move, a manual tier ended or a grace period used or restored writes the account.
    changed = or_(p.moved, p.manual_ended, p.tier_grace_left != p.grace_before)
    return select(
        p.id,
        p.member_id,
        p.value,
        p.from_tier,
        p.tier,
        p.tier_since,
        valid_until.label("tier_valid_until"),
        p.tier_manual,
        p.tier_manual_until,
        p.tier_grace_left,
        p.moved,
        changed.label("changed"),
        p.kept_manual,
        p.kept_in_grace,
        p.manual_ended,
    )


def _chunk_ends(session: Session, program_id: int, after: int, size: int) -> list[int]:
    """The last account id of every `size` accounts after `after`, in one pass."""
    numbered = (
        select(Account.id, func.row_number().over(order_by=Account.id).label("n"))
        .where(Account.program_id == program_id, Account.id > after)
        .subquery()
    )
    return list(
        session.scalars(
            select(numbered.c.id).where(numbered.c.n % size == 0).order_by(numbered.c.id)
        )
    )


def _next_chunk(session: Session, program_id: int, ends: list[int], after: int) -> int | None:
    """Where the chunk after `after` ends: the next precomputed end, then the program's last
    account (which catches accounts opened since the ends were computed); None when done."""
    index = bisect_right(ends, after)
    if index < len(ends):
        return ends[index]
    last = session.scalar(
        select(func.max(Account.id)).where(Account.program_id == program_id, Account.id > after)
    )
    return int(last) if last is not None else None


def _lock_chunk(session: Session, plan: Plan, marks: Watermarks, lo: int, hi: int) -> None:
    """Lock the accounts the chunk decides (`_candidates`) in id order, the order every
    multi-account writer uses, before anything about them is read: a till's immediate upgrade
    either committed before (and is seen) or waits until the chunk commits. Settled members are
    neither locked nor written (locking a row writes it on PostgreSQL). SQLite needs no lock:
    the chunk's transaction began IMMEDIATE, so no other writer runs until it commits."""
    if session.get_bind().dialect.name != "postgresql":
        return
    locked = (
        select(Account.id)
        .where(
            Account.program_id == plan.program_id,
            Account.id > lo,
            Account.id <= hi,
            _candidates(plan, marks, lo, hi),
        )
        .order_by(Account.id)
        .with_for_update()
        .subquery()
    )
    session.execute(select(func.count()).select_from(locked))


def _chunk(
    session: Session,
    plan: Plan,
    marks: Watermarks,
    lo: int,
    hi: int,
    counts: Counts,
    *,
    write: bool,
) -> None:
    """Decide the accounts in (lo, hi] that may change or count, in one statement; then write
    what changed."""
    if write:
        _lock_chunk(session, plan, marks, lo, hi)
    counts.accounts += _decide(session, plan, marks, lo, hi)
    d = _DECIDED.c
    yes = lambda flag: func.sum(case((flag.is_(True), 1), else_=0))  # noqa: E731
    for from_tier, to_tier, moved, n, kept_manual, kept_in_grace, manual_ended in session.execute(
        select(
            d.from_tier,
            d.tier,
            d.moved,
            func.count(),
            yes(d.kept_manual),
            yes(d.kept_in_grace),
            yes(d.manual_ended),
        ).group_by(d.from_tier, d.tier, d.moved)
    ):
        counts.kept_manual += int(kept_manual or 0)
        counts.kept_in_grace += int(kept_in_grace or 0)
        counts.manual_ended += int(manual_ended or 0)
        if moved:
            counts.moves[f"{_label(from_tier)}→{_label(to_tier)}"] += n
    if write:
        _write(session, plan)
    session.execute(delete(_DECIDED))


def _decide(session: Session, plan: Plan, marks: Watermarks, lo: int, hi: int) -> int:
    """Keep the decisions about the accounts in (lo, hi] in `_DECIDED`; how many accounts the
    chunk has. On PostgreSQL one statement reads the chunk's accounts once for both."""
    columns = [c.name for c in _DECIDED.columns]
    if session.get_bind().dialect.name == "postgresql":
        shared = _chunk_accounts(plan, lo, hi).cte("chunk")
        decided = insert(_DECIDED).from_select(columns, _decisions(plan, marks, lo, hi, shared))
        counted = select(func.count()).select_from(shared).add_cte(decided.cte("decided"))
        return int(session.scalar(counted) or 0)
    chunk = _chunk_accounts(plan, lo, hi).subquery("chunk")
    session.execute(insert(_DECIDED).from_select(columns, _decisions(plan, marks, lo, hi, chunk)))
    return int(session.scalar(select(func.count()).select_from(chunk)) or 0)


def _write(session: Session, plan: Plan) -> None:
    d = _DECIDED.c
    moves = select(_DECIDED).where(d.moved.is_(True)).order_by(d.id).subquery("moves")
    m = moves.c
    reason = case((m.manual_ended.is_(True), "manual_ended"), else_="period_evaluation")
    at = literal(plan.since, UTCDateTime)
    session.execute(
        insert(TierChange).from_select(
            [
                "account_id",
                "program_id",
                "from_tier",
                "to_tier",
                "at",
                "reason",
                "actor",
                "period",
                "metric_value",
            ],
            select(
                m.id,
                literal(plan.program_id, BigInteger),
                m.from_tier,
                m.tier,
                at,
                reason,
                literal(str(plan.actor), String),
                literal(plan.period, String),
                m.value,
            ),
        )
    )
    json_object = (
        func.jsonb_build_object
        if session.get_bind().dialect.name == "postgresql"
        else func.json_object
    )
    text_ = lambda value: literal(value, String)  # noqa: E731
    session.execute(
        insert(DomainEvent).from_select(
            ["program_id", "member_id", "kind", "at", "dispatched", "payload"],
            select(
                literal(plan.program_id, BigInteger),
                m.member_id,
                text_("tier.changed"),
                at,
                false(),
                json_object(
                    text_("program"),
                    text_(plan.program_code),
                    text_("member_id"),
                    m.member_id,
                    text_("account_id"),
                    m.id,
                    text_("from"),
                    m.from_tier,
                    text_("to"),
                    m.tier,
                    text_("reason"),
                    reason,
                    text_("period"),
                    text_(plan.period),
                    text_("at"),
                    text_(plan.since.isoformat()),
                ),
            ),
        )
    )
    session.execute(
        update(Account)
        .where(Account.id == d.id, d.changed.is_(True))
        .values(
            tier=d.tier,
            tier_since=d.tier_since,
            tier_valid_until=d.tier_valid_until,
            tier_manual=d.tier_manual,
            tier_manual_until=d.tier_manual_until,
            tier_grace_left=d.tier_grace_left,
        )
        .execution_options(synchronize_session=False)
    )


def _plan(session: Session, program: Program, as_of: datetime, actor: Actor) -> Plan:
    policy = service.get_policy(session, program.id)
    tiers = service.definitions(session, program.id)
    if policy is None or not tiers:
        raise NotFound(
            f"program {program.code} has no tiers; set them up first", code="tiers_not_configured"
        )
    window = evaluation_window(policy, program.timezone, as_of)
    since = window.end if policy.window in ("half_year", "year") and window.end else as_of
    return Plan(
        program_id=program.id,
        program_code=program.code,
        timezone=program.timezone,
        policy=Rules(
            metric=policy.metric,
            window=policy.window,
            downgrade=policy.downgrade,
            grace_periods=policy.grace_periods,
            manual=policy.manual,
        ),
        tiers=[Tier(code=t.code, rank=t.rank, threshold=t.threshold) for t in tiers],
        window=window,
        period=period_key(policy, window, program.timezone, as_of),
        as_of=as_of,
        since=since,
        valid=service.valid_until(policy, program.timezone, window),
        actor=actor,
    )


def _summary(
    plan: Plan, counts: Counts, *, dry_run: bool, status: str, already_done: bool = False
) -> EvaluationSummary:
    return EvaluationSummary(
        program=plan.program_code,
        period=plan.period,
        window_start=plan.window.start,
        window_end=plan.window.end,
        as_of=plan.as_of,
        dry_run=dry_run,
        status=status,
        already_done=already_done,
        accounts=counts.accounts,
        moves=dict(sorted(counts.moves.items())),
        kept_in_grace=counts.kept_in_grace,
        kept_manual=counts.kept_manual,
        manual_ended=counts.manual_ended,
    )


def _start_run(session: Session, plan: Plan, started_at: datetime) -> None:
    """The period's run row, unless a concurrent runner created it first."""
    values = {
        "program_id": plan.program_id,
        "period": plan.period,
        "status": "running",
        "last_account_id": 0,
        "moves": {},
        "valid_until": plan.valid,
        "started_at": started_at,
    }
    keys = ["program_id", "period"]
    if session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        stmt: Any = postgresql.insert(TierEvaluationRun).on_conflict_do_nothing(index_elements=keys)
    else:
        from sqlalchemy.dialects import sqlite

        stmt = sqlite.insert(TierEvaluationRun).on_conflict_do_nothing(index_elements=keys)
    session.execute(stmt.values(**values))


def _run_row(session: Session, plan: Plan, *, lock: bool) -> TierEvaluationRun | None:
    stmt = select(TierEvaluationRun).where(
        TierEvaluationRun.program_id == plan.program_id, TierEvaluationRun.period == plan.period
    )
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.scalars(stmt).one_or_none()


def _remaining(session: Session, program_id: int, after: int) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(Account)
            .where(Account.program_id == program_id, Account.id > after)
        )
        or 0
    )


def evaluate(
    db: Database,
    program_code: str,
    as_of: datetime,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
    progress: Progress | None = None,
    actor: Actor = SYSTEM,
    now: datetime | None = None,
) -> EvaluationSummary:
    """Evaluate the program's last ended window for every account (see the module docstring)."""
    from patron.programs.service import get_program

    assert batch_size > 0
    if now is not None and as_of > now:
        # A future as_of would close a window that has not ended, and mark it done.
        raise Invalid("as_of is in the future", code="as_of_in_future")
    with db.unit_of_work(readonly=dry_run) as session:
        program = get_program(session, program_code)
        plan = _plan(session, program, as_of, actor)
        run = _run_row(session, plan, lock=False)
        if run is not None and run.status == "done":
            return _summary(
                plan, Counts.from_json(run.moves), dry_run=dry_run, status="done", already_done=True
            )
        last = run.last_account_id if run is not None else 0
        counts = Counts.from_json(run.moves if run is not None else None)
        total = counts.accounts + _remaining(session, plan.program_id, last)
        if run is None and not dry_run:
            _start_run(session, plan, now or as_of)

    with _own_connection(db, readonly=dry_run) as unit:
        with unit() as session:
            marks = _watermarks(session, plan, wait_for_writers=not dry_run)
        with unit() as session:
            _take_snapshot(session, plan, marks, last)
            ends = _chunk_ends(session, plan.program_id, last, batch_size)
        if dry_run:
            with unit() as session:
                while True:
                    upto = _next_chunk(session, plan.program_id, ends, last)
                    if upto is None:
                        return _summary(plan, counts, dry_run=True, status="done")
                    _chunk(session, plan, marks, last, upto, counts, write=False)
                    last = upto
                    if progress is not None:
                        progress(counts.accounts, total)
        while True:
            with unit() as session:
                run = _run_row(session, plan, lock=True)
                assert run is not None
                counts = Counts.from_json(run.moves)
                if run.status == "done":  # finished by a concurrent runner meanwhile
                    return _summary(plan, counts, dry_run=False, status="done", already_done=True)
                last = run.last_account_id
                if run.valid_until is None and plan.valid is not None:
                    # A run started before migration 0014 wrote the validity to the accounts
                    # it has done; from here on the run's row holds it.
                    run.valid_until = plan.valid
                upto = _next_chunk(session, plan.program_id, ends, last)
                if upto is None:
                    run.status = "done"
                    run.finished_at = now or as_of
                    summary = _summary(plan, counts, dry_run=False, status="done")
                    audit.record(
                        session,
                        actor=actor,
                        action="tiers.evaluated",
                        subject_type="program",
                        subject_id=plan.program_code,
                        program_id=plan.program_id,
                        at=now or as_of,
                        after=summary.model_dump(mode="json"),
                    )
                    return summary
                _chunk(session, plan, marks, last, upto, counts, write=True)
                run.last_account_id = upto
                run.moves = counts.to_json()
            if progress is not None:
                progress(counts.accounts, total)


@contextmanager
def _own_connection(db: Database, *, readonly: bool) -> Iterator[Callable[[], Any]]:
    """A connection held for the whole run, and a unit of work on it for each transaction.

    Its temporary tables (the metric snapshot, a chunk's decisions) outlive each chunk's
    transaction; they are dropped when the run ends, before the connection goes back to the pool.
    """
    engine = db.engine.execution_options(**{READONLY: True}) if readonly else db.engine
    with engine.connect() as conn:

        @contextmanager
        def unit() -> Iterator[Session]:
            with Session(bind=conn, expire_on_commit=False) as session, session.begin():
                yield session

        def drop() -> None:
            with unit() as session:
                _TEMP.drop_all(session.connection(), checkfirst=True)

        if conn.dialect.name == "postgresql":
            # Room for the snapshot in memory (8 MB by default); PostgreSQL refuses the change
            # once a session has used temporary tables, as a pooled connection may have.
            try:
                with unit() as session:
                    session.execute(text(f"SET temp_buffers = '{SNAPSHOT_TEMP_BUFFERS}'"))
            except DBAPIError:
                pass
        drop()
        with unit() as session:
            _TEMP.create_all(session.connection())
        try:
            yield unit
        finally:
            if not conn.closed and not conn.invalidated:
                drop()
