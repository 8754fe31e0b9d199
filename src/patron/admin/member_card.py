"""What the member page's cards with forms (merges and transfers, privacy) share: the program
an action is recorded in, a refusal in the staff member's words, and the way back to the card."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from patron.admin import i18n
from patron.admin.deps import Staff
from patron.admin.templating import path_for
from patron.errors import NotFound, PatronError
from patron.members.service import member_programs
from patron.programs.models import Program


def program_codes(session: Session, member_id: int) -> list[str]:
    return [p.code for p in member_programs(session, member_id)]


def program_of(session: Session, staff: Staff, member_id: int, asked: str | None) -> Program:
    """The program an action on the member is recorded in: the one asked for when the member is
    in it and the user reaches it, else her first one the user reaches (404 when none)."""
    mine = [p for p in member_programs(session, member_id) if staff.reaches(p.code)]
    chosen = next((p for p in mine if p.code == asked), mine[0] if mine else None)
    if chosen is None:
        raise NotFound(f"member {member_id} is in none of your programs", code="member_not_found")
    return chosen


def refusal(exc: PatronError, lang: str, messages: Mapping[str, str]) -> str:
    """The card's own message for a refusal it knows, else the service's detail."""
    key = messages.get(exc.code)
    return i18n.translate(key, lang) if key else exc.detail


def back(
    request: Request, endpoint: str, member_id: int, program: str | None, done: str
) -> Response:
    """After a form: back to the card (route `endpoint`, anchored `#<card>`) with its notice."""
    anchor = {"member_moves": "moves", "member_privacy": "privacy"}.get(endpoint, "")
    return RedirectResponse(
        path_for(request, endpoint, {"program": program, "done": done}, member_id=member_id)
        + (f"#{anchor}" if anchor else ""),
        status_code=303,
    )
