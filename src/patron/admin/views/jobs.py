"""Bulk jobs in the admin UI: the list, one job's progress and row errors (with the error CSV),
and, for staff who may edit members or adjust points, an upload that checks a file (a dry run)
and then runs it. Jobs run in a background thread of this server (`runner`), the same service
the CLI runs; a job stopped by a restart is resumed from its job page."""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi import Path as PathParam
from fastapi.responses import RedirectResponse, Response, StreamingResponse
from starlette.datastructures import UploadFile

from patron.admin import context
from patron.admin.deps import Staff, get_db, require
from patron.admin.templating import path_for, render
from patron.audit.service import Actor
from patron.bulk import fields, service
from patron.bulk.readers import FORMATS, file_format
from patron.db.engine import Database
from patron.errors import Conflict, Invalid, PatronError

router = APIRouter()
log = logging.getLogger("patron.bulk")
JobId = PathParam(ge=1, le=2**53)
UPLOADS = Path(tempfile.gettempdir()) / "patron-imports"
MAX_UPLOAD = 512 * 1024 * 1024
SHOWN_ERRORS = 200
# Which permission starts which kind of job.
PERMISSION = {"members": "members.edit", "adjustments": "points.adjust"}


# --- the background runner -----------------------------------------------------------------

_threads: dict[int, threading.Thread] = {}
_lock = threading.Lock()


def start(db: Database, job_id: int, path: Path, actor: Actor) -> None:
    """Run the job in a thread of this process (its chunks commit as they go)."""

    def work() -> None:
        try:
            service.run_job(db, job_id, path, actor=actor)
        except Exception as exc:  # also recorded on the job row (failed, with why) by run_job
            log.warning("bulk job %s stopped: %s", job_id, exc)

    with _lock:
        running = _threads.get(job_id)
        if running is not None and running.is_alive():
            raise Conflict(f"job {job_id} is running already", code="job_running")
        thread = threading.Thread(target=work, name=f"patron-job-{job_id}", daemon=True)
        _threads[job_id] = thread
    thread.start()


def is_running(job_id: int) -> bool:
    thread = _threads.get(job_id)
    return thread is not None and thread.is_alive()


def wait(job_id: int, timeout: float = 30.0) -> None:
    """Until the job's thread ends (tests)."""
    thread = _threads.get(job_id)
    if thread is not None:
        thread.join(timeout)


# --- pages ---------------------------------------------------------------------------------


def _may_start(staff: Staff) -> list[str]:
    return [kind for kind, permission in PERMISSION.items() if staff.can(permission)]


def _programs(session: Any, staff: Staff) -> list[Any]:
    actor = staff.actor
    return [p for p in context.programs(session) if actor.reaches(p.code)]


@router.get("/jobs", name="jobs_list")
def jobs_page(request: Request, staff: Staff = Depends(require("members.view"))) -> Response:
    return _list(request, staff)


def _list(
    request: Request, staff: Staff, *, errors: dict[str, str] | None = None, status: int = 200
) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        programs = _programs(session, staff)
        jobs = service.list_jobs(
            session, programs=None if staff.actor.programs is None else sorted(staff.actor.programs)
        )
        return render(
            request,
            "jobs/list.html",
            status=status,
            tz=context.default_timezone(session),
            section="jobs",
            jobs=jobs,
            programs=programs,
            kinds=_may_start(staff),
            formats=FORMATS,
            errors=errors or {},
        )


def _job_page(request: Request, staff: Staff, job_id: int) -> Response:
    with get_db(request).unit_of_work(readonly=True) as session:
        job = service.get_job(session, job_id, actor=staff.actor)
        errors = service.job_errors(session, job_id, limit=SHOWN_ERRORS)
        return render(
            request,
            "jobs/detail.html",
            tz=context.default_timezone(session),
            section="jobs",
            job=job,
            errors=errors,
            shown=SHOWN_ERRORS,
            running=is_running(job_id),
            may_run=staff.can(PERMISSION[job.kind]),
            stored=_stored(session, job_id) is not None,
        )


def _stored(session: Any, job_id: int) -> Path | None:
    from patron.bulk.models import BulkJob

    job = session.get(BulkJob, job_id)
    if job is None or not job.stored_path:
        return None
    path = Path(job.stored_path)
    return path if path.is_file() else None


@router.get("/jobs/{job_id}", name="job_detail")
def job_page(
    request: Request, job_id: int = JobId, staff: Staff = Depends(require("members.view"))
) -> Response:
    return _job_page(request, staff, job_id)


@router.get("/jobs/{job_id}/status", name="job_status")
def job_status(
    request: Request, job_id: int = JobId, staff: Staff = Depends(require("members.view"))
) -> Response:
    """The progress card alone (htmx polls it while the job runs)."""
    with get_db(request).unit_of_work(readonly=True) as session:
        job = service.get_job(session, job_id, actor=staff.actor)
        return render(
            request,
            "jobs/_status.html",
            tz=context.default_timezone(session),
            job=job,
            running=is_running(job_id),
        )


