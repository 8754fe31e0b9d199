"""The review queue over HTTP: list the items the fraud controls held, confirm or reverse one
(docs/fraud.md). Its paths sit under the program's fraud settings, in the same tag."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Path, Query

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.programs import service
from patron.programs.schemas import CODE_PATTERN
from patron.review import queue

router = APIRouter(
    prefix="/api/v1",
    tags=["fraud"],
    responses=responses(Unauthorized, Forbidden, Invalid, NotFound),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
ReviewId = Path(ge=1, le=2**53, description="The review item's id")


@router.get("/programs/{code}/fraud/reviews", response_model=queue.ReviewPage)
def list_reviews(
    code: str = ProgramCode,
    status: Literal["open", "confirmed", "reversed", "all"] = Query("open"),
    member_id: int | None = Query(None, ge=1, le=2**53),
    cursor: int | None = Query(None, ge=1, le=2**53),
    limit: int = Query(50, ge=1, le=200),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("admin")),
) -> queue.ReviewPage:
    """The suspicious-activity queue, newest first (open items by default)."""

    def run(s) -> queue.ReviewPage:
        program = service.get_program(s, code)
        rows, more = queue.list_reviews(
            s,
            program,
            status=None if status == "all" else status,
            member_id=member_id,
            cursor=cursor,
            limit=limit,
        )
        return queue.ReviewPage(items=[queue.out(program, r) for r in rows], next_cursor=more)

    return http.read(db, run)


@router.get("/programs/{code}/fraud/reviews/{review_id}", response_model=queue.ReviewOut)
def get_review(
    code: str = ProgramCode,
    review_id: int = ReviewId,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("admin")),
) -> queue.ReviewOut:
    def run(s) -> queue.ReviewOut:
        program = service.get_program(s, code)
        return queue.out(program, queue.get_review(s, program, review_id))

    return http.read(db, run)


def _decide(
    db: Database,
    code: str,
    review_id: int,
    decision: str,
    body: queue.DecisionIn,
    actor: Actor,
    idempotency_key: str | None,
):
    def run(s) -> queue.ReviewOut:
        program = service.get_program(s, code)
        row = queue.decide(
            s, program, review_id, decision, reason=body.reason, actor=actor, now=http.now()
        )
        return queue.out(program, row)

    return http.write(
        db,
        run,
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, "review": review_id, "decision": decision, "reason": body.reason},
    )


@router.post(
    "/programs/{code}/fraud/reviews/{review_id}/confirm",
    response_model=queue.ReviewOut,
    responses=responses(Conflict),
)
def confirm_review(
    body: queue.DecisionIn,
    code: str = ProgramCode,
    review_id: int = ReviewId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """The sale is genuine: its held points become spendable now. 409 review_decided if the
    item was decided already (by anyone: of two staff deciding at once, one wins)."""
    return _decide(db, code, review_id, "confirm", body, actor, idempotency_key)


@router.post(
    "/programs/{code}/fraud/reviews/{review_id}/reverse",
    response_model=queue.ReviewOut,
    responses=responses(Conflict),
)
def reverse_review(
    body: queue.DecisionIn,
    code: str = ProgramCode,
    review_id: int = ReviewId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """The sale is not genuine: the points it earned are taken back (a `reverse` entry, as a
    refund writes); the sale stays recorded. 409 review_decided if already decided."""
    return _decide(db, code, review_id, "reverse", body, actor, idempotency_key)
