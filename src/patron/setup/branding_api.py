"""A program's branding over HTTP: read it (with its contrast warnings), replace it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.programs import branding as brand
from patron.programs import service
from patron.programs.schemas import CODE_PATTERN

router = APIRouter(
    prefix="/api/v1",
    tags=["programs"],
    responses=responses(Unauthorized, Forbidden, Invalid, NotFound),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")


class ContrastWarningOut(BaseModel):
    pair: str = Field(description="card_text_on_card_background or white_on_primary")
    foreground: str
    background: str
    ratio: float = Field(description="The contrast ratio, rounded to 2 places")
    minimum: float = Field(brand.AA_RATIO, description="WCAG AA for normal text")


class BrandingOut(brand.Branding):
    warnings: list[ContrastWarningOut] = Field(
        default_factory=list,
        description="Text/background pairs below WCAG AA (4.5:1); saved anyway",
    )


def _out(branding: brand.Branding) -> BrandingOut:
    return BrandingOut(
        **branding.model_dump(),
        warnings=[
            ContrastWarningOut.model_validate(w.as_dict())
            for w in brand.contrast_warnings(branding)
        ],
    )


@router.get("/programs/{code}/branding", response_model=BrandingOut)
def get_branding(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> BrandingOut:
    return http.read(db, lambda s: _out(brand.get(s, service.get_program(s, code))))


@router.put("/programs/{code}/branding", response_model=BrandingOut)
def put_branding(
    body: brand.Branding,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: _out(
            brand.save(s, service.get_program(s, code), body, actor=actor, now=http.now())
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, **body.model_dump(mode="json")},
    )
