"""Rolling expiry: every activity moves the expiry of all the account's open lots.

A program (or a tier, with its own policy) with `expiry.kind = "rolling"` keeps a member's points
while the member is active: all their open lots expire together, N (`expiry.days` when set, else
`expiry.months`, plus the tier's `extra_expiry_months`) after the **latest activity**, never
before a lot's own `expires_at`. Activity is points earned or spent: the `occurred_at` of the
account's latest `earn` or `redeem` entry (a sale, a late-synced offline sale as of when it
happened, an event that earns, a reward redemption). Refunds, adjustments, moves and the release
of pending points are not activity.

Nothing on the sale path writes this: a lot is written with its own date (N after it was
earned, which is then the latest activity), and that stored date is only a lower bound for a
rolling account. The effective date is derived from the entries where it matters:

- readers (`ledger.views`: totals, "expiring soon", the lots list) show `max(stored, until)`
  (a lot that already expired once keeps its own date: `never_expired`);
- `ledger.jobs` rolls the stored dates of the accounts whose lots look due forward to `until`
  before expiring (one UPDATE per chunk), so only truly overdue lots expire, one entry per
  account at `until`;
- `ledger.service.settle_due` does the same for one account before a sale writes to it.

The policy that decides is the account's current one (its tier's own policy, else the
program's): moving into a rolling policy can only lengthen lots, leaving it keeps the dates
the lots have then.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, column, exists, func, select, table
from sqlalchemy.orm import Session

from patron.ledger.expiry import ExpiryRule
from patron.ledger.models import Account, Entry, Movement
from patron.programs.models import Program

# What counts as activity: points earned or spent.
ACTIVITY_KINDS = ("earn", "redeem")

# The tier definitions, read by name: tiers sit above the ledger (they import its expiry
# arithmetic), so the ledger does not import their models.
_TIERS = table(
    "tier_definitions",
    column("program_id"),
    column("code"),
    column("expiry_kind"),
    column("expiry_months"),
    column("expiry_days"),
    column("extra_expiry_months"),
)


@dataclass(frozen=True)
class Rolling:
    """A rolling policy as it applies to one account: its rule and the program's timezone."""

    rule: ExpiryRule
    timezone: str

    def until(self, latest_activity: datetime) -> datetime:
        """The instant all the account's open lots expire, given its latest activity."""
        at = self.rule.expires_at(latest_activity, self.timezone)
        assert at is not None
        return at


def _policy(
    program: tuple[str, int, int | None, str],
    tier: tuple[str | None, int | None, int | None, int] | None,
) -> Rolling | None:
    """The rolling policy of an account in `program` (kind, months, days, timezone) holding
    `tier` (its own kind, months, days, extra months; None: no tier), or None if not rolling."""
    kind, months, days, timezone = program
    extra = 0
    if tier is not None:
        tier_kind, tier_months, tier_days, extra = tier
        if tier_kind is not None:
            kind, months, days = tier_kind, tier_months or 0, tier_days
    if kind != "rolling":
        return None
    return Rolling(ExpiryRule("rolling", months, days or 0, extra or 0), timezone)


def _program_row(program: Program) -> tuple[str, int, int | None, str]:
    return program.expiry_kind, program.expiry_months, program.expiry_days, program.timezone


def _tier_row(
    session: Session, program_id: int, code: str
) -> tuple[str | None, int | None, int | None, int] | None:
    row = session.execute(
        select(
            _TIERS.c.expiry_kind,
            _TIERS.c.expiry_months,
            _TIERS.c.expiry_days,
            _TIERS.c.extra_expiry_months,
        ).where(_TIERS.c.program_id == program_id, _TIERS.c.code == code)
    ).first()
    return None if row is None else (row[0], row[1], row[2], int(row[3] or 0))


