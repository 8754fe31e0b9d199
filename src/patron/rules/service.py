"""Rule sets in the database: the versions read, what a sale needs of them, and the glue between
the pure core and the ledger. Publishing a version is `rules.publishing`'s."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError
from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from patron.errors import Invalid, NotFound
from patron.ledger.models import Account, Entry, Purchase
from patron.members.models import Member
from patron.programs.models import Program
from patron.rules.engine import Evaluation, MemberContext, Order, evaluate
from patron.rules.model import RULE_KINDS, Cap, Promotion, RuleSetDoc
from patron.tiers.models import TierDefinition

BASE_RULE_ID = "base"


def base_rule_from_program(program: Program) -> dict[str, Any]:
    return {
        "id": BASE_RULE_ID,
        "kind": "base_rate",
        "mode": program.earn_mode,
        "points": program.earn_points,
        "per_amount": format(program.earn_per_amount, "f"),
        "rounding": program.earn_rounding,
    }


@lru_cache(maxsize=256)
def _parse(program_id: int, version: int, text: str) -> RuleSetDoc:
    # Versions never change, so a parsed document can be kept per (program, version).
    return RuleSetDoc.model_validate_json(text)


def get_version(session: Session, program: Program, version: int | None = None) -> Any:
    from patron.rules.models import RuleSetVersion

    wanted = version if version is not None else program.rule_version
    row = session.scalars(
        select(RuleSetVersion).where(
            RuleSetVersion.program_id == program.id, RuleSetVersion.version == wanted
        )
    ).one_or_none()
    if row is None:
        raise NotFound(
            f"program {program.code} has no rule set version {wanted}",
            code="rule_version_not_found",
        )
    return row


def document(session: Session, program: Program, version: int | None = None) -> RuleSetDoc:
    import json

    row = get_version(session, program, version)
    return _parse(program.id, row.version, json.dumps(row.document, sort_keys=True))


def list_versions(session: Session, program: Program) -> list[Any]:
    from patron.rules.models import RuleSetVersion

    return list(
        session.scalars(
            select(RuleSetVersion)
            .where(RuleSetVersion.program_id == program.id)
            .order_by(RuleSetVersion.version.desc())
        )
    )


def diff(old: RuleSetDoc | None, new: RuleSetDoc) -> dict[str, list[str]]:
    before = {r.id: r.model_dump(mode="json") for r in (old.rules if old else [])}
    after = {r.id: r.model_dump(mode="json") for r in new.rules}
    settings_changed = old is None or (old.combine, old.rounding, old.redemption) != (
        new.combine,
        new.rounding,
        new.redemption,
    )
    return {
        "added": [k for k in after if k not in before],
        "removed": [k for k in before if k not in after],
        "changed": [k for k in after if k in before and before[k] != after[k]],
        "settings": ["combine/rounding/redemption"] if settings_changed and old is not None else [],
    }


def compare(
    session: Session, program: Program, from_version: int, to_version: int
) -> dict[str, Any]:
    """What changed between two stored versions, with both JSONs of every changed rule."""
    old, new = (document(session, program, from_version), document(session, program, to_version))
    changes = diff(old, new)
    before = {r.id: r.model_dump(mode="json", exclude_none=True) for r in old.rules}
    after = {r.id: r.model_dump(mode="json", exclude_none=True) for r in new.rules}
    return {
        "from": from_version,
        "to": to_version,
        **changes,
        "rules": {
            rule_id: {"from": before[rule_id], "to": after[rule_id]}
            for rule_id in changes["changed"]
        },
    }


def field_path(loc: Any) -> str:
    """rules.2.factor from a Pydantic error location: the rule kind Pydantic adds after the
    list index (its discriminator tag, rules.2.promotion.factor) is not a field, so it goes."""
    parts: list[str] = []
    previous: Any = None
    for part in loc:
        if part in RULE_KINDS and (previous is None or isinstance(previous, int)):
            previous = part
            continue
        parts.append(str(part))
        previous = part
    return ".".join(parts)


def describe_errors(errors: list[Any], *, skip: tuple[str, ...] = ()) -> str:
    """The first validation error as "rules.2.factor: message (and N more)"."""
    first = errors[0]
    loc = [p for p in first.get("loc", ()) if p not in skip]
    where = field_path(loc) or "rule set"
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {message}{more}"


def validate_doc(data: Any) -> RuleSetDoc:
    """Parse a rule set from plain data; errors name the exact field (rules.2.factor)."""
    try:
        return RuleSetDoc.model_validate(data)
    except ValidationError as exc:
        raise Invalid(describe_errors(exc.errors()), code="invalid_rule_set") from None


# --- evaluation against the database -------------------------------------------------------


@dataclass
class Needs:
    purchases: bool  # any purchase-count condition: earlier purchases are counted
    caps: tuple[str, ...]
    budgets: tuple[tuple[str, int], ...]
    # The distinct `recent_purchases` windows (days) the rules read, counted in the same query.
    recent_days: tuple[int, ...] = ()
    # The distinct segments the rules' `segments` conditions name: their memberships are read
    # once per sale, in one query for all of them (patron.segments.service.memberships).
    segments: tuple[str, ...] = ()


def needs(doc: RuleSetDoc) -> Needs:
    """What member figures a rule set reads, so the earn path fetches nothing more."""
    counting = [
        r.conditions
        for r in doc.rules
        if r.enabled and r.conditions is not None and r.conditions.counts_purchases()
    ]
    return Needs(
        purchases=bool(counting),
        segments=segment_codes(doc),
        recent_days=tuple(
            sorted({c.recent_purchases.days for c in counting if c.recent_purchases is not None})
        ),
        caps=tuple(
            sorted(
                {r.per for r in doc.rules if isinstance(r, Cap) and r.enabled and r.per != "order"}
            )
        ),
        budgets=tuple(
            (r.id, r.budget_points)
            for r in doc.rules
            if isinstance(r, Promotion) and r.enabled and r.budget_points is not None
        ),
    )


def segment_codes(doc: RuleSetDoc) -> tuple[str, ...]:
    """The segments the enabled rules' `segments` conditions name, sorted, each once."""
    return tuple(
        sorted(
            {
                code
                for r in doc.rules
                if r.enabled and r.conditions is not None and r.conditions.segments
                for code in r.conditions.segments
            }
        )
    )


