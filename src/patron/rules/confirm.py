"""A publish that moves total points a lot must be confirmed (issue 16 item 11).

The change is recomputed when the rules are published, never taken from the page or the request
that asked for it: the proposed rule set and the rules in force are replayed (`rules.simulate`)
over the **last 30 days** of the program's purchases (local dates, today included: the what-if's
default period), after the program's row is locked. When the proposed total differs from the
current one by more than `PATRON_RULES_CONFIRM_PERCENT` (default 10 %) either way, the publish is
refused with `confirmation_required` (409) unless the caller confirmed it explicitly (the admin
form's tick box, the API's `confirm_large_change=true`, the CLI's `--confirm-large-change`).

A period without earning purchases has nothing to compare: any change passes (a new program).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from pydantic import BaseModel
from sqlalchemy.orm import Session

from patron.config import get_settings
from patron.errors import Conflict
from patron.programs.models import Program
from patron.rules.model import RuleSetDoc

# The replay the check runs: the what-if's default period.
PERIOD_DAYS = 30


class ConfirmationRequired(Conflict):
    """The publish changes total points by more than the threshold and was not confirmed."""

    code = "confirmation_required"


class LargeChange(BaseModel):
    percent: Decimal  # signed, one decimal
    limit: int
    current_points: int
    proposed_points: int
    date_from: date
    date_to: date


def period(program: Program, now: datetime) -> tuple[date, date]:
    """The last `PERIOD_DAYS` local dates of the program, today included."""
    today = now.astimezone(ZoneInfo(program.timezone)).date()
    return today - timedelta(days=PERIOD_DAYS - 1), today


def percent_change(before: int, after: int) -> Decimal | None:
    """(after − before) / before in percent, one decimal; None when `before` is 0."""
    if not before:
        return None
    return ((Decimal(after) - Decimal(before)) * 100 / Decimal(before)).quantize(Decimal("0.1"))


def judge(current: int, proposed: int, date_from: date, date_to: date) -> LargeChange | None:
    """The change if it is beyond the threshold, else None."""
    limit = get_settings().rules_confirm_percent
    moved = percent_change(current, proposed)
    if moved is None or abs(moved) <= limit:
        return None
    return LargeChange(
        percent=moved,
        limit=limit,
        current_points=current,
        proposed_points=proposed,
        date_from=date_from,
        date_to=date_to,
    )


def large_change(
    session: Session, program: Program, doc: RuleSetDoc, *, now: datetime
) -> LargeChange | None:
    """Replay the last 30 days under the rules in force and under `doc`: the change if it is
    beyond the threshold."""
    from patron.rules import simulate

    date_from, date_to = period(program, now)
    report = simulate.simulate(session, program, doc, date_from=date_from, date_to=date_to, top=1)
    return judge(report.current_points, report.proposed_points, date_from, date_to)


def require(session: Session, program: Program, doc: RuleSetDoc, *, now: datetime) -> None:
    """Refuse with ConfirmationRequired when publishing `doc` moves total points beyond the
    threshold."""
    found = large_change(session, program, doc, now=now)
    if found is None:
        return
    sign = "+" if found.percent > 0 else ""
    raise ConfirmationRequired(
        f"this change moves total points by {sign}{found.percent}% "
        f"({found.current_points} → {found.proposed_points} over {found.date_from}.."
        f"{found.date_to}), beyond ±{found.limit}%: confirm the change explicitly to publish it "
        "(API: confirm_large_change=true; CLI: --confirm-large-change)"
    )
