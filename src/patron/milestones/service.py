"""Milestones: definitions (audited), achievers per goal, and a member's progress."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Conflict, Invalid, NotFound
from patron.ledger.views import get_account
from patron.milestones import evaluate
from patron.milestones.models import Milestone, MilestoneAchievement
from patron.milestones.schemas import MilestoneIn, MilestoneOut, ProgressItem, ProgressOut
from patron.programs.models import Program, Store


class MilestoneNotFound(NotFound):
    code = "milestone_not_found"


def out(row: Milestone, achievers: int | None = None) -> MilestoneOut:
    return MilestoneOut(
        code=row.code,
        status=row.status,
        kind=row.kind,
        target=row.target,
        stores=row.stores,
        window=row.window,
        window_days=row.window_days,
        repeat=row.repeat,
        names=row.names,
        descriptions=row.descriptions,
        points=row.points,
        reward=row.reward,
        version=row.version,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
        achievers=achievers,
    )


def _apply(row: Milestone, body: MilestoneIn) -> None:
    row.code, row.status, row.kind, row.target = body.code, body.status, body.kind, body.target
    row.stores, row.window, row.window_days = list(body.stores), body.window, body.window_days
    row.repeat, row.points, row.reward = body.repeat, body.points, body.reward
    row.names, row.descriptions = body.names.given(), body.descriptions.given()


def _check(session: Session, program: Program, body: MilestoneIn) -> None:
    if body.stores:
        known = set(session.scalars(select(Store.code).where(Store.program_id == program.id)))
        unknown = sorted(set(body.stores) - known)
        if unknown:
            raise Invalid(f"unknown store(s): {', '.join(unknown)}", code="unknown_store")
    if body.reward:
        from patron.coupons.models import Reward

        found = session.scalar(
            select(Reward.id).where(Reward.program_id == program.id, Reward.code == body.reward)
        )
        if found is None:
            raise Invalid(f"no reward {body.reward} in {program.code}", code="unknown_reward")


def list_milestones(session: Session, program: Program) -> list[Milestone]:
    return list(
        session.scalars(
            select(Milestone).where(Milestone.program_id == program.id).order_by(Milestone.id)
        )
    )


def achievers(session: Session, program: Program) -> dict[int, int]:
    """Members who achieved each goal (any period), one GROUP BY."""
    ma = MilestoneAchievement
    return {
        int(m): int(n)
        for m, n in session.execute(
            select(ma.milestone_id, func.count(func.distinct(ma.member_id)))
            .where(ma.program_id == program.id)
            .group_by(ma.milestone_id)
        )
    }


def get_milestone(session: Session, program: Program, code: str) -> Milestone:
    row = session.scalars(
        select(Milestone).where(Milestone.program_id == program.id, Milestone.code == code)
    ).one_or_none()
    if row is None:
        raise MilestoneNotFound(f"no milestone {code} in {program.code}")
    return row


def create(
    session: Session, program: Program, body: MilestoneIn, *, actor: Actor, now: datetime
) -> Milestone:
    _check(session, program, body)
    taken = session.scalar(
        select(Milestone.id).where(Milestone.program_id == program.id, Milestone.code == body.code)
    )
    if taken is not None:
        raise Conflict(f"milestone {body.code} exists already", code="milestone_exists")
    row = Milestone(program_id=program.id, version=1, created_at=now, updated_at=now)
    row.updated_by = str(actor)
    _apply(row, body)
    session.add(row)
    session.flush()
    audit.record(
        session, actor=actor, action="milestone.created", subject_type="milestone",
        subject_id=row.code, at=now, program_id=program.id,
        after=out(row).model_dump(mode="json", exclude={"achievers"}),
    )  # fmt: skip
    return row


def replace(
    session: Session,
    program: Program,
    code: str,
    body: MilestoneIn,
    *,
    actor: Actor,
    now: datetime,
) -> Milestone:
    """A goal's wording, reward and status may change; its kind, target and window may not
    once someone achieved it (409 milestone_achieved: make a new goal instead)."""
    row = get_milestone(session, program, code)
    if body.code != code:
        raise Invalid("a milestone's code cannot change", code="code_mismatch")
    _check(session, program, body)
    taken = session.scalar(select(func.count()).where(MilestoneAchievement.milestone_id == row.id))
    rule = (row.kind, row.target, sorted(row.stores), row.window, row.window_days, row.repeat)
    new = (body.kind, body.target, sorted(body.stores), body.window, body.window_days, body.repeat)
    if taken and rule != new:
        raise Conflict(
            "members achieved this goal already: its kind, target, stores and window cannot "
            "change (archive it and make a new one)",
            code="milestone_achieved",
        )
    exclude = {"achievers", "version", "updated_at", "updated_by"}
    before = out(row).model_dump(mode="json", exclude=exclude)
    _apply(row, body)
    row.version += 1
    row.updated_at, row.updated_by = now, str(actor)
    session.flush()
    audit.record(
        session, actor=actor, action="milestone.changed", subject_type="milestone",
        subject_id=row.code, at=now, program_id=program.id, before=before,
        after=out(row).model_dump(mode="json", exclude=exclude),
    )  # fmt: skip
    return row


def archive(
    session: Session, program: Program, code: str, *, actor: Actor, now: datetime
) -> Milestone:
    row = get_milestone(session, program, code)
    if row.status != "archived":
        row.status, row.version = "archived", row.version + 1
        row.updated_at, row.updated_by = now, str(actor)
        audit.record(
            session, actor=actor, action="milestone.archived", subject_type="milestone",
            subject_id=row.code, at=now, program_id=program.id, before={"status": "active"},
            after={"status": "archived"},
        )  # fmt: skip
    return row


def _when(row: MilestoneAchievement | None) -> datetime | None:
    return row.achieved_at if row is not None else None


def text_in(texts: dict[str, str], language: str) -> str:
    return texts.get(language) or texts.get("en") or next(iter(texts.values()), "")


def progress(
    session: Session,
    program: Program,
    member_id: int,
    *,
    now: datetime,
    language: str = "en",
    include_archived_achieved: bool = True,
) -> ProgressOut:
    """Every active goal with the member's figure for its current period, and the goals she
    achieved (archived ones too, as badges). A few small statements per goal, on her account
    only."""
    account = get_account(session, program, member_id)
    evaluate.prepare(session)
    ma = MilestoneAchievement
    mine: dict[int, list[MilestoneAchievement]] = {}
    for a in session.scalars(
        select(ma).where(ma.program_id == program.id, ma.member_id == member_id).order_by(ma.id)
    ):
        mine.setdefault(a.milestone_id, []).append(a)
    items = []
    for m in list_milestones(session, program):
        got = mine.get(m.id, [])
        if m.status != "active" and not (got and include_archived_achieved):
            continue
        period = evaluate.current_period(m, program.timezone, now)
        value = session.execute(
            evaluate.figure(session, m, program.timezone, period, account_id=account.id)
        ).first()
        figure = int(value[1] or 0) if value is not None else 0
        goal = evaluate.target(session, m)
        achieved_now = [a for a in got if a.period == period.key]
        last = got[-1] if got else None
        items.append(
            ProgressItem(
                code=m.code,
                kind=m.kind,
                names=m.names,
                descriptions=m.descriptions,
                name=text_in(m.names, language),
                description=text_in(m.descriptions, language) if m.descriptions else "",
                window=m.window,
                repeat=m.repeat,
                period=period.label,
                target=goal,
                value=figure,
                percent=min(100, figure * 100 // goal) if goal > 0 else 0,
                achieved=bool(achieved_now) if m.repeat else bool(got),
                achieved_at=_when(
                    achieved_now[-1] if achieved_now else (None if m.repeat else last)
                ),
                times=len(got),
                points=m.points,
                reward=m.reward,
            )
        )
    return ProgressOut(member_id=member_id, items=items)