def policy_of(session: Session, account: Account) -> Rolling | None:
    """The account's rolling policy, or None. The program usually is in the session already;
    a tier's own policy costs one lookup by key, and only for a member holding a tier."""
    program = session.get(Program, account.program_id)
    assert program is not None
    tier = _tier_row(session, program.id, account.tier) if account.tier is not None else None
    return _policy(_program_row(program), tier)


@dataclass(frozen=True)
class Policies:
    """Every rolling policy by (program, tier code); `programs` are those where any applies."""

    by_key: dict[tuple[int, str | None], Rolling | None]
    fallback: dict[int, Rolling | None]  # an account whose tier code has no definition

    @property
    def programs(self) -> list[int]:
        return sorted(
            {p for (p, _), r in self.by_key.items() if r is not None}
            | {p for p, r in self.fallback.items() if r is not None}
        )

    def of(self, program_id: int, tier: str | None) -> Rolling | None:
        if (program_id, tier) in self.by_key:
            return self.by_key[(program_id, tier)]
        return self.fallback.get(program_id)


def policies(session: Session) -> Policies:
    """The rolling policies of every program (two small reads: programs and tiers)."""
    programs = {
        row[0]: (row[1], row[2], row[3], row[4])
        for row in session.execute(
            select(
                Program.id,
                Program.expiry_kind,
                Program.expiry_months,
                Program.expiry_days,
                Program.timezone,
            )
        )
    }
    by_key: dict[tuple[int, str | None], Rolling | None] = {
        (pid, None): _policy(row, None) for pid, row in programs.items()
    }
    for pid, code, kind, months, days, extra in session.execute(
        select(
            _TIERS.c.program_id,
            _TIERS.c.code,
            _TIERS.c.expiry_kind,
            _TIERS.c.expiry_months,
            _TIERS.c.expiry_days,
            _TIERS.c.extra_expiry_months,
        )
    ):
        if pid in programs:
            by_key[(pid, code)] = _policy(programs[pid], (kind, months, days, int(extra or 0)))
    fallback = {pid: by_key[(pid, None)] for pid in programs}
    return Policies(by_key, fallback)


def latest_activity(session: Session, account_ids: Iterable[int]) -> dict[int, datetime]:
    """Each account's latest activity (ix_entries_account_time); accounts with none are left
    out."""
    ids = sorted(set(account_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(Entry.account_id, func.max(Entry.occurred_at))
        .where(Entry.account_id.in_(ids), Entry.kind.in_(ACTIVITY_KINDS))
        .group_by(Entry.account_id)
    ).all()
    return {account_id: latest for account_id, latest in rows if latest is not None}


def until(session: Session, account: Account) -> datetime | None:
    """When all the account's open lots expire under its rolling policy; None when the policy
    is not rolling or the account has had no activity yet (each lot keeps its own date)."""
    policy = policy_of(session, account)
    if policy is None:
        return None
    latest = latest_activity(session, [account.id]).get(account.id)
    return None if latest is None else policy.until(latest)


def never_expired(lot_id: Any) -> ColumnElement[bool]:
    """The lot has no expire movement. A lot that already expired keeps its date: points given
    back to it later (a refunded redemption) expire again at once, as under every policy, and
    its expire entry stays dated at the lot's `expires_at` (what `patron check` proves)."""
    return ~exists().where(
        Movement.lot_id == lot_id, Movement.entry_id == Entry.id, Entry.kind == "expire"
    )


def effective(expires_at: datetime | None, rolled: datetime | None) -> datetime | None:
    """A lot's expiry under a rolling policy: its own date, moved forward to `rolled`."""
    if expires_at is None or rolled is None:
        return expires_at
    return max(expires_at, rolled)


def untils(
    session: Session, rows: Sequence[tuple[int, int, str | None]], found: Policies
) -> dict[int, datetime]:
    """For accounts (id, program, tier): the rolling `until` of those that have one."""
    rolling = {aid: p for aid, pid, tier in rows if (p := found.of(pid, tier)) is not None}
    latest = latest_activity(session, rolling)
    return {aid: rolling[aid].until(at) for aid, at in latest.items()}
