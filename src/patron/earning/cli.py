"""`patron rules …`: show, export, import, versions, diff and simulate a program's rule set."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from patron.cli_common import DatabaseUrl, console, open_database

# module may be imported first.
app: typer.Typer = typer.Typer(
    help="Rule sets: show, export, import, versions, diff, simulate.", no_args_is_help=True
)


ProgramOpt = Annotated[str, typer.Option("--program", help="The program's code, e.g. bakery")]


def _fail(code: str, detail: str) -> typer.Exit:
    # Plain output: rule errors contain brackets (rules[1].id) that Rich would read as markup.
    typer.echo(f"{code}: {detail}", err=True)
    return typer.Exit(2)


def _load(path: Path) -> Any:
    """A rule set document from a .json, .yaml or .yml file."""
    import yaml

    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise _fail("invalid_file", f"{path.name}: use a .json, .yaml or .yml file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail("invalid_file", f"{path}: {exc}") from None
    try:
        return json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        what = suffix[1:].upper().replace("YML", "YAML")
        raise _fail("invalid_file", f"{path.name} is not valid {what}: {exc}") from None


def _dump(doc: dict[str, Any], fmt: str) -> str:
    if fmt == "yaml":
        import yaml

        return str(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _write(text: str, output: Path | None) -> None:
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"written to {output}")


def _match(match: Any) -> str:
    return ", ".join([*match.skus, *(f"category {c}" for c in match.categories)])


def summary(rule: Any) -> str:
    """One line that says what a rule does."""
    kind = rule.kind
    if kind == "base_rate":
        how = "each full" if rule.mode == "per_full_unit" else f"rounded {rule.rounding}, per"
        only = f" on {_match(rule.only)} only" if rule.only is not None else ""
        return f"{rule.points} points for {how} {rule.per_amount:,f}{only}"
    if kind == "exclude":
        return f"no points on {_match(rule.match)}"
    if kind == "product_bonus":
        return f"+{rule.points_per_unit} per unit of {_match(rule.match)}"
    if kind == "product_multiplier":
        return f"×{rule.factor:f} on {_match(rule.match)}"
    if kind == "tier_multiplier":
        return ", ".join(f"{tier} ×{factor:f}" for tier, factor in rule.factors.items())
    if kind == "time_weight":
        hours = (
            f" {rule.from_time:%H:%M}–{rule.to_time:%H:%M}"
            if rule.from_time is not None and rule.to_time is not None
            else ""
        )
        return f"{', '.join(rule.days)}{hours} ×{rule.factor:f}"
    if kind == "promotion":
        parts = [f"×{rule.factor:f}"] if rule.factor != 1 else []
        parts += [f"+{rule.bonus_points} per order"] if rule.bonus_points else []
        parts += [f"budget {rule.budget_points:,}"] if rule.budget_points else []
        return ", ".join(parts)
    if kind == "order_bonus":
        return f"+{rule.points} per order"
    if kind == "cap":
        return f"at most {rule.max_points:,} per {rule.per.replace('member_', 'member per ')}"
    if kind == "event":
        return f"{rule.event}: +{rule.points} ({rule.limit.replace('_', ' ')})"
    return ""  # pragma: no cover - every kind is listed


def _window(rule: Any) -> str:
    if rule.starts is None and rule.ends is None:
        return ""
    return f"{rule.starts or '…'} – {rule.ends or '…'}"


def _program(session: Any, code: str) -> Any:
    from patron.programs.service import get_program

    return get_program(session, code)


@app.command("show")
def show(
    program: ProgramOpt,
    version: Annotated[int | None, typer.Option(min=1, help="Default: current")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """The rules of a program's rule set, in the order they are listed."""
    from patron.errors import PatronError
    from patron.rules import service as rules

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            prog = _program(session, program)
            row = rules.get_version(session, prog, version)
            shown, current = row.version, row.version == prog.rule_version
            doc = rules.validate_doc(row.document)
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    table = Table(
        "id",
        "kind",
        "enabled",
        "window",
        "summary",
        title=f"{program} rule set version {shown}"
        f"{' (current)' if current else ''}: combine {doc.combine}, "
        f"rounding {doc.rounding}",
    )
    for rule in doc.rules:
        table.add_row(
            rule.id, rule.kind, "yes" if rule.enabled else "no", _window(rule), summary(rule)
        )
    console.print(table)


