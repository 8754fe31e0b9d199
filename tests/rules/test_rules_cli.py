"""`patron rules …` through typer's CliRunner, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from patron.audit.service import CLI
from patron.cli import app, console
from patron.config import get_settings
from patron.db.engine import Database
from patron.members.schemas import MemberRef
from patron.rules import service as rules
from patron.sales import purchases
from patron.sales.schemas import PurchaseRequest
from tests.factories import make_member, make_program

CLUB: dict[str, Any] = {
    "combine": "multiply",
    "rounding": "down",
    "rules": [
        {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
        {"id": "gift-cards", "kind": "exclude", "match": {"categories": ["gift_card"]}},
        {
            "id": "weekday-mornings",
            "name": "weekday mornings",
            "kind": "time_weight",
            "days": ["mon", "tue", "wed", "thu", "fri"],
            "from_time": "06:00:00",
            "to_time": "10:00:00",
            "factor": "1.2",
        },
        {
            "id": "december",
            "name": "December double points",
            "kind": "promotion",
            "factor": "2",
            "starts": "2026-12-01",
            "ends": "2026-12-31",
            "budget_points": 1000000,
        },
        {"id": "silver", "kind": "tier_multiplier", "factors": {"silver": "1.5"}},
        {"id": "signup", "name": "가입 축하", "kind": "event", "event": "signup", "points": 1000},
    ],
}


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    # The console is made at import, when COLUMNS may say 80 (xdist): widen it so tables and
    # messages print on one line each.
    monkeypatch.setattr(console, "_width", 200)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


@pytest.fixture
def program(db: Database, frozen) -> int:
    """The bakery with one member who bought for 25,800 KRW; returns the member id."""
    with db.unit_of_work() as session:
        bakery = make_program(session, now=frozen)
        member = make_member(session, now=frozen, program=bakery, name="Kim Minji")
        purchases.purchase(
            session,
            bakery,
            PurchaseRequest(external_id="A-1", member=MemberRef(id=member.id), amount=25800),
            actor=CLI,
            now=frozen,
        )
        return member.id


def run(cli: CliRunner, db: Database, *args: str, code: int = 0) -> str:
    result = cli.invoke(app, ["rules", *args, "--database-url", db.url])
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def current(db: Database) -> tuple[int, dict[str, Any]]:
    with db.unit_of_work(readonly=True) as session:
        from patron.programs.service import get_program

        bakery = get_program(session, "bakery")
        return bakery.rule_version, rules.get_version(session, bakery).document


def test_import_export_round_trip_in_yaml_and_json(cli, db: Database, program, tmp_path: Path):
    source = tmp_path / "club.yaml"
    source.write_text(yaml.safe_dump(CLUB, allow_unicode=True, sort_keys=False), encoding="utf-8")
    out = run(cli, db, "import", "--program", "bakery", str(source), "--note", "club rules")
    assert "rule set version 2 published" in out
    assert "added: gift-cards, weekday-mornings, december, silver, signup" in out
    version, stored = current(db)
    assert version == 2
    assert stored == rules.validate_doc(CLUB).model_dump(mode="json", exclude_none=True)

    exported = tmp_path / "exported.yaml"
    run(cli, db, "export", "--program", "bakery", "--format", "yaml", "--output", str(exported))
    text = exported.read_text(encoding="utf-8")
    assert "가입 축하" in text and "06:00:00" in text
    assert yaml.safe_load(text) == stored
    assert "rule set version 3 published" in run(
        cli, db, "import", "--program", "bakery", str(exported)
    )
    assert current(db) == (3, stored)

    as_json = run(cli, db, "export", "--program", "bakery")  # JSON on stdout by default
    assert json.loads(as_json) == stored
    json_file = tmp_path / "rules.json"
    json_file.write_text(as_json, encoding="utf-8")
    out = run(cli, db, "import", "--program", "bakery", str(json_file))
    assert "rule set version 4 published" in out and "no rule changed" in out
    assert current(db) == (4, stored)
    # An older version exports as it was.
    assert json.loads(run(cli, db, "export", "--program", "bakery", "--version", "1")) == {
        "combine": "multiply",
        "rounding": "down",
        "redemption": {},
        "rules": [
            {
                "id": "base",
                "kind": "base_rate",
                "enabled": True,
                "mode": "per_full_unit",
                "points": 10,
                "per_amount": "1000",
                "rounding": "down",
            }
        ],
    }


def test_show_versions_and_diff(cli, db: Database, program, tmp_path: Path):
    source = tmp_path / "club.json"
    source.write_text(json.dumps(CLUB), encoding="utf-8")
    run(cli, db, "import", "--program", "bakery", str(source), "--note", "club rules")
    changed = {**CLUB, "rules": [r for r in CLUB["rules"] if r["id"] != "gift-cards"]}
    changed["rules"][0] = {**changed["rules"][0], "points": 20}
    source.write_text(json.dumps(changed), encoding="utf-8")
    # Doubling the base rate doubles the month's points: refused until confirmed (issue 16).
    refused = run(cli, db, "import", "--program", "bakery", str(source), code=2)
    assert "confirmation_required" in refused and "+100.0% (250 → 500" in refused
    assert current(db)[0] == 2
    run(cli, db, "import", "--program", "bakery", str(source), "--note", "double base",
        "--confirm-large-change")  # fmt: skip

    shown = run(cli, db, "show", "--program", "bakery")
    assert "version 3 (current)" in shown
    for text in (
        "weekday-mornings",
        "mon, tue, wed, thu, fri 06:00–10:00 ×1.2",
        "20 points for each full 1,000",
        "2026-12-01 – 2026-12-31",
        "×2, budget 1,000,000",
        "silver ×1.5",
        "signup: +1000 (once)",
    ):
        assert text in shown, (text, shown)
    old = run(cli, db, "show", "--program", "bakery", "--version", "2")
    assert "version 2" in old and "(current)" not in old
    assert "no points on category gift_card" in old

    listed = run(cli, db, "versions", "--program", "bakery")
    assert "double base" in listed and "club rules" in listed and "cli" in listed

    out = run(cli, db, "diff", "--program", "bakery", "2", "3")
    assert "removed: gift-cards" in out and "changed: base" in out and "added: -" in out
    assert '"points": 10' in out and '"points": 20' in out

    missing = run(cli, db, "show", "--program", "bakery", "--version", "9", code=2)
    assert "rule_version_not_found" in missing
    assert "program_not_found" in run(cli, db, "versions", "--program", "nope", code=2)


def test_an_invalid_file_exits_2_naming_the_field(cli, db: Database, program, tmp_path: Path):
    bad = {**CLUB, "rules": [*CLUB["rules"][:2], {**CLUB["rules"][2], "factor": "-1"}]}
    source = tmp_path / "bad.yaml"
    source.write_text(yaml.safe_dump(bad), encoding="utf-8")
    out = run(cli, db, "import", "--program", "bakery", str(source), code=2)
    assert "invalid_rule_set: rules.2.factor: Input should be greater than or equal to 0" in out

    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps({"rules": [CLUB["rules"][0], CLUB["rules"][0]]}), encoding="utf-8")
    out = run(cli, db, "import", "--program", "bakery", str(twice), code=2)
    assert "invalid_rule_set: rules: rules[1].id 'base' is used twice" in out

    store = tmp_path / "store.json"
    store.write_text(
        json.dumps({"rules": [{**CLUB["rules"][0], "stores": ["gangnam"]}]}), encoding="utf-8"
    )
    assert "unknown_store: rules[0].stores" in run(
        cli, db, "import", "--program", "bakery", str(store), code=2
    )

    broken = tmp_path / "broken.yaml"
    broken.write_text("rules: [unclosed", encoding="utf-8")
    assert "invalid_file: broken.yaml is not valid YAML" in run(
        cli, db, "import", "--program", "bakery", str(broken), code=2
    )
    other = tmp_path / "rules.txt"
    other.write_text("{}", encoding="utf-8")
    assert "invalid_file" in run(cli, db, "import", "--program", "bakery", str(other), code=2)
    assert current(db)[0] == 1  # nothing was published


def test_simulate_writes_table_json_and_csv(cli, db: Database, program, tmp_path: Path):
    proposed = tmp_path / "double.yaml"
    proposed.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {"id": "base", "kind": "base_rate", "points": 10, "per_amount": "1000"},
                    {"id": "double", "kind": "promotion", "factor": "2"},
                ]
            }
        ),
        encoding="utf-8",
    )
    args = (
        "simulate",
        "--program",
        "bakery",
        str(proposed),
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-31",
    )
    report = json.loads(run(cli, db, *args, "--format", "json"))
    assert (report["purchases"], report["actual_points"], report["proposed_points"]) == (
        1,
        250,
        500,
    )
    assert [m["member_id"] for m in report["top_members"]] == [program]

    table = run(cli, db, *args)
    assert "proposed_points" in table and "500" in table and "Kim Minji" in table

    target = tmp_path / "what-if.csv"
    run(cli, db, *args, "--format", "csv", "--output", str(target))
    rows = list(csv.reader(io.StringIO(target.read_bytes().decode("utf-8-sig"))))
    assert len(rows) > 1

    assert "invalid_range" in run(
        cli,
        db,
        "simulate",
        "--program",
        "bakery",
        str(proposed),
        "--from",
        "2026-03-31",
        "--to",
        "2026-03-01",
        code=2,
    )
    assert current(db)[0] == 1  # simulating publishes nothing
