"""Batch ingestion: the service, the endpoint and `patron import purchases`, on both engines.

LESSONS.md: imports must be batched (open-loyalty #129) and every write idempotent (a till that
retries must not double-earn), so a batch sent twice records each purchase once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from patron import clock
from patron.audit.service import CLI
from patron.check import run_check
from patron.cli import app as cli_app
from patron.config import get_settings
from patron.db.engine import Database
from patron.events.models import DomainEvent
from patron.ledger import views
from patron.ledger.models import Account, Entry, Purchase
from patron.members import service as members
from patron.sales import batch
from patron.sales.schemas import BatchReport, PurchaseRequest
from patron.tiers import service as tiers
from patron.tiers.models import TierChange
from patron.tiers.schemas import TierSetup
from tests.conftest import auth
from tests.factories import make_member, make_program

P = "/api/v1/programs/bakery"


@pytest.fixture
def shop(db: Database, frozen) -> list[int]:
    """The bakery program (10 points per full 1,000 KRW) and ten members; their ids."""
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        return [
            make_member(
                session,
                now=frozen,
                program=program,
                card=f"BKR-{n:04d}",
                phone=f"010-5555-{n:04d}",
            ).id
            for n in range(10)
        ]


def sale(external_id: str, member: int | dict[str, Any], amount: int, **extra: Any) -> Any:
    ref = {"id": member} if isinstance(member, int) else member
    return {"external_id": external_id, "member": ref, "amount": str(amount), **extra}


def requests(*bodies: dict[str, Any]) -> list[PurchaseRequest]:
    return [PurchaseRequest.model_validate(body) for body in bodies]


def ingest(db: Database, bodies: list[dict[str, Any]], now, **kwargs: Any) -> BatchReport:
    return batch.ingest(db, "bakery", requests(*bodies), actor=CLI, now=now, **kwargs)


def earn_entries(db: Database) -> tuple[int, int]:
    """(count, points) of every earn entry."""
    with db.unit_of_work(readonly=True) as session:
        count, points = session.execute(
            select(func.count(Entry.id), func.coalesce(func.sum(Entry.points), 0)).where(
                Entry.kind == "earn"
            )
        ).one()
    return count, points


def balances(db: Database) -> dict[int, int]:
    with db.unit_of_work(readonly=True) as session:
        accounts = session.scalars(select(Account)).all()
        return {a.member_id: views.totals(session, a, clock.now()).balance for a in accounts}


def assert_check_clean(db: Database) -> None:
    with db.unit_of_work(readonly=True) as session:
        report = run_check(session)
    assert report.ok, report.violations


def test_a_thousand_purchases_in_chunks_then_the_same_batch_replayed(db, shop, frozen):
    bodies = [
        sale(f"T1-{i:05d}", shop[i % len(shop)], 1_000 + (i % 7) * 1_550) for i in range(1_000)
    ]
    # 10 points per *full* 1,000 KRW: 1,000 → 10, 2,550 → 20, 4,100 → 40, …
    expected = [10 * ((1_000 + (i % 7) * 1_550) // 1_000) for i in range(1_000)]

    first = ingest(db, bodies, frozen, chunk_size=200)

    assert (first.total, first.created, first.replayed, first.errors) == (1_000, 1_000, 0, 0)
    assert first.chunks == 5
    assert [item.index for item in first.items] == list(range(1_000))
    assert [item.points_earned for item in first.items] == expected
    assert {item.status for item in first.items} == {"created"}
    assert earn_entries(db) == (1_000, sum(expected))
    per_member = {m: sum(expected[i] for i in range(m_i, 1_000, 10)) for m_i, m in enumerate(shop)}
    assert balances(db) == per_member
    assert_check_clean(db)

    again = ingest(db, bodies, frozen + timedelta(minutes=1), chunk_size=200)

    assert (again.created, again.replayed, again.errors) == (0, 1_000, 0)
    assert [item.points_earned for item in again.items] == expected
    assert earn_entries(db) == (1_000, sum(expected))
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count(Purchase.id))) == 1_000
    assert_check_clean(db)


def test_bad_items_are_reported_alone_and_the_others_commit(db, shop, frozen):
    with db.unit_of_work() as session:
        blocked = members.get_member(session, shop[9])
        members.set_status(session, blocked, "blocked", reason="fraud", actor=CLI, now=frozen)
    bodies = [
        sale("B-0", shop[0], 5_000),
        sale("B-1", 999_999, 5_000),  # unknown member
        sale("B-2", shop[1], 5_000),
        sale("B-3", shop[2], 5_000, points_to_spend=1_000),  # has 0 points
        sale("B-4", {"card": "BKR-0003"}, 5_000),
        sale("B-5", shop[9], 5_000),  # blocked
        sale("B-0", shop[0], 7_000),  # the order id of item 0 with another body
        sale("B-7", shop[4], 5_000, store="nowhere"),
        sale("B-8", {"phone": "010-5555-0005"}, 5_000),
        sale("B-0", shop[0], 5_000),  # the same order again, same body: a replay
    ]

    result = ingest(db, bodies, frozen, chunk_size=4)

    assert [(i.status, i.error) for i in result.items] == [
        ("created", None),
        ("error", "member_not_found"),
        ("created", None),
        ("error", "insufficient_points"),
        ("created", None),
        ("error", "member_blocked"),
        ("error", "duplicate_order"),
        ("error", "store_not_found"),
        ("created", None),
        ("replayed", None),
    ]
    assert (result.created, result.replayed, result.errors, result.chunks) == (4, 1, 5, 3)
    assert result.items[3].detail == "1000 points requested but the balance is 0"
    assert all(i.points_earned == 0 for i in result.items if i.status == "error")
    assert earn_entries(db) == (4, 4 * 50)
    with db.unit_of_work(readonly=True) as session:
        recorded = session.scalars(select(Purchase.external_id).order_by(Purchase.id)).all()
    assert recorded == ["B-0", "B-2", "B-4", "B-8"]
    assert_check_clean(db)


def test_a_later_purchase_spends_points_an_earlier_one_earned(db, shop, frozen):
    kim = shop[0]
    bodies = [
        sale("S-1", kim, 30_000, points_to_spend=1_000),  # before any points: fails
        sale("S-2", kim, 100_000),  # earns 1,000
        sale("S-3", kim, 30_000, points_to_spend=1_000),  # spends them, earns 290
        sale("S-4", kim, 30_000, points_to_spend=1_000),  # 290 left: fails
    ]

    result = ingest(db, bodies, frozen, chunk_size=500)

    assert [(i.status, i.error) for i in result.items] == [
        ("error", "insufficient_points"),
        ("created", None),
        ("created", None),
        ("error", "insufficient_points"),
    ]
    assert [(i.points_earned, i.points_spent) for i in result.items[1:3]] == [
        (1_000, 0),
        (290, 1_000),
    ]
    assert balances(db)[kim] == 290
    assert_check_clean(db)


def test_tier_moves_mid_chunk_earn_as_if_recorded_one_by_one(db, frozen):
    """Sales that move their members up a tier, interleaved in one chunk: each member's later
    sales earn at her new tier's multiplier, the other members' sales are unaffected, and the
    figures equal those of the same sales recorded one per transaction (chunk_size=1)."""
    setup = TierSetup.model_validate(
        {
            "policy": {"metric": "points", "window": "lifetime", "upgrade": "immediate"},
            "tiers": [
                {"code": "basic", "names": {"en": "Basic"}, "threshold": 0, "multiplier": "1"},
                {"code": "silver", "names": {"en": "Silver"}, "threshold": 400, "multiplier": "2"},
                {"code": "gold", "names": {"en": "Gold"}, "threshold": 1200, "multiplier": "3"},
            ],
        }
    )
    figures = {}
    for code in ("together", "alone"):
        with db.unit_of_work() as session:
            program = make_program(session, now=frozen, code=code)
            tiers.set_tiers(session, program, setup, actor=CLI, now=frozen)
            people = [make_member(session, now=frozen, program=program).id for _ in range(4)]
        # 50,000 KRW earns 500 points at basic: past silver at once. Members 0 and 2 buy three
        # times, interleaved with 1 and 3, whose small sales never move them.
        sales = []
        for n in range(3):
            for k, member in enumerate(people):
                amount = 50_000 if k % 2 == 0 else 3_000
                sales.append(sale(f"{code}-{n}-{k}", member, amount))
        report = batch.ingest(
            db,
            code,
            requests(*sales),
            actor=CLI,
            now=frozen,
            chunk_size=len(sales) if code == "together" else 1,
        )
        assert report.created == len(sales) and report.errors == 0
        with db.unit_of_work(readonly=True) as session:
            accounts = {
                a.member_id: a
                for a in session.scalars(select(Account).where(Account.member_id.in_(people)))
            }
            history = session.execute(
                select(TierChange.account_id, TierChange.from_tier, TierChange.to_tier)
                .where(TierChange.account_id.in_([a.id for a in accounts.values()]))
                .order_by(TierChange.id)
            ).all()
            events = session.scalar(
                select(func.count(DomainEvent.id)).where(
                    DomainEvent.kind == "tier.changed", DomainEvent.member_id.in_(people)
                )
            )
            person = {a.id: people.index(m) for m, a in accounts.items()}
            moves = [(person[a], f, t) for a, f, t in history]
            figures[code] = [
                (
                    [item.points_earned for item in report.items],
                    [
                        (accounts[m].tier, views.totals(session, accounts[m], frozen).balance)
                        for m in people
                    ],
                    moves,
                    events,
                )
            ]
    together, alone = figures["together"], figures["alone"]
    assert together == alone
    earned, held, moves, events = together[0]
    # 0 and 2 placed straight in silver by their first sale (500 points), then moved to gold;
    # 1 and 3 placed in basic.
    expected = [(k, None, "silver") for k in (0, 2)] + [(k, "silver", "gold") for k in (0, 2)]
    expected += [(k, None, "basic") for k in (1, 3)]
    assert sorted(moves, key=str) == sorted(expected, key=str)
    assert events == len(moves)
    # Member 0: 500 at basic (to silver), 1,000 at silver (to gold), 1,500 at gold.
    assert earned[0::4] == [500, 1000, 1500]
    assert earned[1::4] == [30, 30, 30]
    assert held[0] == ("gold", 3000) and held[1] == ("basic", 90)
    assert_check_clean(db)


def test_an_unknown_program_fails_before_any_work(db, shop, frozen):
    from patron.errors import NotFound

    with pytest.raises(NotFound):
        batch.ingest(db, "nope", requests(sale("X-1", shop[0], 5_000)), actor=CLI, now=frozen)
    assert earn_entries(db) == (0, 0)


def test_two_batches_at_once_on_the_same_members(db, shop, frozen):
    """Two uploads lock the same accounts in opposite orders; both finish, nothing is lost."""
    forward = [sale(f"F-{i}", shop[i % 10], 2_000) for i in range(200)]
    backward = [sale(f"R-{i}", shop[9 - i % 10], 3_000) for i in range(200)]
    reports: dict[str, BatchReport] = {}
    start = threading.Barrier(2)

    failures: list[BaseException] = []

    def run(name: str, bodies: list[dict[str, Any]]) -> None:
        start.wait()
        try:
            reports[name] = ingest(db, bodies, frozen, chunk_size=50)
        except BaseException as exc:  # a deadlock that was not retried away
            failures.append(exc)

    threads = [threading.Thread(target=run, args=a) for a in (("f", forward), ("b", backward))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert failures == []
    assert reports["f"].created == reports["b"].created == 200
    assert earn_entries(db) == (400, 200 * 20 + 200 * 30)
    assert_check_clean(db)


# --- HTTP ----------------------------------------------------------------------------------


def test_the_endpoint_records_a_batch_and_replays_it(client, keys, shop, db):
    pos = auth(keys["pos"])
    body = {
        "purchases": [
            sale("H-1", shop[0], 25_800, store="mapo"),
            sale("H-2", 424_242, 1_000),
            sale("H-3", {"card": "BKR-0001"}, 100_000),
            sale("H-4", {"card": "BKR-0001"}, 5_000, points_to_spend=1_000),
        ]
    }

    response = client.post(f"{P}/purchases/batch", json=body, headers=pos)

    assert response.status_code == 200, response.text
    report = response.json()
    assert {k: report[k] for k in ("total", "created", "replayed", "errors", "chunks")} == {
        "total": 4,
        "created": 3,
        "replayed": 0,
        "errors": 1,
        "chunks": 1,
    }
    assert report["items"][1] == {
        "index": 1,
        "external_id": "H-2",
        "status": "error",
        "member_id": None,
        "points_earned": 0,
        "points_spent": 0,
        "error": "member_not_found",
        "detail": "no member with id 424242",
    }
    assert [(i["points_earned"], i["points_spent"]) for i in report["items"]] == [
        (250, 0),
        (0, 0),
        (1_000, 0),
        (40, 1_000),
    ]
    # The single-purchase endpoint sees the batch's answer for each order.
    one = client.get(f"{P}/purchases/H-4", headers=pos)
    assert one.status_code == 200 and one.json()["points_spent"] == 1_000

    again = client.post(f"{P}/purchases/batch", json=body, headers=pos).json()
    assert [i["status"] for i in again["items"]] == ["replayed", "error", "replayed", "replayed"]
    assert earn_entries(db) == (3, 1_290)
    assert_check_clean(db)


def test_malformed_items_are_422_with_their_index_and_change_nothing(client, keys, shop, db):
    pos = auth(keys["pos"])
    good = [sale(f"M-{i}", shop[0], 5_000) for i in range(5)]
    bad = [*good[:3], {**good[3], "amount": "-5"}, {**good[4], "member": {}}]

    response = client.post(f"{P}/purchases/batch", json={"purchases": bad}, headers=pos)

    assert response.status_code == 422, response.text
    error = response.json()
    assert error["error"] == "validation_error"
    assert "purchases.3.amount" in error["detail"]
    assert "purchases.4.member" in error["detail"]
    assert earn_entries(db) == (0, 0)

    for payload in ({"purchases": []}, {}, {"purchases": good, "extra": 1}):
        response = client.post(f"{P}/purchases/batch", json=payload, headers=pos)
        assert response.status_code == 422, (payload, response.text)
    too_many = [sale(f"N-{i}", shop[0], 1_000) for i in range(5_001)]
    response = client.post(f"{P}/purchases/batch", json={"purchases": too_many}, headers=pos)
    assert response.status_code == 422 and "purchases" in response.json()["detail"]
    assert earn_entries(db) == (0, 0)


def test_text_the_database_cannot_hold_refuses_the_batch_on_both_engines(client, keys, shop, db):
    """NUL in any field is refused at the edge with one 422 naming it, on both engines alike
    (patron.text, decision 0030); nothing of the batch is written."""
    pos = auth(keys["pos"])
    body = {
        "purchases": [
            sale("NUL\x00-1", shop[0], 5_000),
            sale("OK-1", {"card": "BKR-\x00"}, 5_000),
            sale("OK-2", shop[0], 5_000),
        ]
    }

    response = client.post(f"{P}/purchases/batch", json=body, headers=pos)

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert response.json()["detail"].startswith("purchases.0.external_id:")
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Purchase)) == 0
    assert_check_clean(db)


def test_the_endpoint_needs_pos_and_a_known_program(client, keys, shop):
    body = {"purchases": [sale("A-1", shop[0], 5_000)]}
    denied = client.post(f"{P}/purchases/batch", json=body, headers=auth(keys["read"]))
    assert denied.status_code == 403 and denied.json()["error"] == "missing_scope"
    missing = client.post(
        "/api/v1/programs/nope/purchases/batch", json=body, headers=auth(keys["pos"])
    )
    assert missing.status_code == 404 and missing.json()["error"] == "program_not_found"
    operation = client.get("/openapi.json").json()["paths"][
        "/api/v1/programs/{code}/purchases/batch"
    ]["post"]
    assert {"200", "404", "422", "403"} <= set(operation["responses"])


# --- CLI -----------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Iterator[CliRunner]:
    # The CLI writes --database-url into the environment; monkeypatch restores it afterwards.
    monkeypatch.setenv("PATRON_DATABASE_URL", "sqlite:///unused-by-these-tests.db")
    monkeypatch.setenv("COLUMNS", "200")
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


def run_import(cli: CliRunner, db: Database, *args: str, code: int) -> str:
    result = cli.invoke(
        cli_app, ["import", "purchases", "--program", "bakery", *args, "--database-url", db.url]
    )
    assert result.exit_code == code, (result.output, result.exception)
    return result.output


def test_cli_imports_json_lines_and_reports_bad_lines(cli, db, shop, tmp_path: Path):
    lines = [
        json.dumps(sale("J-1", shop[0], 100_000)),
        "",
        json.dumps(sale("J-2", {"card": "BKR-0000"}, 5_000, points_to_spend=1_000)),
        "{not json",
        json.dumps(sale("J-4", 31_337, 5_000)),
        json.dumps({**sale("J-5", shop[1], 5_000), "amount": "zero"}),
        json.dumps(sale("J-6", {"phone": "010-5555-0002"}, 12_345, store="mapo")),
    ]
    file = tmp_path / "sales.jsonl"
    file.write_text("\n".join(lines) + "\n", encoding="utf-8")

    out = run_import(cli, db, str(file), "--chunk-size", "2", code=1)

    assert "3 created, 0 replayed, 3 errors" in out
    assert "line 4: invalid_json" in out
    assert "line 5 (J-4): member_not_found" in out
    assert "line 6 (J-5): validation_error amount:" in out
    assert earn_entries(db) == (3, 1_000 + 40 + 120)
    assert balances(db)[shop[0]] == 40

    # Re-running the same file records nothing twice.
    out = run_import(cli, db, str(file), code=1)
    assert "0 created, 3 replayed, 3 errors" in out
    assert earn_entries(db) == (3, 1_160)
    assert_check_clean(db)


def test_cli_imports_csv(cli, db, shop, tmp_path: Path):
    file = tmp_path / "till-7.csv"
    file.write_text(
        "external_id,member_id,card,phone,amount,occurred_at,store,channel,points_to_spend\n"
        f"C-1,{shop[0]},,,100000,2026-03-01T09:30:00+09:00,mapo,pos,\n"
        "C-2,,BKR-0000,,5000,,,,1000\n"
        "C-3,,,010-5555-0003,2500,,,online,0\n",
        encoding="utf-8",
    )

    out = run_import(cli, db, str(file), code=0)

    assert "3 created, 0 replayed, 0 errors" in out
    assert earn_entries(db) == (3, 1_000 + 40 + 20)
    with db.unit_of_work(readonly=True) as session:
        first = session.scalars(select(Purchase).where(Purchase.external_id == "C-1")).one()
        assert first.occurred_at.isoformat().startswith("2026-03-01T00:30:00")
        assert first.store_id is not None
    assert "0 created, 3 replayed, 0 errors" in run_import(cli, db, str(file), code=0)

    # A row naming two members, and one with a bad amount: errors with their line numbers.
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "external_id,member_id,card,amount\nD-1,1,BKR-0000,5000\nD-2,,BKR-0000,lots\n"
        "D-3,,BKR-0004,5000\n",
        encoding="utf-8",
    )
    out = run_import(cli, db, str(bad), code=1)
    assert "1 created, 0 replayed, 2 errors" in out
    assert "line 2 (D-1): validation_error member:" in out
    assert "line 3 (D-2): validation_error amount:" in out
    assert_check_clean(db)


def test_cli_refuses_unreadable_files_with_exit_2(cli, db, shop, tmp_path: Path):
    header = tmp_path / "header.csv"
    header.write_text("external_id,customer,amount\nX-1,1,5000\n", encoding="utf-8")
    out = run_import(cli, db, str(header), code=2)
    assert "unreadable_file" in out and "unknown: customer" in out

    binary = tmp_path / "dump.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    assert "unreadable_file" in run_import(cli, db, str(binary), code=2)

    assert "unreadable_file" in run_import(cli, db, str(tmp_path / "missing.jsonl"), code=2)

    lines = tmp_path / "lines.csv"
    lines.write_text("external_id,member_id,amount,lines\nL-1,1,5000,x\n", encoding="utf-8")
    assert "unknown: lines" in run_import(cli, db, str(lines), "--format", "csv", code=2)

    good = tmp_path / "ok.jsonl"
    good.write_text(json.dumps(sale("K-1", shop[0], 5_000)) + "\n", encoding="utf-8")
    result = cli.invoke(
        cli_app, ["import", "purchases", "--program", "nope", str(good), "--database-url", db.url]
    )
    assert result.exit_code == 2 and "program_not_found" in result.output
    assert earn_entries(db) == (0, 0)
