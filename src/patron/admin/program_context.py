"""The program an admin page is about: its code, name, currency and timezone, chosen from the
query or the staff member's first program; its tier names and store codes for pickers.

A staff user may be limited to some programs. `deps.require` records their reach for the
request (`set_reach`); `visible` and `pick_program` then list and default to those programs only,
so a page's program switcher never names another program. A context variable rather than an
argument: every page's program list goes through here, and a page that forgets to pass the reach
would show every program. (The reach itself is enforced in `deps.within_reach`.)"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron import clock
from patron.admin.context import programs as all_programs
from patron.errors import Forbidden
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


# The programs (codes) the signed-in user may reach in this request; None: every program.
_reach: ContextVar[frozenset[str] | None] = ContextVar("patron_admin_reach", default=None)


def set_reach(programs: frozenset[str] | None) -> None:
    _reach.set(programs)


def reach() -> frozenset[str] | None:
    return _reach.get()


def visible(programs: Sequence[Program]) -> list[Program]:
    """The programs of `programs` the signed-in user may see, in their order."""
    limit = _reach.get()
    return [p for p in programs if limit is None or p.code in limit]


def visible_program(session: Session, code: str) -> Program:
    """The program `code` (404 if unknown), refused (403) outside the user's reach."""
    program = get_program(session, code)
    limit = _reach.get()
    if limit is not None and program.code not in limit:
        raise Forbidden(f"you act in {', '.join(sorted(limit))} only", code="program_not_allowed")
    return program


def pick_program(
    session: Session, code: str | None
) -> tuple[Program | None, list[tuple[str, str]]]:
    """The program asked for (404 if unknown), else the first one; and every (code, name)
    the user may see."""
    listed = visible(all_programs(session))
    choices = [(p.code, p.name) for p in listed]
    if code:
        return visible_program(session, code), choices
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
