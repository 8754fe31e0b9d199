"""Small service-level helpers shared by the ledger tests (no HTTP)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.audit.service import CLI
from patron.check import run_check
from patron.db.engine import Database
from patron.ledger import views
from patron.ledger.models import Account, Entry, Lot, Movement
from patron.ledger.schemas import LineIn, Totals
from patron.members.models import Member
from patron.members.schemas import MemberRef
from patron.programs import service as programs
from patron.programs.models import Program
from patron.programs.schemas import ProgramUpdate
from patron.sales import purchases
from patron.sales.schemas import AdjustRequest, PurchaseRequest, RefundLineIn, RefundRequest
from patron.setup import service as setup


def program(session: Session, code: str) -> Program:
    return programs.get_program(session, code)


def buy(
    session: Session,
    prog: Program,
    member_id: int,
    amount: str | int | Decimal,
    *,
    ext: str,
    now: datetime,
    spend: int = 0,
    lines: list[tuple[str, str | int, str | int]] | None = None,
    currency: str | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """A purchase; lines are (id, amount, quantity)."""
    req = PurchaseRequest(
        external_id=ext,
        member=MemberRef(id=member_id),
        amount=Decimal(str(amount)),
        points_to_spend=spend,
        currency=currency,
        occurred_at=occurred_at,
        **(
            {
                "lines": [
                    LineIn(id=i, amount=Decimal(str(a)), quantity=Decimal(str(q)))
                    for i, a, q in lines
                ]
            }
            if lines
            else {}
        ),
    )
    return purchases.purchase(session, prog, req, actor=CLI, now=now)


def refund(
    session: Session,
    prog: Program,
    ext: str,
    *,
    refund_id: str,
    now: datetime,
    amount: str | int | Decimal | None = None,
    lines: list[tuple[str, str | int]] | None = None,
    full: bool = False,
) -> dict[str, Any]:
    req = RefundRequest(
        refund_id=refund_id,
        amount=Decimal(str(amount)) if amount is not None else None,
        lines=[RefundLineIn(id=i, quantity=Decimal(str(q))) for i, q in lines] if lines else None,
        full=full,
    )
    return purchases.refund(session, prog, ext, req, actor=CLI, now=now)


def adjust(session: Session, prog: Program, member_id: int, points: int, *, now: datetime) -> Any:
    req = AdjustRequest(member=MemberRef(id=member_id), points=points, reason="test adjustment")
    return purchases.adjust(session, prog, req, actor=CLI, now=now)


def set_expiry(
    session: Session, prog: Program, *, months: int, kind: str = "months", now: datetime
) -> None:
    setup.update_program(
        session,
        prog,
        ProgramUpdate.model_validate({"expiry": {"kind": kind, "months": months}}),
        actor=CLI,
        now=now,
    )


def account(session: Session, prog: Program, member_id: int) -> Account:
    return views.get_account(session, prog, member_id)


def totals(db: Database, code: str, member_id: int, now: datetime) -> Totals:
    with db.unit_of_work(readonly=True) as session:
        prog = program(session, code)
        return views.totals(session, account(session, prog, member_id), now)


def lot_rows(session: Session, account_id: int) -> list[Lot]:
    return list(session.scalars(select(Lot).where(Lot.account_id == account_id).order_by(Lot.id)))


def movements_of(session: Session, entry_id: int) -> dict[int | None, int]:
    """{lot_id: points} moved by one entry (None = debt)."""
    rows = session.execute(
        select(Movement.lot_id, func.sum(Movement.points))
        .where(Movement.entry_id == entry_id)
        .group_by(Movement.lot_id)
    ).all()
    return {lot_id: int(points) for lot_id, points in rows}


def entries(session: Session, account_id: int, kind: str | None = None) -> list[Entry]:
    stmt = select(Entry).where(Entry.account_id == account_id)
    if kind:
        stmt = stmt.where(Entry.kind == kind)
    return list(session.scalars(stmt.order_by(Entry.id)))


def assert_clean(db: Database) -> None:
    with db.unit_of_work(readonly=True) as session:
        report = run_check(session)
    assert report.ok, report.violations


def member_id(member: Member) -> int:
    return member.id
