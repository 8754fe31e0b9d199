"""HTTP routes of member merges and point transfers (docs/moves.md)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from patron import http
from patron.audit.service import Actor
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.members.service import get_member
from patron.moves import merge as merges
from patron.moves import transfer as transfers
from patron.programs.schemas import CODE_PATTERN
from patron.programs.service import get_program

router = APIRouter(
    prefix="/api/v1", tags=["members"], responses=responses(Unauthorized, Forbidden, Invalid)
)
MemberId = Path(ge=1, le=2**53, description="The member's id")
Code = Path(pattern=CODE_PATTERN, description="The program's code")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MergeIn(Strict):
    into: int = Field(ge=1, le=2**53, description="The surviving member's id")
    reason: str = Field(min_length=1, max_length=500, description="Why (kept in the history)")


class MergeProgramOut(BaseModel):
    program: str
    points: int
    pending: int
    debt: int
    lots: int
    qualifying_days: int
    entries: int
    purchases: int
    tier: str | None


class MergeOut(BaseModel):
    source_id: int
    survivor_id: int
    reason: str
    merged_at: str
    actor: str
    cards_moved: int
    coupons_moved: int
    programs: list[MergeProgramOut]


class TransferIn(Strict):
    to_member: int = Field(ge=1, le=2**53, description="The receiving member's id")
    points: int = Field(ge=1, le=10**12)
    note: str | None = Field(None, max_length=200)
    idempotency_key: str = Field(
        min_length=1, max_length=200, description="A retry with the same key answers the first"
    )


class TransferEntryOut(BaseModel):
    entry_id: int
    points: int
    expires_at: str | None


class TransferOut(BaseModel):
    program: str
    from_member_id: int
    to_member_id: int
    points: int
    note: str | None
    key: str
    at: str
    out_entry_id: int
    in_entries: list[TransferEntryOut]
    sender_balance: int
    receiver_balance: int
    replayed: bool


class TransferSettingsIn(Strict):
    enabled: bool
    max_per_transfer: int | None = Field(None, ge=1, le=10**12)
    max_per_day: int | None = Field(None, ge=1, le=10**12)


class TransferSettingsOut(BaseModel):
    enabled: bool
    max_per_transfer: int | None
    max_per_day: int | None


@router.post(
    "/members/{member_id}/merge",
    response_model=MergeOut,
    responses=responses(NotFound, Conflict),
    summary="Merge a duplicate member into a surviving one (staff, with a reason)",
)
def merge_member(
    body: MergeIn,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> Any:
    """Points (lots with their own expiry), debt, tier-qualifying history, purchases, cards
    and coupons move to `into`; the higher tier stays. Merging again answers the first result.
    422 same_member; 409 already_merged, member_not_mergeable, no_common_program."""

    def run(s):
        return merges.merge(
            s, member_id, body.into, reason=body.reason, actor=actor, now=http.now()
        )

    with db.unit_of_work() as session:
        return run(session)


@router.post(
    "/programs/{code}/members/{member_id}/transfers",
    response_model=TransferOut,
    responses=responses(NotFound, Conflict),
    summary="Give points to another member of the program",
)
def transfer_points(
    body: TransferIn,
    code: str = Code,
    member_id: int = MemberId,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("pos")),
) -> Any:
    """The sender's lots, soonest expiry first, become the receiver's with the same expiry.
    409 transfers_disabled, over_transfer_limit, over_daily_limit, insufficient_points,
    not_in_program, member_not_active, same_member, idempotency_conflict."""
    with db.unit_of_work() as session:
        program = get_program(session, code)
        get_member(session, member_id, actor=actor)
        get_member(session, body.to_member, actor=actor)
        return transfers.transfer(
            session,
            program,
            member_id,
            receiver_id=body.to_member,
            points=body.points,
            key=body.idempotency_key,
            note=body.note,
            actor=actor,
            now=http.now(),
        )


@router.get(
    "/programs/{code}/transfer-settings",
    response_model=TransferSettingsOut,
    responses=responses(NotFound),
)
def read_transfer_settings(
    code: str = Code,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("read", "pos")),
) -> Any:
    return http.read(
        db, lambda s: transfers.settings_out(transfers.settings(s, get_program(s, code)))
    )


@router.put(
    "/programs/{code}/transfer-settings",
    response_model=TransferSettingsOut,
    responses=responses(NotFound),
)
def write_transfer_settings(
    body: TransferSettingsIn,
    code: str = Code,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
) -> Any:
    with db.unit_of_work() as session:
        row = transfers.set_settings(
            session,
            get_program(session, code),
            enabled=body.enabled,
            max_per_transfer=body.max_per_transfer,
            max_per_day=body.max_per_day,
            actor=actor,
            now=http.now(),
        )
        return transfers.settings_out(row)
