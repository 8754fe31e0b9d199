"""Publishing a rule set: a new version made current, with the checks a write needs first (the
editor's base version, the stores and segments it names, and a large change confirmed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.errors import Conflict, Invalid, NotFound, StaleVersion
from patron.programs.models import Program, Store
from patron.rules import confirm as large
from patron.rules.model import BaseRate, RuleSetDoc
from patron.rules.service import diff, document, validate_doc


def _dump(doc: RuleSetDoc) -> dict[str, Any]:
    return doc.model_dump(mode="json", exclude_none=True)


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