def member_segments(
    session: Session, program: Any, member_id: int, at: datetime, wanted: Needs
) -> frozenset[str]:
    """The segments of `wanted.segments` the member is in at `at` (live membership, windows
    ending at `at`), in one query; nothing is read when no rule names a segment."""
    if not wanted.segments:
        return frozenset()
    from patron.segments.service import memberships

    found = memberships(session, program, list(wanted.segments), [member_id], at=at, known=True)
    return frozenset(found.get(member_id, ()))


def rules_naming_segment(session: Session, program: Program, code: str) -> list[str]:
    """The rules of the program's rule set in force whose `segments` condition names `code`
    (what keeps the segment from being deleted: patron.segment_deletion)."""
    from patron.rules.models import RuleSetVersion

    document = session.scalar(
        select(RuleSetVersion.document).where(
            RuleSetVersion.program_id == program.id,
            RuleSetVersion.version == program.rule_version,
        )
    )
    return [
        str(rule.get("id"))
        for rule in (document or {}).get("rules", [])
        if code in ((rule.get("conditions") or {}).get("segments") or [])
    ]


def _periods(local: datetime, tz: ZoneInfo) -> dict[str, tuple[datetime, datetime]]:
    """[start, end) in UTC of the member's local day, month and year around `local`."""
    day = local.date()
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    year = day.replace(month=1, day=1)
    bounds = {
        "member_day": (day, day + timedelta(days=1)),
        "member_month": (month, next_month),
        "member_year": (year, year.replace(year=year.year + 1)),
    }
    return {
        k: (
            datetime.combine(a, time(0), tzinfo=tz).astimezone(UTC),
            datetime.combine(b, time(0), tzinfo=tz).astimezone(UTC),
        )
        for k, (a, b) in bounds.items()
    }


def member_figures(
    session: Session, timezone: str, account_id: int, at: datetime, wanted: Needs
) -> tuple[dict[str, int], int, dict[int, int]]:
    """The member's purchase points this local day / month / year (only the periods a cap
    reads), purchases recorded before this one, up to `at` (only if a rule counts them): two
    sales of one instant count each other in the order they were recorded; and of those, how
    many happened in each `recent_purchases` window (days → count; at most days × 24 h before
    `at`), all counts in one query whatever the number of rules and windows."""
    tz = ZoneInfo(timezone)
    figures: dict[str, int] = {}
    if wanted.caps:
        periods = _periods(at.astimezone(tz), tz)
        for per in wanted.caps:
            start, end = periods[per]
            figures[per] = int(
                session.scalar(
                    select(func.coalesce(func.sum(Entry.points), 0)).where(
                        Entry.account_id == account_id,
                        Entry.kind == "earn",
                        Entry.purchase_id.is_not(None),
                        Entry.occurred_at >= start,
                        Entry.occurred_at < end,
                    )
                )
                or 0
            )
    purchases = 0
    recent: dict[int, int] = {}
    if wanted.purchases:
        # COUNT of a CASE without ELSE counts the rows inside the window (the others are NULL):
        # plain SQL on SQLite and PostgreSQL alike.
        windows = [
            func.count(case((Purchase.occurred_at >= at - timedelta(days=days), 1)))
            for days in wanted.recent_days
        ]
        counts = session.execute(
            select(func.count(), *windows)
            .select_from(Purchase)
            .where(Purchase.account_id == account_id, Purchase.occurred_at <= at)
        ).one()
        purchases = int(counts[0] or 0)
        recent = {days: int(n or 0) for days, n in zip(wanted.recent_days, counts[1:], strict=True)}
    return figures, purchases, recent


