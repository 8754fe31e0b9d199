"""Concurrent writers on real connections: no double spend, one order, one idempotent answer.

LESSONS.md, fuint #71: 20 concurrent requests from a 100-point account credited 2,000 points.
Every test here starts its callers together behind a barrier, each with its own session.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from patron.audit.service import CLI
from patron.check import run_check
from patron.db.engine import Database
from patron.errors import InsufficientPoints
from patron.ledger.models import Account, Entry, Purchase
from patron.members.schemas import MemberRef
from patron.programs.service import get_program
from patron.sales import purchases
from patron.sales.schemas import AdjustRequest, PurchaseRequest
from tests.conftest import auth
from tests.factories import make_member, make_program

# The PostgreSQL pool holds 20 + 20 overflow connections; stay under it.
WORKERS = 30


@pytest.fixture
def funded(db: Database, frozen) -> int:
    """The bakery program and one member holding 10,000 points; returns the member id."""
    with db.unit_of_work() as session:
        program = make_program(session, now=frozen)
        member = make_member(session, now=frozen, program=program, phone="010-1234-5678")
        purchases.adjust(
            session,
            program,
            AdjustRequest(member=MemberRef(id=member.id), points=10_000, reason="opening balance"),
            actor=CLI,
            now=frozen,
        )
        return member.id


def run_together(calls: list[Callable[[], Any]], *, workers: int = WORKERS) -> list[Any]:
    """Run every call on a pool whose threads all start at once; return results or exceptions."""
    workers = min(workers, len(calls))
    barrier = threading.Barrier(workers, timeout=30)

    def outcome(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:  # each caller's own result, compared below
            return exc

    with ThreadPoolExecutor(max_workers=workers, initializer=barrier.wait) as pool:
        return list(pool.map(outcome, calls))


def redeem_1000(db: Database, member_id: int, n: int, now) -> Callable[[], dict[str, Any]]:
    def call() -> dict[str, Any]:
        with db.unit_of_work() as session:
            program = get_program(session, "bakery")
            return purchases.purchase(
                session,
                program,
                PurchaseRequest(
                    external_id=f"R-{n}",
                    member=MemberRef(id=member_id),
                    amount=1000,
                    points_to_spend=1000,
                ),
                actor=CLI,
                now=now,
            )

    return call


def balance_and_check(db: Database, member_id: int) -> tuple[int, int, bool]:
    with db.unit_of_work(readonly=True) as session:
        account = session.scalars(select(Account).where(Account.member_id == member_id)).one()
        redeems = (
            session.scalar(select(func.count()).select_from(Entry).where(Entry.kind == "redeem"))
            or 0
        )
        report = run_check(session)
        assert report.violations == []
        return account.available - account.debt, redeems, report.ok


def assert_ten_of_a_hundred_redeem(db: Database, member_id: int, now) -> None:
    results = run_together([redeem_1000(db, member_id, n, now) for n in range(100)])
    ok = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, InsufficientPoints)]
    others = [r for r in results if not isinstance(r, dict | InsufficientPoints)]
    assert others == []
    assert (len(ok), len(refused)) == (10, 90)
    assert all(r["points_spent"] == 1000 and r["points_earned"] == 0 for r in ok)
    assert sorted(r["totals"]["balance"] for r in ok) == list(range(0, 10_000, 1000))
    assert balance_and_check(db, member_id) == (0, 10, True)


@pytest.mark.postgresql_only
def test_a_hundred_concurrent_redemptions_spend_the_balance_once(db, funded, frozen):
    assert_ten_of_a_hundred_redeem(db, funded, frozen)


def test_concurrent_redemptions_on_sqlite(db, funded, frozen):
    """SQLite has no row locks: BEGIN IMMEDIATE serialises the writers instead."""
    if db.dialect != "sqlite":
        pytest.skip("the PostgreSQL variant above covers row locks")
    assert_ten_of_a_hundred_redeem(db, funded, frozen)


def test_concurrent_replays_of_one_order_record_it_once(db, funded, frozen):
    def call() -> dict[str, Any]:
        with db.unit_of_work() as session:
            program = get_program(session, "bakery")
            return purchases.purchase(
                session,
                program,
                PurchaseRequest(
                    external_id="ORDER-1", member=MemberRef(phone="01012345678"), amount=25800
                ),
                actor=CLI,
                now=frozen,
            )

    results = run_together([call] * 50)
    assert [r for r in results if not isinstance(r, dict)] == []
    assert all(r == results[0] for r in results)
    assert results[0]["points_earned"] == 250
    with db.unit_of_work(readonly=True) as session:
        assert session.scalar(select(func.count()).select_from(Purchase)) == 1
        kinds = Counter(session.scalars(select(Entry.kind)))
        assert kinds == Counter({"adjust": 1, "earn": 1})
        assert run_check(session).ok
    assert balance_and_check(db, funded) == (10_250, 0, True)


@pytest.fixture
def live_server(db: Database) -> Iterator[str]:
    """The real app under uvicorn on a free loopback port, in a thread."""
    import uvicorn

    from patron.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(db=db), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_one_idempotency_key_sent_concurrently_writes_one_entry(db, funded, keys, live_server):
    headers = {**auth(keys["admin"]), "Idempotency-Key": "bonus-2026-03"}
    body = {"member": {"id": funded}, "points": 300, "reason": "march bonus"}

    with httpx.Client(
        base_url=live_server, timeout=30, limits=httpx.Limits(max_connections=20)
    ) as http:

        def call() -> httpx.Response:
            return http.post("/api/v1/programs/bakery/adjustments", json=body, headers=headers)

        responses = run_together([call] * 20, workers=20)

    assert [r.status_code for r in responses] == [201] * 20
    bodies = [r.json() for r in responses]
    assert all(b == bodies[0] for b in bodies)
    assert bodies[0]["totals"]["balance"] == 10_300
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count(None) == 1
    assert replayed.count("true") == 19
    with db.unit_of_work(readonly=True) as session:
        points = list(
            session.scalars(select(Entry.points).where(Entry.kind == "adjust").order_by(Entry.id))
        )
        assert points == [10_000, 300]
        assert run_check(session).ok


def test_concurrent_http_purchases_with_one_order_id(db, funded, keys, live_server):
    body = {
        "external_id": "WEB-77",
        "member": {"id": funded},
        "amount": 12000,
        "points_to_spend": 2000,
    }
    with httpx.Client(
        base_url=live_server, timeout=30, limits=httpx.Limits(max_connections=20)
    ) as http:

        def call() -> httpx.Response:
            return http.post(
                "/api/v1/programs/bakery/purchases", json=body, headers=auth(keys["pos"])
            )

        responses = run_together([call] * 20, workers=20)

    assert [r.status_code for r in responses] == [201] * 20
    assert all(r.json() == responses[0].json() for r in responses)
    first = responses[0].json()
    assert (first["points_spent"], first["points_earned"]) == (2000, 100)
    assert balance_and_check(db, funded) == (10_000 - 2000 + 100, 1, True)
