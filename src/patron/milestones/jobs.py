"""The evaluation job: who reached which goal, awarded once.

Per goal and period, ONE statement inserts the achievements of every member whose figure
(`evaluate.figure`, a GROUP BY over purchases or entries) reaches the target, and writes their
`milestone.achieved` events to the outbox in the same transaction:

- PostgreSQL: `WITH won AS (INSERT … SELECT … ON CONFLICT DO NOTHING RETURNING …) INSERT INTO
  domain_events SELECT … FROM won` — the unique key (milestone, member, period) decides, so two
  runs at once (two workers, the CLI beside the worker) award each achievement once: the second
  insert waits for the first's commit and then does nothing for that row.
- SQLite: the transaction holds the only write lock, so NOT EXISTS is the whole check; the new
  rows are those above the largest id before.

A goal with a reward (points and/or a coupon) goes in chunks of `CHUNK` new achievers per
transaction: each is credited through the ledger's own adjustment (`patron.sales.pipeline.adjust`:
planner, applier, points.adjusted event, audit) and its coupon issued through
`patron.rewards.redeem.bulk_issue`, in the transaction that inserts its achievement.

Nothing here runs inside a sale: the worker runs it once an hour per program (`run_due`, from
the scheduled jobs of patron.notify.jobs) and `patron milestones run` any time.
"""

from __future__ import annotations

import logging
import time as timer
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Boolean,
    String,
    and_,
    exists,
    func,
    insert,
    literal,
    null,
    select,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import SYSTEM, Actor
from patron.db.engine import Database
from patron.db.job_runs import JobRun
from patron.db.types import UTCDateTime
from patron.errors import PatronError
from patron.events.models import DomainEvent
from patron.events.outbox import iso_utc
from patron.ledger.models import Account
from patron.members.models import Member
from patron.milestones import evaluate
from patron.milestones.models import Milestone, MilestoneAchievement
from patron.milestones.schemas import RunItem, RunOut
from patron.programs.models import Program

log = logging.getLogger("patron.milestones")

CHUNK = 500  # new achievers per transaction for a goal with a reward
JOB = "milestones"
_COLUMNS = ["milestone_id", "program_id", "member_id", "period", "value", "achieved_at", "points"]
_EVENT_COLUMNS = ["program_id", "member_id", "kind", "payload", "at", "dispatched"]


def _candidates(
    session: Session,
    milestone: Milestone,
    program: Program,
    period: evaluate.Period,
    now: datetime,
    limit: int | None,
) -> Any:
    """The achievement rows to insert: active members whose figure reaches the target and
    who have no achievement of this goal for this period yet."""
    goal = evaluate.target(session, milestone)
    fig = evaluate.figure(session, milestone, program.timezone, period).subquery("fig")
    ma = MilestoneAchievement
    done = exists().where(
        ma.milestone_id == milestone.id, ma.member_id == Account.member_id, ma.period == period.key
    )
    rows = (
        select(
            literal(milestone.id, BigInteger),
            literal(program.id, BigInteger),
            Account.member_id,
            literal(period.key, String),
            fig.c.value,
            literal(now, UTCDateTime),
            literal(0, BigInteger),
        )
        .select_from(fig)
        .join(Account, Account.id == fig.c.account_id)
        .join(Member, Member.id == Account.member_id)
        .where(fig.c.value >= max(goal, 1), Member.status == "active", ~done)
    )
    if goal < 1:  # a stores goal with no store: nobody
        rows = rows.where(literal(False, Boolean))
    if limit is not None:
        rows = rows.order_by(Account.member_id).limit(limit)
    return rows


def _json(session: Session, fields: dict[str, Any]) -> Any:
    build = func.jsonb_build_object if evaluate.is_postgresql(session) else func.json_object
    args: list[Any] = []
    for name, value in fields.items():
        args += [literal(name, String), value]
    return build(*args)


def _event_rows(session: Session, milestone: Milestone, program: Program, now: datetime, won: Any) -> Any:  # fmt: skip
    payload = _json(
        session,
        {
            "program": literal(program.code, String),
            "member_id": won.member_id,
            "milestone": literal(milestone.code, String),
            "kind": literal(milestone.kind, String),
            "period": won.period,
            "value": won.value,
            "target": literal(evaluate.target(session, milestone), BigInteger),
            "points": literal(milestone.points, BigInteger),
            "reward": literal(milestone.reward, String) if milestone.reward else null(),
            "achievement_id": won.id,
            "achieved_at": literal(iso_utc(now), String),
        },
    )
    return select(
        literal(program.id, BigInteger),
        won.member_id,
        literal("milestone.achieved", String),
        payload,
        literal(now, UTCDateTime),
        literal(False, Boolean),
    )


