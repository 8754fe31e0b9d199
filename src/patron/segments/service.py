"""Segments: save and check definitions, count and sample them, list their members as of a
date and materialise snapshots. Services flush, never commit; every change is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, func, insert, literal, select, union_all
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.coupons.models import Reward
from patron.errors import Conflict, Invalid, NotFound
from patron.ledger.models import Account
from patron.members.models import Member
from patron.programs.models import Program, Store
from patron.segments import compiler
from patron.segments.definition import (
    Definition,
    InSegment,
    Redeemed,
    StoreUsed,
    TierIs,
    walk,
)
from patron.segments.models import Segment, SegmentSnapshot, SegmentSnapshotMember
from patron.segments.schemas import (
    SampleMember,
    SegmentIn,
    SegmentOut,
    SegmentUpdate,
    SnapshotOut,
)
from patron.tiers.models import TierDefinition


class SegmentNotFound(NotFound):
    code = "segment_not_found"


class SegmentExists(Conflict):
    code = "segment_exists"


class SegmentInUse(Conflict):
    code = "segment_in_use"


class UnknownReference(Invalid):
    code = "unknown_reference"


class FutureDate(Invalid):
    code = "as_of_in_future"


def out(row: Segment) -> SegmentOut:
    return SegmentOut(
        code=row.code,
        name=row.name,
        description=row.description,
        definition=row.definition,
        version=row.version,
        created_at=row.created_at,
        updated_at=row.updated_at,
        updated_by=row.updated_by,
    )


def snapshot_out(row: SegmentSnapshot, code: str) -> SnapshotOut:
    return SnapshotOut(
        id=row.id,
        segment=code,
        segment_version=row.segment_version,
        as_of=row.as_of,
        taken_at=row.taken_at,
        taken_by=row.taken_by,
        members=row.members,
    )


def list_segments(session: Session, program: Program) -> list[Segment]:
    return list(
        session.scalars(
            select(Segment).where(Segment.program_id == program.id).order_by(Segment.code)
        )
    )


def get_segment(session: Session, program: Program, code: str) -> Segment:
    row = session.scalar(
        select(Segment).where(Segment.program_id == program.id, Segment.code == code)
    )
    if row is None:
        raise SegmentNotFound(f"no segment {code!r} in program {program.code}")
    return row


class _ProgramRef(Protocol):
    """What memberships reads of a program: a Program row or the sale path's cached config."""

    @property
    def id(self) -> int: ...

    @property
    def code(self) -> str: ...


def definitions(session: Session, program: _ProgramRef) -> dict[str, Definition]:
    """Every saved segment of the program, by code (what `segment` conditions refer to)."""
    rows = session.execute(
        select(Segment.code, Segment.definition).where(Segment.program_id == program.id)
    )
    return {code: Definition.model_validate(doc) for code, doc in rows}


def check_references(
    session: Session,
    program: Program,
    definition: Definition,
    *,
    own_code: str | None,
    now: datetime,
) -> None:
    """The tiers, stores, rewards and segments the definition names exist in the program, and
    no segment refers back to itself (422 naming what is wrong)."""
    tiers: set[str] = set()
    stores: set[str] = set()
    rewards: set[str] = set()
    for cond in walk(definition.condition):
        if isinstance(cond, TierIs):
            tiers.update(cond.tiers)
        elif isinstance(cond, StoreUsed):
            stores.update(cond.stores)
        elif isinstance(cond, Redeemed) and cond.reward is not None:
            rewards.add(cond.reward)
        elif isinstance(cond, InSegment) and cond.segment == own_code:
            raise compiler.SegmentCycle("a segment may not contain itself")
    for what, model, codes in (
        ("tier", TierDefinition, tiers),
        ("store", Store, stores),
        ("reward", Reward, rewards),
    ):
        if not codes:
            continue
        known = set(
            session.scalars(
                select(model.code).where(model.program_id == program.id, model.code.in_(codes))
            )
        )
        if missing := sorted(codes - known):
            raise UnknownReference(
                f"no {what} {', '.join(map(repr, missing))} in program {program.code}"
            )
    # Compiling resolves every `segment` condition and refuses a cycle.
    compiler.member_ids(
        program.id,
        definition,
        as_of=None,
        now=now,
        segments=definitions(session, program),
        own_code=own_code,
    )


def create(
    session: Session, program: Program, body: SegmentIn, *, actor: Actor, now: datetime
) -> Segment:
    if session.scalar(
        select(Segment.id).where(Segment.program_id == program.id, Segment.code == body.code)
    ):
        raise SegmentExists(f"segment {body.code!r} exists already in program {program.code}")
    check_references(session, program, body.definition, own_code=body.code, now=now)
    row = Segment(
        program_id=program.id,
        code=body.code,
        name=body.name.strip(),
        description=body.description.strip(),
        definition=body.definition.model_dump(mode="json", exclude_defaults=False),
        version=1,
        created_at=now,
        updated_at=now,
        updated_by=str(actor),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="segment.created",
        subject_type="segment",
        subject_id=row.id,
        at=now,
        program_id=program.id,
        after={"code": row.code, "name": row.name, "definition": row.definition},
    )
    return row