@app.command("export")
def export(
    program: ProgramOpt,
    format: Annotated[str, typer.Option("--format", help="json or yaml")] = "json",
    output: Annotated[Path | None, typer.Option("--output", help="Default: stdout")] = None,
    version: Annotated[int | None, typer.Option(min=1, help="Default: current")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Write a rule set document as JSON or YAML (what `import` reads back)."""
    from patron.errors import PatronError
    from patron.rules import service as rules

    if format not in ("json", "yaml"):
        raise typer.BadParameter("use json or yaml", param_hint="--format")
    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            doc = rules.document(session, _program(session, program), version)
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    _write(_dump(doc.model_dump(mode="json", exclude_none=True), format), output)


@app.command("import")
def import_rules(
    program: ProgramOpt,
    file: Annotated[Path, typer.Argument(help="A .json, .yaml or .yml document")],
    note: Annotated[str | None, typer.Option(help="Why the rules change")] = None,
    confirm_large_change: Annotated[
        bool,
        typer.Option(
            "--confirm-large-change",
            help="Publish even if the change moves total points (the last 30 days replayed) "
            "by more than PATRON_RULES_CONFIRM_PERCENT (default 10 %) either way",
        ),
    ] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Publish a rule set document from a file as the program's next version."""
    from patron import clock
    from patron.audit.service import CLI
    from patron.errors import PatronError
    from patron.rules import publishing
    from patron.rules import service as rules

    data = _load(file)
    db = open_database(database_url)
    try:
        doc = rules.validate_doc(data)
        with db.unit_of_work() as session:
            prog = _program(session, program)
            old = rules.document(session, prog)
            row = publishing.publish(
                session,
                prog,
                doc,
                actor=CLI,
                now=clock.now(),
                note=note,
                confirm=confirm_large_change,
            )
            version = row.version
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    changes = rules.diff(old, doc)
    said = "; ".join(f"{k}: {', '.join(v)}" for k, v in changes.items() if v) or "no rule changed"
    console.print(
        f"[green]rule set version {version} published[/] for {program} "
        f"({len(doc.rules)} rules; {said})",
        highlight=False,
        soft_wrap=True,
    )


@app.command("versions")
def versions(program: ProgramOpt, database_url: DatabaseUrl = None) -> None:
    """Every version of the rule set, newest first."""
    from patron.errors import PatronError
    from patron.rules import service as rules

    db = open_database(database_url)
    table = Table("version", "created", "actor", "note", "current")
    try:
        with db.unit_of_work(readonly=True) as session:
            prog = _program(session, program)
            for row in rules.list_versions(session, prog):
                table.add_row(
                    str(row.version),
                    f"{row.created_at:%Y-%m-%d %H:%M}",
                    row.actor,
                    row.note or "",
                    "yes" if row.version == prog.rule_version else "",
                )
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    console.print(table)


@app.command("diff")
def diff(
    program: ProgramOpt,
    from_version: Annotated[int, typer.Argument(min=1)],
    to_version: Annotated[int, typer.Argument(min=1)],
    database_url: DatabaseUrl = None,
) -> None:
    """Rules added, removed and changed from one version to another."""
    from patron.errors import PatronError
    from patron.rules import service as rules

    db = open_database(database_url)
    try:
        with db.unit_of_work(readonly=True) as session:
            result = rules.compare(session, _program(session, program), from_version, to_version)
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    typer.echo(f"{program}: version {from_version} → {to_version}")
    for key in ("added", "removed", "changed", "settings"):
        typer.echo(f"{key}: {', '.join(result[key]) or '-'}")
    for rule_id, change in result["rules"].items():
        typer.echo(
            f"\n{rule_id}:\n  - {json.dumps(change['from'], ensure_ascii=False)}"
            f"\n  + {json.dumps(change['to'], ensure_ascii=False)}"
        )


def _parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date (YYYY-MM-DD)", param_hint=option
        ) from None


@app.command("simulate")
def simulate(
    program: ProgramOpt,
    file: Annotated[Path, typer.Argument(help="The proposed rule set (.json/.yaml)")],
    date_from: Annotated[str, typer.Option("--from", help="First local date")],
    date_to: Annotated[str, typer.Option("--to", help="Last local date")],
    top: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    shift_years: Annotated[
        int,
        typer.Option(
            "--shift-years",
            min=0,
            max=10,
            help="Replay the same dates this many years earlier, dated rules moved back too",
        ),
    ] = 0,
    format: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    output: Annotated[Path | None, typer.Option("--output", help="Default: stdout")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """What a proposed rule set would have given on past purchases; changes nothing."""
    from patron.errors import PatronError
    from patron.rules import service as rules
    from patron.rules import simulate as what_if

    if format not in ("table", "csv", "json"):
        raise typer.BadParameter("use table, csv or json", param_hint="--format")
    start, end = _parse_date(date_from, "--from"), _parse_date(date_to, "--to")
    if end < start:
        raise _fail("invalid_range", "--to is before --from")
    data = _load(file)
    db = open_database(database_url)
    try:
        proposed = rules.validate_doc(data)
        with db.unit_of_work(readonly=True) as session:
            report = what_if.simulate(
                session,
                _program(session, program),
                proposed,
                date_from=start,
                date_to=end,
                top=top,
                shift_years=shift_years,
            )
    except PatronError as exc:
        raise _fail(exc.code, exc.detail) from None
    if format == "csv":
        body = what_if.to_csv(report)
        if output is None:
            typer.echo(body.decode("utf-8-sig"), nl=False)
        else:
            output.write_bytes(body)
            console.print(f"written to {output}")
        return
    if format == "json":
        _write(report.model_dump_json(indent=2) + "\n", output)
        return
    data = report.model_dump(mode="json")
    impact = data.pop("tier_impact", None)
    if impact is not None:
        # As tables of their own (not one row of JSON): who moves, and how many reach each tier.
        data["tier_moves"] = impact["moves"]
        data["tier_counts"] = [{"window": impact["window"], **row} for row in impact["tiers"]]
    _print_report(data, output)


def _print_report(data: dict[str, Any], output: Path | None) -> None:
    """Scalars first, then each list of rows as a table (the report's fields, whatever they are)."""
    from rich.console import Console

    target = Console(file=output.open("w", encoding="utf-8"), width=160) if output else console
    scalars = Table("figure", "value", title="what-if")
    for key, value in data.items():
        if not isinstance(value, list | dict):
            scalars.add_row(key, str(value))
    target.print(scalars)
    for key, value in data.items():
        if isinstance(value, dict):
            value = [value]
        if not value or not isinstance(value, list) or not isinstance(value[0], dict):
            continue
        table = Table(*value[0].keys(), title=key.replace("_", " "))
        for row in value:
            table.add_row(
                *(
                    json.dumps(v, ensure_ascii=False) if isinstance(v, list | dict) else str(v)
                    for v in row.values()
                )
            )
        target.print(table)
    if output is not None:
        target.file.close()
        console.print(f"written to {output}")
