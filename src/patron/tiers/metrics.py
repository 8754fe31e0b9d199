"""The qualifying metric per account over a window, set-based (one GROUP BY per batch)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.ledger.models import Entry, Purchase
from patron.tiers.models import TierDefinition
from patron.tiers.periods import Window


def metric_values(
    session: Session,
    *,
    program_id: int,
    metric: str,
    window: Window,
    account_range: tuple[int, int] | None = None,
    accounts: Sequence[int] | None = None,
) -> dict[int, int]:
    """{account_id: value} for accounts with any activity in the window.

    points: qualifying points (earn entries and qualifying adjustments, less reversals);
    spend: amount bought in minor units, less what was refunded; visits: purchases not fully
    refunded. `account_range` = (after_id, upto_id] limits the accounts, for batches;
    `accounts` names them (the members a round of sales moved), 500 to a statement.
    """
    if accounts is None and account_range is not None and account_range[1] - account_range[0] == 1:
        accounts = [account_range[1]]
    if accounts is not None:
        out: dict[int, int] = {}
        for start in range(0, len(accounts), 500):
            chunk = list(accounts[start : start + 500])
            out.update(_values(session, program_id, metric, window, None, chunk))
        return out
    return _values(session, program_id, metric, window, account_range, None)


def _values(
    session: Session,
    program_id: int,
    metric: str,
    window: Window,
    account_range: tuple[int, int] | None,
    ids: list[int] | None,
) -> dict[int, int]:
    # An account belongs to one program: filtering on the named accounts alone lets the
    # planner use (account_id, occurred_at) instead of scanning the program's window.
    table = Entry if metric == "points" else Purchase
    account = table.account_id
    if ids is None:
        scope = table.program_id == program_id
    else:
        scope = account == ids[0] if len(ids) == 1 else account.in_(ids)
    if metric == "points":
        stmt = select(account, func.sum(Entry.qualifying)).where(
            scope, Entry.qualifying != 0, Entry.occurred_at >= window.start
        )
    else:
        kept = Purchase.amount_minor - Purchase.refunded_minor
        value = func.sum(kept) if metric == "spend" else func.count()
        stmt = select(account, value).where(scope, Purchase.occurred_at >= window.start, kept > 0)
    if window.end is not None:
        stmt = stmt.where(table.occurred_at < window.end)
    if account_range is not None:
        stmt = stmt.where(account > account_range[0], account <= account_range[1])
    stmt = stmt.group_by(account)
    return {account_id: int(total or 0) for account_id, total in session.execute(stmt)}


def qualify(tiers: Sequence[TierDefinition], value: int) -> TierDefinition | None:
    """The highest tier whose threshold `value` reaches (tiers in any order)."""
    best = None
    for tier in sorted(tiers, key=lambda t: t.rank):
        if value >= tier.threshold:
            best = tier
    return best


def metric_column(metric: str, start: Any, end: Any, account: Any) -> Any:
    """The metric of the account `account` (a column or a bound value) in the window
    [start, end) (end None: open), as a scalar subquery: read beside each account a sale
    locks. `start` and `end` may be instants or bound parameters."""
    if metric == "points":
        stmt = select(func.coalesce(func.sum(Entry.qualifying), 0)).where(
            Entry.account_id == account,
            Entry.qualifying != 0,
            Entry.occurred_at >= start,
        )
        if end is not None:
            stmt = stmt.where(Entry.occurred_at < end)
        return stmt.scalar_subquery()
    kept = Purchase.amount_minor - Purchase.refunded_minor
    value = func.coalesce(func.sum(kept), 0) if metric == "spend" else func.count()
    stmt = select(value).where(
        Purchase.account_id == account, Purchase.occurred_at >= start, kept > 0
    )
    if end is not None:
        stmt = stmt.where(Purchase.occurred_at < end)
    return stmt.scalar_subquery()
