"""Tier setup, immediate upgrades and manual changes; the period evaluation is in jobs.py.

Every move writes the account's tier columns, a tier history row and a `tier.changed` domain
event in the caller's transaction. Callers hold the account's row lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.clock import as_utc
from patron.errors import Invalid, NotFound, StaleVersion
from patron.events.models import DomainEvent
from patron.ledger import service as ledger
from patron.ledger import views
from patron.ledger.expiry import add_months
from patron.ledger.models import Account
from patron.programs.models import Program
from patron.programs.schemas import ExpiryPolicy
from patron.tiers.metrics import metric_values, qualify
from patron.tiers.models import TierChange, TierDefinition, TierEvaluationRun, TierPolicy
from patron.tiers.periods import Window, window_at
from patron.tiers.schemas import (
    ManualTierRequest,
    MemberTierOut,
    PolicyOut,
    TierChangeOut,
    TierOut,
    TierSetup,
    TierSetupOut,
)

# --- setup ----------------------------------------------------------------------------------


def get_policy(session: Session, program_id: int) -> TierPolicy | None:
    return session.scalars(
        select(TierPolicy).where(TierPolicy.program_id == program_id)
    ).one_or_none()


def definitions(session: Session, program_id: int) -> list[TierDefinition]:
    """The program's tiers, lowest first."""
    return list(
        session.scalars(
            select(TierDefinition)
            .where(TierDefinition.program_id == program_id)
            .order_by(TierDefinition.rank)
        )
    )


def rank_of(tiers: Sequence[TierDefinition], code: str | None) -> int:
    """A tier code's rank; -1 for no tier, or a code no longer defined (the next move places
    the member by what they earned)."""
    return next((t.rank for t in tiers if t.code == code), -1)


def extra_expiry_months(session: Session, program_id: int, code: str | None) -> int:
    """Months a tier adds to the expiry of the points its members earn."""
    if code is None:
        return 0
    extra = session.scalar(
        select(TierDefinition.extra_expiry_months).where(
            TierDefinition.program_id == program_id, TierDefinition.code == code
        )
    )
    return int(extra or 0)


def _validate(setup: TierSetup) -> None:
    """What field types cannot say: unique codes, thresholds strictly increasing from 0."""
    seen: dict[str, int] = {}
    for index, tier in enumerate(setup.tiers):
        if tier.code in seen:
            raise Invalid(
                f"tiers.{index}.code: {tier.code!r} is already used by tiers.{seen[tier.code]}",
                code="invalid_tiers",
            )
        seen[tier.code] = index
        if index == 0 and tier.threshold != 0:
            raise Invalid(
                "tiers.0.threshold: the first (entry) tier's threshold must be 0",
                code="invalid_tiers",
            )
        if index > 0 and tier.threshold <= setup.tiers[index - 1].threshold:
            raise Invalid(
                f"tiers.{index}.threshold: {tier.threshold} must be greater than "
                f"tiers.{index - 1}.threshold ({setup.tiers[index - 1].threshold})",
                code="invalid_tiers",
            )


def _policy_out(policy: TierPolicy) -> PolicyOut:
    return PolicyOut.model_validate(
        {name: getattr(policy, name) for name in PolicyOut.model_fields}
    )


def _tier_out(tier: TierDefinition) -> TierOut:
    return TierOut(
        code=tier.code,
        names=tier.names,
        rank=tier.rank,
        threshold=tier.threshold,
        multiplier=tier.multiplier,
        extra_expiry_months=tier.extra_expiry_months,
        expiry=ExpiryPolicy(
            kind=tier.expiry_kind, months=tier.expiry_months or 0, days=tier.expiry_days
        )
        if tier.expiry_kind is not None
        else None,
        benefits=list(tier.benefits or []),
    )


def tier_setup(session: Session, program: Program) -> TierSetupOut:
    policy = get_policy(session, program.id)
    return TierSetupOut(
        program=program.code,
        policy=_policy_out(policy) if policy is not None else None,
        tiers=[_tier_out(t) for t in definitions(session, program.id)],
    )


