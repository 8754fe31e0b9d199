"""Small read helpers the pages share: which program and timezone a page is shown in."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from patron.programs.models import Program


def programs(session: Session) -> list[Program]:
    return list(session.scalars(select(Program).order_by(Program.id)))


def default_timezone(session: Session) -> ZoneInfo:
    """Pages that are not about one program (home, audit log) show dates in the first program's
    timezone: most installations run one program."""
    name = session.scalar(select(Program.timezone).order_by(Program.id).limit(1))
    return ZoneInfo(name or "UTC")
