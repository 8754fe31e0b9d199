"""Deleting a segment, refused while anything names it (docs/engagement.md).

A segment is named by other segments, by the earning rules of the rule set in force and by
rewards a member must be in one of its segments to redeem. Rules and rewards sit above segments
(they read memberships through patron.segments.service), so the segments package cannot ask
them: this module, above all three, asks each for what of its own names the segment, then
deletes it. `DELETE /api/v1/programs/{code}/segments/{segment}` is served from here, in the
segments' part of the API.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from sqlalchemy.orm import Session

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.programs.models import Program
from patron.programs.service import get_program
from patron.rewards.catalog import rewards_naming_segment
from patron.rules.service import rules_naming_segment
from patron.segments import service as segments
from patron.segments.api import P, ProgramCode, SegmentCode

router = APIRouter(
    prefix="/api/v1",
    tags=["segments"],
    responses=responses(Unauthorized, Forbidden, Invalid, NotFound),
)


def remove(session: Session, program: Program, code: str, *, actor: Actor, now: datetime) -> None:
    """Delete a segment and its snapshots; refused (409) while another segment, an earning
    rule in force or a reward not archived refers to it."""
    row = segments.get_segment(session, program, code)
    if users := segments.segments_naming(session, program, code):
        raise segments.SegmentInUse(f"segment {code!r} is used by {', '.join(users)}")
    if naming := rules_naming_segment(session, program, code):
        raise segments.SegmentInUse(
            f"segment {code!r} is a condition of earning rule {', '.join(naming)}: "
            "change those rules first"
        )
    if naming := rewards_naming_segment(session, program, code):
        raise segments.SegmentInUse(
            f"segment {code!r} limits who may redeem reward {', '.join(naming)}: "
            "change or archive those rewards first"
        )
    segments.delete_segment(session, row, actor=actor, now=now)


@router.delete(
    f"{P}/{{segment}}",
    status_code=204,
    response_class=Response,
    responses=responses(Conflict, segments.SegmentInUse),
)
def delete_segment(
    code: str = ProgramCode,
    segment: str = SegmentCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> Response:
    """Delete a segment and its snapshots; 409 segment_in_use while another segment, an
    earning rule in force or a reward (active or paused) uses it."""
    with db.unit_of_work() as s:
        remove(s, get_program(s, code), segment, actor=actor, now=http.now())
    return Response(status_code=204)
