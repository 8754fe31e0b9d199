"""A program's fraud controls: the document staff edit (API, admin page, CLI), its validation
(bad settings are a 422) and the frozen rules the sale path reads from the program cache."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from patron.audit import service as audit
from patron.audit.service import Actor
from patron.db import config_version
from patron.errors import Invalid
from patron.fraud.models import FraudSettings
from patron.fraud.rules import FraudDoc
from patron.programs.models import Program


class FraudSettingsOut(FraudDoc):
    program: str
    updated_at: datetime | None = None
    updated_by: str | None = None


def get(session: Session, program: Program) -> FraudSettingsOut:
    row = session.get(FraudSettings, program.id)
    doc = FraudDoc.model_validate(row.document) if row is not None else FraudDoc()
    return FraudSettingsOut(
        program=program.code,
        updated_at=row.updated_at if row is not None else None,
        updated_by=row.updated_by if row is not None else None,
        **doc.model_dump(),
    )


def parse(values: dict[str, Any]) -> FraudDoc:
    """A document from untyped input (CLI, admin form): a 422 with the field at fault."""
    try:
        return FraudDoc.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise Invalid(f"{where}: {first['msg']}", code="invalid_fraud_settings") from None


def save(
    session: Session, program: Program, doc: FraudDoc, *, actor: Actor, now: datetime
) -> FraudSettingsOut:
    """Replace the program's controls (audited); every worker's cache sees them at its next
    sale (the configuration token changes in this transaction)."""
    row = session.get(FraudSettings, program.id, with_for_update=True)
    before = row.document if row is not None else {}
    document = doc.model_dump(exclude_defaults=True)
    if row is None:
        row = FraudSettings(program_id=program.id, document=document, updated_at=now)
        session.add(row)
    else:
        row.document = document
        row.updated_at = now
    row.updated_by = str(actor)
    session.flush()
    config_version.touch(session, program.id)
    audit.record(
        session,
        actor=actor,
        action="fraud.settings_changed",
        subject_type="program",
        subject_id=program.id,
        program_id=program.id,
        at=now,
        before=before,
        after=document,
    )
    return get(session, program)