@router.get("/jobs/{job_id}/errors.csv", name="job_errors_csv")
def job_errors_csv(
    request: Request, job_id: int = JobId, staff: Staff = Depends(require("members.view"))
) -> Response:
    db = get_db(request)
    with db.unit_of_work(readonly=True) as session:
        service.get_job(session, job_id, actor=staff.actor)

    def body() -> Any:
        yield "\ufeff"  # so a spreadsheet reads the file as UTF-8
        with db.unit_of_work(readonly=True) as session:
            yield from service.errors_csv(session, job_id)

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id}-errors.csv"'},
    )


@router.post("/jobs", name="jobs_upload")
async def jobs_upload(
    request: Request, staff: Staff = Depends(require("members.view"))
) -> Response:
    form = await request.form()
    kind = str(form.get("kind", ""))
    program = str(form.get("program", ""))
    upload = form.get("file")
    if kind not in PERMISSION or not staff.can(PERMISSION[kind]):
        return _list(request, staff, errors={"kind": _no_permission(staff)}, status=403)
    if not isinstance(upload, UploadFile) or not upload.filename:
        return _list(request, staff, errors={"file": _missing_file(staff)}, status=422)
    try:
        mapping = fields.parse_map(
            [line for line in str(form.get("mapping", "")).splitlines() if line.strip()]
        )
        file_format(upload.filename)
        stored = await _store(upload)
    except PatronError as exc:
        return _list(request, staff, errors={"file": _said(staff, exc)}, status=exc.status)
    db = get_db(request)
    try:
        job = service.create_job(
            db,
            kind=kind,
            program=program,
            path=stored,
            file_name=Path(upload.filename).name,
            mapping=mapping,
            dry_run=True,
            actor=staff.actor,
            stored_path=str(stored),
        )
    except PatronError as exc:
        stored.unlink(missing_ok=True)
        return _list(request, staff, errors={"file": _said(staff, exc)}, status=exc.status)
    start(db, job.id, stored, staff.actor)
    return RedirectResponse(path_for(request, "job_detail", job_id=job.id), status_code=303)


async def _store(upload: UploadFile) -> Path:
    UPLOADS.mkdir(parents=True, exist_ok=True)
    suffix = Path(upload.filename or "").suffix.lower()
    handle, name = tempfile.mkstemp(prefix="upload-", suffix=suffix, dir=UPLOADS)
    size = 0
    with open(handle, "wb") as out:
        while block := await upload.read(1 << 20):
            size += len(block)
            if size > MAX_UPLOAD:
                out.close()
                Path(name).unlink(missing_ok=True)
                raise Invalid(
                    f"the file is larger than {MAX_UPLOAD // (1024 * 1024)} MB; import it with "
                    "`patron import` on the server",
                    code="file_too_large",
                )
            out.write(block)
    return Path(name)


def _said(staff: Staff, exc: PatronError) -> str:
    """A file or mapping problem in the user's language; the specifics (columns, values) as
    the service wrote them."""
    from patron.admin import i18n

    key = f"jobs.error.{exc.code}"
    if staff.language == "en" or not i18n.has_message(key):
        return exc.detail
    return f"{i18n.translate(key, staff.language)} ({exc.detail})"


def _no_permission(staff: Staff) -> str:
    from patron.admin import i18n

    return i18n.translate("jobs.error.no_permission", staff.language)


def _missing_file(staff: Staff) -> str:
    from patron.admin import i18n

    return i18n.translate("jobs.error.no_file", staff.language)


@router.post("/jobs/{job_id}/run", name="job_run")
def job_run(
    request: Request, job_id: int = JobId, staff: Staff = Depends(require("members.view"))
) -> Response:
    """After a dry run: the same file, for real (a new job); or a stopped job, resumed."""
    db = get_db(request)
    with db.unit_of_work(readonly=True) as session:
        job = service.get_job(session, job_id, actor=staff.actor)
        stored = _stored(session, job_id)
    if not staff.can(PERMISSION[job.kind]):
        return _job_page(request, staff, job_id)
    if stored is None:
        raise Conflict("the uploaded file is no longer kept; upload it again", code="file_gone")
    if job.dry_run:
        if job.status != "done":
            raise Conflict("the check has not finished yet", code="job_running")
        copy = stored.with_name(stored.stem + f"-run{job_id}" + stored.suffix)
        shutil.copyfile(stored, copy)
        new = service.create_job(
            db,
            kind=job.kind,
            program=job.program,
            path=copy,
            file_name=job.file_name,
            mapping=job.mapping,
            dry_run=False,
            actor=staff.actor,
            stored_path=str(copy),
        )
        start(db, new.id, copy, staff.actor)
        target = new.id
    else:
        if job.status not in service.RESUMABLE or is_running(job_id):
            raise Conflict(f"job {job_id} is {job.status}", code="job_finished")
        start(db, job_id, stored, staff.actor)
        target = job_id
    return RedirectResponse(path_for(request, "job_detail", job_id=target), status_code=303)
