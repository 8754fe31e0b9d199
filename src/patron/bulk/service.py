"""Bulk jobs: create one for a file, run it chunk by chunk, resume it, report on it.

A job reads its file as a stream and writes it `chunk_size` rows at a time, each chunk one
transaction that also moves the job's counters and `last_row` and stores the chunk's row
errors: a job stopped anywhere (a crash, a lost connection, Ctrl-C) has written exactly the
chunks it counted, and `resume` starts at the row after `last_row`. Rows are idempotent on
their own as well (a member by external reference, else phone or e-mail; an adjustment by its
key), so running the same file again as a new job writes nothing twice either.

A dry run reads and checks everything a real run would (values, duplicates in the file and
against the database) and writes only its job row and its error report.
"""

from __future__ import annotations

import csv
import io
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.orm import Session

from patron import clock
from patron.audit import service as audit
from patron.audit.service import Actor
from patron.bulk import fields, readers, writers
from patron.bulk.fields import RowError
from patron.bulk.models import BulkJob, BulkJobError
from patron.db.engine import Database
from patron.errors import Conflict, Invalid, NotFound
from patron.members.phone import PhoneCache
from patron.programs.models import Program
from patron.sales import program_cache
from patron.tiers import service as tiers
from patron.tiers.periods import window_at

KINDS = ("members", "adjustments")
CHUNK_SIZE = 2_000
KEPT_ERRORS = 10_000  # per job: the counts stay exact, the report keeps the first ones
CHUNK_ATTEMPTS = 4
RESUMABLE = ("queued", "running", "failed", "interrupted")


@dataclass
class JobView:
    """A job as the CLI and the admin pages show it (read outside its session)."""

    id: int
    kind: str
    program: str
    file_name: str
    dry_run: bool
    status: str
    rows_total: int | None
    rows_done: int
    rows_skipped: int
    rows_failed: int
    last_row: int
    chunks_done: int
    error: str | None
    started_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    mapping: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_seen(self) -> int:
        return self.rows_done + self.rows_skipped + self.rows_failed


def view(job: BulkJob, program_code: str) -> JobView:
    return JobView(
        id=job.id,
        kind=job.kind,
        program=program_code,
        file_name=job.file_name,
        dry_run=job.dry_run,
        status=job.status,
        rows_total=job.rows_total,
        rows_done=job.rows_done,
        rows_skipped=job.rows_skipped,
        rows_failed=job.rows_failed,
        last_row=job.last_row,
        chunks_done=job.chunks_done,
        error=job.error,
        started_by=job.started_by,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        mapping=dict(job.mapping or {}),
    )


def _needed(kind: str) -> tuple[Sequence[str], list[Sequence[str]]]:
    if kind == "members":
        return fields.MEMBER_FIELDS, [("name",), ("external_ref", "phone", "email")]
    return fields.ADJUSTMENT_FIELDS, [fields.REF_FIELDS, ("points",), ("reason",), ("key",)]


def check_file(
    kind: str, path: Path, name: str, mapping: dict[str, str]
) -> tuple[readers.Table, dict[int, str], list[str]]:
    """The file opened and its columns mapped; `Invalid` if either cannot be done."""
    if kind not in KINDS:
        raise Invalid(f"a job is one of {', '.join(KINDS)}", code="invalid_kind")
    table = readers.open_table(path, name)
    wanted, needed = _needed(kind)
    columns, ignored = fields.resolve_mapping(table.header, mapping, wanted)
    fields.require(columns, needed, table.header)
    return table, columns, ignored


