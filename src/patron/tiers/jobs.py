"""The period evaluation: re-place every member of a program by what they earned in the window.

`evaluate` walks the program's accounts in batches of ids; each batch is one transaction that
locks its accounts, reads their metric with one GROUP BY (`metrics.metric_values`), applies the
policy, writes the changed accounts with one executemany UPDATE, their history rows and domain
events, and records its progress in the period's `TierEvaluationRun`. So:

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

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import SYSTEM, Actor
from patron.clock import as_utc
from patron.db.engine import Database
from patron.errors import Invalid, NotFound
from patron.ledger.models import Account
from patron.ledger.service import insert_ignore
from patron.programs.models import Program
from patron.tiers import service
from patron.tiers.metrics import metric_values, qualify
from patron.tiers.models import (
    DomainEvent,
    TierChange,
    TierDefinition,
    TierEvaluationRun,
    TierPolicy,
)
from patron.tiers.periods import Window, previous_window, window_at
from patron.tiers.schemas import EvaluationSummary

Progress = Callable[[int, int], None]  # (accounts done, accounts in total)
DEFAULT_BATCH = 1000


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
class Plan:
    """What one evaluation does: the program, its policy and tiers, the window."""

    program_id: int
    program_code: str
    timezone: str
    policy: TierPolicy
    tiers: Sequence[TierDefinition]
    window: Window
    period: str
    as_of: datetime
    since: datetime  # tier_since for moves: the period boundary
    valid: datetime | None  # tier_valid_until for tiers held after this evaluation
    actor: Actor


def _label(code: str | None) -> str:
    return code or "none"


def _decide(
    plan: Plan,
    row: Any,
    value: int,
    counts: Counts,
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """The account's new tier columns and history row, or None when nothing changes."""
    policy, tiers = plan.policy, plan.tiers
    current_rank = service.rank_of(tiers, row.tier)
    earned = qualify(tiers, value)
    earned_rank = earned.rank if earned is not None else -1
    manual_ended = False
    if row.tier_manual and policy.manual == "keep":
        until = as_utc(row.tier_manual_until) if row.tier_manual_until is not None else None
        if until is None or until > plan.as_of:
            if earned_rank <= current_rank:
                counts.kept_manual += 1
                return None
        else:
            manual_ended = True
    # Moved after the window ended (an immediate upgrade in the new window): only upgrades.
    recent = (
        not row.tier_manual
        and row.tier_since is not None
        and plan.window.end is not None
        and as_utc(row.tier_since) >= plan.window.end
    )
    grace = policy.grace_periods
    if earned_rank >= current_rank:
        target_rank = earned_rank
    elif recent:
        target_rank = current_rank
        grace = row.tier_grace_left
    elif policy.downgrade == "one_level":
        target_rank = current_rank - 1
    elif policy.downgrade == "grace" and row.tier_grace_left > 0:
        target_rank = current_rank
        grace = row.tier_grace_left - 1
        counts.kept_in_grace += 1
    else:
        target_rank = earned_rank
    target = next((t.code for t in tiers if t.rank == target_rank), None)
    if target_rank == current_rank:
        target = row.tier  # also keeps a code no longer defined that ranks -1

    moved = target != row.tier
    if manual_ended:
        counts.manual_ended += 1
    if not moved and not manual_ended and grace == row.tier_grace_left:
        return None
    values = {
        "id": row.id,
        "tier": target,
        "tier_since": plan.since if moved else row.tier_since,
        "tier_valid_until": plan.valid if moved or manual_ended else row.tier_valid_until,
        "tier_manual": False if moved or manual_ended else row.tier_manual,
        "tier_manual_until": None if moved or manual_ended else row.tier_manual_until,
        "tier_grace_left": grace,
    }
    if not moved:
        return values, None
    counts.moves[f"{_label(row.tier)}→{_label(target)}"] += 1
    history = {
        "account_id": row.id,
        "member_id": row.member_id,
        "from_tier": row.tier,
        "to_tier": target,
        "reason": "manual_ended" if manual_ended else "period_evaluation",
        "metric_value": value,
    }
    return values, history


