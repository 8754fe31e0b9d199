"""Operations on one member's points that are not sales: a refund's reversals, a reward paid
or given back, an event's points. Each is planned by the sale planner (`patron.sales.plan`)
on the account read under its lock and written by the same applier, so every entry, lot
movement and outbox event of the ledger is written by one piece of code."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from sqlalchemy.orm import Session

from patron.audit.service import Actor
from patron.errors import Conflict, NotFound
from patron.ledger.models import Account, Lot
from patron.sales import program_cache, snapshot
from patron.sales.apply import Taken, apply
from patron.sales.plan import AccountState, Planner
from patron.sales.program_cache import ProgramConfig

T = TypeVar("T")


def settled_read(
    session: Session,
    config: ProgramConfig,
    read: Callable[[ProgramConfig], snapshot.Read],
    *,
    now: datetime,
    actor: Actor,
    replan: Callable[[ProgramConfig], bool] = lambda _config: False,
) -> tuple[ProgramConfig, snapshot.Read | None]:
    """`read` under the program's current configuration (a change since this worker cached
    it is loaded and read again; None if `replan` says the new one needs another round) and
    with nothing due (lots due are settled, then read again)."""
    got = read(config)
    if got.version != config.version:
        config = program_cache.load(session, config.id)
        if replan(config):
            return config, None
        got = read(config)
    if got.due:
        snapshot.settle(session, got.due, now, actor=str(actor))
        got = read(config)
    return config, got


def operate(
    session: Session,
    program_id: int,
    member_id: int,
    plan: Callable[[Planner, AccountState], T],
    *,
    actor: Actor,
    now: datetime,
    new_rows: tuple[int, int] = (1, 4),
) -> T:
    """One operation on one member's account that is not a sale (a refund, a reward paid or
    given back, an event's points): the account read under its lock with its lots (as
    `snapshot.read`, nothing due), `plan` run on a planner (a PatronError it raises writes
    nothing), the rows written by the applier. `new_rows` is at most how many (lots,
    entries) `plan` writes. ORM objects of the account and its lots are expired afterwards,
    so the caller reads them as written."""
    session.flush()
    config = program_cache.cached(session, program_id) or program_cache.load(session, program_id)

    def read(config: ProgramConfig) -> snapshot.Read:
        return snapshot.read(
            session,
            config,
            {member_id},
            spenders={member_id},
            takers={member_id},
            external_ids=[],
            sales=0,
            spending=0,
            now=now,
            new_rows=new_rows,
        )

    config, got = settled_read(session, config, read, now=now, actor=actor)
    assert got is not None and got.ids is not None
    state = got.states.get(member_id)
    if state is None:
        raise NotFound(f"member {member_id} has no account yet", code="account_not_found")
    planner = Planner(config, got.states, ids=got.ids, actor=str(actor), now=now)
    result = plan(planner, state)
    apply(session.connection(), planner.rows)
    for obj in list(session.identity_map.values()):
        if isinstance(obj, Account | Lot) and (
            obj.id == state.account_id or getattr(obj, "account_id", None) == state.account_id
        ):
            session.expire(obj)
    return result


def operate_pair(
    session: Session,
    program_id: int,
    from_member: int,
    to_member: int,
    plan: Callable[[Planner, AccountState, AccountState], T],
    *,
    actor: Actor,
    now: datetime,
    new_rows: tuple[int, int],
) -> T:
    """One operation between two members' accounts in a program (a merge, a transfer): both
    read under their locks, taken in account id order as every multi-account writer takes
    them, with their lots (spendable and pending), nothing due; the receiver's account opened
    if it has none (`to_member`'s state is then new). `plan` runs on one planner, the applier
    writes its rows. ORM objects of both accounts and their lots are expired afterwards."""
    session.flush()
    config = program_cache.cached(session, program_id) or program_cache.load(session, program_id)
    pair = {from_member, to_member}

    def read(config: ProgramConfig) -> snapshot.Read:
        return snapshot.read(
            session,
            config,
            pair,
            spenders=pair,
            takers=pair,
            external_ids=[],
            sales=0,
            spending=0,
            now=now,
            new_rows=new_rows,
        )

    for _attempt in range(5):
        config, got = settled_read(session, config, read, now=now, actor=actor)
        assert got is not None and got.ids is not None
        sender = got.states.get(from_member)
        if sender is None:
            raise NotFound(f"member {from_member} has no account yet", code="account_not_found")
        states = dict(got.states)
        if to_member not in states:
            (fresh,) = snapshot.newcomers(session, [to_member])
            fresh.pending_lots = []
            states[to_member] = fresh
        planner = Planner(config, states, ids=got.ids, actor=str(actor), now=now)
        result = plan(planner, sender, states[to_member])
        try:
            with session.begin_nested():
                apply(session.connection(), planner.rows)
        except Taken:
            continue  # the receiver's first account was opened meanwhile: read it again
        ids = {s.account_id for s in states.values()}
        for obj in list(session.identity_map.values()):
            if isinstance(obj, Account | Lot) and (
                obj.id in ids or getattr(obj, "account_id", None) in ids
            ):
                session.expire(obj)
        return result
    raise Conflict("the accounts kept changing; try again", code="try_again")