def create_job(
    db: Database,
    *,
    kind: str,
    program: str,
    path: Path,
    file_name: str | None = None,
    mapping: dict[str, str] | None = None,
    dry_run: bool = False,
    actor: Actor,
    stored_path: str | None = None,
) -> JobView:
    """A queued job for `path` (checked: readable, its columns mapped)."""
    name = file_name or path.name
    mapping = mapping or {}
    table, _columns, _ignored = check_file(kind, path, name, mapping)
    digest = readers.file_hash(path)
    now = clock.now()
    with db.unit_of_work() as session:
        prog = _program(session, program, actor)
        job = BulkJob(
            kind=kind,
            program_id=prog.id,
            file_name=name[:255],
            file_hash=digest,
            stored_path=stored_path,
            dry_run=dry_run,
            status="queued",
            mapping=mapping,
            rows_total=table.total,
            rows_done=0,
            rows_skipped=0,
            rows_failed=0,
            last_row=0,
            chunks_done=0,
            started_by=str(actor),
            created_at=now,
            updated_at=now,
        )
        session.add(job)
        session.flush()
        audit.record(
            session,
            actor=actor,
            action="bulk.job_created",
            subject_type="bulk_job",
            subject_id=job.id,
            program_id=prog.id,
            at=now,
            after={"kind": kind, "file": name, "dry_run": dry_run, "rows": table.total},
        )
        return view(job, prog.code)


def _program(session: Session, code: str, actor: Actor) -> Program:
    prog = session.scalars(select(Program).where(Program.code == code)).one_or_none()
    if prog is None or not actor.reaches(code):
        raise NotFound(f"no program with code {code!r}", code="program_not_found")
    return prog


def get_job(session: Session, job_id: int, *, actor: Actor | None = None) -> JobView:
    found = session.execute(
        select(BulkJob, Program.code)
        .join(Program, Program.id == BulkJob.program_id)
        .where(BulkJob.id == job_id)
    ).one_or_none()
    if found is None or (actor is not None and not actor.reaches(found[1])):
        raise NotFound(f"no job {job_id}", code="job_not_found")
    return view(found[0], found[1])


def list_jobs(
    session: Session, *, programs: Sequence[str] | None = None, limit: int = 50
) -> list[JobView]:
    stmt = select(BulkJob, Program.code).join(Program, Program.id == BulkJob.program_id)
    if programs is not None:
        stmt = stmt.where(Program.code.in_(list(programs)))
    rows = session.execute(stmt.order_by(BulkJob.id.desc()).limit(limit)).all()
    return [view(job, code) for job, code in rows]


def job_errors(session: Session, job_id: int, *, limit: int | None = None) -> list[RowError]:
    """The job's row errors, by row (plain values: usable after the session ends)."""
    stmt = (
        select(BulkJobError.row, BulkJobError.column, BulkJobError.code, BulkJobError.message)
        .where(BulkJobError.job_id == job_id)
        .order_by(BulkJobError.row, BulkJobError.id)
    )
    return [RowError(*row) for row in session.execute(stmt.limit(limit) if limit else stmt)]


def errors_csv(session: Session, job_id: int) -> Iterator[str]:
    """The job's row errors as CSV text (row, column, code, message), streamed."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "column", "code", "message"])
    yield buffer.getvalue()
    last = 0
    while True:
        part = list(
            session.scalars(
                select(BulkJobError)
                .where(BulkJobError.job_id == job_id, BulkJobError.id > last)
                .order_by(BulkJobError.id)
                .limit(5_000)
            )
        )
        if not part:
            return
        buffer.seek(0)
        buffer.truncate()
        for e in part:
            writer.writerow([e.row, e.column or "", e.code, _cell(e.message)])
        last = part[-1].id
        yield buffer.getvalue()


def _cell(text: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


# --- running -------------------------------------------------------------------------------

ProgressHook = Callable[[JobView], None]


class _Seen:
    """What earlier rows of the file used (external refs, phones, e-mails, keys): a row that
    repeats one is reported, not written twice."""

    def __init__(self) -> None:
        self.first: dict[tuple[str, str], int] = {}

    def repeat(self, kind: str, value: str | None, row: int) -> int | None:
        if value is None:
            return None
        earlier = self.first.setdefault((kind, value), row)
        return earlier if earlier != row else None


def _member_duplicates(seen: _Seen, row: fields.MemberRow) -> list[RowError]:
    out = []
    for kind, value, column in (
        ("ref", row.external_ref, "external_ref"),
        ("phone", row.phone, "phone"),
        ("email", row.email, "email"),
    ):
        earlier = seen.repeat(kind, value, row.row)
        if earlier is not None:
            out.append(
                RowError(
                    row.row,
                    column,
                    "duplicate_in_file",
                    f"the same {column.replace('_', ' ')} as row {earlier}",
                )
            )
    return out


def run_job(
    db: Database,
    job_id: int,
    path: Path,
    *,
    actor: Actor,
    chunk_size: int = CHUNK_SIZE,
    on_progress: ProgressHook | None = None,
) -> JobView:
    """Run (or resume) the job over `path`; returns the job as it ends. A file that is not
    the job's, or a job already finished, is refused (`Conflict`)."""
    if chunk_size < 1:
        raise ValueError("chunk_size must be at least 1")
    with db.unit_of_work(readonly=True) as session:
        job = get_job(session, job_id, actor=actor)
        stored_hash = session.scalar(select(BulkJob.file_hash).where(BulkJob.id == job_id))
    if job.status not in RESUMABLE:
        raise Conflict(f"job {job_id} is {job.status}; start a new job", code="job_finished")
    if readers.file_hash(path) != stored_hash:
        raise Conflict(
            f"{path.name} is not the file job {job_id} was started with (its content differs)",
            code="file_changed",
        )
    try:
        return _run(db, job, path, actor=actor, chunk_size=chunk_size, on_progress=on_progress)
    except KeyboardInterrupt:
        _stop(db, job_id, "interrupted", "stopped by the user; resume it to go on")
        raise
    except Exception as exc:
        detail = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
        _stop(db, job_id, "failed", str(detail)[:1000])
        raise


