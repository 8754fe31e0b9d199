"""Member merge: a duplicate member (the source) folded into a surviving member.

Per program of the source, under both accounts' locks (account id order, as every
multi-account writer takes them), the planner writes compensating, explained entries:
`merge_out` on the source taking every open lot's remainder, `merge_in` on the survivor
creating a lot with the same expiry, pending date and earning date; a debt moves the same way;
tier-qualifying points move as zero-point entries dated at their day, so the survivor's tier
windows count them. Purchases move to the survivor (refunds then take from the survivor),
except those whose spent points are still open (a refund gives those back to the source's lots,
see docs/moves.md). Cards and coupons move; the survivor keeps the higher tier; the source is
marked merged (status "merged", merged_into). A repeated merge answers the first result and
sweeps whatever reached the source since (a sale that was waiting on its lock, a refund).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.coupons.models import Coupon
from patron.db import config_version
from patron.db.engine import Database
from patron.errors import Conflict, Forbidden, Invalid, NotFound
from patron.events.outbox import emit
from patron.fraud.models import FraudReview
from patron.ledger.models import Account, Entry, Lot, Purchase
from patron.members.models import Card, Member
from patron.members.service import member_programs
from patron.moves.common import more_ids
from patron.moves.models import MemberMerge
from patron.programs.models import Program
from patron.sales.plan import AccountState, LotMove, Planner
from patron.sales.points import operate_pair
from patron.tiers import service as tiers

KINDS = ("merge_out", "merge_in")
MERGEABLE = ("active", "blocked")


class MergeRefused(Conflict):
    """same_member is 422; already_merged, member_not_mergeable, no_common_program and
    open_reviews (the source has sales held by the fraud controls) are 409."""

    code = "merge_refused"


def _lock_members(session: Session, ids: list[int]) -> dict[int, Member]:
    """Both members' rows, locked in id order (two merges of one source wait for each other
    here and the second sees the first's result)."""
    rows = session.scalars(
        select(Member)
        .where(Member.id.in_(sorted(ids)))
        .order_by(Member.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    return {m.id: m for m in rows}


def _count(result: object) -> int:
    """The rows an UPDATE changed."""
    return int(getattr(result, "rowcount", 0) or 0)


def merge(
    session: Session,
    source_id: int,
    survivor_id: int,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
) -> dict[str, Any]:
    """Merge `source_id` into `survivor_id` (see the module's docstring); the result."""
    reason = (reason or "").strip()
    if not reason or len(reason) > 500:
        raise Invalid("a merge needs a reason (1 to 500 characters)", code="reason_required")
    if source_id == survivor_id:
        raise MergeRefused("a member cannot be merged into itself", code="same_member", status=422)
    members = _lock_members(session, [source_id, survivor_id])
    source, survivor = members.get(source_id), members.get(survivor_id)
    from patron.members.service import in_reach

    for member_id, member in ((source_id, source), (survivor_id, survivor)):
        if member is None or not in_reach(session, actor, member_id):
            raise NotFound(f"no member with id {member_id}", code="member_not_found")
    assert source is not None and survivor is not None
    done = session.scalars(select(MemberMerge).where(MemberMerge.source_id == source_id)).first()
    if done is not None:
        if done.survivor_id != survivor_id:
            raise MergeRefused(
                f"member {source_id} was already merged into member {done.survivor_id}",
                code="already_merged",
            )
        _sweep(session, done, source, survivor, actor=actor, now=now)
        return dict(done.result)
    if survivor.status == "merged":
        raise MergeRefused(
            f"member {survivor_id} was merged into member {survivor.merged_into}: merge into "
            "that one",
            code="already_merged",
        )
    for member in (source, survivor):
        if member.status not in MERGEABLE:
            raise MergeRefused(
                f"member {member.id} is {member.status} and cannot be merged",
                code="member_not_mergeable",
            )
    src_programs, dst_programs = (
        member_programs(session, source_id),
        member_programs(session, survivor_id),
    )
    for program in (*src_programs, *dst_programs):
        if not actor.reaches(program.code):
            raise Forbidden(
                f"program {program.code} is outside the programs this key may act in",
                code="program_not_allowed",
            )
    if src_programs and not {p.id for p in src_programs} & {p.id for p in dst_programs}:
        raise MergeRefused(
            f"members {source_id} and {survivor_id} share no program: a merge folds duplicates "
            "of one program's member",
            code="no_common_program",
        )
    held = session.scalar(
        select(func.count())
        .select_from(FraudReview)
        .where(FraudReview.member_id == source_id, FraudReview.status == "open")
    )
    if held:
        # Its held points would move while the review stays with the sale: decide first.
        raise MergeRefused(
            f"member {source_id} has {held} sale(s) held for review: confirm or reverse them "
            "before the merge",
            code="open_reviews",
        )
    programs = _move_all(session, source, survivor, reason=reason, actor=actor, now=now)
    cards = session.execute(
        update(Card).where(Card.member_id == source_id).values(member_id=survivor_id)
    )
    coupons = session.execute(
        update(Coupon).where(Coupon.member_id == source_id).values(member_id=survivor_id)
    )
    source.status = "merged"
    source.merged_into = survivor_id
    source.updated_at = now
    result: dict[str, Any] = {
        "source_id": source_id,
        "survivor_id": survivor_id,
        "reason": reason,
        "merged_at": now.isoformat(),
        "actor": str(actor),
        "cards_moved": _count(cards),
        "coupons_moved": _count(coupons),
        "programs": programs,
    }
    session.add(
        MemberMerge(
            source_id=source_id,
            survivor_id=survivor_id,
            reason=reason,
            actor=str(actor)[:80],
            at=now,
            result=result,
        )
    )
    for subject, other in ((source_id, survivor_id), (survivor_id, source_id)):
        audit.record(
            session,
            actor=actor,
            action="member.merged",
            subject_type="member",
            subject_id=subject,
            at=now,
            before={"status": source.status if subject != source_id else "active"},
            after={
                "source": source_id,
                "survivor": survivor_id,
                "other": other,
                "reason": reason,
                "cards": result["cards_moved"],
                "coupons": result["coupons_moved"],
                "programs": programs,
            },
        )
    for program in member_programs(session, survivor_id):
        if program.code not in {p["program"] for p in programs}:
            continue
        emit(
            session,
            kind="member.merged",
            program_id=program.id,
            member_id=survivor_id,
            payload={"program": program.code, "source_id": source_id, "survivor_id": survivor_id},
            at=now,
        )
    session.flush()
    return result


def _sweep(
    session: Session,
    done: MemberMerge,
    source: Member,
    survivor: Member,
    *,
    actor: Actor,
    now: datetime,
) -> list[dict[str, Any]]:
    """Whatever reached a merged member since its merge, moved to the survivor the same way."""
    swept = _move_all(session, source, survivor, reason=done.reason, actor=actor, now=now)
    swept = [p for p in swept if p["entries"] or p["purchases"]]
    if swept:
        audit.record(
            session,
            actor=actor,
            action="member.merge_swept",
            subject_type="member",
            subject_id=survivor.id,
            at=now,
            after={"source": source.id, "programs": swept},
        )
    return swept


def sweep(session: Session, source_id: int, *, actor: Actor, now: datetime) -> list[dict[str, Any]]:
    """`_sweep` for a merged member (nothing for another)."""
    done = session.scalars(select(MemberMerge).where(MemberMerge.source_id == source_id)).first()
    if done is None:
        return []
    members = _lock_members(session, [source_id, done.survivor_id])
    return _sweep(
        session, done, members[source_id], members[done.survivor_id], actor=actor, now=now
    )


def merge_and_sweep(
    db: Database, source_id: int, survivor_id: int, *, reason: str, actor: Actor, now: datetime
) -> dict[str, Any]:
    """`merge` in its own transaction, then a sweep in another once it is committed: a sale
    that resolved the source before the merge and waited on its account lock is recorded on
    the source when the merge commits (its snapshot read the member as active); the sweep
    queues behind it on the same lock and moves its points on (decision 0021)."""
    with db.unit_of_work() as session:
        result = merge(session, source_id, survivor_id, reason=reason, actor=actor, now=now)
    with db.unit_of_work() as session:
        sweep(session, source_id, actor=actor, now=now)
    return result


def _move_all(
    session: Session, source: Member, survivor: Member, *, reason: str, actor: Actor, now: datetime
) -> list[dict[str, Any]]:
    out = []
    for program in member_programs(session, source.id):
        out.append(
            _move_program(session, program, source, survivor, reason=reason, actor=actor, now=now)
        )
    return out


def _qualifying_groups(
    session: Session, account_id: int, timezone: str
) -> list[tuple[datetime, int]]:
    """The account's net tier-qualifying points per local day, dated at the day's first
    instant with any (so each group falls in the tier window its entries fall in)."""
    tz = ZoneInfo(timezone)
    days: dict[Any, list[Any]] = {}
    for at, qualifying in session.execute(
        select(Entry.occurred_at, Entry.qualifying)
        .where(Entry.account_id == account_id, Entry.qualifying != 0)
        .order_by(Entry.occurred_at, Entry.id)
    ):
        day = days.setdefault(at.astimezone(tz).date(), [at, 0])
        day[1] += int(qualifying)
    return [(at, total) for at, total in days.values() if total]


def _move_program(
    session: Session,
    program: Program,
    source: Member,
    survivor: Member,
    *,
    reason: str,
    actor: Actor,
    now: datetime,
) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "program": program.code,
        "points": 0,
        "pending": 0,
        "debt": 0,
        "lots": 0,
        "qualifying_days": 0,
        "entries": 0,
    }
    reasons = (
        f"merged into member {survivor.id}: {reason}",
        f"merged from member {source.id}: {reason}",
    )
    details = (
        {"merge": {"survivor_id": survivor.id, "reason": reason}},
        {"merge": {"source_id": source.id, "reason": reason}},
    )

    def plan(planner: Planner, src: AccountState, dst: AccountState) -> tuple[int, int]:
        lots = [*(src.lots or []), *(src.pending_lots or [])]
        info = (
            {
                lot_id: (pending_until, earned_at)
                for lot_id, pending_until, earned_at in session.execute(
                    select(Lot.id, Lot.pending_until, Lot.earned_at).where(
                        Lot.id.in_([lot.id for lot in lots])
                    )
                )
            }
            if lots
            else {}
        )
        pending = {id(lot) for lot in src.pending_lots or []}
        moves = [
            LotMove(
                lot,
                lot.remaining,
                pending_until=info[lot.id][0] if id(lot) in pending else None,
                earned_at=info[lot.id][1],
            )
            for lot in lots
        ]
        groups = _qualifying_groups(session, src.account_id, program.timezone)
        more_ids(session, planner, lots=len(moves), entries=len(moves) + 3 + 2 * len(groups))
        summary["points"] = sum(m.points for m in moves if m.pending_until is None)
        summary["pending"] = sum(m.points for m in moves if m.pending_until is not None)
        summary["lots"] = len(moves)
        summary["debt"] = src.debt
        n = len(planner.rows.entries)
        if moves:
            planner.move_lots(
                src.member_id, dst.member_id, moves, kinds=KINDS, reasons=reasons, details=details
            )
        planner.move_debt(
            src.member_id, dst.member_id, kinds=KINDS, reasons=reasons, details=details
        )
        summary["qualifying_days"] = planner.move_qualifying(
            src.member_id, dst.member_id, groups, kinds=KINDS, reasons=reasons, details=details
        )
        summary["entries"] = len(planner.rows.entries) - n
        return src.account_id, dst.account_id

    # A sale that resolved the source before this commits and waits on its account lock read
    # the member as active in that statement's snapshot; a new configuration token makes it
    # read the account again after the lock (`points.settled_read`), now seeing "merged", so
    # it is refused instead of landing on the source (decision 0021).
    config_version.touch(session, program.id)
    src_account, dst_account = operate_pair(
        session, program.id, source.id, survivor.id, plan, actor=actor, now=now, new_rows=(0, 0)
    )
    # Purchases follow the member (refunds take from the survivor, tier spend and visits count
    # there), except those whose spent points are still open: a refund gives spent points back
    # to the lots they came from, which stay the source's (a repeated merge sweeps them).
    moved = session.execute(
        update(Purchase)
        .where(
            Purchase.account_id == src_account,
            Purchase.points_spent - Purchase.restored_points <= 0,
        )
        .values(account_id=dst_account)
    )
    summary["purchases"] = _count(moved)
    _keep_higher_tier(session, program, src_account, dst_account, actor=actor, now=now)
    summary["tier"] = session.scalar(select(Account.tier).where(Account.id == dst_account))
    return summary


def _keep_higher_tier(
    session: Session, program: Program, src_id: int, dst_id: int, *, actor: Actor, now: datetime
) -> None:
    src = session.get(Account, src_id, populate_existing=True)
    dst = session.get(Account, dst_id, populate_existing=True)
    assert src is not None and dst is not None
    defs = tiers.definitions(session, program.id)
    if src.tier is None or tiers.rank_of(defs, src.tier) <= tiers.rank_of(defs, dst.tier):
        return
    tiers.move(
        session,
        program,
        dst,
        to_tier=src.tier,
        reason="merge",
        at=now,
        actor=actor,
        valid=src.tier_valid_until,
        grace=src.tier_grace_left,
        note=f"kept the higher tier of merged member {src.member_id}",
        manual_until=src.tier_manual_until,
        manual=src.tier_manual,
    )


def survivor_of(session: Session, member_id: int) -> int | None:
    """The member a merged member now lives on (following chains), or None if not merged."""
    seen = 0
    current = member_id
    while seen < 20:
        nxt = session.scalar(
            select(Member.merged_into).where(Member.id == current, Member.status == "merged")
        )
        if nxt is None:
            return current if current != member_id else None
        current = nxt
        seen += 1
    return current


def merges_into(session: Session, survivor_id: int) -> list[MemberMerge]:
    """Merges a member survived, newest first (the member page lists them)."""
    return list(
        session.scalars(
            select(MemberMerge)
            .where(MemberMerge.survivor_id == survivor_id)
            .order_by(MemberMerge.at.desc(), MemberMerge.id.desc())
        )
    )


def count_merged(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(MemberMerge)) or 0)
