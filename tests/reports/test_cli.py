"""`patron report …` through typer's CliRunner, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook
from typer.testing import CliRunner

from patron import clock
from patron.cli import app, console
from patron.config import get_settings
from patron.db.engine import Database
from tests.reports._scenario import Scenario, at, build


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setenv("COLUMNS", "250")
    # patron.cli's console measured the terminal when it was imported.
    monkeypatch.setattr(console, "width", 250)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


@pytest.fixture
def month(db: Database) -> Scenario:
    s = build(db)
    clock.freeze(at(5, 1))
    return s


def run(cli: CliRunner, db: Database, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, ["report", *args, "--database-url", db.url])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def test_period_on_the_terminal_and_as_files(
    cli: CliRunner, db: Database, month: Scenario, tmp_path: Path
) -> None:
    base = ["period", "--program", "bakery", "--from", "2026-03-01", "--to", "2026-03-31"]
    table = run(cli, db, *base, "--granularity", "month")
    assert "2026-03" in table and "2,240" in table and "225,800" in table

    out = run(cli, db, *base, "--group-by", "channel", "--granularity", "month", "--format", "csv")
    rows = list(csv.reader(io.StringIO(out)))
    header = rows[0]
    by_channel = {r[3]: dict(zip(header, r, strict=True)) for r in rows[1:-1]}
    assert by_channel["online"]["earned"] == "1200" and by_channel["pos"]["redeemed"] == "1000"

    book = tmp_path / "march.xlsx"
    assert "written to" in run(cli, db, *base, "--format", "xlsx", "--output", str(book))
    sheet = list(load_workbook(book).worksheets[0].iter_rows(values_only=True))
    assert sheet[-1][0] == "Total" and sheet[-1][sheet[1].index("Earned")] == 2240

    data = json.loads(run(cli, db, *base, "--format", "json"))
    assert data["from"] == "2026-03-01" and data["totals"]["net"] == 1900

    err = run(cli, db, *base, "--format", "xlsx", code=2)
    assert "output_needed" in err


def test_finance_members_promotions_balance(
    cli: CliRunner, db: Database, month: Scenario, tmp_path: Path
) -> None:
    owed = json.loads(
        run(
            cli, db, "liability", "--program", "bakery", "--as-of", "2026-04-02", "--format", "json"
        )
    )
    assert owed["outstanding_points"] == 1450 and owed["projected_breakage_points"] == 326
    assert "outstanding_points" in run(cli, db, "liability", "--program", "bakery")

    path = tmp_path / "journal.csv"
    run(
        cli,
        db,
        "journal",
        "--program",
        "bakery",
        "--month",
        "2026-03",
        "--format",
        "csv",
        "--output",
        str(path),
        "--liability-account",
        "2400",
    )
    rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig"))))
    debit = sum(Decimal(r[3]) for r in rows[1:])
    credit = sum(Decimal(r[4]) for r in rows[1:])
    assert debit == credit > 0 and "2400" in {r[2] for r in rows[1:]}

    members = run(
        cli,
        db,
        "members",
        "--program",
        "bakery",
        "--from",
        "2026-01-01",
        "--to",
        "2026-03-31",
        "--as-of",
        "2026-03-31",
    )
    assert "never_purchased" in members and "tier moves" in members

    rules = json.loads(
        run(cli, db, "promotions", "--program", "bakery", "--month", "2026-03", "--format", "json")
    )
    assert rules["earned"] == 2240

    balance = json.loads(
        run(
            cli,
            db,
            "balance",
            "--program",
            "bakery",
            "--member",
            str(month.a),
            "--as-of",
            "2026-03-02",
            "--format",
            "json",
        )
    )
    assert balance["balance"] == 540
    board = json.loads(run(cli, db, "dashboard", "--program", "bakery", "--days", "3"))
    assert len(board["series"]) == 3 and board["members"] == 2


def test_refresh_check_rebuild_and_errors(cli: CliRunner, db: Database, month: Scenario) -> None:
    assert "roll-up covers entries up to id" in run(cli, db, "refresh", "--limit", "5")
    assert "roll-up covers entries up to id" in run(cli, db, "refresh", "--chunk", "4")
    assert "report roll-up consistent" in run(cli, db, "check")
    assert "roll-up rebuilt" in run(cli, db, "rebuild")
    assert "program_not_found" in run(cli, db, "period", "--program", "nope", code=2)
    bad = run(
        cli,
        db,
        "period",
        "--program",
        "bakery",
        "--from",
        "2026-03-05",
        "--to",
        "2026-03-01",
        code=2,
    )
    assert "invalid_range" in bad
    run(cli, db, "period", "--program", "bakery", "--from", "March", code=2)
    assert "as_of_in_future" in run(
        cli, db, "liability", "--program", "bakery", "--as-of", "2030-01-01", code=2
    )
    assert "invalid_account" in run(
        cli, db, "journal", "--program", "bakery", "--expense-account", "", code=2
    )