def _stop(db: Database, job_id: int, status: str, error: str) -> None:
    with db.unit_of_work() as session:
        job = session.get(BulkJob, job_id)
        if job is not None and job.status in ("queued", "running"):
            job.status, job.error, job.updated_at = status, error, clock.now()


def _run(
    db: Database,
    job: JobView,
    path: Path,
    *,
    actor: Actor,
    chunk_size: int,
    on_progress: ProgressHook | None,
) -> JobView:
    table, columns, _ignored = check_file(job.kind, path, job.file_name, job.mapping)
    now = clock.now()
    with db.unit_of_work() as session:
        row = session.get(BulkJob, job.id)
        assert row is not None
        row.status, row.error, row.updated_at = "running", None, now
        row.started_at = row.started_at or now
        row.rows_total = table.total
        program_id = row.program_id
        job = view(row, job.program)
    with db.unit_of_work(readonly=True) as session:
        config = program_cache.load(session, program_id)
        move = _tier_move(session, config, now) if job.kind == "members" else None
    ctx = fields.MemberContext(
        country=config.country,
        timezone=ZoneInfo(config.timezone),
        tiers=frozenset(config.tier_by_code),
        now=now,
        phones=PhoneCache(config.country),
    )
    if on_progress is not None:
        on_progress(job)
    rows = _parsed_chunks(table, job, columns, ctx, chunk_size)
    for chunk in _read_ahead(rows):
        job = _write_chunk(db, job, config, move, chunk, actor=actor, now=clock.now())
        if on_progress is not None:
            on_progress(job)
    with db.unit_of_work() as session:
        row = session.get(BulkJob, job.id)
        assert row is not None
        end = clock.now()
        row.status, row.finished_at, row.updated_at = "done", end, end
        row.rows_total = row.rows_done + row.rows_skipped + row.rows_failed
        audit.record(
            session,
            actor=actor,
            action="bulk.job_finished",
            subject_type="bulk_job",
            subject_id=row.id,
            program_id=row.program_id,
            at=end,
            after={
                "kind": row.kind,
                "dry_run": row.dry_run,
                "done": row.rows_done,
                "skipped": row.rows_skipped,
                "failed": row.rows_failed,
            },
        )
        job = view(row, job.program)
    if on_progress is not None:
        on_progress(job)
    return job


Chunk = list[tuple[int, Any, list[RowError]]]


