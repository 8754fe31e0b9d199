"""Rule sets over HTTP: read, publish and edit versions, non-purchase events, explanations, what-if.

Every change to a rule set publishes a new version (admin scope); reads take read or pos.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.earning import events
from patron.earning import examples as rule_examples
from patron.earning.examples import ExampleRun
from patron.errors import (
    Conflict,
    Forbidden,
    IdempotencyConflict,
    Invalid,
    MemberBlocked,
    NotFound,
    StaleVersion,
    Unauthorized,
    responses,
)
from patron.programs.models import Program
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.rules import publishing
from patron.rules import service as rules
from patron.rules.confirm import ConfirmationRequired
from patron.rules.events import EventOut, EventRequest
from patron.rules.model import RULE_ID, Rule, RuleSetDoc

ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
RuleId = Path(pattern=RULE_ID, description="The rule's id within the rule set")
Note = Query(None, max_length=500, description="Why the rules changed; kept with the version")
ConfirmLarge = Query(
    False,
    description="Publish even though the change moves total points by more than the threshold "
    "(PATRON_RULES_CONFIRM_PERCENT, default 10 %) either way: without it such a publish is "
    "refused with 409 `confirmation_required`. The change is recomputed at publish by replaying "
    "the last 30 days of purchases under the current and the new rules.",
)


class RuleSetRoute(APIRoute):
    """A malformed rule in a request body reads like the CLI's error:
    `invalid_rule_set`, "rules.2.factor: …" (without Pydantic's tag for the rule kind). A
    subclass narrows which validation errors are rule errors (`is_rule_error`); the others keep
    the usual validation_error."""

    @staticmethod
    def is_rule_error(error: dict[str, Any]) -> bool:
        return error.get("type") != "json_invalid" and tuple(error.get("loc", ()))[:1] == ("body",)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = list(exc.errors())
                if not errors or not all(self.is_rule_error(e) for e in errors):
                    raise
                raise Invalid(
                    rules.describe_errors(errors, skip=("body",)), code="invalid_rule_set"
                ) from None

        return route


router = APIRouter(
    prefix="/api/v1", tags=["rules"], responses=responses(Unauthorized, Forbidden, Invalid)
)
# Endpoints whose body is a rule set document or a rule (included in `router`, under its prefix).
documents = APIRouter(route_class=RuleSetRoute)


class RuleSetIn(RuleSetDoc):
    """A whole rule set document, and why it changed."""

    note: str | None = Field(
        None, max_length=500, description="Why the rules changed; kept with the version"
    )


class RuleSetOut(BaseModel):
    version: int
    created_at: datetime
    actor: str
    note: str | None
    document: dict[str, Any] = Field(description="The rule set document (see RuleSetIn)")
    tests: ExampleRun | None = Field(
        None,
        description="On a publish: the program's rule tests (saved example sales) priced under "
        "the version published, beside the version it replaced (`current_points`); a failed "
        "test does not stop the publish. Absent on reads.",
    )


class RuleSetVersionOut(BaseModel):
    version: int
    created_at: datetime
    actor: str
    note: str | None
    current: bool


class RuleChange(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: dict[str, Any] = Field(alias="from")
    to: dict[str, Any]


class RuleDiffOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: int = Field(alias="from")
    to: int
    added: list[str]
    removed: list[str]
    changed: list[str]
    settings: list[str] = Field(description="Set when combine, rounding or redemption changed")
    rules: dict[str, RuleChange] = Field(description="Both versions of every changed rule")


class SimulateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    rules: RuleSetDoc = Field(description="The proposed rule set document")
    date_from: date = Field(
        alias="from",
        ge=date(1900, 1, 1),
        le=date(9998, 12, 31),
        description="First local date replayed (inclusive)",
    )
    date_to: date = Field(
        alias="to",
        ge=date(1900, 1, 1),
        le=date(9998, 12, 31),
        description="Last local date replayed (inclusive)",
    )
    top: int = Field(10, ge=1, le=1000, description="How many most-affected members to list")
    shift_years: int = Field(
        0,
        ge=0,
        le=10,
        description="Replay the purchases of the same dates this many years earlier, every "
        "dated rule moved back with them (a warning's `suggestion` names when to use it)",
    )


def _out(row: Any) -> RuleSetOut:
    return RuleSetOut(
        version=row.version,
        created_at=row.created_at,
        actor=row.actor,
        note=row.note,
        document=row.document,
    )


def _base_version(if_match: str | None) -> int | None:
    """The rule version an If-Match header names; one that is not a version number never
    matches (a version is a whole number, the ETag of GET …/rules)."""
    text = http.if_match(if_match)
    if text is None:
        return None
    if not text.isdigit() or len(text) > 9:
        raise StaleVersion(f'If-Match {if_match!r} is not a rule version (e.g. "3")')
    return int(text)


def _change(code: str, change: Callable[[Session, Program], Any]) -> Callable[[Session], Any]:
    """Publish `change` and answer the new version with the rule tests run on it."""

    def run(s: Session) -> RuleSetOut:
        program = get_program(s, code)
        before = rules.document(s, program) if program.rule_version else None
        out = _out(change(s, program))
        tests = rule_examples.run(
            s, program, proposal=rules.document(s, program), baseline=before, now=http.now()
        )
        out.tests = tests.model_copy(update={"rule_version": out.version})
        return out

    return run


@router.get(
    "/programs/{code}/rules",
    response_model=RuleSetOut,
    responses=responses(NotFound),
    summary="The program's current rule set",
)
def current_rules(
    response: Response,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> RuleSetOut:
    """The ETag header is the version: send it back as If-Match when publishing a change made
    from this document, and a publish by someone else in between is refused (409)."""
    out: RuleSetOut = http.read(db, lambda s: _out(rules.get_version(s, get_program(s, code))))
    response.headers["ETag"] = http.etag(out.version)
    return out


@documents.put(
    "/programs/{code}/rules",
    response_model=RuleSetOut,
    responses=responses(NotFound, StaleVersion, ConfirmationRequired, IdempotencyConflict),
    summary="Publish a whole rule set document as the next version",
)
def put_rules(
    body: RuleSetIn,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
    if_match: str | None = http.IfMatch,
    confirm_large_change: bool = ConfirmLarge,
):
    doc = rules.validate_doc(body.model_dump(mode="json", exclude={"note"}, exclude_none=True))
    base = _base_version(if_match)
    return http.write(
        db,
        _change(
            code,
            lambda s, p: publishing.publish(
                s,
                p,
                doc,
                actor=actor,
                now=http.now(),
                note=body.note,
                expected_version=base,
                confirm=confirm_large_change,
            ),
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={
            "program": code,
            "if_match": base,
            "confirm": confirm_large_change,
            **body.model_dump(mode="json"),
        },
    )


@router.get(
    "/programs/{code}/rules/versions",
    response_model=list[RuleSetVersionOut],
    responses=responses(NotFound),
    summary="Every version, newest first",
)
def rule_versions(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> list[RuleSetVersionOut]:
    def run(s: Session) -> list[RuleSetVersionOut]:
        program = get_program(s, code)
        return [
            RuleSetVersionOut(
                version=r.version,
                created_at=r.created_at,
                actor=r.actor,
                note=r.note,
                current=r.version == program.rule_version,
            )
            for r in rules.list_versions(s, program)
        ]

    return http.read(db, run)


@router.get(
    "/programs/{code}/rules/versions/{version}",
    response_model=RuleSetOut,
    responses=responses(NotFound),
    summary="One version of the rule set",
)
def rule_version(
    code: str = ProgramCode,
    version: int = Path(ge=1, le=10**6),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> RuleSetOut:
    return http.read(db, lambda s: _out(rules.get_version(s, get_program(s, code), version)))


@router.get(
    "/programs/{code}/rules/diff",
    response_model=RuleDiffOut,
    responses=responses(NotFound),
    summary="Rules added, removed and changed between two versions",
)
def rule_diff(
    code: str = ProgramCode,
    from_version: int | None = Query(
        None, alias="from", ge=1, le=10**6, description="Default: the version before `to`"
    ),
    to_version: int | None = Query(
        None, alias="to", ge=1, le=10**6, description="Default: the current version"
    ),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> dict[str, Any]:
    def run(s: Session) -> dict[str, Any]:
        program = get_program(s, code)
        to = to_version or program.rule_version
        return rules.compare(s, program, from_version or max(to - 1, 1), to)

    return http.read(db, run)


@documents.post(
    "/programs/{code}/rules/items",
    status_code=201,
    response_model=RuleSetOut,
    responses=responses(
        NotFound, Conflict, StaleVersion, ConfirmationRequired, IdempotencyConflict
    ),
    summary="Add one rule (at `position`, default last) in a new version",
)
def add_rule(
    rule: Annotated[Rule, Body()],
    code: str = ProgramCode,
    position: int | None = Query(None, ge=0, le=1000, description="0 puts it first; default last"),
    note: str | None = Note,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
    if_match: str | None = http.IfMatch,
    confirm_large_change: bool = ConfirmLarge,
):
    base = _base_version(if_match)
    data = rule.model_dump(mode="json", exclude_none=True)
    return http.write(
        db,
        _change(
            code,
            lambda s, p: publishing.add_rule(
                s,
                p,
                data,
                actor=actor,
                now=http.now(),
                note=note,
                expected_version=base,
                position=position,
                confirm=confirm_large_change,
            ),
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={
            "program": code,
            "if_match": base,
            "position": position,
            "note": note,
            "confirm": confirm_large_change,
            "rule": data,
        },
        status_code=201,
    )


@documents.put(
    "/programs/{code}/rules/items/{rule_id}",
    response_model=RuleSetOut,
    responses=responses(NotFound, StaleVersion, ConfirmationRequired, IdempotencyConflict),
    summary="Replace one rule in a new version (a different body id renames it)",
)
def replace_rule(
    rule: Annotated[Rule, Body()],
    code: str = ProgramCode,
    rule_id: str = RuleId,
    note: str | None = Note,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
    if_match: str | None = http.IfMatch,
    confirm_large_change: bool = ConfirmLarge,
):
    base = _base_version(if_match)
    data = rule.model_dump(mode="json", exclude_none=True)
    return http.write(
        db,
        _change(
            code,
            lambda s, p: publishing.replace_rule(
                s,
                p,
                rule_id,
                data,
                actor=actor,
                now=http.now(),
                note=note,
                expected_version=base,
                confirm=confirm_large_change,
            ),
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={
            "program": code,
            "if_match": base,
            "rule_id": rule_id,
            "note": note,
            "confirm": confirm_large_change,
            "rule": data,
        },
    )


@router.delete(
    "/programs/{code}/rules/items/{rule_id}",
    response_model=RuleSetOut,
    responses=responses(NotFound, StaleVersion, ConfirmationRequired, IdempotencyConflict),
    summary="Remove one rule in a new version",
)
def remove_rule(
    code: str = ProgramCode,
    rule_id: str = RuleId,
    note: str | None = Note,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
    if_match: str | None = http.IfMatch,
    confirm_large_change: bool = ConfirmLarge,
):
    base = _base_version(if_match)
    return http.write(
        db,
        _change(
            code,
            lambda s, p: publishing.remove_rule(
                s,
                p,
                rule_id,
                actor=actor,
                now=http.now(),
                note=note,
                expected_version=base,
                confirm=confirm_large_change,
            ),
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={
            "program": code,
            "if_match": base,
            "rule_id": rule_id,
            "note": note,
            "confirm": confirm_large_change,
            "delete": True,
        },
    )


@router.post(
    "/programs/{code}/events",
    status_code=201,
    response_model=EventOut,
    responses=responses(NotFound, MemberBlocked, Conflict, IdempotencyConflict),
    summary="Credit a non-purchase event (sign-up, birthday, review …) by the rules",
)
def record_event(
    body: EventRequest,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    return http.write(
        db,
        lambda s: events.record_event(s, get_program(s, code), body, actor=actor, now=http.now()),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.get(
    "/programs/{code}/entries/{entry_id}/explanation",
    response_model=events.ExplanationOut,
    responses=responses(NotFound),
    summary="Why an entry has the points it has, in plain words",
)
def explain_entry(
    code: str = ProgramCode,
    entry_id: int = Path(ge=1, le=2**53),
    language: Literal["en", "ko", "zh"] | None = Query(
        None, description="Default: the member's language"
    ),
    skipped: bool = Query(
        False, description="Also list the rules that did not apply, each with why"
    ),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> events.ExplanationOut:
    return http.read(
        db,
        lambda s: events.explain_entry(
            s, get_program(s, code), entry_id, language, skipped=skipped
        ),
    )


@router.post(
    "/programs/{code}/rules/simulate",
    responses={
        **responses(NotFound),
        200: {
            "content": {"application/json": {}, "text/csv": {}},
            "description": "The what-if report (JSON, or CSV with format=csv)",
        },
    },
    response_class=Response,
    summary="Replay a date range's purchases under a proposed rule set; writes nothing",
)
def simulate(
    body: SimulateRequest,
    code: str = ProgramCode,
    format: Literal["json", "csv"] = Query("json"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> Response:
    from patron.rules import simulate as what_if

    if body.date_to < body.date_from:
        raise Invalid("to: must not be before from", code="invalid_range")
    proposed = rules.validate_doc(body.rules.model_dump(mode="json", exclude_none=True))
    report = http.read(
        db,
        lambda s: what_if.simulate(
            s,
            get_program(s, code),
            proposed,
            date_from=body.date_from,
            date_to=body.date_to,
            top=body.top,
            shift_years=body.shift_years,
        ),
    )
    if format == "csv":
        name = f"{code}-what-if-{body.date_from}-{body.date_to}.csv"
        return Response(
            what_if.to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    return Response(report.model_dump_json(), media_type="application/json")


router.include_router(documents)
