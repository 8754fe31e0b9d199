"""Rule sets in the database: versions, edits, and the glue between the pure core and the ledger."""

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

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Conflict, Invalid, NotFound, StaleVersion
from patron.ledger.models import Account, Entry, Purchase
from patron.members.models import Member
from patron.programs.models import Program, Store
from patron.rules.engine import Evaluation, MemberContext, Order, evaluate
from patron.rules.model import RULE_KINDS, BaseRate, Cap, Promotion, RuleSetDoc
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


def _dump(doc: RuleSetDoc) -> dict[str, Any]:
    return doc.model_dump(mode="json", exclude_none=True)


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


def check_references(session: Session, program: Program, doc: RuleSetDoc) -> None:
    """A rule naming a store the program does not have could never apply: say so."""
    known = set(session.scalars(select(Store.code).where(Store.program_id == program.id)))
    for index, rule in enumerate(doc.rules):
        for store in rule.stores or []:
            if store not in known:
                raise Invalid(
                    f"rules[{index}].stores: program {program.code} has no store {store!r}",
                    code="unknown_store",
                )
    for store in doc.redemption.stores or []:
        if store not in known:
            raise Invalid(
                f"redemption.stores: program {program.code} has no store {store!r}",
                code="unknown_store",
            )
    named = [
        (index, code)
        for index, rule in enumerate(doc.rules)
        if rule.conditions is not None
        for code in rule.conditions.segments or []
    ]
    if named:
        from patron.segments.models import Segment

        segments = set(
            session.scalars(select(Segment.code).where(Segment.program_id == program.id))
        )
        for index, code in named:
            if code not in segments:
                raise Invalid(
                    f"rules[{index}].conditions.segments: program {program.code} has no "
                    f"segment {code!r}",
                    code="unknown_segment",
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


def publish(
    session: Session,
    program: Program,
    doc: RuleSetDoc,
    *,
    actor: Actor,
    now: datetime,
    note: str | None = None,
    expected_version: int | None = None,
    confirm: bool | None = None,
) -> Any:
    """Store `doc` as the program's next version and make it current. With `expected_version`
    (the version the change was made from) the program's row is locked first and a different
    current version refuses the write with StaleVersion: two editors cannot both publish over
    the same base.

    `confirm` is what a person or an integrator said about a large change (`rules.confirm`):
    False recomputes the change here, from the replay, and refuses one beyond the threshold
    with ConfirmationRequired; True publishes it; None (the program's own publishes: its first
    version, the earning settings, the demo) does not check."""
    from patron.rules import confirm as large
    from patron.rules.models import RuleSetVersion

    check_version(session, program, expected_version)
    check_references(session, program, doc)
    if confirm is False:
        large.require(session, program, doc, now=now)
    latest = session.scalar(
        select(func.max(RuleSetVersion.version)).where(RuleSetVersion.program_id == program.id)
    )
    old = document(session, program) if latest is not None else None
    version = (latest or 0) + 1
    row = RuleSetVersion(
        program_id=program.id,
        version=version,
        document=_dump(doc),
        note=note,
        actor=str(actor),
        created_at=now,
    )
    session.add(row)
    program.rule_version = version
    base = next((r for r in doc.rules if isinstance(r, BaseRate)), None)
    if base is not None:
        # The program's `earning` setting mirrors the first base rate.
        program.earn_mode, program.earn_points = base.mode, base.points
        program.earn_per_amount, program.earn_rounding = base.per_amount, base.rounding
    program.updated_at = now
    session.flush()
    changes = diff(old, doc)
    audit.record(
        session,
        actor=actor,
        action="rules.published",
        subject_type="program",
        subject_id=program.code,
        program_id=program.id,
        at=now,
        before={"version": latest} if latest else None,
        after={"version": version, "note": note, **changes},
    )
    return row


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


def check_version(session: Session, program: Program, expected: int | None) -> None:
    """Lock the program's row, then compare its rule version with `expected` (None: any)."""
    if expected is None:
        return
    session.refresh(program, with_for_update=True)
    if program.rule_version != expected:
        raise StaleVersion(
            f"the rules of {program.code} are at version {program.rule_version}, not {expected}: "
            "someone published meanwhile; start again from the current version"
        )


def add_rule(
    session: Session,
    program: Program,
    rule: dict[str, Any],
    *,
    actor: Actor,
    now: datetime,
    note: str | None = None,
    position: int | None = None,
    expected_version: int | None = None,
    confirm: bool | None = None,
) -> Any:
    check_version(session, program, expected_version)
    doc = _dump(document(session, program))
    if any(r["id"] == rule.get("id") for r in doc["rules"]):
        raise Conflict(
            f"rule {rule.get('id')!r} already exists; change it instead", code="duplicate_rule"
        )
    rules = doc["rules"]
    rules.insert(len(rules) if position is None else max(0, min(position, len(rules))), rule)
    return publish(
        session, program, validate_doc(doc), actor=actor, now=now, note=note, confirm=confirm
    )


def replace_rule(
    session: Session,
    program: Program,
    rule_id: str,
    rule: dict[str, Any],
    *,
    actor: Actor,
    now: datetime,
    note: str | None = None,
    expected_version: int | None = None,
    confirm: bool | None = None,
) -> Any:
    check_version(session, program, expected_version)
    doc = _dump(document(session, program))
    index = next((i for i, r in enumerate(doc["rules"]) if r["id"] == rule_id), None)
    if index is None:
        raise NotFound(f"program {program.code} has no rule {rule_id!r}", code="rule_not_found")
    doc["rules"][index] = {**rule, "id": rule.get("id", rule_id)}
    return publish(
        session, program, validate_doc(doc), actor=actor, now=now, note=note, confirm=confirm
    )


def remove_rule(
    session: Session,
    program: Program,
    rule_id: str,
    *,
    actor: Actor,
    now: datetime,
    note: str | None = None,
    expected_version: int | None = None,
    confirm: bool | None = None,
) -> Any:
    check_version(session, program, expected_version)
    doc = _dump(document(session, program))
    kept = [r for r in doc["rules"] if r["id"] != rule_id]
    if len(kept) == len(doc["rules"]):
        raise NotFound(f"program {program.code} has no rule {rule_id!r}", code="rule_not_found")
    doc["rules"] = kept
    return publish(
        session, program, validate_doc(doc), actor=actor, now=now, note=note, confirm=confirm
    )


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