def setup_version(session: Session, program: Program) -> str:
    """A short fingerprint of the stored tiers and policy (the ETag of GET …/tiers): a save made
    from an older setup can tell it changed meanwhile."""
    text = tier_setup(session, program).model_dump_json()
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def set_tiers(
    session: Session,
    program: Program,
    setup: TierSetup,
    *,
    actor: Actor,
    now: datetime,
    expected_version: str | None = None,
) -> TierSetupOut:
    """Replace the program's tiers and policy. With `expected_version` (the setup_version the
    change was made from) the program's row is locked first and a setup changed meanwhile
    refuses the save with StaleVersion.

    Members keep their tier code; one no longer defined counts as no tier (rank -1), so the next
    upgrade or evaluation places them by what they earned.
    """
    if expected_version is not None:
        session.refresh(program, with_for_update=True)
        if setup_version(session, program) != expected_version:
            raise StaleVersion(
                f"the tiers of {program.code} changed since version {expected_version}: "
                "start again from the current setup"
            )
    _validate(setup)
    before = tier_setup(session, program)
    policy = get_policy(session, program.id)
    if policy is None:
        policy = TierPolicy(program_id=program.id)
        session.add(policy)
    for key, value in setup.policy.model_dump().items():
        setattr(policy, key, value)
    policy.updated_at = now
    session.execute(delete(TierDefinition).where(TierDefinition.program_id == program.id))
    session.flush()
    for rank, tier in enumerate(setup.tiers):
        session.add(
            TierDefinition(
                program_id=program.id,
                code=tier.code,
                rank=rank,
                threshold=tier.threshold,
                names=tier.names.model_dump(exclude_none=True),
                multiplier=tier.multiplier,
                extra_expiry_months=tier.extra_expiry_months,
                expiry_kind=tier.expiry.kind if tier.expiry is not None else None,
                expiry_months=tier.expiry.months if tier.expiry is not None else None,
                expiry_days=tier.expiry.days if tier.expiry is not None else None,
                benefits=list(tier.benefits),
            )
        )
    session.flush()
    after = tier_setup(session, program)
    audit.record(
        session,
        actor=actor,
        action="tiers.updated",
        subject_type="program",
        subject_id=program.code,
        program_id=program.id,
        at=now,
        before=before.model_dump(mode="json") if before.policy is not None else None,
        after=after.model_dump(mode="json"),
    )
    return after


# --- moves ----------------------------------------------------------------------------------


def _midnight(day: date, tz: ZoneInfo) -> datetime:
    return as_utc(datetime.combine(day, time(0), tzinfo=tz))


def valid_until(policy: TierPolicy, timezone: str, window: Window) -> datetime | None:
    """Until when a tier earned in `window` holds: to the end of the window after it
    (half-year, year), `rolling_months` past its end (rolling), for good (lifetime)."""
    if window.end is None or policy.window == "lifetime":
        return None
    if policy.window == "rolling":
        tz = ZoneInfo(timezone)
        return _midnight(add_months(window.end.astimezone(tz).date(), policy.rolling_months), tz)
    return window_at(policy.window, window.end, timezone, rolling_months=policy.rolling_months).end


def held_until(session: Session, account: Account) -> datetime | None:
    """Until when the account holds its tier (decision 0015).

    Its own `tier_valid_until`, written by every move; for a tier that is not manual, at least
    the validity the program's latest evaluation gave its period (kept once, on the run's row,
    instead of on every member who kept a tier), if that run has done the account.
    """
    own = as_utc(account.tier_valid_until) if account.tier_valid_until is not None else None
    if account.tier is None or account.tier_manual:
        return own
    runs = TierEvaluationRun
    period = session.scalar(
        select(func.max(runs.valid_until)).where(
            runs.program_id == account.program_id,
            runs.valid_until.is_not(None),
            or_(runs.status == "done", runs.last_account_id >= account.id),
        )
    )
    if period is None:
        return own
    period = as_utc(period)
    return period if own is None or own < period else own


def event_payload(
    program: Program,
    account: Account,
    *,
    from_tier: str | None,
    to_tier: str | None,
    reason: str,
    period: str | None,
    at: datetime,
) -> dict[str, Any]:
    return {
        "program": program.code,
        "member_id": account.member_id,
        "account_id": account.id,
        "from": from_tier,
        "to": to_tier,
        "reason": reason,
        "period": period,
        "at": at.isoformat(),
    }


def move(
    session: Session,
    program: Program,
    account: Account,
    *,
    to_tier: str,
    reason: str,
    at: datetime,
    actor: Actor,
    valid: datetime | None,
    grace: int,
    period: str | None = None,
    metric_value: int | None = None,
    note: str | None = None,
    manual_until: datetime | None = None,
    manual: bool = False,
    flush: bool = True,
) -> TierChange:
    """Put one (locked) account in `to_tier`, with its history row and domain event.
    `flush=False` leaves the rows to the caller's next flush (several moves written together)."""
    from_tier = account.tier
    account.tier = to_tier
    account.tier_since = at
    account.tier_valid_until = valid
    account.tier_manual = manual
    account.tier_manual_until = manual_until
    account.tier_grace_left = grace
    change = TierChange(
        account_id=account.id,
        program_id=program.id,
        from_tier=from_tier,
        to_tier=to_tier,
        at=at,
        reason=reason,
        note=note,
        actor=str(actor),
        period=period,
        metric_value=metric_value,
    )
    session.add(change)
    session.add(
        DomainEvent(
            program_id=program.id,
            kind="tier.changed",
            at=at,
            member_id=account.member_id,
            payload=event_payload(
                program,
                account,
                from_tier=from_tier,
                to_tier=to_tier,
                reason=reason,
                period=period,
                at=at,
            ),
        )
    )
    if flush:
        session.flush()
    return change


def upgrade_if_qualified(
    session: Session, program: Program, account: Account, *, now: datetime, actor: Actor
) -> TierChange | None:
    """After an earn (purchase, event, qualifying adjustment): move the member up now if the
    current window's metric reaches a higher tier and the program upgrades immediately.

    Costs one query when the program has no tiers; the metric is one GROUP BY on one account.
    """
    changes = upgrade_all_if_qualified(session, program, [account], now=now, actor=actor)
    return changes[0] if changes else None