def member_context(
    session: Session,
    program: Program,
    account: Account | None,
    member: Member,
    at: datetime,
    wanted: Needs,
) -> MemberContext:
    tz = ZoneInfo(program.timezone)
    figures: dict[str, int] = {}
    purchases = 0
    recent: dict[int, int] = {}
    if account is not None:
        figures, purchases, recent = member_figures(
            session, program.timezone, account.id, at, wanted
        )
    segments: frozenset[str] = frozenset()
    if account is not None and wanted.segments:
        segments = member_segments(session, program, member.id, at, wanted)
    tier_factor = None
    if account is not None and account.tier is not None:
        # One indexed look-up, only for members who have a tier.
        tier_factor = session.scalar(
            select(TierDefinition.multiplier).where(
                TierDefinition.program_id == program.id, TierDefinition.code == account.tier
            )
        )
    return MemberContext(
        tier=account.tier if account is not None else None,
        tier_factor=tier_factor,
        attributes=member.attributes or {},
        joined_on=member.created_at.astimezone(tz).date(),
        birthday=member.birthday,
        purchases=purchases,
        recent_purchases=recent,
        earned_day=figures.get("member_day", 0),
        earned_month=figures.get("member_month", 0),
        earned_year=figures.get("member_year", 0),
        segments=segments,
    )


def budgets_left(session: Session, program_id: int, wanted: Needs, *, lock: bool) -> dict[str, int]:
    """Points each budgeted promotion may still give; with `lock`, its row is locked until the
    transaction ends (an earn that may spend it)."""
    from patron.ledger.service import insert_ignore
    from patron.rules.models import PromotionBudget

    left: dict[str, int] = {}
    for rule_id, budget in wanted.budgets:
        if lock:
            insert_ignore(
                session,
                PromotionBudget,
                {"program_id": program_id, "rule_id": rule_id, "used": 0},
                ["program_id", "rule_id"],
            )
        stmt = select(PromotionBudget.used).where(
            PromotionBudget.program_id == program_id, PromotionBudget.rule_id == rule_id
        )
        used = session.scalar(stmt.with_for_update() if lock else stmt) or 0
        left[rule_id] = budget - int(used)
    return left


def spend_budgets(session: Session, program_id: int, used: dict[str, int]) -> None:
    """Add what an earn's budgeted promotions gave to their totals (rows locked by
    `budgets_left(lock=True)`)."""
    from patron.rules.models import PromotionBudget

    for rule_id, points in used.items():
        session.execute(
            update(PromotionBudget)
            .where(PromotionBudget.program_id == program_id, PromotionBudget.rule_id == rule_id)
            .values(used=PromotionBudget.used + points)
        )


def evaluate_purchase(
    session: Session,
    program: Program,
    order: Order,
    *,
    member: Member,
    account: Account | None,
    record: bool,
    doc: RuleSetDoc | None = None,
) -> tuple[Evaluation, int]:
    """Run the program's current rule set (or `doc`, already loaded) on an order; with
    `record`, spend promotion budgets. Returns the evaluation and the rule-set version used.
    """
    doc = doc if doc is not None else document(session, program)
    wanted = needs(doc)
    context = member_context(session, program, account, member, order.occurred_at, wanted)
    budgets = budgets_left(session, program.id, wanted, lock=record) if wanted.budgets else {}
    result = evaluate(doc, order, context, budgets)
    if record and result.budget_used:
        spend_budgets(session, program.id, result.budget_used)
    return result, program.rule_version


def qualifying_points(doc: RuleSetDoc, result: Evaluation) -> int:
    """The part of a purchase's points that counts towards tiers.

    All of them, less what rules marked `qualifying: false` added: a factor step adds
    after − before (a budget step's negative difference included), a fixed bonus its `added`;
    in "add" mode a factor's share is its extra part times the amount before the combined factor.
    """
    not_counted = {r.id for r in doc.rules if getattr(r, "qualifying", True) is False}
    if not not_counted:
        return result.points
    combined_before = next(
        (Decimal(str(s["before"])) for s in result.steps if s.get("kind") == "combined_factor"),
        None,
    )
    extra = Decimal(0)
    for step in result.steps:
        if not step.get("applied") or step.get("rule") not in not_counted:
            continue
        if "added" in step:
            extra += Decimal(str(step["added"]))
        elif "before" in step and "after" in step:
            extra += Decimal(str(step["after"])) - Decimal(str(step["before"]))
        elif "adds" in step and combined_before is not None:
            extra += combined_before * Decimal(str(step["adds"]))
    removed = int(extra.to_integral_value(rounding=ROUND_HALF_UP))
    return max(0, min(result.points, result.points - removed))


def payable_amount(doc: RuleSetDoc, order: Order) -> tuple[Decimal, str | None]:
    """What part of the bill points may pay, and why none of it if so."""
    rules = doc.redemption
    if rules.stores is not None and order.store not in rules.stores:
        return Decimal(0), f"points cannot be used at store {order.store or '(none)'}"
    if rules.channels is not None and order.channel not in rules.channels:
        return Decimal(0), f"points cannot be used on channel {order.channel or '(none)'}"
    if rules.excluded is None or not order.lines:
        return order.total, None
    blocked = sum(
        (ln.amount for ln in order.lines if rules.excluded.matches(ln.sku, ln.category)), Decimal(0)
    )
    return order.total - blocked, None
