"""`patron backup` and `patron restore` (patron.backup does the work; docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from patron import backup as service
from patron.cli_common import console, resolve_url

app = typer.Typer()

# As every command's --database-url, with the shorter --database as well.
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        "--database",
        envvar="PATRON_DATABASE_URL",
        help="SQLAlchemy URL; default: SQLite file patron.db in this directory",
    ),
]


def _fail(exc: service.BackupError) -> typer.Exit:
    console.print(f"[red]{exc.code}[/]: {exc.detail}")
    return typer.Exit(2)


@app.command()
def backup(
    to: Annotated[Path, typer.Option("--to", help="The backup file to write (must not exist)")],
    database_url: DatabaseOption = None,
) -> None:
    """Copy the database while it runs (SQLite online backup, PostgreSQL pg_dump) and write a
    manifest with its totals beside it."""
    url = resolve_url(database_url)
    try:
        with console.status("backing up…") as status:
            manifest = service.backup(url, to, progress=lambda step: status.update(step + "…"))
    except service.BackupError as exc:
        raise _fail(exc) from None
    programs = ", ".join(
        f"{code} ({figures.get('accounts', 0)} accounts, {figures.get('entries', 0)} entries)"
        for code, figures in sorted(manifest.programs.items())
    )
    console.print(
        f"[green]backup written[/]: {to} ({manifest.size:,} bytes, {manifest.engine}, "
        f"schema {manifest.alembic_revision})"
    )
    console.print(f"  manifest: {service.manifest_path(to)}")
    console.print(f"  programs: {programs or 'none'}")
    if manifest.check_ok is None:
        console.print("  [yellow]checker not run[/]: the schema is older than this Patron")
    elif not manifest.check_ok:
        console.print(
            f"  [yellow]the source already fails `patron check`[/] "
            f"({len(manifest.violations)} violation(s)); the backup is a faithful copy of it"
        )


@app.command()
def restore(
    source: Annotated[
        Path,
        typer.Option("--from", help="A backup written by `patron backup` (its manifest beside)"),
    ],
    database_url: DatabaseOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Restore into a database that already has tables")
    ] = False,
) -> None:
    """Load a backup into an empty database, run the checker and compare the totals with the
    backup's manifest; exits 1 if they differ."""
    url = resolve_url(database_url)
    try:
        with console.status("restoring…") as status:
            result = service.restore(
                source, url, force=force, progress=lambda step: status.update(step + "…")
            )
    except service.BackupError as exc:
        raise _fail(exc) from None

    manifest = result.manifest
    console.print(
        f"restored {source} ({manifest.engine}, taken {manifest.created_at}) into "
        f"{service.redact(url)}"
    )
    if result.migrated_from:
        console.print(f"  schema migrated from {result.migrated_from} to {result.alembic_revision}")
    table = Table("program", "figure", "backup", "restored", title="totals")
    for code in sorted(set(manifest.programs) | set(result.programs)):
        want, got = manifest.programs.get(code, {}), result.programs.get(code, {})
        for name in ("accounts", "entries", "purchases", "points_net", "available", "debt"):
            same = want.get(name) == got.get(name)
            colour = "green" if same else "red"
            table.add_row(code, name, str(want.get(name)), f"[{colour}]{got.get(name)}[/]")
    console.print(table)
    if result.check_ok:
        console.print("[green]patron check: ledger consistent[/]")
    else:
        console.print(f"[red]patron check: {len(result.violations)} violation(s)[/]")
        for line in result.violations:
            console.print(f"  {line}")
    if result.differences:
        console.print(f"[red]{len(result.differences)} figure(s) differ from the manifest[/]:")
        for line in result.differences:
            console.print(f"  {line}")
    if not result.ok:
        raise typer.Exit(1)
    rows = sum(n for name, n in manifest.tables.items() if name != "alembic_version")
    console.print(
        f"[green]restore verified[/]: {len(manifest.programs)} program(s) and {rows:,} rows "
        "equal the manifest"
    )
