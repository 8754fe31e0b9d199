"""Record sales: snapshot → plan → apply, for one sale at the till or a chunk of a batch.

Sales are taken in rounds. A round is the longest run of sales that need nothing beyond the
snapshot (most sales); a sale with coupons, or in a program whose rules read caps, purchase
counts or promotion budgets, is a round of its own (it reads those figures as of itself). A
sale that moves its member up a tier is her last of the round: after the round's rows the move
(`tiers.upgrade_if_qualified`: history, event, audit) is written, and her later sales go to the
next round, which reads her account again with the new tier; other members' sales go on.
Every round is one snapshot, one plan and one apply, in the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.clock import EARLIEST_SALE
from patron.coupons import sale as coupons_
from patron.errors import Conflict, NotFound, PatronError
from patron.experiments import arms as rule_arms
from patron.fraud import guard as fraud
from patron.ledger import views
from patron.ledger.models import Account
from patron.members import refs
from patron.members import service as members
from patron.members.models import Member
from patron.money import from_minor
from patron.programs.models import Program
from patron.rules import service as rules
from patron.sales import basket, program_cache, snapshot
from patron.sales.apply import Taken, apply
from patron.sales.plan import Planner, SaleOp
from patron.sales.points import settled_read
from patron.sales.program_cache import ProgramConfig
from patron.sales.schemas import AdjustOut, AdjustRequest, CouponApplied, PurchaseRequest
from patron.tiers import service as tiers

# A round whose order ids or new accounts another writer took first is planned again, seeing
# them; more than this many times in a row means something else is wrong.
ROUND_ATTEMPTS = 5


@dataclass
class Sold:
    """One sale's outcome: its answer (created, or the first answer replayed) or its error."""

    answer: dict[str, Any] | None = None
    created: bool = False
    error: PatronError | None = None


@dataclass
class _Extra:
    """What a sale that runs alone reads beyond the snapshot."""

    coupons: coupons_.Plan | None = None
    member: Member | None = None


def replay(
    found: tuple[str | None, dict[str, Any] | None], req: PurchaseRequest, digest: str
) -> Sold:
    first, answer = found
    if first != digest or answer is None:
        return Sold(
            error=Conflict(
                f"order {req.external_id!r} was already recorded with different details",
                code="duplicate_order",
            )
        )
    return Sold(answer=answer)


def record(
    session: Session,
    program_id: int,
    items: Sequence[tuple[PurchaseRequest, str]],
    *,
    actor: Actor,
    now: datetime,
) -> list[Sold]:
    """Record `items` ((request, digest) pairs) in order, in the session's transaction."""
    config = program_cache.cached(session, program_id) or program_cache.load(session, program_id)
    out: list[Sold | None] = [None] * len(items)
    known: dict[str, tuple[str | None, dict[str, Any] | None]] = {}
    todo = list(range(len(items)))
    attempts = 0
    while todo:
        try:
            config, todo = _round(session, config, items, todo, known, out, actor=actor, now=now)
            attempts = 0
        except Taken:
            attempts += 1
            if attempts >= ROUND_ATTEMPTS:  # pragma: no cover - needs a writer racing us 5 times
                raise
    assert all(o is not None for o in out)
    return [o for o in out if o is not None]


def _unanswered(
    items: Sequence[tuple[PurchaseRequest, str]],
    indices: list[int],
    known: dict[str, tuple[str | None, dict[str, Any] | None]],
    out: list[Sold | None],
) -> list[int]:
    """Replays answer first, whatever else is wrong with them: the indices left to plan."""
    left: list[int] = []
    for i in indices:
        req, digest = items[i]
        found = known.get(req.external_id)
        if found is not None:
            out[i] = replay(found, req, digest)
        else:
            left.append(i)
    return left


def _earlier(at: datetime | None, now: datetime) -> bool:
    """Whether a sale happened before now (a value out of range is refused by the planner)."""
    return at is not None and at < now and at >= EARLIEST_SALE


def _alone(config: ProgramConfig, req: PurchaseRequest) -> bool:
    wanted = config.needs
    return bool(req.coupons) or bool(
        wanted.caps or wanted.purchases or wanted.budgets or wanted.segments
    )


