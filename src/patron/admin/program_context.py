"""The program an admin page is about: its code, name, currency and timezone, chosen from the
query or the staff member's first program; its tier names and store codes for pickers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron import clock
from patron.admin.context import programs as all_programs
from patron.programs.models import Program, Store
from patron.programs.service import get_program
from patron.tiers.models import TierDefinition


@dataclass(frozen=True)
class Prog:
    """What the pages show of a program, copied out of the session."""

    id: int
    code: str
    name: str
    currency: str
    timezone: str
    rule_version: int

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def today(self) -> date:
        return clock.now().astimezone(self.tz).date()


def prog_of(program: Program) -> Prog:
    return Prog(
        program.id,
        program.code,
        program.name,
        program.currency,
        program.timezone,
        program.rule_version,
    )


def pick_program(
    session: Session, code: str | None
) -> tuple[Program | None, list[tuple[str, str]]]:
    """The program asked for (404 if unknown), else the first one; and every (code, name)."""
    listed = all_programs(session)
    choices = [(p.code, p.name) for p in listed]
    if code:
        return get_program(session, code), choices
    return (listed[0] if listed else None), choices


def blank(value: str | None) -> str:
    return (value or "").strip()


def tier_names_of(session: Session, program_id: int, lang: str) -> dict[str, str]:
    rows = session.execute(
        select(TierDefinition.code, TierDefinition.names)
        .where(TierDefinition.program_id == program_id)
        .order_by(TierDefinition.rank)
    )
    return {
        code: (names or {}).get(lang) or (names or {}).get("en") or code for code, names in rows
    }


def store_codes(session: Session, program_id: int) -> list[tuple[str, str]]:
    return [
        (code, name)
        for code, name in session.execute(
            select(Store.code, Store.name).where(Store.program_id == program_id).order_by(Store.id)
        )
    ]