def award(
    session: Session,
    milestone: Milestone,
    program: Program,
    period: evaluate.Period,
    *,
    now: datetime,
    limit: int | None = None,
) -> list[tuple[int, int]]:
    """Insert the new achievements of one goal and period and their events: one statement
    on PostgreSQL, three on SQLite. Returns (achievement id, member id) of the new ones."""
    evaluate.prepare(session)
    rows = _candidates(session, milestone, program, period, now, limit)
    ma = MilestoneAchievement
    if evaluate.is_postgresql(session):
        won = (
            postgresql.insert(ma)
            .from_select(_COLUMNS, rows)
            .on_conflict_do_nothing(index_elements=["milestone_id", "member_id", "period"])
            .returning(ma.id, ma.member_id, ma.period, ma.value)
            .cte("won")
        )
        events = (
            insert(DomainEvent)
            .from_select(
                _EVENT_COLUMNS,
                _event_rows(session, milestone, program, now, won.c).order_by(won.c.member_id),
            )
            .cte("events")
        )
        got = session.execute(select(won.c.id, won.c.member_id).add_cte(events)).all()
    else:
        before = session.scalar(select(func.coalesce(func.max(ma.id), 0)))
        session.execute(insert(ma).from_select(_COLUMNS, rows))
        mine = (
            select(ma.id, ma.member_id, ma.period, ma.value)
            .where(ma.id > before, ma.milestone_id == milestone.id)
            .subquery("mine")
        )
        session.execute(
            insert(DomainEvent).from_select(
                _EVENT_COLUMNS,
                _event_rows(session, milestone, program, now, mine.c).order_by(mine.c.member_id),
            )
        )
        got = session.execute(select(mine.c.id, mine.c.member_id)).all()
    return [(int(i), int(m)) for i, m in sorted(got, key=lambda r: r[0])]


def _reward(
    session: Session,
    milestone: Milestone,
    program: Program,
    won: list[tuple[int, int]],
    *,
    period: str,
    actor: Actor,
    now: datetime,
) -> tuple[int, int]:
    """Credit the points and issue the coupons of the new achievements (same transaction).
    A member whose account cannot take points keeps her badge; `note` says why."""
    from patron.coupons.models import Reward
    from patron.rewards import redeem
    from patron.sales import pipeline
    from patron.sales.schemas import AdjustRequest

    points = coupons = 0
    rows = {
        r.id: r
        for r in session.scalars(
            select(MilestoneAchievement).where(MilestoneAchievement.id.in_([i for i, _ in won]))
        )
    }
    if milestone.points > 0:
        for achievement_id, member_id in won:
            row = rows[achievement_id]
            try:
                with session.begin_nested():
                    done = pipeline.adjust(
                        session,
                        program,
                        AdjustRequest.model_validate(
                            {
                                "member": {"id": member_id},
                                "points": milestone.points,
                                "reason": f"milestone {milestone.code} achieved ({period})",
                            }
                        ),
                        actor=actor,
                        now=now,
                    )
            except PatronError as exc:
                row.note = f"{exc.code}: {exc.detail}"[:200]
            else:
                row.points, row.entry_id = milestone.points, done.entry.id
                points += milestone.points
    if milestone.reward:
        reward = session.scalars(
            select(Reward).where(Reward.program_id == program.id, Reward.code == milestone.reward)
        ).one_or_none()
        try:
            if reward is None:
                raise PatronError(f"no reward {milestone.reward}", code="reward_not_found")
            with session.begin_nested():
                issued = redeem.bulk_issue(
                    session, program, reward, [m for _, m in won],
                    campaign=f"milestone:{milestone.code}", actor=actor, now=now,
                )  # fmt: skip
        except PatronError as exc:
            for achievement_id, _ in won:
                rows[achievement_id].note = f"coupon {exc.code}: {exc.detail}"[:200]
        else:
            for (achievement_id, _), coupon in zip(won, issued, strict=True):
                rows[achievement_id].coupon_id = coupon.id
            coupons = len(issued)
    session.flush()
    return points, coupons


