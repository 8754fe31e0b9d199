"""A program written with its rule set. A program's `earning` setting is its rule set's first
base rate, kept in both places: `rules.publishing` copies a published base rate to the
program's settings, and this goes the other way. A new program's rule set starts at version 1
with the base rate from its settings; a change of `earning` publishes the base rate in a new
version. Each is one transaction with the program's own row and audit record.

Here, above both `programs` (the program's row and stores) and `rules` (its rule set), so the
program below never imports the rules that read it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.programs import service as programs
from patron.programs.models import Program
from patron.programs.schemas import ProgramCreate, ProgramUpdate
from patron.rules import publishing
from patron.rules import service as rules
from patron.rules.model import RuleSetDoc


def create_program(
    session: Session, data: ProgramCreate, *, actor: Actor, now: datetime
) -> Program:
    p = programs.add_program(session, data, actor=actor, now=now)
    # The base rate is the first rule of the program's rule set, version 1.
    publishing.publish(
        session,
        p,
        RuleSetDoc.model_validate({"rules": [rules.base_rule_from_program(p)]}),
        actor=actor,
        now=now,
        note="base rate from the program settings",
    )
    return p


def update_program(
    session: Session, program: Program, data: ProgramUpdate, *, actor: Actor, now: datetime
) -> Program:
    before = programs.snapshot(program)
    programs.apply_update(program, data)
    after = programs.snapshot(program)
    if after != before:
        program.updated_at = now
        if before["earning"] != after["earning"]:
            _publish_base_rate(session, program, actor=actor, now=now)
            after["rule_version"] = program.rule_version
        old, new = audit.changes(before, after)
        audit.record(
            session,
            actor=actor,
            action="program.updated",
            subject_type="program",
            subject_id=program.code,
            program_id=program.id,
            at=now,
            before=old,
            after=new,
        )
    session.flush()
    return program


def _publish_base_rate(session: Session, program: Program, *, actor: Actor, now: datetime) -> None:
    """`earning` edits the rule set's first base rate (or adds one) in a new version."""
    doc = rules.document(session, program).model_dump(mode="json", exclude_none=True)
    base = rules.base_rule_from_program(program)
    index = next((i for i, r in enumerate(doc["rules"]) if r["kind"] == "base_rate"), None)
    if index is None:
        doc["rules"].insert(0, base)
    else:
        doc["rules"][index] = {
            **doc["rules"][index],
            **{k: v for k, v in base.items() if k != "id"},
        }
    publishing.publish(
        session,
        program,
        rules.validate_doc(doc),
        actor=actor,
        now=now,
        note="earning changed in the program settings",
    )
