"""`patron import purchases`: load sales from a JSON Lines or CSV file (offline tills, migrations).

The file is read as a stream and sent to the batch service a chunk at a time, so its size is
bounded by the disk, not by memory. Every purchase is idempotent by its external_id: an import
that stopped half-way is finished by running the same command again.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from pydantic import ValidationError
from rich.markup import escape

from patron.cli_common import DatabaseUrl, console, open_database

# module may be imported first.
app: typer.Typer = typer.Typer(help="Bulk imports: purchases.", no_args_is_help=True)


ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]
SHOWN_ERRORS = 20
KEPT_ERRORS = 10_000  # the first errors by line are shown; a file of bad rows must not fill memory

MEMBER_COLUMNS = {"member_id": "id", "card": "card", "phone": "phone", "email": "email"}
CSV_COLUMNS = {
    "external_id",
    "amount",
    "occurred_at",
    "store",
    "channel",
    "points_to_spend",
    "currency",
    "payment_method",
    *MEMBER_COLUMNS,
}


class Format(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


class BadFile(Exception):
    """The file cannot be read at all (missing, not UTF-8, a CSV without the right header)."""


@dataclass
class Row:
    line: int
    external_id: str
    request: Any = None  # a PurchaseRequest when the row parsed
    error: str | None = None
    detail: str | None = None


@dataclass
class Failure:
    line: int
    external_id: str
    error: str
    detail: str


def _invalid(line: int, external_id: str, exc: ValidationError) -> Row:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "row"
        parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
    return Row(line, external_id, error="validation_error", detail="; ".join(parts))


def _jsonl_rows(stream: TextIO) -> Iterator[Row]:
    from patron.sales.schemas import PurchaseRequest

    for number, text in enumerate(stream, start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Row(number, "", error="invalid_json", detail=str(exc))
            continue
        external_id = str(data.get("external_id", "")) if isinstance(data, dict) else ""
        try:
            yield Row(number, external_id, request=PurchaseRequest.model_validate(data))
        except ValidationError as exc:
            yield _invalid(number, external_id, exc)


def _csv_rows(stream: TextIO) -> Iterator[Row]:
    from patron.sales.schemas import PurchaseRequest

    reader = csv.DictReader(stream)
    header = [name.strip() for name in reader.fieldnames or []]
    unknown = [name for name in header if name not in CSV_COLUMNS]
    missing = [name for name in ("external_id", "amount") if name not in header]
    if unknown or missing or not any(name in header for name in MEMBER_COLUMNS):
        raise BadFile(
            "the CSV header must have external_id, amount and one of "
            f"{', '.join(MEMBER_COLUMNS)}; optional: occurred_at, store, channel, "
            "points_to_spend, currency, payment_method"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
            + (f" (missing: {', '.join(missing)})" if missing else "")
        )
    reader.fieldnames = header
    for record in reader:
        # csv counts physical lines, so a quoted value spanning lines still points at its row.
        number = reader.line_num
        if None in record:
            yield Row(number, "", error="invalid_row", detail="more values than header columns")
            continue
        cells = {k: v.strip() for k, v in record.items() if v is not None and v.strip()}
        data: dict[str, Any] = {
            k: v for k, v in cells.items() if k not in MEMBER_COLUMNS and k in CSV_COLUMNS
        }
        data["member"] = {MEMBER_COLUMNS[k]: v for k, v in cells.items() if k in MEMBER_COLUMNS}
        external_id = cells.get("external_id", "")
        try:
            yield Row(number, external_id, request=PurchaseRequest.model_validate(data))
        except ValidationError as exc:
            yield _invalid(number, external_id, exc)


def _rows(stream: TextIO, fmt: Format) -> Iterator[Row]:
    try:
        yield from _csv_rows(stream) if fmt is Format.csv else _jsonl_rows(stream)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise BadFile(f"cannot read the file: {exc}") from None


def _fail(code: str, detail: str) -> typer.Exit:
    # Plain output: details can hold brackets that Rich would read as markup.
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


@app.command("purchases")
def import_purchases(
    file: Annotated[Path, typer.Argument(help="A .jsonl or .csv file")],
    program: ProgramOpt,
    fmt: Annotated[
        Format | None,
        typer.Option("--format", help="jsonl or csv; default: from the file's extension"),
    ] = None,
    chunk_size: Annotated[
        int, typer.Option(min=1, max=5_000, help="Purchases per transaction")
    ] = 500,
    database_url: DatabaseUrl = None,
) -> None:
    """Record purchases from a file; exits 1 if any failed, 2 if the file cannot be read."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.sales.batch import ingest

    fmt = fmt or (Format.csv if file.suffix.lower() == ".csv" else Format.jsonl)
    try:
        stream = file.open(encoding="utf-8-sig", newline="" if fmt is Format.csv else None)
    except OSError as exc:
        raise _fail("unreadable_file", f"{file}: {exc.strerror or exc}") from None
    db = open_database(database_url)
    counts = {"created": 0, "replayed": 0, "error": 0}
    failures: list[Failure] = []

    def fail(line: int, external_id: str, error: str, detail: str) -> None:
        counts["error"] += 1
        if len(failures) < KEPT_ERRORS:
            failures.append(Failure(line, external_id, error, detail))

    def flush(pending: list[Row]) -> None:
        if not pending:
            return
        result = ingest(
            db,
            program,
            [row.request for row in pending],
            actor=CLI,
            now=clock.now(),
            chunk_size=chunk_size,
        )
        for row, item in zip(pending, result.items, strict=True):
            if item.status == "error":
                fail(row.line, row.external_id, item.error or "error", item.detail or "")
            else:
                counts[item.status] += 1
        pending.clear()

    pending: list[Row] = []
    try:
        with stream, console.status("importing purchases…") as status:
            for row in _rows(stream, fmt):
                if row.request is None:
                    fail(row.line, row.external_id, row.error or "invalid", row.detail or "")
                    continue
                pending.append(row)
                if len(pending) >= chunk_size:
                    flush(pending)
                    status.update(f"importing purchases… {sum(counts.values()):,} done")
            flush(pending)
    except BadFile as exc:
        _summary(counts, failures)
        raise _fail("unreadable_file", f"{file.name}: {exc}") from None
    except PatronError as exc:
        _summary(counts, failures)
        raise _fail(exc.code, exc.detail) from None
    finally:
        db.dispose()
    _summary(counts, failures)
    if counts["error"]:
        raise typer.Exit(1)


def _summary(counts: dict[str, int], failures: list[Failure]) -> None:
    colour = "red" if counts["error"] else "green"
    console.print(
        f"[{colour}]imported[/]: {counts['created']:,} created, {counts['replayed']:,} replayed, "
        f"{counts['error']:,} errors"
    )
    for failure in sorted(failures, key=lambda f: f.line)[:SHOWN_ERRORS]:
        order = f" ({escape(failure.external_id)})" if failure.external_id else ""
        console.print(
            f"  line {failure.line}{order}: [bold]{failure.error}[/] {escape(failure.detail)}"
        )
    if len(failures) > SHOWN_ERRORS:
        console.print(f"  … and {len(failures) - SHOWN_ERRORS:,} more")
