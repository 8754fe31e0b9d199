"""The campaigns job: start scheduled campaigns when due, add members who entered a live
segment and give them their arm's action, end campaigns past their end. One transaction per
campaign (its row lock serialises two runners)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from patron.audit.service import SYSTEM, Actor
from patron.campaigns import service
from patron.db.engine import Database
from patron.programs.models import Program


@dataclass
class CampaignRun:
    program: str
    campaign: str
    status: str
    assigned: int
    points: int
    coupons: int


def run_due(db: Database, *, now: datetime, actor: Actor = SYSTEM) -> list[CampaignRun]:
    with db.unit_of_work(readonly=True) as session:
        todo = service.due(session)
    done: list[CampaignRun] = []
    for program_id, code in todo:
        with db.unit_of_work() as session:
            program = session.get(Program, program_id)
            assert program is not None
            given = service.run(session, program, code, actor=actor, now=now)
            row = service.get_campaign(session, program, code)
            done.append(
                CampaignRun(
                    program.code, code, row.status, given.assigned, given.points, given.coupons
                )
            )
    return done
