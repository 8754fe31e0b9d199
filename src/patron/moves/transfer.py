"""Member-to-member transfers of points, in programs that opt in (docs/moves.md).

Under both accounts' locks (account id order) the sender's spendable lots are taken in the
normal spend order (soonest expiry first) by one `transfer_out` entry; the receiver gets one
new lot per expiry date with a `transfer_in` entry each, so the points keep their expiry.
Limits (per transfer, per sender per program day) are checked after the locks, so two
transfers at once cannot both pass them (and cannot spend the same points twice). A key makes
a retry answer the first result."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.idempotency import request_hash
from patron.audit.service import Actor
from patron.errors import Conflict, IdempotencyConflict, InsufficientPoints, Invalid, NotFound
from patron.members.models import Member
from patron.moves.common import more_ids
from patron.moves.models import Transfer, TransferSettings
from patron.programs.models import Program
from patron.sales.plan import AccountState, LotMove, Planner
from patron.sales.points import operate_pair

KINDS = ("transfer_out", "transfer_in")


class TransferRefused(Conflict):
    """transfers_disabled, over_transfer_limit, over_daily_limit, member_not_active,
    same_member, account_not_found (409)."""

    code = "transfer_refused"


def settings(session: Session, program: Program) -> TransferSettings:
    row = session.get(TransferSettings, program.id)
    if row is None:
        return TransferSettings(
            program_id=program.id, enabled=False, max_per_transfer=None, max_per_day=None
        )
    return row


def settings_out(row: TransferSettings) -> dict[str, Any]:
    return {
        "enabled": bool(row.enabled),
        "max_per_transfer": row.max_per_transfer,
        "max_per_day": row.max_per_day,
    }


def set_settings(
    session: Session,
    program: Program,
    *,
    enabled: bool,
    max_per_transfer: int | None,
    max_per_day: int | None,
    actor: Actor,
    now: datetime,
) -> TransferSettings:
    for name, value in (("max_per_transfer", max_per_transfer), ("max_per_day", max_per_day)):
        if value is not None and not 0 < value <= 10**12:
            raise Invalid(f"{name} must be a positive number of points", code=f"invalid_{name}")
    row = session.get(TransferSettings, program.id)
    before = settings_out(row) if row is not None else None
    if row is None:
        row = TransferSettings(program_id=program.id)
        session.add(row)
    row.enabled, row.max_per_transfer, row.max_per_day = enabled, max_per_transfer, max_per_day
    row.updated_at = now
    after = settings_out(row)
    if before != after:
        audit.record(
            session,
            actor=actor,
            action="program.transfers_changed",
            subject_type="program",
            subject_id=program.code,
            program_id=program.id,
            at=now,
            before=before,
            after=after,
        )
    session.flush()
    return row


def _day_start(now: datetime, timezone: str) -> datetime:
    tz = ZoneInfo(timezone)
    local = now.astimezone(tz)
    return datetime.combine(local.date(), time(0), tzinfo=tz)


def transfer(
    session: Session,
    program: Program,
    sender_id: int,
    *,
    receiver_id: int,
    points: int,
    key: str,
    note: str | None,
    actor: Actor,
    now: datetime,
) -> dict[str, Any]:
    """Give `points` of `sender_id` to `receiver_id` in `program`; the result (the first one
    for a key already used)."""
    if not key or len(key) > 200:
        raise Invalid(
            "a transfer needs an idempotency key (1 to 200 characters)", code="key_required"
        )
    if note is not None and len(note) > 200:
        raise Invalid("the note is at most 200 characters", code="invalid_note")
    if not 0 < points <= 10**12:
        raise Invalid("points must be a positive whole number", code="invalid_points")
    digest = request_hash({"to": receiver_id, "points": points, "note": note})

    def replay() -> dict[str, Any] | None:
        done = session.scalars(
            select(Transfer).where(
                Transfer.program_id == program.id,
                Transfer.sender_id == sender_id,
                Transfer.key == key,
            )
        ).first()
        if done is None:
            return None
        if done.request_hash != digest:
            raise IdempotencyConflict(
                f"key {key!r} was used for a different transfer; use a new key"
            )
        return dict(done.result) | {"replayed": True}

    first = replay()
    if first is not None:
        return first
    if sender_id == receiver_id:
        raise TransferRefused("a member cannot transfer points to herself", code="same_member")
    members = {
        m.id: m
        for m in session.scalars(select(Member).where(Member.id.in_([sender_id, receiver_id])))
    }
    for member_id in (sender_id, receiver_id):
        if member_id not in members:
            raise NotFound(f"no member with id {member_id}", code="member_not_found")
        if members[member_id].status != "active":
            raise TransferRefused(
                f"member {member_id} is {members[member_id].status}: no transfers",
                code="member_not_active",
            )
    conf = settings(session, program)
    if not conf.enabled:
        raise TransferRefused(
            f"program {program.code} does not allow transfers", code="transfers_disabled"
        )
    if conf.max_per_transfer is not None and points > conf.max_per_transfer:
        raise TransferRefused(
            f"at most {conf.max_per_transfer} points per transfer", code="over_transfer_limit"
        )
    from patron.ledger.models import Account

    for member_id in (sender_id, receiver_id):
        if (
            session.scalar(
                select(Account.id).where(
                    Account.program_id == program.id, Account.member_id == member_id
                )
            )
            is None
        ):
            raise TransferRefused(
                f"member {member_id} is not in program {program.code}", code="not_in_program"
            )
    note_text = f": {note}" if note else ""
    reasons = (
        f"transfer to member {receiver_id}{note_text}",
        f"transfer from member {sender_id}{note_text}",
    )
    out_id: list[int] = []

    def plan(planner: Planner, src: AccountState, dst: AccountState) -> dict[str, Any]:
        # Under the locks: a transfer with the same key that went first is answered again.
        again = replay()
        if again is not None:
            return again
        if conf.max_per_day is not None:
            today = int(
                session.scalar(
                    select(func.coalesce(func.sum(Transfer.points), 0)).where(
                        Transfer.program_id == program.id,
                        Transfer.sender_id == sender_id,
                        Transfer.at >= _day_start(now, program.timezone),
                    )
                )
                or 0
            )
            if today + points > conf.max_per_day:
                raise TransferRefused(
                    f"at most {conf.max_per_day} points a day; {today} already transferred today",
                    code="over_daily_limit",
                )
        balance = src.available - src.debt
        if points > balance:
            raise InsufficientPoints(
                f"{points} points needed but only {max(balance, 0)} are available"
            )
        taken = planner._lots_for(src, points)
        moves = [LotMove(lot, part, group="expiry") for lot, part in taken]
        more_ids(session, planner, lots=len(moves), entries=len(moves) + 1)
        out, ins = planner.move_lots(
            src.member_id,
            dst.member_id,
            moves,
            kinds=KINDS,
            reasons=reasons,
            details=(
                {"transfer": {"to_member_id": receiver_id, "key": key, "note": note}},
                {"transfer": {"from_member_id": sender_id, "note": note}},
            ),
        )
        out_id.append(out.id)
        return {
            "program": program.code,
            "from_member_id": sender_id,
            "to_member_id": receiver_id,
            "points": points,
            "note": note,
            "key": key,
            "at": now.isoformat(),
            "out_entry_id": out.id,
            "in_entries": [
                {
                    "entry_id": e.id,
                    "points": e.points,
                    "expires_at": (e.details or {}).get("expires_at"),
                }
                for e, _lot in ins
            ],
            "sender_balance": planner.totals(src).balance,
            "receiver_balance": planner.totals(dst).balance,
            "replayed": False,
        }

    result = operate_pair(
        session, program.id, sender_id, receiver_id, plan, actor=actor, now=now, new_rows=(0, 0)
    )
    if result.get("replayed"):
        return result
    session.add(
        Transfer(
            program_id=program.id,
            sender_id=sender_id,
            receiver_id=receiver_id,
            points=points,
            note=note,
            key=key,
            request_hash=digest,
            actor=str(actor)[:80],
            at=now,
            out_entry_id=out_id[0],
            result=result,
        )
    )
    audit.record(
        session,
        actor=actor,
        action="points.transferred",
        subject_type="member",
        subject_id=sender_id,
        program_id=program.id,
        at=now,
        after={"to": receiver_id, "points": points, "note": note, "key": key},
    )
    session.flush()
    return result


def transfers_of(
    session: Session, program: Program, member_id: int, *, limit: int = 50
) -> list[Transfer]:
    """A member's transfers (sent or received) in the program, newest first."""
    return list(
        session.scalars(
            select(Transfer)
            .where(
                Transfer.program_id == program.id,
                (Transfer.sender_id == member_id) | (Transfer.receiver_id == member_id),
            )
            .order_by(Transfer.at.desc(), Transfer.id.desc())
            .limit(limit)
        )
    )
