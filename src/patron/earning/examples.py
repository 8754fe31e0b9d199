"""Rule tests: sales a marketer writes down with the points they must earn.

"A 25,800 KRW sale by a basic member earns 250" is kept as an example: the basket (as a till
would send it, and optionally when it happens), who buys it (tier, attributes, join date,
birthday, earlier purchases, what the caps have already counted) and the points expected. Every
run evaluates each example with the rules core (`rules.engine.evaluate`, the function that
prices real sales) under the rule set being tested and under the rules in force, so a preview
or a publish shows which examples a change breaks and which it merely changes; `patron rules
test` runs them in a business's own CI with JUnit XML output.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any
from xml.etree import ElementTree

from pydantic import AwareDatetime, BaseModel, Field, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Invalid, NotFound, PatronError
from patron.ledger.schemas import LineIn
from patron.programs.models import Program
from patron.programs.service import list_stores
from patron.rules import service as rules
from patron.rules.engine import MemberContext, evaluate
from patron.rules.model import RuleSetDoc, Strict
from patron.rules.models import RuleExample
from patron.sales import basket
from patron.sales.schemas import BasketIn
from patron.tiers.models import TierDefinition

EXAMPLE_NAME = r"^[a-z0-9][a-z0-9_-]{0,79}$"


class ExampleSale(BasketIn):
    """The basket, as the purchase call takes it (no member, order id or points to spend)."""

    occurred_at: AwareDatetime | None = Field(
        None, description="When the sale happens (time-of-day and dated rules); default: now"
    )


class ExampleMember(Strict):
    """Who buys: what the rules may read about a member."""

    tier: str | None = Field(None, min_length=1, max_length=40, description="A tier code")
    attributes: dict[str, Any] = Field(default_factory=dict)
    joined_on: date | None = Field(None, description="Local date the member joined")
    birthday: date | None = None
    purchases: int = Field(0, ge=0, le=10**9, description="Purchases before this one")
    recent_purchases: dict[Annotated[int, Field(ge=1, le=3650)], Annotated[int, Field(ge=0)]] = (
        Field(
            default_factory=dict,
            description='Of those, how many in the last N days, by N ({"30": 2}); '
            "a window not given counts 0",
        )
    )
    segments: list[Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")]] = Field(
        default_factory=list,
        max_length=50,
        description="The segments (codes) the member is in at the time of the sale",
    )
    earned_day: int = Field(0, ge=0, le=10**12, description="Purchase points already today")
    earned_month: int = Field(0, ge=0, le=10**12, description="… this month")
    earned_year: int = Field(0, ge=0, le=10**12, description="… this year")

    @model_validator(mode="after")
    def _recent_within_purchases(self) -> ExampleMember:
        for days, count in sorted(self.recent_purchases.items()):
            if count > self.purchases:
                raise ValueError(
                    f"recent_purchases.{days} ({count}) is more than purchases "
                    f"({self.purchases}): the last {days} days hold earlier purchases only"
                )
        return self


class ExampleIn(Strict):
    sale: ExampleSale
    member: ExampleMember = Field(default_factory=ExampleMember)
    expected_points: int = Field(ge=0, le=10**12, description="Points the sale must earn")
    note: str | None = Field(None, max_length=500, description="What the example is about")


class ExampleSaleOut(ExampleSale):
    """The basket as stored: without lines when it was given none (so `lines` may be empty)."""

    lines: list[LineIn] = Field(default_factory=list, max_length=500)


class ExampleOut(ExampleIn):
    sale: ExampleSaleOut
    name: str
    actor: str
    created_at: datetime
    updated_at: datetime


class ExampleResult(BaseModel):
    name: str
    expected_points: int
    points: int | None = Field(description="Under the rules tested; null if it cannot be priced")
    current_points: int | None = Field(description="Under the rules in force now")
    passed: bool
    changed: bool = Field(description="The rules tested give other points than those in force")
    error: str | None = Field(None, description="Why it cannot be priced, as an error code")
    detail: str | None = None
    breakdown: list[dict[str, Any]] = Field(default_factory=list)


class ExampleRun(BaseModel):
    program: str
    rule_version: int | None = Field(description="The version tested; null for a proposal")
    current_version: int
    passed: int
    failed: int
    changed: int
    results: list[ExampleResult]


def _out(row: RuleExample) -> ExampleOut:
    return ExampleOut(
        name=row.name,
        sale=ExampleSaleOut.model_validate(row.sale),
        member=ExampleMember.model_validate(row.member),
        expected_points=row.expected_points,
        note=row.note,
        actor=row.actor,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _row(session: Session, program: Program, name: str) -> RuleExample | None:
    return session.scalars(
        select(RuleExample).where(RuleExample.program_id == program.id, RuleExample.name == name)
    ).one_or_none()


def list_examples(session: Session, program: Program) -> list[ExampleOut]:
    rows = session.scalars(
        select(RuleExample).where(RuleExample.program_id == program.id).order_by(RuleExample.name)
    )
    return [_out(row) for row in rows]


def get_example(session: Session, program: Program, name: str) -> ExampleOut:
    row = _row(session, program, name)
    if row is None:
        raise NotFound(
            f"program {program.code} has no rule example {name!r}", code="rule_example_not_found"
        )
    return _out(row)


def save(
    session: Session, program: Program, name: str, body: ExampleIn, *, actor: Actor, now: datetime
) -> tuple[ExampleOut, bool]:
    """Create or replace the example `name`: (the example, whether it is new)."""
    row = _row(session, program, name)
    created = row is None
    before = None if row is None else _audited(row)
    if row is None:
        row = RuleExample(program_id=program.id, name=name, created_at=now)
        session.add(row)
    row.sale = body.sale.model_dump(mode="json", exclude_defaults=True)
    row.member = body.member.model_dump(mode="json", exclude_defaults=True)
    row.expected_points = body.expected_points
    row.note = body.note
    row.actor = str(actor)
    row.updated_at = now
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="rules.example_saved",
        subject_type="rule_example",
        subject_id=f"{program.code}:{name}",
        program_id=program.id,
        at=now,
        before=before,
        after=_audited(row),
    )
    return _out(row), created


def delete(session: Session, program: Program, name: str, *, actor: Actor, now: datetime) -> None:
    row = _row(session, program, name)
    if row is None:
        raise NotFound(
            f"program {program.code} has no rule example {name!r}", code="rule_example_not_found"
        )
    before = _audited(row)
    session.delete(row)
    session.flush()
    audit.record(
        session,
        actor=actor,
        action="rules.example_deleted",
        subject_type="rule_example",
        subject_id=f"{program.code}:{name}",
        program_id=program.id,
        at=now,
        before=before,
    )


def _audited(row: RuleExample) -> dict[str, Any]:
    return {
        "sale": row.sale,
        "member": row.member,
        "expected_points": row.expected_points,
        "note": row.note,
    }


def _price(
    doc: RuleSetDoc,
    program: Program,
    example: ExampleIn,
    *,
    factors: dict[str, Any],
    stores: dict[str, int],
    now: datetime,
) -> tuple[int, list[dict[str, Any]]]:
    """The points `doc` gives the example's sale, and the breakdown; a PatronError if the sale
    or the member does not fit the program (an unknown store or tier, lines that do not add
    up)."""
    sale, member = example.sale, example.member
    if member.tier is not None and member.tier not in factors:
        raise NotFound(f"program {program.code} has no tier {member.tier!r}", code="unknown_tier")
    occurred_at = sale.occurred_at or now
    order, _store_id = basket.order_of(
        program, sale, occurred_at=occurred_at, points_to_spend=0, store_id_of=stores.get
    )
    context = MemberContext(
        tier=member.tier,
        tier_factor=factors.get(member.tier) if member.tier is not None else None,
        attributes=member.attributes,
        joined_on=member.joined_on,
        birthday=member.birthday,
        purchases=member.purchases,
        recent_purchases=member.recent_purchases,
        earned_day=member.earned_day,
        earned_month=member.earned_month,
        earned_year=member.earned_year,
        segments=frozenset(member.segments),
    )
    try:
        result = evaluate(doc, order, context)
    except (OverflowError, ValueError) as exc:  # a date or an amount at the edge of the range
        raise Invalid(f"the sale cannot be priced: {exc}", code="unpriceable_example") from None
    return result.points, result.steps


def run(
    session: Session,
    program: Program,
    *,
    proposal: RuleSetDoc | None = None,
    given: dict[str, ExampleIn] | None = None,
    baseline: RuleSetDoc | None = None,
    now: datetime,
) -> ExampleRun:
    """Every example of the program (or those `given`, by name) under `proposal` (default: the
    rules in force), each also priced under the rules in force — or under `baseline`, the
    version a publish replaced, so its answer says which examples the publish changed."""
    current = baseline if baseline is not None else rules.document(session, program)
    tested = proposal if proposal is not None else current
    factors = dict(
        session.execute(
            select(TierDefinition.code, TierDefinition.multiplier).where(
                TierDefinition.program_id == program.id
            )
        ).all()
    )
    stores = {store.code: store.id for store in list_stores(session, program)}
    results: list[ExampleResult] = []
    chosen = given if given is not None else {e.name: e for e in list_examples(session, program)}
    for name, example in chosen.items():
        try:
            points, steps = _price(
                tested, program, example, factors=factors, stores=stores, now=now
            )
        except PatronError as exc:
            results.append(
                ExampleResult(
                    name=name,
                    expected_points=example.expected_points,
                    points=None,
                    current_points=None,
                    passed=False,
                    changed=False,
                    error=exc.code,
                    detail=exc.detail,
                )
            )
            continue
        before = points
        if proposal is not None:
            before, _ = _price(current, program, example, factors=factors, stores=stores, now=now)
        results.append(
            ExampleResult(
                name=name,
                expected_points=example.expected_points,
                points=points,
                current_points=before,
                passed=points == example.expected_points,
                changed=points != before,
                breakdown=steps,
            )
        )
    failed = sum(1 for r in results if not r.passed)
    return ExampleRun(
        program=program.code,
        rule_version=None if proposal is not None else program.rule_version,
        current_version=program.rule_version,
        passed=len(results) - failed,
        failed=failed,
        changed=sum(1 for r in results if r.changed),
        results=results,
    )


def junit(report: ExampleRun) -> str:
    """The run as JUnit XML (one test case per example), for a CI to read."""
    suite = ElementTree.Element(
        "testsuite",
        name=f"patron rules {report.program}",
        tests=str(len(report.results)),
        failures=str(sum(1 for r in report.results if not r.passed and r.error is None)),
        errors=str(sum(1 for r in report.results if r.error is not None)),
    )
    for result in report.results:
        case = ElementTree.SubElement(
            suite, "testcase", classname=f"rules.{report.program}", name=result.name
        )
        if result.error is not None:
            ElementTree.SubElement(
                case, "error", type=result.error, message=result.detail or result.error
            )
        elif not result.passed:
            failure = ElementTree.SubElement(
                case,
                "failure",
                type="points",
                message=f"expected {result.expected_points} points, got {result.points}",
            )
            failure.text = "\n".join(
                f"{step.get('rule')}: {'applied' if step.get('applied') else 'skipped'}"
                + (f" ({step['reason']})" if step.get("reason") else "")
                for step in result.breakdown
            )
    ElementTree.indent(suite)
    return ElementTree.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
