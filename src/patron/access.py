"""The access API: API keys (create, list, revoke) and the audit log (read, verify its chain).

A module above patron.http, not patron.auth's: http checks every request's key with
patron.auth, and these routes are requests like any other (a revocation also makes this
worker forget the keys it remembered, `http.forget_keys`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from patron import http
from patron.audit.models import AuditRecord
from patron.audit.service import Actor
from patron.auth import service
from patron.db.engine import Database
from patron.errors import Forbidden, Invalid, NotFound, Unauthorized, responses
from patron.programs.schemas import CODE_PATTERN

router = APIRouter(
    prefix="/api/v1", tags=["access"], responses=responses(Unauthorized, Forbidden, Invalid)
)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    scopes: list[Annotated[str, Field(max_length=20)]] = Field(
        min_length=1, max_length=3, description="pos, read and/or admin"
    )
    programs: list[Annotated[str, Field(pattern=CODE_PATTERN)]] | None = Field(
        None,
        max_length=100,
        description="Limit the key to these programs (codes); omit for every program. A key "
        "limited to programs gets 403 elsewhere and on deployment-wide calls.",
    )
    stores: list[Annotated[str, Field(min_length=1, max_length=40)]] | None = Field(
        None,
        max_length=500,
        description="Limit the key's sales and refunds to these stores (codes) of its programs.",
    )


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    programs: list[str] | None = Field(description="The programs it is limited to; null: all")
    stores: list[str] | None = Field(description="The stores it is limited to; null: all")
    unrestricted: bool = Field(description="Reaches every program of the deployment")
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The full key. It is shown only now; store it safely.")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    subject_type: str
    subject_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


def _out(row) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "prefix": row.prefix,
        "scopes": row.scopes,
        "programs": row.programs,
        "stores": row.stores,
        "unrestricted": row.programs is None,
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


@router.post("/api-keys", status_code=201, response_model=KeyCreated, responses=responses(NotFound))
def create_key(
    body: KeyCreate,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
):
    def run(s):
        row, key = service.create_key(
            s,
            name=body.name,
            scopes=body.scopes,
            programs=body.programs,
            stores=body.stores,
            actor=actor,
            now=http.now(),
        )
        return KeyCreated(**_out(row), key=key)

    # No idempotent replay here: a stored answer would keep the secret.
    return http.write(db, run, actor=actor, idempotency_key=None, payload=None, status_code=201)


@router.get("/api-keys", response_model=list[KeyOut])
def list_keys(db: Database = Depends(http.get_db), _actor: Actor = Depends(http.require("admin"))):
    return http.read(db, lambda s: [KeyOut(**_out(r)) for r in service.list_keys(s)])


@router.delete("/api-keys/{key_id}", response_model=KeyOut, responses=responses(NotFound))
def revoke_key(
    key_id: int = Path(ge=1, le=2**53),
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
):
    def run(s):
        return KeyOut(**_out(service.revoke_key(s, key_id, actor=actor, now=http.now())))

    response = http.write(db, run, actor=actor, idempotency_key=None, payload=None)
    http.forget_keys()
    return response


@router.get("/audit", response_model=list[AuditOut], tags=["operations"])
def audit_log(
    subject_type: str | None = Query(None, max_length=30),
    subject_id: str | None = Query(None, max_length=60),
    action: str | None = Query(None, max_length=60),
    before_id: int | None = Query(None, ge=1, le=2**53),
    limit: int = Query(100, ge=1, le=1000),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("admin")),
):
    from sqlalchemy import select

    def run(s):
        stmt = select(AuditRecord)
        if subject_type:
            stmt = stmt.where(AuditRecord.subject_type == subject_type)
        if subject_id:
            stmt = stmt.where(AuditRecord.subject_id == subject_id)
        if action:
            stmt = stmt.where(AuditRecord.action == action)
        if before_id:
            stmt = stmt.where(AuditRecord.id < before_id)
        rows = s.scalars(stmt.order_by(AuditRecord.id.desc()).limit(limit))
        return [
            AuditOut(
                id=r.id,
                at=r.at,
                actor=r.actor,
                action=r.action,
                subject_type=r.subject_type,
                subject_id=r.subject_id,
                before=r.before,
                after=r.after,
            )
            for r in rows
        ]

    return http.read(db, run)


class AuditFindingOut(BaseModel):
    kind: str = Field(
        description="edited, deleted, inserted (a record in a sealed range that was not sealed), "
        "seal_altered, chain_broken or head_missing"
    )
    seal: int | None = Field(description="The seal's sequence number, if one is concerned")
    record_id: int | None
    program_id: int | None
    detail: str


class AuditVerifyOut(BaseModel):
    ok: bool = Field(description="False when any record or seal was changed")
    seals: int
    sealed_records: int
    unsealed_records: int = Field(description="Newer records not yet sealed (not tampering)")
    redacted_records: int = Field(
        0, description="Sealed records an erasure redacted (accepted: both digests are on record)"
    )
    verified_up_to: datetime | None = Field(description="When the newest sealed record was made")
    head_seq: int
    head_hash: str = Field(description="Keep it outside the database; pass it as expect_head")
    expected_head_seq: int | None = Field(description="Where expect_head was found in the chain")
    first_tampered_record: int | None
    findings: list[AuditFindingOut]


@router.get(
    "/audit/verify",
    response_model=AuditVerifyOut,
    tags=["operations"],
    responses=responses(NotFound),
)
def audit_verify(
    program: str | None = Query(None, max_length=40, description="Only this program's records"),
    expect_head: str | None = Query(
        None, pattern="^[0-9a-f]{64}$", description="A head hash recorded earlier"
    ),
    db: Database = Depends(http.get_db),
    _actor: Actor = Depends(http.require("admin")),
):
    """Recompute the audit log's hash chain (see `patron audit verify`). Tampering is an
    answer, not an error: `ok` is false and `findings` say which seal and record."""
    from patron.audit.chain import verify
    from patron.programs.service import get_program

    def run(s):
        program_id = None if program is None else get_program(s, program).id
        report = verify(s, program_id=program_id, expect_head=expect_head)
        return AuditVerifyOut(
            ok=report.ok,
            seals=report.seals,
            sealed_records=report.sealed_records,
            unsealed_records=report.unsealed_records,
            redacted_records=report.redacted_records,
            verified_up_to=report.verified_up_to,
            head_seq=report.head_seq,
            head_hash=report.head_hash,
            expected_head_seq=report.expected_head_seq,
            first_tampered_record=report.first_record,
            findings=[
                AuditFindingOut(
                    kind=f.kind,
                    seal=f.seal_seq,
                    record_id=f.record_id,
                    program_id=f.program_id,
                    detail=f.detail,
                )
                for f in report.findings
            ],
        )

    return http.read(db, run)
