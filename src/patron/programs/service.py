"""Programs and their stores in the database: read, and written as rows. A whole program is its
row and its rule set, written together by `setup.service`, which uses the pieces here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Conflict, Invalid, NotFound
from patron.money import CURRENCY_REGION, minor_unit, quantum
from patron.programs.models import Program, Store
from patron.programs.schemas import (
    EarningRate,
    ExpiryPolicy,
    ProgramCreate,
    ProgramOut,
    ProgramUpdate,
    RedemptionPolicy,
    StoreCreate,
)


def to_out(p: Program) -> ProgramOut:
    return ProgramOut(
        code=p.code,
        name=p.name,
        currency=p.currency,
        timezone=p.timezone,
        country=p.country,
        point_value=p.point_value,
        earning=EarningRate(
            mode=p.earn_mode,
            points=p.earn_points,
            per_amount=p.earn_per_amount,
            rounding=p.earn_rounding,
        ),
        earn_on_redeemed=p.earn_on_redeemed,
        expiry=ExpiryPolicy(kind=p.expiry_kind, months=p.expiry_months, days=p.expiry_days),
        pending_days=p.pending_days,
        redemption=RedemptionPolicy(
            min_points=p.redeem_min_points, step=p.redeem_step, max_share=p.redeem_max_share
        ),
        negative_balance=p.negative_balance,
        rule_version=p.rule_version,
        created_at=p.created_at,
        updated_at=p.updated_at,
    )


def snapshot(p: Program) -> dict[str, Any]:
    """The program's settings as its audit records show them."""
    return to_out(p).model_dump(mode="json", exclude={"created_at", "updated_at"})


def _apply(p: Program, data: dict[str, Any]) -> None:
    for field in (
        "name",
        "timezone",
        "country",
        "point_value",
        "earn_on_redeemed",
        "pending_days",
        "negative_balance",
    ):
        if field in data and data[field] is not None:
            setattr(p, field, data[field])
    if (earning := data.get("earning")) is not None:
        p.earn_mode = earning["mode"]
        p.earn_points = earning["points"]
        p.earn_per_amount = earning["per_amount"]
        p.earn_rounding = earning["rounding"]
    if (expiry := data.get("expiry")) is not None:
        p.expiry_kind = expiry["kind"]
        p.expiry_months = expiry["months"]
        p.expiry_days = expiry.get("days")
    if (redemption := data.get("redemption")) is not None:
        p.redeem_min_points = redemption["min_points"]
        p.redeem_step = redemption["step"]
        p.redeem_max_share = redemption["max_share"]


def _check_amount_fits(p: Program) -> None:
    if p.earn_per_amount != p.earn_per_amount.quantize(quantum(p.currency)):
        raise Invalid(
            f"earning.per_amount {p.earn_per_amount} has more decimals than {p.currency} allows "
            f"({minor_unit(p.currency)})",
            code="invalid_amount",
        )


def add_program(session: Session, data: ProgramCreate, *, actor: Actor, now: datetime) -> Program:
    """A new program's row and its audit record. Not a whole program yet: its rule set's first
    version is published by `setup.service.create_program`, which calls this, in the same
    transaction."""
    if session.scalar(select(Program.id).where(Program.code == data.code)) is not None:
        raise Conflict(
            f"a program with code {data.code!r} already exists", code="duplicate_program"
        )
    p = Program(
        code=data.code,
        currency=data.currency,
        country=data.country or CURRENCY_REGION.get(data.currency, "US"),
        rule_version=1,
        created_at=now,
        updated_at=now,
    )
    _apply(p, data.model_dump())
    _check_amount_fits(p)
    session.add(p)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="program.created",
        subject_type="program",
        subject_id=p.code,
        program_id=p.id,
        at=now,
        after=snapshot(p),
    )
    return p


def apply_update(program: Program, data: ProgramUpdate) -> None:
    """Set the fields `data` gives on the program's row (no audit, no rule set: the caller's,
    `setup.service.update_program`)."""
    given = data.model_dump(exclude_unset=True)
    # A nested policy replaces the old one whole: its omitted fields take their defaults
    # (exclude_unset would drop them and _apply would fail on the missing keys).
    for key in ("earning", "expiry", "redemption"):
        if given.get(key) is not None:
            given[key] = getattr(data, key).model_dump()
    _apply(program, given)
    _check_amount_fits(program)


def get_program(session: Session, code: str) -> Program:
    stmt = select(Program).where(Program.code == code)
    program = session.scalars(stmt).one_or_none()
    if program is None:
        raise NotFound(f"no program with code {code!r}", code="program_not_found")
    return program


def list_programs(session: Session) -> list[Program]:
    return list(session.scalars(select(Program).order_by(Program.id)))


def create_store(
    session: Session, program: Program, data: StoreCreate, *, actor: Actor, now: datetime
) -> Store:
    exists = session.scalar(
        select(Store.id).where(Store.program_id == program.id, Store.code == data.code)
    )
    if exists is not None:
        raise Conflict(
            f"store {data.code!r} already exists in {program.code}", code="duplicate_store"
        )
    store = Store(
        program_id=program.id, code=data.code, name=data.name, active=True, created_at=now
    )
    session.add(store)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="store.created",
        subject_type="store",
        subject_id=f"{program.code}/{store.code}",
        program_id=program.id,
        at=now,
        after={"code": store.code, "name": store.name},
    )
    return store


def get_store(session: Session, program: Program, code: str) -> Store:
    store = session.scalars(
        select(Store).where(Store.program_id == program.id, Store.code == code)
    ).one_or_none()
    if store is None:
        raise NotFound(f"no store {code!r} in program {program.code}", code="store_not_found")
    return store


def list_stores(session: Session, program: Program) -> list[Store]:
    return list(
        session.scalars(select(Store).where(Store.program_id == program.id).order_by(Store.id))
    )