def upgrade_all_if_qualified(
    session: Session, program: Program, accounts: Sequence[Account], *, now: datetime, actor: Actor
) -> list[TierChange]:
    """`upgrade_if_qualified` for several accounts at once (the members a round of sales moved
    up): the policy, the tiers and the metrics read once, the moves written in one flush."""
    if not accounts:
        return []
    policy = get_policy(session, program.id)
    if policy is None or policy.upgrade != "immediate":
        return []
    tiers = definitions(session, program.id)
    window = window_at(policy.window, now, program.timezone, rolling_months=policy.rolling_months)
    values = metric_values(
        session,
        program_id=program.id,
        metric=policy.metric,
        window=window,
        accounts=[account.id for account in accounts],
    )
    valid = valid_until(policy, program.timezone, window)  # the window's, the same for each
    changes = []
    for account in accounts:
        value = values.get(account.id, 0)
        target = qualify(tiers, value)
        if target is None or target.rank <= rank_of(tiers, account.tier):
            continue
        before = account.tier
        changes.append(
            move(
                session,
                program,
                account,
                to_tier=target.code,
                reason="upgrade",
                at=now,
                actor=actor,
                valid=valid,
                grace=policy.grace_periods,
                period=window.key,
                metric_value=value,
                flush=False,
            )
        )
        audit.record(
            session,
            actor=actor,
            action="tier.changed",
            subject_type="member",
            subject_id=account.member_id,
            program_id=program.id,
            at=now,
            before={"tier": before},
            after={
                "tier": target.code,
                "reason": "upgrade",
                "period": window.key,
                "metric_value": value,
            },
        )
    if changes:
        session.flush()
    return changes


def change_out(change: TierChange) -> TierChangeOut:
    return TierChangeOut(
        id=change.id,
        from_tier=change.from_tier,
        to_tier=change.to_tier,
        at=as_utc(change.at),
        reason=change.reason,
        note=change.note,
        actor=change.actor,
        period=change.period,
        metric_value=change.metric_value,
    )


def member_tier_out(
    session: Session, account: Account, change: TierChange | None = None
) -> MemberTierOut:
    return MemberTierOut(
        member_id=account.member_id,
        tier=account.tier,
        tier_since=as_utc(account.tier_since) if account.tier_since else None,
        tier_valid_until=held_until(session, account),
        manual=account.tier_manual,
        manual_until=as_utc(account.tier_manual_until) if account.tier_manual_until else None,
        change=change_out(change) if change is not None else None,
    )


def set_manual(
    session: Session,
    program: Program,
    member_id: int,
    req: ManualTierRequest,
    *,
    actor: Actor,
    now: datetime,
) -> MemberTierOut:
    """Staff set a member's tier (an appeal), with a reason and an optional last day."""
    policy = get_policy(session, program.id)
    tiers = definitions(session, program.id)
    if policy is None or not tiers:
        raise NotFound(
            f"program {program.code} has no tiers; set them up first", code="tiers_not_configured"
        )
    if all(t.code != req.tier for t in tiers):
        raise Invalid(
            f"tier: program {program.code} has no tier {req.tier!r} (tiers: "
            f"{', '.join(t.code for t in tiers)})",
            code="unknown_tier",
        )
    tz = ZoneInfo(program.timezone)
    until = None
    if req.until is not None:
        if req.until < now.astimezone(tz).date():
            raise Invalid(f"until: {req.until.isoformat()} is in the past", code="until_in_past")
        # Kept through the whole last local day.
        until = _midnight(req.until + timedelta(days=1), tz)
    account = ledger.lock_account(session, views.get_account(session, program, member_id).id)
    before = {
        "tier": account.tier,
        "manual": account.tier_manual,
        "manual_until": account.tier_manual_until.isoformat()
        if account.tier_manual_until
        else None,
    }
    current = window_at(policy.window, now, program.timezone, rolling_months=policy.rolling_months)
    change = move(
        session,
        program,
        account,
        to_tier=req.tier,
        reason="manual",
        at=now,
        actor=actor,
        valid=until or valid_until(policy, program.timezone, current),
        grace=policy.grace_periods,
        note=req.reason,
        manual=True,
        manual_until=until,
    )
    audit.record(
        session,
        actor=actor,
        action="tier.changed_manually",
        subject_type="member",
        subject_id=member_id,
        program_id=program.id,
        at=now,
        before=before,
        after={
            "tier": req.tier,
            "manual": True,
            "manual_until": until.isoformat() if until else None,
            "reason": req.reason,
        },
    )
    return member_tier_out(session, account, change)


def history(session: Session, program: Program, member_id: int) -> list[TierChangeOut]:
    """The member's tier moves in this program, oldest first."""
    account = views.get_account(session, program, member_id)
    rows = session.scalars(
        select(TierChange).where(TierChange.account_id == account.id).order_by(TierChange.id)
    )
    return [change_out(row) for row in rows]