def _round(
    session: Session,
    config: ProgramConfig,
    items: Sequence[tuple[PurchaseRequest, str]],
    todo: list[int],
    known: dict[str, tuple[str | None, dict[str, Any] | None]],
    out: list[Sold | None],
    *,
    actor: Actor,
    now: datetime,
) -> tuple[ProgramConfig, list[int]]:
    """Plan and write the next round of `todo`: (the configuration, the indices left)."""
    fresh = _unanswered(items, todo, known, out)
    if not fresh:
        return config, []
    if _alone(config, items[fresh[0]][0]):
        batch, later = fresh[:1], fresh[1:]
    else:
        n = next((k for k, i in enumerate(fresh) if _alone(config, items[i][0])), len(fresh))
        batch, later = fresh[:n], fresh[n:]

    hits = refs.resolve(session, [items[i][0].member for i in batch], config.country)
    hit_of = dict(zip(batch, hits, strict=True))
    member_of = {i: hit.member_id for i, hit in hit_of.items() if hit is not None}
    spenders = {member_of[i] for i in member_of if items[i][0].points_to_spend}
    # Sales that spend and happened before now may draw on points expired since (late sales).
    late_at = {
        member_of[i]: items[i][0].occurred_at
        for i in member_of
        if items[i][0].points_to_spend and _earlier(items[i][0].occurred_at, now)
    }

    def read(config: ProgramConfig) -> snapshot.Read:
        return snapshot.read(
            session,
            config,
            set(member_of.values()),
            spenders=spenders,
            external_ids=[items[i][0].external_id for i in batch],
            sales=len(batch),
            spending=sum(1 for i in batch if items[i][0].points_to_spend),
            now=now,
            late=set(late_at),
            late_since=min((t for t in late_at.values() if t is not None), default=None),
        )

    config, got = settled_read(
        session,
        config,
        read,
        # The new rules read more than the snapshot: plan the round again.
        replan=lambda config: any(_alone(config, items[i][0]) for i in batch),
        now=now,
        actor=actor,
    )
    if got is None:
        return config, fresh
    states = got.states
    missing = sorted({m for m in member_of.values() if m not in states})
    for state in snapshot.newcomers(session, missing) if missing else []:
        states[state.member_id] = state
    known.update(got.replays)
    planned: list[int] = []
    for i in _unanswered(items, batch, known, out):
        if i not in member_of or member_of[i] not in states:
            _why_not(session, config, items[i][0], i, out)  # unknown, or an id no member has
        else:
            planned.append(i)
    assert got.ids is not None
    ids = got.ids
    guard = None
    if config.fraud is not None:  # the program's fraud controls: one read for the round
        guard = fraud.start(
            session,
            config,
            [fraud.ahead(items[i][0], member_of[i], config, now) for i in planned],
            actor=actor,
            now=now,
        )
    # Rule experiments: which running rule campaigns' arms the round's members are in, in
    # one query (none when no rule campaign runs).
    arms = (
        rule_arms.member_arms(session, config.rule_campaigns, [member_of[i] for i in planned])
        if config.rule_campaigns
        else {}
    )
    planner = Planner(config, states, ids=ids, actor=str(actor), now=now, guard=guard)
    extras: dict[int, _Extra] = {}
    written: list[tuple[int, Any]] = []
    chosen: dict[str, tuple[str | None, dict[str, Any] | None]] = {}
    # A sale that moves its member up a tier is that member's last in the round: the move is
    # written after the round's rows, and her later sales (and any sale reusing the order id of
    # one of them) are planned in the next round on the new tier. Other members' sales go on.
    moved: set[int] = set()
    waiting_ids: set[str] = set()
    for i in planned:
        req, digest = items[i]
        if member_of[i] in moved or req.external_id in waiting_ids:
            later.append(i)
            waiting_ids.add(req.external_id)
            continue
        if req.external_id in chosen:  # an order id sent twice in one batch
            out[i] = replay(chosen[req.external_id], req, digest)
            continue
        hit = hit_of[i]
        op = SaleOp(
            req=req,
            digest=digest,
            member_id=member_of[i],
            card_status=hit.card_status if hit is not None else None,
            campaign_arms=arms.get(member_of[i], ()),
        )
        if _alone(config, req):
            try:
                extras[i] = _prepare(session, config, op, states[op.member_id], now=now)
            except PatronError as exc:
                out[i] = Sold(error=exc)
                continue
        outcome = planner.sale(op)
        if outcome.error is not None:
            out[i] = Sold(error=outcome.error)
            continue
        out[i] = Sold(answer=outcome.answer, created=True)
        chosen[req.external_id] = (digest, outcome.answer)
        written.append((i, outcome))
        if outcome.upgrade:
            moved.add(member_of[i])
    later.sort()
    if not written:
        return config, later
    rows = planner.rows
    conn = session.connection()
    if len(written) > 1 or rows.accounts:
        with session.begin_nested():
            apply(conn, rows)
    else:
        apply(conn, rows)  # the purchase is the first row written: nothing to undo if taken
    if guard is not None:
        guard.write(session, rows.entries)
    known.update(chosen)
    program: Program | None = None
    upgraded: list[int] = []
    for i, outcome in written:
        req = items[i][0]
        extra = extras.get(i)
        if extra is not None and extra.coupons is not None:
            program = program or _program(session, config)
            assert extra.member is not None
            coupons_.apply(session, program, req, extra.coupons, extra.member, actor=actor, now=now)
        if outcome.budget_used:
            rules.spend_budgets(session, config.id, outcome.budget_used)
        if outcome.campaign_points:
            rule_arms.count_rule_points(session, outcome.campaign_points)
        if outcome.upgrade:
            upgraded.append(outcome.account_id)
    if upgraded:  # after the round's rows: the accounts as they are now, in one read
        program = program or _program(session, config)
        found = {
            account.id: account
            for account in session.scalars(
                select(Account)
                .where(Account.id.in_(upgraded))
                .execution_options(populate_existing=True)
            )
        }
        tiers.upgrade_all_if_qualified(
            session, program, [found[a] for a in upgraded], now=now, actor=actor
        )
    return config, later


