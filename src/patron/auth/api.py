from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from patron import http
from patron.audit.models import AuditRecord
from patron.audit.service import Actor
from patron.auth import service
from patron.db.engine import Database
from patron.errors import Forbidden, Invalid, NotFound, Unauthorized, responses

router = APIRouter(
    prefix="/api/v1", tags=["access"], responses=responses(Unauthorized, Forbidden, Invalid)
)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=3, description="pos, read and/or admin")


class KeyOut(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
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
        "created_at": row.created_at,
        "revoked_at": row.revoked_at,
    }


@router.post("/api-keys", status_code=201, response_model=KeyCreated)
def create_key(
    body: KeyCreate,
    db: Database = Depends(http.get_db),
    actor: Actor = Depends(http.require("admin")),
):
    def run(s):
        row, key = service.create_key(
            s, name=body.name, scopes=body.scopes, actor=actor, now=http.now()
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
