"""`patron import members | adjustments | jobs | errors` through typer's CliRunner (SQLite: the
command's parsing, progress and answers do not depend on the engine)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from patron.cli import app
from patron.cli_common import console
from patron.config import get_settings
from patron.db.engine import Database
from tests.bulk.conftest import write_csv


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    # The CLI's console was made at import, its width read then: set it, as COLUMNS is too late.
    monkeypatch.setattr(console, "_width", 200)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run(cli: CliRunner, db: Database, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, [*args, "--database-url", db.url])
    assert result.exit_code == code, (result.output, result.exception)
    assert "Traceback" not in result.output
    return result.output


def test_import_members_then_adjustments_with_jobs_and_errors(
    cli: CliRunner, sdb: Database, sbakery, tmp_path: Path
):
    members = write_csv(
        tmp_path / "members.csv",
        ["Member No", "Name", "Mobile", "Balance"],
        [["M-1", "Kim", "010-1234-5678", "100"], ["M-2", "Lee", "bad", "5"]],
    )
    out = run(
        cli,
        sdb,
        "import",
        "members",
        str(members),
        "--program",
        "bakery",
        "--map",
        "Member No=external_ref",
        code=1,
    )
    assert "job 1 done" in out and "1 rows written" in out
    assert "row 3 [Mobile]: invalid_phone" in out
    adjustments = write_csv(
        tmp_path / "adj.csv",
        ["external_ref", "points", "reason", "key"],
        [["M-1", "-40", "correction", "k1"]],
    )
    out = run(cli, sdb, "import", "adjustments", str(adjustments), "--program", "bakery")
    assert "job 2 done" in out and "1 rows written" in out
    out = run(cli, sdb, "import", "adjustments", str(adjustments), "--program", "bakery")
    assert "0 rows written, 1 already there" in out
    listed = run(cli, sdb, "import", "jobs")
    assert "members.csv" in listed and "adj.csv" in listed
    report = tmp_path / "errors.csv"
    run(cli, sdb, "import", "errors", "1", "--output", str(report))
    assert "invalid_phone" in report.read_text(encoding="utf-8-sig")
    out = run(
        cli, sdb, "import", "members", str(members), "--program", "bakery", "--resume", "1", code=2
    )
    assert "job_finished" in out
    assert "ledger consistent" in run(cli, sdb, "check")


def test_a_dry_run_writes_no_member(cli: CliRunner, sdb: Database, sbakery, tmp_path: Path):
    path = write_csv(tmp_path / "m.csv", ["ref", "name"], [["A", "Kim"]])
    out = run(cli, sdb, "import", "members", str(path), "--program", "bakery", "--dry-run")
    assert "1 rows would write" in out.replace("would write", "would write")
    out = run(cli, sdb, "import", "members", str(path), "--program", "bakery")
    assert "1 rows written" in out


@pytest.mark.parametrize(
    ("name", "content", "code", "says"),
    [
        ("missing.csv", None, "unreadable_file", "no such file"),
        ("members.pdf", b"%PDF-1.4", "unreadable_file", "only .csv and .xlsx"),
        ("members.xlsx", b"not a zip at all", "unreadable_file", "not a readable Excel"),
        ("latin1.csv", "name,phone\nJos\xe9,1\n".encode("latin-1"), "unreadable_file", "UTF-8"),
        ("empty.csv", b"", "unreadable_file", "empty"),
        ("noname.csv", b"phone,email\n010,a@b.c\n", "invalid_mapping", "no column holds name"),
        ("twice.csv", b"name,Name\nx,y\n", "unreadable_file", "appears twice"),
    ],
)
def test_bad_files_are_answered_clearly(
    cli: CliRunner, sdb: Database, sbakery, tmp_path: Path, name, content, code, says
):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    out = run(cli, sdb, "import", "members", str(path), "--program", "bakery", code=2)
    assert code in out and says in out


def test_bad_options_are_answered_clearly(cli: CliRunner, sdb: Database, sbakery, tmp_path: Path):
    path = write_csv(tmp_path / "m.csv", ["ref", "name"], [["A", "Kim"]])
    out = run(cli, sdb, "import", "members", str(path), "--program", "nope", code=2)
    assert "program_not_found" in out
    out = run(cli, sdb, "import", "members", str(path), "--program", "bakery", "--map", "x", code=2)
    assert "invalid_mapping" in out
    out = run(
        cli,
        sdb,
        "import",
        "members",
        str(path),
        "--program",
        "bakery",
        "--map",
        "ref=shoe_size",
        code=2,
    )
    assert "not a field" in out
    out = run(
        cli, sdb, "import", "members", str(path), "--program", "bakery", "--resume", "9", code=2
    )
    assert "job_not_found" in out