def _parsed_chunks(
    table: readers.Table,
    job: JobView,
    columns: dict[int, str],
    ctx: fields.MemberContext,
    chunk_size: int,
) -> Iterator[Chunk]:
    """The rows after `job.last_row`, checked and normalised, `chunk_size` at a time."""
    seen = _Seen()
    header = table.header
    chunk: Chunk = []
    for number, cells in table.rows():
        if number <= job.last_row:
            continue
        parsed: fields.MemberRow | fields.AdjustmentRow | None
        if job.kind == "members":
            parsed, errors = fields.member_row(number, cells, columns, header, ctx)
            if parsed is not None:
                errors = _member_duplicates(seen, parsed)
        else:
            parsed, errors = adjustment = fields.adjustment_row(number, cells, columns, header)
            if adjustment[0] is not None:
                earlier = seen.repeat("key", adjustment[0].key, number)
                if earlier is not None:
                    errors = [
                        RowError(
                            number, "key", "duplicate_in_file", f"the same key as row {earlier}"
                        )
                    ]
        chunk.append((number, parsed if not errors else None, errors))
        if len(chunk) >= chunk_size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


_END = object()


def _read_ahead(chunks: Iterator[Chunk], depth: int = 2) -> Iterator[Chunk]:
    """`chunks` produced by a thread while the caller writes the previous ones: reading and
    checking rows (Python) overlaps the database's work on the chunk before. An error while
    reading is raised here, in the caller's thread; the reader stops when the caller does."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                while not stop.is_set():
                    try:
                        ready.put(chunk, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put(_END)
        except BaseException as exc:  # handed to the caller, raised there
            ready.put(exc)

    reader = threading.Thread(target=produce, name="patron-bulk-reader", daemon=True)
    reader.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join(timeout=5)


def _tier_move(session: Session, config: Any, now: datetime) -> writers.TierMove | None:
    policy = tiers.get_policy(session, config.id)
    if policy is None:
        return None
    window = window_at(policy.window, now, config.timezone, rolling_months=policy.rolling_months)
    return writers.TierMove(
        valid_until=tiers.valid_until(policy, config.timezone, window), grace=policy.grace_periods
    )


def _write_chunk(
    db: Database,
    job: JobView,
    config: Any,
    move: writers.TierMove | None,
    chunk: list[tuple[int, Any, list[RowError]]],
    *,
    actor: Actor,
    now: datetime,
) -> JobView:
    """One chunk, one transaction (retried whole on a deadlock, a busy SQLite file or a
    phone another writer just took: nothing of a failed attempt stays)."""
    good = [parsed for _n, parsed, _e in chunk if parsed is not None]
    bad = [e for _n, _p, errors in chunk for e in errors]
    attempt = 0
    while True:
        attempt += 1
        try:
            with db.unit_of_work(readonly=False) as session:
                if job.kind == "members":
                    written = writers.write_members(
                        session,
                        config,
                        good,
                        job_id=job.id,
                        tier_move=move,
                        actor=actor,
                        now=now,
                        dry_run=job.dry_run,
                    )
                else:
                    written = writers.write_adjustments(
                        session,
                        config,
                        good,
                        job_id=job.id,
                        actor=actor,
                        now=now,
                        dry_run=job.dry_run,
                    )
                errors = bad + (written.errors or [])
                return _count(session, job, chunk[-1][0], written, errors, now)
        except (OperationalError, IntegrityError):
            if attempt >= CHUNK_ATTEMPTS:
                raise
            time.sleep(random.uniform(0, 0.05 * attempt))
        except DBAPIError as exc:
            raise Invalid(
                f"rows {chunk[0][0]}–{chunk[-1][0]}: a value cannot be stored ({exc.orig})",
                code="invalid_value",
            ) from None


def _count(
    session: Session,
    job: JobView,
    last_row: int,
    written: writers.Written,
    errors: list[RowError],
    now: datetime,
) -> JobView:
    row = session.get(BulkJob, job.id, with_for_update=True)
    assert row is not None
    failed_rows = len({e.row for e in errors})
    kept = session.scalar(
        select(func.count()).select_from(BulkJobError).where(BulkJobError.job_id == job.id)
    )
    room = max(0, KEPT_ERRORS - int(kept or 0))
    if errors and room:
        session.add_all(
            BulkJobError(
                job_id=job.id,
                row=e.row,
                column=(e.column or None) and e.column[:120],
                code=e.code[:40],
                message=e.message[:500],
            )
            for e in sorted(errors, key=lambda e: e.row)[:room]
        )
    row.rows_done += written.done
    row.rows_skipped += written.skipped
    row.rows_failed += failed_rows
    row.last_row = last_row
    row.chunks_done += 1
    row.updated_at = now
    session.flush()
    return view(row, job.program)