def update(
    session: Session,
    program: Program,
    code: str,
    body: SegmentUpdate,
    *,
    actor: Actor,
    now: datetime,
) -> Segment:
    row = get_segment(session, program, code)
    check_references(session, program, body.definition, own_code=code, now=now)
    before = {"name": row.name, "definition": row.definition, "version": row.version}
    row.name = body.name.strip()
    row.description = body.description.strip()
    row.definition = body.definition.model_dump(mode="json")
    row.version = row.version + 1
    row.updated_at = now
    row.updated_by = str(actor)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="segment.updated",
        subject_type="segment",
        subject_id=row.id,
        at=now,
        program_id=program.id,
        before=before,
        after={"name": row.name, "definition": row.definition, "version": row.version},
    )
    return row


def segments_naming(session: Session, program: Program, code: str) -> list[str]:
    """The program's other segments whose definition refers to `code` (a `segment` condition)."""
    return sorted(
        other
        for other, doc in definitions(session, program).items()
        if other != code
        and any(isinstance(c, InSegment) and c.segment == code for c in walk(doc.condition))
    )


def delete_segment(session: Session, row: Segment, *, actor: Actor, now: datetime) -> None:
    """Delete a segment and its snapshots, audited. Nothing is checked here: the caller refuses
    first while another segment, an earning rule or a reward names it (what
    patron.segment_deletion.remove does)."""
    snapshots = select(SegmentSnapshot.id).where(SegmentSnapshot.segment_id == row.id)
    session.execute(
        delete(SegmentSnapshotMember).where(SegmentSnapshotMember.snapshot_id.in_(snapshots))
    )
    session.execute(delete(SegmentSnapshot).where(SegmentSnapshot.segment_id == row.id))
    audit.record(
        session,
        actor=actor,
        action="segment.deleted",
        subject_type="segment",
        subject_id=row.id,
        at=now,
        program_id=row.program_id,
        before={"code": row.code, "name": row.name, "definition": row.definition},
    )
    session.delete(row)
    session.flush()


def _when(as_of: datetime | None, now: datetime) -> datetime | None:
    if as_of is None:
        return None
    if as_of.tzinfo is None:
        raise Invalid("as_of needs a time zone (e.g. 2026-03-01T00:00:00Z)", code="invalid_as_of")
    if as_of > now:
        raise FutureDate("as_of must not be in the future")
    if as_of.year < 2000:
        raise Invalid("as_of must be in the year 2000 or later", code="invalid_as_of")
    return as_of


def query(
    session: Session,
    program: Program,
    definition: Definition,
    *,
    as_of: datetime | None,
    now: datetime,
    own_code: str | None = None,
):
    """The compiled member-id query (see patron.segments.compiler.member_ids)."""
    return compiler.member_ids(
        program.id,
        definition,
        as_of=_when(as_of, now),
        now=now,
        segments=definitions(session, program),
        own_code=own_code,
    )


def count(
    session: Session,
    program: Program,
    definition: Definition,
    *,
    as_of: datetime | None,
    now: datetime,
    own_code: str | None = None,
) -> int:
    ids = query(session, program, definition, as_of=as_of, now=now, own_code=own_code)
    return int(session.scalar(select(func.count()).select_from(ids.subquery())) or 0)


def sample(
    session: Session,
    program: Program,
    definition: Definition,
    *,
    as_of: datetime | None,
    now: datetime,
    limit: int,
    own_code: str | None = None,
) -> list[SampleMember]:
    """The first `limit` members (by id), with name, current tier and balance."""
    if limit <= 0:
        return []
    ids = query(session, program, definition, as_of=as_of, now=now, own_code=own_code)
    picked = ids.order_by(Account.member_id).limit(limit).subquery()
    rows = session.execute(
        select(
            Member.id,
            Member.name,
            Account.tier,
            Account.available + Account.pending - Account.debt,
        )
        .join(Account, (Account.member_id == Member.id) & (Account.program_id == program.id))
        .where(Member.id.in_(select(picked.c.member_id)))
        .order_by(Member.id)
    )
    return [
        SampleMember(member_id=i, name=name, tier=tier, balance=int(balance))
        for i, name, tier, balance in rows
    ]


