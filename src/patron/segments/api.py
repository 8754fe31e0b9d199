"""Segments over HTTP (docs/engagement.md): create, read and change them per program, a live
count and sample of a definition being edited, members as of a date, snapshots. Reading needs
the read scope (a segment's members are member data the read scope already reaches); changing a
segment or taking a snapshot needs admin. Deleting one is patron.segment_deletion's: it asks the
earning rules and rewards, which sit above segments, whether they name it."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Path, Query

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.segments import service
from patron.segments.definition import CODE_PATTERN as SEGMENT_PATTERN
from patron.segments.definition import Definition
from patron.segments.schemas import (
    CountOut,
    MemberPage,
    PreviewIn,
    SegmentIn,
    SegmentList,
    SegmentOut,
    SegmentUpdate,
    SnapshotIn,
    SnapshotList,
    SnapshotOut,
)

router = APIRouter(
    prefix="/api/v1",
    tags=["segments"],
    responses=responses(Unauthorized, Forbidden, Invalid, NotFound),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
SegmentCode = Path(pattern=SEGMENT_PATTERN, description="The segment's code")
AsOf = Query(None, description="Evaluate as of this time (ISO 8601 with zone); default now")
P = "/programs/{code}/segments"


@router.get(P, response_model=SegmentList)
def list_segments(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> SegmentList:
    def run(s) -> SegmentList:
        program = get_program(s, code)
        return SegmentList(items=[service.out(r) for r in service.list_segments(s, program)])

    return http.read(db, run)


@router.post(P, status_code=201, response_model=SegmentOut, responses=responses(Conflict))
def create_segment(
    body: SegmentIn,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """Save a segment. 422 for a malformed condition, an unknown tier/store/reward/segment or a
    cycle of segments; 409 segment_exists when the code is taken."""
    return http.write(
        db,
        lambda s: service.out(
            service.create(s, get_program(s, code), body, actor=actor, now=http.now())
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.post(f"{P}/preview", response_model=CountOut)
def preview(
    body: PreviewIn,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> CountOut:
    """Count and sample a definition without saving it (the builder's live count)."""

    def run(s) -> CountOut:
        program = get_program(s, code)
        now = http.now()
        service.check_references(s, program, body.definition, own_code=None, now=now)
        when = body.as_of
        return CountOut(
            count=service.count(s, program, body.definition, as_of=when, now=now),
            as_of=when or now,
            sample=service.sample(
                s, program, body.definition, limit=body.sample, as_of=when, now=now
            ),
        )

    return http.read(db, run)


@router.get(f"{P}/{{segment}}", response_model=SegmentOut)
def get_segment(
    code: str = ProgramCode,
    segment: str = SegmentCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> SegmentOut:
    return http.read(
        db, lambda s: service.out(service.get_segment(s, get_program(s, code), segment))
    )


@router.put(f"{P}/{{segment}}", response_model=SegmentOut, responses=responses(Conflict))
def update_segment(
    body: SegmentUpdate,
    code: str = ProgramCode,
    segment: str = SegmentCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """Replace a segment's name and definition (its version goes up; snapshots keep theirs).
    409 idempotency_conflict when an Idempotency-Key is reused with another body."""
    return http.write(
        db,
        lambda s: service.out(
            service.update(s, get_program(s, code), segment, body, actor=actor, now=http.now())
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, "segment": segment, **body.model_dump(mode="json")},
    )


def _saved(s, code: str, segment: str):
    program = get_program(s, code)
    row = service.get_segment(s, program, segment)
    return program, Definition.model_validate(row.definition)


@router.get(f"{P}/{{segment}}/count", response_model=CountOut)
def count_segment(
    code: str = ProgramCode,
    segment: str = SegmentCode,
    as_of: datetime | None = AsOf,
    sample: int = Query(0, ge=0, le=100, description="Also return this many members"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> CountOut:
    def run(s) -> CountOut:
        program, definition = _saved(s, code, segment)
        now = http.now()
        own = segment
        return CountOut(
            count=service.count(s, program, definition, as_of=as_of, now=now, own_code=own),
            as_of=as_of or now,
            sample=service.sample(
                s, program, definition, limit=sample, as_of=as_of, now=now, own_code=own
            ),
        )

    return http.read(db, run)


@router.get(f"{P}/{{segment}}/members", response_model=MemberPage)
def segment_members(
    code: str = ProgramCode,
    segment: str = SegmentCode,
    as_of: datetime | None = AsOf,
    cursor: int | None = Query(None, ge=0, le=2**53),
    limit: int = Query(500, ge=1, le=5000),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> MemberPage:
    """The segment's member ids as of a date (default now), in id order, a page at a time."""

    def run(s) -> MemberPage:
        program, definition = _saved(s, code, segment)
        now = http.now()
        items, more = service.member_page(
            s, program, definition, as_of=as_of, now=now, cursor=cursor, limit=limit,
            own_code=segment,
        )  # fmt: skip
        return MemberPage(as_of=as_of or now, items=items, next_cursor=more)

    return http.read(db, run)


@router.post(
    f"{P}/{{segment}}/snapshots",
    status_code=201,
    response_model=SnapshotOut,
    responses=responses(Conflict),
)
def take_snapshot(
    body: SnapshotIn,
    code: str = ProgramCode,
    segment: str = SegmentCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """Materialise the segment's members now (or as of a past date) for a campaign."""
    return http.write(
        db,
        lambda s: service.snapshot_out(
            service.take_snapshot(
                s, get_program(s, code), segment, as_of=body.as_of, actor=actor, now=http.now()
            ),
            segment,
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, "segment": segment, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.get(f"{P}/{{segment}}/snapshots", response_model=SnapshotList)
def list_snapshots(
    code: str = ProgramCode,
    segment: str = SegmentCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> SnapshotList:
    def run(s) -> SnapshotList:
        rows = service.list_snapshots(s, get_program(s, code), segment)
        return SnapshotList(items=[service.snapshot_out(r, segment) for r in rows])

    return http.read(db, run)


@router.get(f"{P}/{{segment}}/snapshots/{{snapshot_id}}/members", response_model=MemberPage)
def snapshot_members(
    code: str = ProgramCode,
    segment: str = SegmentCode,
    snapshot_id: int = Path(ge=1, le=2**53),
    cursor: int | None = Query(None, ge=0, le=2**53),
    limit: int = Query(500, ge=1, le=5000),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> MemberPage:
    def run(s) -> MemberPage:
        snap = service.get_snapshot(s, get_program(s, code), segment, snapshot_id)
        items, more = service.snapshot_members(s, snap, cursor=cursor, limit=limit)
        return MemberPage(as_of=snap.as_of, items=items, next_cursor=more)

    return http.read(db, run)
