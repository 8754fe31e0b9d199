"""Campaigns over HTTP: definitions and launch/stop (admin scope), reach and results (read)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query

from patron import http
from patron.audit.service import Actor
from patron.campaigns import service
from patron.campaigns.schemas import CODE, CampaignIn, CampaignOut, ReachOut, ResultsOut
from patron.db.engine import Database
from patron.earning.api import RuleSetRoute
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.programs import service as programs
from patron.programs.schemas import CODE_PATTERN
from patron.segments.service import SegmentNotFound


class CampaignRoute(RuleSetRoute):
    """A malformed earning rule in a rules arm reads as the rule editor's error
    (`invalid_rule_set`, "variants.1.action.rules.0.points: …"); other malformed fields keep
    the usual validation_error."""

    @staticmethod
    def is_rule_error(error: dict[str, Any]) -> bool:
        parts = tuple(error.get("loc", ()))
        return len(parts) > 4 and parts[0] == "body" and parts[3:5] == ("action", "rules")


router = APIRouter(
    prefix="/api/v1",
    tags=["campaigns"],
    route_class=CampaignRoute,
    responses=responses(Unauthorized, Forbidden, Invalid, NotFound, service.CampaignNotFound),
)
ProgramCode = Path(pattern=CODE_PATTERN, description="The program's code, e.g. bakery")
CampaignCode = Path(pattern=CODE, description="The campaign's code, e.g. winback-spring")


@router.get("/programs/{code}/campaigns", response_model=list[CampaignOut])
def list_campaigns(
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> list[CampaignOut]:
    return http.read(
        db,
        lambda s: [
            service.out(s, r) for r in service.list_campaigns(s, programs.get_program(s, code))
        ],
    )


@router.post(
    "/programs/{code}/campaigns",
    response_model=CampaignOut,
    status_code=201,
    responses=responses(service.CampaignExists, SegmentNotFound, service.UnknownReference),
)
def create_campaign(
    body: CampaignIn,
    code: str = ProgramCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """A new campaign, as a draft. 409 campaign_exists; 404 segment_not_found; 422
    unknown_reference (a coupon's reward); 422 invalid_rule_set, unknown_store,
    unknown_segment (a rules arm's earning rules, checked as the rule editor checks them)."""
    return http.write(
        db,
        lambda s: service.out(
            s, service.create(s, programs.get_program(s, code), body, actor=actor, now=http.now())
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, **body.model_dump(mode="json")},
        status_code=201,
    )


@router.get("/programs/{code}/campaigns/{campaign}", response_model=CampaignOut)
def get_campaign(
    code: str = ProgramCode,
    campaign: str = CampaignCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> CampaignOut:
    return http.read(
        db,
        lambda s: service.out(s, service.get_campaign(s, programs.get_program(s, code), campaign)),
    )


@router.put(
    "/programs/{code}/campaigns/{campaign}",
    response_model=CampaignOut,
    responses=responses(Conflict, service.CampaignState, SegmentNotFound, service.UnknownReference),
)
def put_campaign(
    body: CampaignIn,
    code: str = ProgramCode,
    campaign: str = CampaignCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """Replace a draft (409 campaign_state once launched)."""
    return http.write(
        db,
        lambda s: service.out(
            s,
            service.replace(
                s, programs.get_program(s, code), campaign, body, actor=actor, now=http.now()
            ),
        ),
        actor=actor,
        idempotency_key=idempotency_key,
        payload={"code": code, "campaign": campaign, **body.model_dump(mode="json")},
    )


@router.get("/programs/{code}/campaigns/{campaign}/reach", response_model=ReachOut)
def get_reach(
    code: str = ProgramCode,
    campaign: str = CampaignCode,
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> ReachOut:
    """What launching now would do: the segment's members, each arm's size, points and
    coupons needed beside the budget."""

    def run(s) -> ReachOut:
        program = programs.get_program(s, code)
        return service.reach(s, program, service.get_campaign(s, program, campaign), now=http.now())

    return http.read(db, run)


@router.post(
    "/programs/{code}/campaigns/{campaign}/launch",
    response_model=CampaignOut,
    responses=responses(service.CampaignState, SegmentNotFound),
)
def launch_campaign(
    code: str = ProgramCode,
    campaign: str = CampaignCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """Launch a draft: snapshot the segment, assign every member to an arm and give each arm
    its action within the budget (or schedule it for its start). 409 campaign_state unless a
    draft."""

    def run(s) -> CampaignOut:
        program = programs.get_program(s, code)
        row, _given = service.launch(s, program, campaign, actor=actor, now=http.now())
        return service.out(s, row)

    return http.write(
        db, run, actor=actor, idempotency_key=idempotency_key,
        payload={"code": code, "campaign": campaign, "do": "launch"},
    )  # fmt: skip


@router.post(
    "/programs/{code}/campaigns/{campaign}/stop",
    response_model=CampaignOut,
    responses=responses(service.CampaignState),
)
def stop_campaign(
    code: str = ProgramCode,
    campaign: str = CampaignCode,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
    idempotency_key: str | None = http.IdempotencyKey,
):
    """Stop a scheduled or running campaign (409 campaign_state otherwise); results stay."""
    return http.write(
        db,
        lambda s: service.out(
            s, service.stop(s, programs.get_program(s, code), campaign, actor=actor, now=http.now())
        ),
        actor=actor, idempotency_key=idempotency_key,
        payload={"code": code, "campaign": campaign, "do": "stop"},
    )  # fmt: skip


@router.get("/programs/{code}/campaigns/{campaign}/results", response_model=ResultsOut)
def get_results(
    code: str = ProgramCode,
    campaign: str = CampaignCode,
    period: Literal["during", "after"] = Query("during", description="during or after it"),
    lang: Literal["ko", "zh", "en"] = Query("en", description="Language of the verdicts"),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("read")),
) -> ResultsOut:
    """Per arm (variants and the control): members, reached, points and coupons given and
    redeemed, visits, spend and points cost; each variant's uplift over the control with a
    95 % interval and a verdict in `lang` (method in docs/engagement.md)."""

    def run(s) -> ResultsOut:
        program = programs.get_program(s, code)
        row = service.get_campaign(s, program, campaign)
        return service.results(s, program, row, period=period, language=lang, now=http.now())

    return http.read(db, run)