def run_program(
    db: Database,
    program_code: str,
    *,
    now: datetime,
    actor: Actor = SYSTEM,
    only: str | None = None,
) -> RunOut:
    """Evaluate every active goal of the program (or only `only`) for its periods, awarding
    what is new. Safe to run again and concurrently: awards nothing twice."""
    from patron.programs.service import get_program

    now = now.astimezone(UTC)
    with db.unit_of_work(readonly=True) as session:
        program = get_program(session, program_code)
        stmt = select(Milestone).where(
            Milestone.program_id == program.id, Milestone.status == "active"
        )
        if only is not None:
            stmt = stmt.where(Milestone.code == only)
        goals = [(m.id, m.code) for m in session.scalars(stmt.order_by(Milestone.id))]
        timezone = program.timezone
    items: list[RunItem] = []
    for milestone_id, code in goals:
        with db.unit_of_work(readonly=True) as session:
            milestone = session.get(Milestone, milestone_id)
            assert milestone is not None
            windows = evaluate.periods(milestone, timezone, now)
        for period in windows:
            started = timer.perf_counter()
            item = RunItem(milestone=code, period=period.label, achieved=0, points=0, coupons=0,
                           seconds=0.0)  # fmt: skip
            while True:
                with db.unit_of_work() as session:
                    milestone = session.get(Milestone, milestone_id)
                    assert milestone is not None
                    found = session.get(Program, milestone.program_id)
                    assert found is not None
                    program = found
                    rewarded = milestone.points > 0 or milestone.reward is not None
                    won = award(session, milestone, program, period, now=now,
                                limit=CHUNK if rewarded else None)  # fmt: skip
                    if won and rewarded:
                        got_points, got_coupons = _reward(
                            session, milestone, program, won, period=period.key, actor=actor,
                            now=now,
                        )  # fmt: skip
                        item.points += got_points
                        item.coupons += got_coupons
                    if won:
                        audit.record(
                            session, actor=actor, action="milestone.awarded",
                            subject_type="milestone", subject_id=code, program_id=program.id,
                            at=now, after={"period": period.key, "members": len(won),
                                           "points": item.points, "coupons": item.coupons},
                        )  # fmt: skip
                item.achieved += len(won)
                if not rewarded or not won:
                    break
            item.seconds = round(timer.perf_counter() - started, 3)
            items.append(item)
    return RunOut(program=program_code, items=items)


def _claim(session: Session, program_id: int, key: str, now: datetime) -> bool:
    """This worker's turn for the program's hour: a job_runs row, created once."""
    found = session.scalar(
        select(JobRun.id).where(
            JobRun.job == JOB, JobRun.program_id == program_id, JobRun.key == key
        )
    )
    if found is not None:
        return False
    values = {"job": JOB, "program_id": program_id, "key": key, "status": "running",
              "cursor": 0, "counts": {}, "started_at": now}  # fmt: skip
    if evaluate.is_postgresql(session):
        stmt = (
            postgresql.insert(JobRun).values(**values).on_conflict_do_nothing().returning(JobRun.id)
        )
        return session.scalar(stmt) is not None
    session.execute(insert(JobRun).values(**values))
    return True


def run_due(db: Database, *, now: datetime) -> list[RunOut]:
    """Once per program-local hour, every program with active goals (what the worker calls
    every minute; a run claimed by another worker is skipped)."""
    out: list[RunOut] = []
    with db.unit_of_work(readonly=True) as session:
        programs = session.execute(
            select(Program.id, Program.code, Program.timezone)
            .where(
                exists().where(
                    and_(Milestone.program_id == Program.id, Milestone.status == "active")
                )
            )
            .order_by(Program.id)
        ).all()
    for program_id, code, timezone in programs:
        key = now.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%dT%H")
        with db.unit_of_work() as session:
            if not _claim(session, program_id, key, now):
                continue
        try:
            report = run_program(db, code, now=now)
        except Exception:
            log.exception("the milestones job of program %s failed", code)
            continue
        with db.unit_of_work() as session:
            run = session.scalars(
                select(JobRun).where(
                    JobRun.job == JOB, JobRun.program_id == program_id, JobRun.key == key
                )
            ).one()
            run.status, run.finished_at = "done", now
            run.counts = {"achieved": sum(i.achieved for i in report.items)}
        out.append(report)
    return out
