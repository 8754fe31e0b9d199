"""The fraud controls on redemptions outside a sale: a reward paid with points (rewards API,
till) and a coupon used at the till. Refusals write nothing: they are raised before the
redemption writes its first row.

These paths are not hot and a change to the controls must apply at once, so they read the
program's settings row each time (`rules.load_rules`, one statement, as many as checking the
program cache's token would take) rather than the sale path's cached `ProgramConfig.fraud`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from patron.audit.service import Actor
from patron.fraud.contact import require_verified
from patron.fraud.errors import VelocityExceeded
from patron.fraud.guard import ACT, REDEMPTIONS, figure_params, statement
from patron.fraud.rules import Rules, load_rules


def _subjects(member_id: int, store_id: int | None, actor: Actor) -> dict[str, str | None]:
    return {
        "member": str(member_id),
        "store": str(store_id) if store_id is not None else None,
        "key": actor.id if actor.kind == "api_key" else None,
    }


def check_redemption(
    session: Session,
    program_id: int,
    timezone: str,
    member_id: int,
    *,
    store_id: int | None,
    actor: Actor,
    now: datetime,
) -> Rules | None:
    """403 contact_not_verified, or 429 velocity_<dimension>_redemptions_per_day; the rules
    (for `record_redemption`) when the program has any."""
    rules = load_rules(session, program_id)
    if rules is None:
        return None
    if rules.verified_contact:
        require_verified(session, program_id, member_id)
    wanted: dict[str, set[str]] = {}
    for dim, subject in _subjects(member_id, store_id, actor).items():
        if subject is not None and (dim, "redemptions_per_day") in rules.limits:
            wanted[dim] = {subject}
    if not wanted:
        return rules
    params = figure_params(program_id, wanted, now=now, timezone=timezone)
    for tag, subject, *figures in session.execute(statement(tuple(wanted)), params):
        done = int(figures[REDEMPTIONS] or 0)
        limit = rules.limits[(tag, "redemptions_per_day")]
        if done + 1 > limit:
            raise VelocityExceeded(
                f"{tag} {subject} has made {done} redemptions today, the program's limit "
                f"is {limit}",
                code=f"velocity_{tag}_redemptions_per_day",
            )
    return rules


def record_redemption(
    session: Session,
    program_id: int,
    member_id: int,
    *,
    store_id: int | None,
    actor: Actor,
    now: datetime,
) -> None:
    """Count a reward redemption towards the per-day limits."""
    session.execute(
        insert(ACT).values(
            program_id=program_id,
            at=now,
            member_id=member_id,
            card=None,
            store_id=store_id,
            key_id=actor.id if actor.kind == "api_key" else None,
            sales=0,
            points=0,
            redemptions=1,
            amount_minor=0,
            occurred_at=now,
            purchase_id=None,
            external_id=None,
        )
    )


def check_coupon(session: Session, program_id: int, member_id: int | None) -> None:
    """A coupon used at the till by a member without a verified contact: 403."""
    if member_id is None:
        return
    rules = load_rules(session, program_id)
    if rules is not None and rules.verified_contact:
        require_verified(session, program_id, member_id)
