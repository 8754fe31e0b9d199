"""Bulk jobs (a member import or a file of adjustments), their per-row errors, and the keys
that make both idempotent per row: a member's external reference, an adjustment's key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from patron.db.base import Base
from patron.db.types import BigIntPK, JSONType, UTCDateTime


class BulkJob(Base):
    """One run over one file. `last_row` is the last data row of the last committed chunk:
    a resumed run starts after it, so no row is written twice."""

    __tablename__ = "bulk_jobs"
    __table_args__ = (Index("ix_bulk_jobs_program", "program_id", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # members | adjustments
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    file_name: Mapped[str] = mapped_column(String(255))
    # sha256 of the file: --resume refuses another file under the same name.
    file_hash: Mapped[str] = mapped_column(String(64))
    # Where the admin UI keeps an uploaded file until the job is done (None: the CLI's file).
    stored_path: Mapped[str | None] = mapped_column(String(500))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    # queued | running | done | failed (the file or the database stopped it) | interrupted
    status: Mapped[str] = mapped_column(String(12))
    mapping: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)  # column -> field
    rows_total: Mapped[int | None] = mapped_column(BigInteger)
    rows_done: Mapped[int] = mapped_column(BigInteger, default=0)  # written (or valid, dry run)
    rows_skipped: Mapped[int] = mapped_column(BigInteger, default=0)  # already imported
    rows_failed: Mapped[int] = mapped_column(BigInteger, default=0)
    last_row: Mapped[int] = mapped_column(BigInteger, default=0)
    chunks_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(String(1000))  # why the whole job stopped
    started_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BulkJobError(Base):
    """One refused row (a row may have several): written with its chunk, so a resumed job
    never reports a row twice. At most `jobs.KEPT_ERRORS` per job; the counts stay exact."""

    __tablename__ = "bulk_job_errors"
    __table_args__ = (Index("ix_bulk_job_errors_job", "job_id", "row"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("bulk_jobs.id"))
    row: Mapped[int] = mapped_column(BigInteger)  # as a spreadsheet numbers it: header = 1
    column: Mapped[str | None] = mapped_column(String(120))
    code: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(String(500))


class MemberImportRef(Base):
    """A member's id in the system they came from: a second import of the same row finds it."""

    __tablename__ = "member_import_refs"
    __table_args__ = (UniqueConstraint("program_id", "external_ref"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    external_ref: Mapped[str] = mapped_column(String(120))
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(BigInteger)


class AdjustmentKey(Base):
    """The idempotency key of one adjustment row, kept for good (a re-run writes nothing)."""

    __tablename__ = "bulk_adjustment_keys"
    __table_args__ = (UniqueConstraint("program_id", "key"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    program_id: Mapped[int] = mapped_column(ForeignKey("programs.id"))
    key: Mapped[str] = mapped_column(String(200))
    entry_id: Mapped[int] = mapped_column(BigInteger)
    job_id: Mapped[int | None] = mapped_column(BigInteger)
