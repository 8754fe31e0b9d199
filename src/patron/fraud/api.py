"""Fraud controls over HTTP: a program's settings (docs/fraud.md; the review queue is
patron.review.api's)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.fraud import settings
from patron.fraud.rules import FraudDoc
from patron.programs import service
from patron.programs.schemas import CODE_PATTERN

router = APIRouter(
    prefix="/api/v1",
    tags=["fraud"],
    responses=responses(Unauthorized, Forbidden, Invalid, NotFound),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")


@router.get("/programs/{code}/fraud/settings", response_model=settings.FraudSettingsOut)
def get_settings(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> settings.FraudSettingsOut:
    """The program's fraud controls (every one off when never set)."""
    return http.read(db, lambda s: settings.get(s, service.get_program(s, code)))


@router.put("/programs/{code}/fraud/settings", response_model=settings.FraudSettingsOut)
def put_settings(
    body: FraudDoc,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """Replace the program's fraud controls. Every worker applies them from its next sale."""
    return http.write(
        db,
        lambda s: settings.save(s, service.get_program(s, code), body, actor=actor, now=http.now()),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, **body.model_dump(mode="json")},
    )