def _account_ids(session: Session, program_id: int, after: int, limit: int) -> list[int]:
    return list(
        session.scalars(
            select(Account.id)
            .where(Account.program_id == program_id, Account.id > after)
            .order_by(Account.id)
            .limit(limit)
        )
    )


def _batch(session: Session, plan: Plan, ids: list[int], counts: Counts, *, write: bool) -> None:
    lo, hi = ids[0] - 1, ids[-1]
    stmt = (
        select(
            Account.id,
            Account.member_id,
            Account.tier,
            Account.tier_since,
            Account.tier_valid_until,
            Account.tier_manual,
            Account.tier_manual_until,
            Account.tier_grace_left,
        )
        .where(Account.id.in_(ids))
        .order_by(Account.id)
    )
    # The lock keeps an immediate upgrade from slipping between this read and the write.
    rows = session.execute(stmt.with_for_update() if write else stmt).all()
    values = metric_values(
        session,
        program_id=plan.program_id,
        metric=plan.policy.metric,
        window=plan.window,
        account_range=(lo, hi),
    )
    updates: list[dict[str, Any]] = []
    history: list[dict[str, Any]] = []
    for row in rows:
        counts.accounts += 1
        decided = _decide(plan, row, values.get(row.id, 0), counts)
        if decided is None:
            continue
        updates.append(decided[0])
        if decided[1] is not None:
            history.append(decided[1])
    if not write:
        return
    if updates:
        session.execute(update(Account), updates)
    if plan.valid is not None:
        # Everyone who keeps a tier holds it until the end of the current window.
        session.execute(
            update(Account)
            .where(
                Account.program_id == plan.program_id,
                Account.id > lo,
                Account.id <= hi,
                Account.tier.is_not(None),
                Account.tier_manual.is_(False),
                or_(Account.tier_valid_until.is_(None), Account.tier_valid_until < plan.valid),
            )
            .values(tier_valid_until=plan.valid)
            .execution_options(synchronize_session=False)
        )
    if history:
        session.execute(
            insert(TierChange),
            [
                {
                    "account_id": h["account_id"],
                    "program_id": plan.program_id,
                    "from_tier": h["from_tier"],
                    "to_tier": h["to_tier"],
                    "at": plan.since,
                    "reason": h["reason"],
                    "note": None,
                    "actor": str(plan.actor),
                    "period": plan.period,
                    "metric_value": h["metric_value"],
                }
                for h in history
            ],
        )
        session.execute(
            insert(DomainEvent),
            [
                {
                    "program_id": plan.program_id,
                    "kind": "tier.changed",
                    "at": plan.since,
                    "delivered": False,
                    "payload": {
                        "program": plan.program_code,
                        "member_id": h["member_id"],
                        "account_id": h["account_id"],
                        "from": h["from_tier"],
                        "to": h["to_tier"],
                        "reason": h["reason"],
                        "period": plan.period,
                        "at": plan.since.isoformat(),
                    },
                }
                for h in history
            ],
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
        policy=policy,
        tiers=tiers,
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
        if dry_run:
            while ids := _account_ids(session, plan.program_id, last, batch_size):
                _batch(session, plan, ids, counts, write=False)
                last = ids[-1]
                if progress is not None:
                    progress(counts.accounts, total)
            return _summary(plan, counts, dry_run=True, status="done")
        if run is None:
            insert_ignore(
                session,
                TierEvaluationRun,
                {
                    "program_id": plan.program_id,
                    "period": plan.period,
                    "status": "running",
                    "last_account_id": 0,
                    "moves": {},
                    "started_at": now or as_of,
                },
                ["program_id", "period"],
            )

    while True:
        with db.unit_of_work() as session:
            run = _run_row(session, plan, lock=True)
            assert run is not None
            counts = Counts.from_json(run.moves)
            if run.status == "done":  # finished by a concurrent runner meanwhile
                return _summary(plan, counts, dry_run=False, status="done", already_done=True)
            ids = _account_ids(session, plan.program_id, run.last_account_id, batch_size)
            if not ids:
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
            _batch(session, plan, ids, counts, write=True)
            run.last_account_id = ids[-1]
            run.moves = counts.to_json()
        if progress is not None:
            progress(counts.accounts, total)
