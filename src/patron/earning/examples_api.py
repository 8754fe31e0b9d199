"""Rule tests over HTTP: keep example sales with the points they must earn, and run them against
the rules in force or a proposed rule set (JSON, or JUnit XML for a CI)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import Response

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.earning import examples
from patron.earning.examples import EXAMPLE_NAME, ExampleIn, ExampleOut, ExampleRun
from patron.errors import Forbidden, IdempotencyConflict, Invalid, NotFound, Unauthorized, responses
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program
from patron.rules import service as rules
from patron.rules.model import RuleSetDoc

router = APIRouter(
    prefix="/api/v1", tags=["rules"], responses=responses(Unauthorized, Forbidden, Invalid)
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
Name = Path(pattern=EXAMPLE_NAME, description="The example's name, e.g. basic-25800")


@router.get(
    "/programs/{code}/rules/examples",
    response_model=list[ExampleOut],
    responses=responses(NotFound),
    summary="The program's rule examples (sales with the points they must earn)",
)
def list_examples(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> list[ExampleOut]:
    return http.read(db, lambda s: examples.list_examples(s, get_program(s, code)))


@router.post(
    "/programs/{code}/rules/examples/run",
    response_model=ExampleRun,
    responses={
        **responses(NotFound),
        200: {
            "description": "The run; `format=junit` answers JUnit XML instead",
            "content": {"application/xml": {"schema": {"type": "string"}}},
        },
    },
    summary="Run every example against the rules in force, or against a proposed rule set",
    description="Each example is priced by the rules core under the rule set in the body (the "
    "rules in force when there is none) and under the rules in force: `passed` says whether "
    "the expected points came out, `changed` whether the proposal moves them. Nothing is "
    "written.",
)
def run_examples(
    proposal: RuleSetDoc | None = Body(None, description="A rule set to test instead"),
    code: str = ProgramCode,
    output: Literal["json", "junit"] = Query("json", alias="format"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> ExampleRun | Response:
    doc = None
    if proposal is not None:
        doc = rules.validate_doc(proposal.model_dump(mode="json", exclude_none=True))
    report = http.read(
        db, lambda s: examples.run(s, get_program(s, code), proposal=doc, now=http.now())
    )
    if output == "junit":
        return Response(examples.junit(report), media_type="application/xml")
    return report


@router.get(
    "/programs/{code}/rules/examples/{name}",
    response_model=ExampleOut,
    responses=responses(NotFound),
    summary="One rule example",
)
def get_example(
    code: str = ProgramCode,
    name: str = Name,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read", "pos")),
) -> ExampleOut:
    return http.read(db, lambda s: examples.get_example(s, get_program(s, code), name))


@router.put(
    "/programs/{code}/rules/examples/{name}",
    response_model=ExampleOut,
    responses=responses(NotFound, IdempotencyConflict),
    summary="Create or replace a rule example",
)
def put_example(
    body: ExampleIn,
    code: str = ProgramCode,
    name: str = Name,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
) -> Response:
    return http.write(
        db,
        lambda s: examples.save(s, get_program(s, code), name, body, actor=actor, now=http.now())[
            0
        ],
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"program": code, "name": name, **body.model_dump(mode="json")},
    )


@router.delete(
    "/programs/{code}/rules/examples/{name}",
    status_code=204,
    responses=responses(NotFound),
    summary="Delete a rule example",
)
def delete_example(
    code: str = ProgramCode,
    name: str = Name,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> Response:
    with db.unit_of_work() as session:
        examples.delete(session, get_program(session, code), name, actor=actor, now=http.now())
    return Response(status_code=204)
