"""The record of a scheduled job's runs, shared by every package that schedules one.

The notification jobs (patron.notify.jobs: expiring, birthday, statement) keep their progress
in it, and the milestones' hourly evaluation (patron.milestones.jobs) claims its hour with it.
It knows nothing of either, so it lives here, below both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class JobRun(Base):
    """One run of a scheduled job for one program and period; resumable from `cursor`."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "program_id", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    job: Mapped[str] = mapped_column(String(30))  # expiring | birthday | statement | milestones
    program_id: Mapped[int] = mapped_column(BigInteger)
    # the day or month the run is for (milestones: the program-local hour, YYYY-MM-DDTHH)
    key: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(10))  # running | done
    cursor: Mapped[int] = mapped_column(BigInteger, default=0)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