def member_page(
    session: Session,
    program: Program,
    definition: Definition,
    *,
    as_of: datetime | None,
    now: datetime,
    cursor: int | None,
    limit: int,
    own_code: str | None = None,
) -> tuple[list[int], int | None]:
    """Member ids in id order after `cursor`; the next cursor when there are more."""
    ids = query(session, program, definition, as_of=as_of, now=now, own_code=own_code)
    if cursor is not None:
        ids = ids.where(Account.member_id > cursor)
    found = list(session.scalars(ids.order_by(Account.member_id).limit(limit + 1)))
    more = found[limit - 1] if len(found) > limit else None
    return found[:limit], more


def take_snapshot(
    session: Session,
    program: Program,
    code: str,
    *,
    as_of: datetime | None,
    actor: Actor,
    now: datetime,
) -> SegmentSnapshot:
    """Materialise the segment's members (as of `as_of`, default now) with one INSERT … SELECT."""
    row = get_segment(session, program, code)
    definition = Definition.model_validate(row.definition)
    when = _when(as_of, now) or now
    ids = query(session, program, definition, as_of=as_of, now=now, own_code=code).subquery()
    snap = SegmentSnapshot(
        segment_id=row.id,
        program_id=program.id,
        segment_version=row.version,
        definition=row.definition,
        as_of=when,
        taken_at=now,
        taken_by=str(actor),
        members=0,
    )
    session.add(snap)
    session.flush()
    session.execute(
        insert(SegmentSnapshotMember).from_select(
            ["snapshot_id", "member_id", "segment_id"],
            select(literal(snap.id), ids.c.member_id, literal(row.id)),
        )
    )
    snap.members = int(
        session.scalar(select(func.count()).where(SegmentSnapshotMember.snapshot_id == snap.id))
        or 0
    )
    audit.record(
        session,
        actor=actor,
        action="segment.snapshot_taken",
        subject_type="segment",
        subject_id=row.id,
        at=now,
        program_id=program.id,
        after={"snapshot": snap.id, "as_of": when.isoformat(), "members": snap.members},
    )
    session.flush()
    return snap


def list_snapshots(session: Session, program: Program, code: str, *, limit: int = 50):
    row = get_segment(session, program, code)
    return list(
        session.scalars(
            select(SegmentSnapshot)
            .where(SegmentSnapshot.segment_id == row.id)
            .order_by(SegmentSnapshot.id.desc())
            .limit(limit)
        )
    )


def get_snapshot(session: Session, program: Program, code: str, snapshot_id: int):
    row = get_segment(session, program, code)
    snap = session.get(SegmentSnapshot, snapshot_id)
    if snap is None or snap.segment_id != row.id:
        raise NotFound(f"no snapshot {snapshot_id} of segment {code!r}", code="snapshot_not_found")
    return snap


def snapshot_members(
    session: Session, snap: SegmentSnapshot, *, cursor: int | None, limit: int
) -> tuple[list[int], int | None]:
    stmt = select(SegmentSnapshotMember.member_id).where(
        SegmentSnapshotMember.snapshot_id == snap.id
    )
    if cursor is not None:
        stmt = stmt.where(SegmentSnapshotMember.member_id > cursor)
    found = list(session.scalars(stmt.order_by(SegmentSnapshotMember.member_id).limit(limit + 1)))
    more = found[limit - 1] if len(found) > limit else None
    return found[:limit], more


def doc(row: Segment) -> dict[str, Any]:
    return out(row).model_dump(mode="json")


def memberships(
    session: Session,
    program: _ProgramRef,
    codes: list[str],
    member_ids: list[int],
    *,
    at: datetime,
    known: bool = False,
    history: bool = False,
    saved: dict[str, Definition] | None = None,
) -> dict[int, set[str]]:
    """Which of the segments `codes` each of `member_ids` belongs to at `at`, in ONE query (a
    UNION ALL of the compiled segments, each narrowed to these members): what a rule condition
    on segments reads for a sale or a batch of sales, only when a rule set names a segment.
    Evaluated live: the member's current tier and balance, windows (spend, visits, dormant)
    ending at `at`; with `history`, as of `at` (tier and balance then: a replay). With `known`, a code the program no longer has is left out (no member is
    in it) instead of refused: a rule set published before a segment went keeps earning."""
    out: dict[int, set[str]] = {m: set() for m in member_ids}
    if not codes or not member_ids:
        return out
    if saved is None:  # a caller asking many times reads the definitions once (`saved`)
        saved = definitions(session, program)
    parts = []
    for code in dict.fromkeys(codes):
        if code not in saved:
            if known:
                continue
            raise compiler.UnknownSegment(f"no segment {code!r} in program {program.code}")
        ids = compiler.member_ids(
            program.id,
            saved[code],
            as_of=at if history else None,
            now=at,
            segments=saved,
            own_code=code,
        ).where(Account.member_id.in_(member_ids))
        parts.append(
            select(literal(code).label("code"), ids.subquery().c.member_id.label("member_id"))
        )
    if not parts:
        return out
    for code, member_id in session.execute(union_all(*parts)):
        out[member_id].add(code)
    return out
