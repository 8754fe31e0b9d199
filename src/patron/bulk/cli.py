"""`patron import members` and `patron import adjustments`: a file in, as a resumable job,
with a progress bar; `patron import jobs` lists the jobs, `patron import errors` writes one's
row errors as CSV. Registered on the `patron import` group by patron.cli."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database

SHOWN_ERRORS = 20

FileArg = Annotated[Path, typer.Argument(help="A .csv (UTF-8) or .xlsx file with a header row")]
ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]
MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="column=field, e.g. --map 'Mobile No=phone'; field 'ignore' drops a column; "
        "repeat for several",
    ),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Check every row and report; write no member or points")
]
ResumeOpt = Annotated[
    int | None,
    typer.Option("--resume", help="Go on with this job after its last committed chunk", min=1),
]
ChunkOpt = Annotated[int, typer.Option(min=1, max=50_000, help="Rows per transaction")]


def _fail(code: str, detail: str) -> typer.Exit:
    # Plain output: details can hold brackets that Rich would read as markup.
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


def _run(
    kind: str,
    file: Path,
    program: str,
    mapping: list[str] | None,
    dry_run: bool,
    resume: int | None,
    chunk_size: int,
    database_url: str | None,
) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from patron.audit.service import CLI
    from patron.bulk import fields, service
    from patron.errors import PatronError

    db = open_database(database_url)
    try:
        if resume is not None:
            with db.unit_of_work(readonly=True) as session:
                job = service.get_job(session, resume)
            if job.kind != kind or job.program != program:
                raise _fail(
                    "job_mismatch", f"job {resume} is a {job.kind} job of program {job.program}"
                )
        else:
            job = service.create_job(
                db,
                kind=kind,
                program=program,
                path=file,
                mapping=fields.parse_map(mapping or []),
                dry_run=dry_run,
                actor=CLI,
            )
        verb = "checking" if job.dry_run else "importing"
        with Progress(
            TextColumn(f"[bold]{verb}[/] job {job.id}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("rows · [red]{task.fields[failed]:,} failed"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task(verb, total=job.rows_total, failed=job.rows_failed)

            def show(now: service.JobView) -> None:
                total = now.rows_total if now.status != "done" else now.rows_seen
                bar.update(task, completed=now.rows_seen, total=total, failed=now.rows_failed)

            # A one-shot process allocating millions of short-lived rows: what is loaded is
            # never scanned again, and the collector runs every 50,000 allocations instead of
            # 700 (it was a fifth of an import's time; decision 0033).
            gc.freeze()
            gc.set_threshold(50_000, 20, 100)
            try:
                job = service.run_job(
                    db, job.id, file, actor=CLI, chunk_size=chunk_size, on_progress=show
                )
            except KeyboardInterrupt:
                raise _fail("interrupted", f"stopped; go on with --resume {job.id}") from None
        with db.unit_of_work(readonly=True) as session:
            errors = service.job_errors(session, job.id, limit=SHOWN_ERRORS)
        _summary(job, errors)
    except PatronError as exc:
        hint = f" (go on with --resume {job.id})" if "job" in locals() and resume is None else ""
        raise _fail(exc.code, exc.detail + hint) from None
    except SQLAlchemyError as exc:  # the database went away mid-job: committed chunks stay
        hint = f"; go on with --resume {job.id}" if "job" in locals() else ""
        raise _fail(
            "database_error", f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}{hint}"
        ) from None
    finally:
        db.dispose()
    if job.rows_failed:
        raise typer.Exit(1)


def _summary(job: Any, errors: Any) -> None:
    colour = "red" if job.rows_failed else "green"
    what = "would write" if job.dry_run else "written"
    console.print(
        f"[{colour}]job {job.id} {job.status}[/]: {job.rows_done:,} rows {what}, "
        f"{job.rows_skipped:,} already there, {job.rows_failed:,} with errors"
    )
    for e in errors:
        column = " " + escape(f"[{e.column}]") if e.column else ""
        console.print(f"  row {e.row}{column}: [bold]{e.code}[/] {escape(e.message)}")
    if job.rows_failed > len(errors):
        console.print(
            f"  … every error: patron import errors {job.id} --output errors-{job.id}.csv"
        )


def import_members(
    file: FileArg,
    program: ProgramOpt,
    mapping: MapOpt = None,
    dry_run: DryRunOpt = False,
    resume: ResumeOpt = None,
    chunk_size: ChunkOpt = 2_000,
    database_url: DatabaseUrl = None,
) -> None:
    """Import members (migrating from another system): name, phone, e-mail, birthday,
    consent, tier, opening balance with its expiry, attributes.*. Exits 1 if any row failed,
    2 if the file cannot be read."""
    _run("members", file, program, mapping, dry_run, resume, chunk_size, database_url)


def import_adjustments(
    file: FileArg,
    program: ProgramOpt,
    mapping: MapOpt = None,
    dry_run: DryRunOpt = False,
    resume: ResumeOpt = None,
    chunk_size: ChunkOpt = 2_000,
    database_url: DatabaseUrl = None,
) -> None:
    """Adjust points from a file: a member (external_ref, member_id, phone, email or card),
    points (+/-), reason and an idempotency key per row. A key used before writes nothing."""
    _run("adjustments", file, program, mapping, dry_run, resume, chunk_size, database_url)


def list_jobs(
    program: Annotated[str | None, typer.Option("--program")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The latest bulk jobs and how far each got."""
    from patron.bulk import service

    db = open_database(database_url)
    table = Table("id", "kind", "program", "file", "status", "rows", "done", "skipped", "failed")
    with db.unit_of_work(readonly=True) as session:
        for job in service.list_jobs(session, programs=[program] if program else None):
            table.add_row(
                str(job.id),
                job.kind + (" (dry run)" if job.dry_run else ""),
                job.program,
                escape(job.file_name),
                job.status,
                f"{job.rows_total:,}" if job.rows_total is not None else "?",
                f"{job.rows_done:,}",
                f"{job.rows_skipped:,}",
                f"{job.rows_failed:,}",
            )
    db.dispose()
    console.print(table)


def job_errors(
    job_id: Annotated[int, typer.Argument(min=1)],
    output: Annotated[Path, typer.Option("--output", help="Where to write the CSV")],
    database_url: DatabaseUrl = None,
) -> None:
    """Write a job's row errors (row, column, code, message) to a CSV file."""
    from patron.bulk import service
    from patron.errors import PatronError

    db = open_database(database_url)
    try:
        with (
            db.unit_of_work(readonly=True) as session,
            output.open("w", encoding="utf-8-sig", newline="") as out,
        ):
            service.get_job(session, job_id)
            for text in service.errors_csv(session, job_id):
                out.write(text)
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    except OSError as exc:
        raise _fail("unwritable_file", f"{output}: {exc.strerror or exc}") from None
    finally:
        db.dispose()
    console.print(f"errors of job {job_id} written to {output}")


def register(app: typer.Typer) -> None:
    """Add the commands to the `patron import` group."""
    app.command("members")(import_members)
    app.command("adjustments")(import_adjustments)
    app.command("jobs")(list_jobs)
    app.command("errors")(job_errors)
