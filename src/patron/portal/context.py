"""Who is looking at a member page: the program, and the signed-in member (plain values
copied out of the database, so templates never touch a session)."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class ProgramInfo:
    id: int
    code: str
    name: str
    currency: str
    timezone: str

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Viewer:
    """The signed-in member, copied out of the session that found her."""

    program: ProgramInfo
    member_id: int
    name: str
    language: str
    session_id: int
    csrf_token: str
