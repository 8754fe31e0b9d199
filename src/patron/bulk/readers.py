"""Reading an uploaded file as a table: CSV (UTF-8, with or without a BOM) or XLSX (the first
sheet), as a header and rows of text, numbered as a spreadsheet numbers them (the header is
row 1). A file that cannot be read at all raises `Invalid` (code `unreadable_file`) with a
sentence saying why; a bad row is the caller's to report."""

from __future__ import annotations

import csv
import hashlib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

from patron.errors import Invalid

FORMATS = ("csv", "xlsx")
MAX_COLUMNS = 200


def unreadable(detail: str) -> Invalid:
    return Invalid(detail, code="unreadable_file")


def file_format(name: str) -> str:
    suffix = Path(name).suffix.lower().lstrip(".")
    if suffix in ("csv", "txt"):
        return "csv"
    if suffix in ("xlsx", "xlsm"):
        return "xlsx"
    raise unreadable(
        f"{name}: only .csv and .xlsx files can be imported (this is {suffix or 'no'} file)"
    )


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Table:
    header: list[str]
    total: int | None  # data rows, when known before reading them

    def __post_init__(self) -> None:
        self._rows: Iterator[tuple[int, list[str]]] = iter(())

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        """(row number, cells) for every data row that is not blank."""
        return self._rows


def _text(value: Any) -> str:
    """A spreadsheet cell as the text a CSV would hold."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == time(0) else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else str(Decimal(str(value)))
    return str(value).strip()


def open_table(path: Path, name: str | None = None) -> Table:
    """The file's header and its rows (read lazily: a million rows never sit in memory)."""
    name = name or path.name
    fmt = file_format(name)
    if not path.is_file():
        raise unreadable(f"{name}: no such file")
    return _open_csv(path, name) if fmt == "csv" else _open_xlsx(path, name)


def _check_header(name: str, header: list[str]) -> list[str]:
    header = [h.strip() for h in header]
    while header and not header[-1]:
        header.pop()
    if not header or not any(header):
        raise unreadable(f"{name}: the file is empty or its first row (the header) is blank")
    if len(header) > MAX_COLUMNS:
        raise unreadable(f"{name}: more than {MAX_COLUMNS} columns")
    seen: set[str] = set()
    for h in header:
        if h and h.lower() in seen:
            raise unreadable(f"{name}: the column {h!r} appears twice in the header")
        seen.add(h.lower())
    return header


def _open_csv(path: Path, name: str) -> Table:
    try:
        with path.open(encoding="utf-8-sig", newline="") as stream:
            reader = csv.reader(stream)
            header = _check_header(name, next(reader, []))
            total = sum(1 for cells in reader if any(c.strip() for c in cells))
    except UnicodeDecodeError:
        raise unreadable(f"{name}: not a UTF-8 text file (save it as CSV UTF-8)") from None
    except csv.Error as exc:
        raise unreadable(f"{name}: not a readable CSV file ({exc})") from None
    table = Table(header, total)

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            with path.open(encoding="utf-8-sig", newline="") as stream:
                reader = csv.reader(stream)
                next(reader, None)
                for number, cells in enumerate(reader, start=2):
                    if any(c.strip() for c in cells):
                        yield number, [c.strip() for c in cells]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise unreadable(f"{name}: cannot read on ({exc})") from None

    table._rows = rows()
    return table


def _open_xlsx(path: Path, name: str) -> Table:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError):
        raise unreadable(f"{name}: not a readable Excel (.xlsx) workbook") from None
    sheet = book.worksheets[0] if book.worksheets else None
    if sheet is None:
        raise unreadable(f"{name}: the workbook has no sheet")
    values = sheet.iter_rows(values_only=True)
    first = next(values, None)
    header = _check_header(name, [_text(v) for v in first or ()])
    max_row = sheet.max_row
    total = max_row - 1 if isinstance(max_row, int) and max_row > 0 else None
    table = Table(header, total)

    def rows() -> Iterator[tuple[int, list[str]]]:
        try:
            for number, cells in enumerate(values, start=2):
                texts = [_text(v) for v in cells]
                if any(texts):
                    yield number, texts
        finally:
            book.close()

    table._rows = rows()
    return table
