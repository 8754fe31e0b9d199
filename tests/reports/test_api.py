"""The report endpoints through HTTP: JSON, CSV and XLSX files opened and checked, errors."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest
from openpyxl import load_workbook

from patron import clock
from patron.db.engine import Database
from patron.reports import rollup
from tests.conftest import auth
from tests.factories import make_member, make_program
from tests.reports._scenario import Scenario, at, build

URL = "/api/v1/programs/bakery"


@pytest.fixture
def month(db: Database, keys: dict[str, str]) -> Scenario:
    s = build(db)
    rollup.refresh(db, now=clock.now(), limit=7)  # part rolled up, part read live
    clock.freeze(at(5, 1))
    return s


@pytest.fixture
def bare(db: Database, keys: dict[str, str]) -> int:
    """The bakery with one member and no sales: enough to be refused."""
    clock.freeze(at(1, 1))
    with db.unit_of_work() as session:
        program = make_program(session, now=at(1, 1))
        member = make_member(session, now=at(1, 1), program=program).id
    clock.freeze(at(5, 1))
    return member


@pytest.fixture
def reader(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["read"])


def _csv(body: bytes) -> list[list[str]]:
    text = body.decode("utf-8")
    assert text.startswith("\ufeff")  # Excel reads UTF-8 only with the BOM
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))


def _sheet(body: bytes, title: str | None = None) -> list[list[Any]]:
    book = load_workbook(io.BytesIO(body))
    sheet = book[title] if title else book.worksheets[0]
    return [list(row) for row in sheet.iter_rows(values_only=True)]


def test_period_as_json_csv_and_xlsx(client, month: Scenario, reader) -> None:
    query = {"from": "2026-03-01", "to": "2026-03-31", "group_by": "store", "granularity": "month"}
    answer = client.get(f"{URL}/reports/period", params=query, headers=reader)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["from"], body["to"], body["currency"]) == ("2026-03-01", "2026-03-31", "KRW")
    by_store = {row["group"]: row for row in body["rows"]}
    assert by_store["mapo"]["earned"] == 1040 and by_store["yeonnam"]["sales"] == "120000"
    assert body["totals"]["issued"] == 2000

    answer = client.get(f"{URL}/reports/period", params={**query, "format": "csv"}, headers=reader)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert (
        'filename="bakery-points-2026-03-01-2026-03-31.csv"'
        in answer.headers["content-disposition"]
    )
    rows = _csv(answer.content)
    header = rows[0]
    assert header[:4] == ["period", "from", "to", "store"]
    table = {r[3]: dict(zip(header, r, strict=True)) for r in rows[1:]}
    assert table["mapo"]["earned"] == "1040" and table["(none)"]["adjusted_in"] == "300"
    assert rows[-1][0] == "total" and dict(zip(header, rows[-1], strict=True))["issued"] == "2000"

    answer = client.get(f"{URL}/reports/period", params={**query, "format": "xlsx"}, headers=reader)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/vnd.openxmlformats")
    sheet = _sheet(answer.content)
    # A title row, then the headers in words (the CSV keeps the code keys for programs).
    assert sheet[0][0].startswith("bakery · Points by period · ") and "exported" in sheet[0][0]
    assert sheet[1][:4] == ["Period", "From", "To", "Store"] and "Adjusted in" in sheet[1]
    assert len(sheet[1]) == len(header)
    cells = {r[3]: dict(zip(header, r, strict=True)) for r in sheet[2:]}
    assert cells["mapo"]["earned"] == 1040  # numbers stay numbers in Excel
    assert cells["yeonnam"]["sales"] == 120000
    assert sheet[-1][0] == "Total"


def test_liability_journal_members_promotions_dashboard(client, month: Scenario, reader) -> None:
    owed = client.get(f"{URL}/reports/liability", params={"as_of": "2026-04-02"}, headers=reader)
    assert owed.status_code == 200, owed.text
    assert owed.json()["outstanding_points"] == 1450
    assert owed.json()["outstanding_value"] == "1450"
    sheets = load_workbook(
        io.BytesIO(
            client.get(
                f"{URL}/reports/liability",
                params={"as_of": "2026-04-02", "format": "xlsx"},
                headers=reader,
            ).content
        )
    ).sheetnames
    assert sheets == ["Liability", "Breakage"]

    journal = client.get(
        f"{URL}/reports/journal",
        params={"month": "2026-03", "format": "csv", "breakage_account": "4100 Breakage"},
        headers=reader,
    )
    assert journal.status_code == 200, journal.text
    rows = _csv(journal.content)
    assert rows[0] == ["date", "entry", "account", "debit", "credit", "currency", "points", "memo"]
    per_day: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for row in rows[1:]:
        per_day[row[0]][0] += Decimal(row[3])
        per_day[row[0]][1] += Decimal(row[4])
    assert sorted(per_day) == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"]
    assert all(debit == credit for debit, credit in per_day.values())

    members = client.get(
        f"{URL}/reports/members",
        params={"from": "2026-01-01", "to": "2026-03-31", "as_of": "2026-03-02"},
        headers=reader,
    )
    assert members.status_code == 200, members.text
    assert members.json()["active"] == 2
    book = client.get(
        f"{URL}/reports/members",
        params={"from": "2026-01-01", "to": "2026-03-31", "format": "xlsx"},
        headers=reader,
    )
    assert load_workbook(io.BytesIO(book.content)).sheetnames == [
        "Members",
        "New members",
        "Tiers",
        "Tier moves",
    ]
    members_csv = _csv(
        client.get(
            f"{URL}/reports/members",
            params={"from": "2026-01-01", "to": "2026-03-31", "format": "csv"},
            headers=reader,
        ).content
    )
    assert members_csv[0] == ["# members"] and ["# tier moves"] in members_csv

    rules = client.get(f"{URL}/reports/promotions", params={"month": "2026-03"}, headers=reader)
    assert rules.status_code == 200, rules.text
    assert rules.json()["earned"] == 2240

    board = client.get(f"{URL}/reports/dashboard", params={"days": 7}, headers=reader)
    assert board.status_code == 200, board.text
    data = board.json()
    assert data["today"] == "2026-05-01" and len(data["series"]) == 7
    assert data["outstanding_points"] == 0 and data["members"] == 2
    assert data["last_month"]["expired"] == 1900


def test_member_balance_as_of(client, month: Scenario, reader) -> None:
    url = f"{URL}/members/{month.a}/balance"
    on_day = client.get(url, params={"as_of": "2026-03-02"}, headers=reader)
    assert on_day.status_code == 200, on_day.text
    assert on_day.json()["balance"] == 540  # 250 + 1000 − 1000 + 290
    instant = client.get(url, params={"as_of": "2026-03-01T23:59:59+09:00"}, headers=reader)
    assert instant.json()["balance"] == 250
    local = client.get(url, params={"as_of": "2026-03-02T00:30"}, headers=reader)  # Seoul time
    assert local.json()["balance"] == 1250
    assert client.get(url, headers=reader).json()["balance"] == 0


@pytest.mark.parametrize(
    ("path", "params", "status", "code", "names"),
    [
        ("reports/period", {"from": "2026-02-30"}, 422, "validation_error", "from"),
        (
            "reports/period",
            {"from": "2026-03-05", "to": "2026-03-01"},
            422,
            "invalid_range",
            "from",
        ),
        ("reports/period", {"from": "0001-01-01"}, 422, "invalid_date", "from"),
        ("reports/period", {"to": "9999-12-31"}, 422, "invalid_date", "to"),
        (
            "reports/period",
            {"from": "1980-01-01", "to": "2026-01-01"},
            422,
            "range_too_long",
            "from",
        ),
        ("reports/period", {"month": "2026-13"}, 422, "invalid_month", "month"),
        ("reports/period", {"month": "March"}, 422, "validation_error", "month"),
        (
            "reports/period",
            {"month": "2026-03", "from": "2026-03-01"},
            422,
            "invalid_range",
            "month",
        ),
        ("reports/period", {"granularity": "year"}, 422, "validation_error", "granularity"),
        ("reports/period", {"group_by": "member"}, 422, "validation_error", "group_by"),
        ("reports/period", {"store": "nowhere"}, 422, "store_not_found", "store"),
        ("reports/period", {"format": "pdf"}, 422, "validation_error", "format"),
        ("reports/liability", {"as_of": "2027-01-01"}, 422, "as_of_in_future", "as_of"),
        ("reports/liability", {"as_of": "yesterday"}, 422, "validation_error", "as_of"),
        ("reports/liability", {"projection_months": "5"}, 422, "validation_error", "projection"),
        ("reports/journal", {"liability_account": ""}, 422, "validation_error", "liability"),
        ("reports/members", {"dormant_days": "0"}, 422, "validation_error", "dormant_days"),
        ("reports/members", {"as_of": "2030-01-01"}, 422, "as_of_in_future", "as_of"),
        ("reports/dashboard", {"days": "1000"}, 422, "validation_error", "days"),
        ("members/1/balance", {"as_of": "soon"}, 422, "invalid_as_of", "as_of"),
        ("members/1/balance", {"as_of": "2030-01-01"}, 422, "as_of_in_future", "as_of"),
        ("members/999/balance", {}, 404, "account_not_found", "999"),
    ],
)
def test_bad_input_is_a_named_422_or_404_never_a_500(
    client,
    bare: int,
    reader,
    path: str,
    params: dict[str, str],
    status: int,
    code: str,
    names: str,
) -> None:
    answer = client.get(f"{URL}/{path}", params=params, headers=reader)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == code and names in body["detail"]


def test_unknown_program_scopes_and_refresh(client, db: Database, keys: dict[str, str]) -> None:
    read, pos, admin = auth(keys["read"]), auth(keys["pos"]), auth(keys["admin"])
    missing = client.get("/api/v1/programs/nope/reports/period", headers=read)
    assert missing.status_code == 404 and missing.json()["error"] == "program_not_found"
    assert client.get(f"{URL}/reports/period").status_code == 401
    forbidden = client.get(f"{URL}/reports/liability", headers=pos)
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "missing_scope"
    assert client.post("/api/v1/reports/refresh", headers=read).status_code == 403
    build(db)
    done = client.post("/api/v1/reports/refresh", headers=admin)
    assert done.status_code == 200 and done.json()["to_entry_id"] > 0
    with db.unit_of_work(readonly=True) as session:
        assert rollup.freshness(session).behind == 0


def test_spreadsheet_formulas_in_account_names_stay_text(client, month: Scenario, reader) -> None:
    params = {"month": "2026-03", "liability_account": '=HYPERLINK("http://x")'}
    rows = _csv(
        client.get(
            f"{URL}/reports/journal", params={**params, "format": "csv"}, headers=reader
        ).content
    )
    assert {r[2] for r in rows[1:]} >= {'\'=HYPERLINK("http://x")'}
    sheet = _sheet(
        client.get(
            f"{URL}/reports/journal", params={**params, "format": "xlsx"}, headers=reader
        ).content
    )
    assert '\'=HYPERLINK("http://x")' in {r[2] for r in sheet[2:]}
