"""The member page's engagement parts: her badges and goal progress (patron.milestones), and
the surveys she is invited to answer (patron.surveys), with the "answer" button's route."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from patron import clock
from patron.milestones import service as milestones
from patron.milestones.schemas import ProgressItem
from patron.portal.web import ProgramCode, Viewer, current_viewer, get_db
from patron.programs.models import Program
from patron.surveys import service as surveys

router = APIRouter(prefix="/{program}")


@dataclass
class Invitation:
    id: int
    title: str
    points: int
    expires_at: datetime


def badges(session: Session, program: Program, viewer: Viewer, now: datetime) -> dict[str, Any]:
    """{"earned": [...], "progress": [...]}: achieved goals first (badges), then the goals
    still open with their progress bars, in the member's language."""
    items = milestones.progress(
        session, program, viewer.member_id, now=now, language=viewer.language
    ).items
    earned: list[ProgressItem] = [i for i in items if i.times > 0]
    open_: list[ProgressItem] = [i for i in items if not i.achieved]
    return {"earned": earned, "progress": open_}


def invitations(
    session: Session, program: Program, viewer: Viewer, now: datetime
) -> list[Invitation]:
    return [
        Invitation(
            id=inv.id,
            title=surveys.text_in(survey.title, viewer.language, survey.fallback_language),
            points=survey.points,
            expires_at=inv.expires_at,
        )
        for inv, survey in surveys.member_invitations(
            session, program.id, viewer.member_id, now=now
        )
    ]


@router.post("/surveys/{invitation}", name="survey_answer")
async def answer_survey(
    request: Request,
    program: str = ProgramCode,
    invitation: int = Path(ge=1, le=2**53),
    viewer: Viewer = Depends(current_viewer),
) -> Response:
    """Open one of her invitations on the public survey page: a new link, made now (only
    the links' hashes are kept) and followed at once."""

    def run() -> str:
        with get_db(request).unit_of_work() as session:
            return surveys.reissue_link(
                session, viewer.program.id, viewer.member_id, invitation, now=clock.now()
            )

    token = await run_in_threadpool(run)
    root = request.scope.get("root_path", "").removesuffix("/m")
    return RedirectResponse(f"{root}/s/{token}?lang={viewer.language}", status_code=303)