def _program(session: Session, config: ProgramConfig) -> Program:
    program = session.get(Program, config.id)
    assert program is not None
    return program


def _why_not(
    session: Session, config: ProgramConfig, req: PurchaseRequest, i: int, out: list[Sold | None]
) -> None:
    """A reference the batch lookup found no member for: `find_member` says why."""
    try:
        member = members.find_member(session, req.member, program=_program(session, config))
    except PatronError as exc:
        out[i] = Sold(error=exc)
        return
    out[i] = Sold(  # pragma: no cover - a member created since the lookup, in this transaction
        error=NotFound(f"member {member.id} has no account yet", code="member_not_found")
    )


def _prepare(
    session: Session, config: ProgramConfig, op: SaleOp, state: Any, *, now: datetime
) -> _Extra:
    """What a sale running alone reads: its coupons (checked together, as of now), the rules'
    figures for its member and the promotion budgets left (locked until the end)."""
    req = op.req
    extra = _Extra()
    if req.coupons:
        if op.card_status is not None and op.card_status != "active":
            raise Conflict(f"card {req.member.card} is {op.card_status}", code="card_not_active")
        member = session.get(Member, op.member_id)
        assert member is not None
        members.ensure_active(member)
        basket.check_occurred_at(req.occurred_at, now)
        program = _program(session, config)
        plan = coupons_.plan(session, program, req, member, now=now, sale=True)
        extra.coupons, extra.member = plan, member
        op.paying = coupons_.discounted(program, req, plan, earning=False)
        if plan.not_earning_minor != plan.discount_minor:
            op.earning = coupons_.discounted(program, req, plan, earning=True)
        op.coupon_codes = plan.reward_codes()
        op.coupons_out = (
            from_minor(plan.discount_minor, config.currency),
            coupons_out(config, plan),
        )
    wanted = config.needs
    if wanted.caps or wanted.purchases:
        occurred_at = basket.check_occurred_at(req.occurred_at, now)
        if not state.new:
            op.figures, op.purchases_before, op.recent_purchases = rules.member_figures(
                session, config.timezone, state.account_id, occurred_at, wanted
            )
    if wanted.segments and not state.new:  # segment conditions: one read for all of them
        op.segments = rules.member_segments(
            session, config, op.member_id, basket.check_occurred_at(req.occurred_at, now), wanted
        )
    if wanted.budgets:
        op.budgets = rules.budgets_left(session, config.id, wanted, lock=True)
    return extra


def coupons_out(config: ProgramConfig | Program, plan: coupons_.Plan) -> list[CouponApplied]:
    return [
        CouponApplied(
            code=coupons_.display(c.code),
            applied=c.applied,
            discount=from_minor(c.discount_minor, config.currency),
            reward=plan.rewards[c.code].code if c.code in plan.rewards else None,
            reason=c.reason,
            detail=c.detail,
        )
        for c in plan.selection.choices
    ]


def adjust(
    session: Session, program: Program, req: AdjustRequest, *, actor: Actor, now: datetime
) -> AdjustOut:
    """Staff give or take points: an operation of the same planner and applier as a sale,
    with its audit record (before and after balances)."""
    member = members.find_member(session, req.member, program=program)
    views.get_account(session, program, member.id)  # account_not_found before anything else
    config = program_cache.cached(session, program.id) or program_cache.load(session, program.id)

    def read(config: ProgramConfig) -> snapshot.Read:
        return snapshot.read(
            session,
            config,
            {member.id},
            spenders={member.id} if req.points < 0 else set(),
            takers={member.id},
            external_ids=[],
            sales=1,
            spending=0,
            now=now,
        )

    config, got = settled_read(session, config, read, now=now, actor=actor)
    assert got is not None
    state = got.states[member.id]
    before = state.available - state.debt
    assert got.ids is not None
    planner = Planner(config, got.states, ids=got.ids, actor=str(actor), now=now)
    entry = planner.adjust(member.id, req.points, reason=req.reason, qualifying=req.qualifying)
    apply(session.connection(), planner.rows)
    if req.qualifying and req.points > 0:
        account = session.get(Account, state.account_id, populate_existing=True)
        assert account is not None
        tiers.upgrade_if_qualified(session, program, account, now=now, actor=actor)
    after = Planner.totals(state)
    audit.record(
        session,
        actor=actor,
        action="points.adjusted",
        subject_type="member",
        subject_id=member.id,
        program_id=program.id,
        at=now,
        before={"balance": before},
        after={
            "balance": after.balance,
            "points": req.points,
            "reason": req.reason,
            "qualifying": req.qualifying,
            "entry": entry.id,
        },
    )
    return AdjustOut(member_id=member.id, entry=entry, totals=after)
