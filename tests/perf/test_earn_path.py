"""The sale pipeline (patron.sales) recording the same sales in differently sized batches.

A sale at the till is a batch of one; a batch upload plans many sales on their accounts'
running state and writes them together. The same sales, run on two programs set up alike, once
one at a time and once in batches (chunks cut at different places), must give the same answers
and the same ledger rows, outbox events included. The planner against an independent model of
the ledger is tests/ledger/test_sale_model.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from patron import clock
from patron.audit.service import CLI
from patron.check import run_check
from patron.db.engine import Database
from patron.errors import PatronError
from patron.events.models import DomainEvent
from patron.ledger import views
from patron.ledger.models import Account, Entry, Lot, Purchase
from patron.members import service as members
from patron.members.schemas import MemberRef
from patron.programs import service as programs
from patron.rules import publishing
from patron.rules import service as rules
from patron.sales import purchases
from patron.sales.schemas import AdjustRequest, PurchaseRequest, RefundRequest
from patron.tiers import service as tiers
from patron.tiers.models import TierChange
from patron.tiers.schemas import TierSetup
from tests.factories import make_member, make_program

RULES = {
    "combine": "multiply",
    "rounding": "down",
    "rules": [
        {
            "id": "base",
            "kind": "base_rate",
            "mode": "per_full_unit",
            "points": 10,
            "per_amount": "1000",
        },
        {
            "id": "cake",
            "kind": "product_bonus",
            "match": {"skus": ["cake"]},
            "points_per_unit": 200,
            "qualifying": False,
        },
        {"id": "launch", "kind": "promotion", "factor": "2", "budget_points": 1500},
        {"id": "daily", "kind": "cap", "per": "member_day", "max_points": 2500},
    ],
}
TIERS = {
    "policy": {"metric": "points", "window": "year", "upgrade": "immediate"},
    "tiers": [
        {"code": "basic", "names": {"en": "Basic"}, "threshold": 0},
        {
            "code": "silver",
            "names": {"en": "Silver"},
            "threshold": 1000,
            "multiplier": "1.5",
            "extra_expiry_months": 6,
        },
        {"code": "gold", "names": {"en": "Gold"}, "threshold": 4000, "multiplier": "2"},
    ],
}


def _area(code: str) -> int:
    return 3000 if code == "fast" else 4000


def _setup(
    db: Database, code: str, now, *, plain: bool = False, **overrides: Any
) -> dict[str, int]:
    with db.unit_of_work() as session:
        program = make_program(session, now=now, code=code, stores=("mapo", "yeonnam"), **overrides)
        if not plain:
            publishing.publish(session, program, rules.validate_doc(RULES), actor=CLI, now=now)
        tiers.set_tiers(session, program, TierSetup.model_validate(TIERS), actor=CLI, now=now)
        people = {}
        for n, name in enumerate(("kim", "lee", "park", "choi")):
            people[name] = make_member(
                session,
                now=now,
                program=program,
                card=f"{code.upper()}-CARD-{n}",
                phone=f"010-{_area(code)}-{2000 + n}",
                email=f"{name}@{code}.example",
            ).id
        # lee owes 700 points (allow_debt): the next earns pay it back first.
        purchases.adjust(
            session,
            program,
            AdjustRequest(member=MemberRef(id=people["lee"]), points=300, reason="opening"),
            actor=CLI,
            now=now,
        )
        return people


def _sales(people: dict[str, int], code: str) -> list[tuple[int, dict[str, Any]]]:
    """(minutes after T0, body); member refs of every kind, errors and replays included."""
    ref = {
        "kim": {"id": people["kim"]},
        "lee": {"card": f"{code.upper()}-CARD-1"},
        "park": {"phone": f"010{_area(code)}2002"},
        "choi": {"email": f"CHOI@{code}.example "},
    }
    cake = [
        {"id": "a", "sku": "cake", "category": "cake", "quantity": "1", "amount": "32000"},
        {"id": "b", "sku": "latte", "category": "drink", "quantity": "2", "amount": "9600"},
    ]
    out: list[tuple[int, dict[str, Any]]] = []
    for i in range(14):
        who = ("kim", "lee", "park", "choi")[i % 4]
        body: dict[str, Any] = {
            "external_id": f"O-{i}",
            "member": ref[who],
            "amount": "25800",
            "store": "mapo" if i % 3 else "yeonnam",
        }
        if i % 5 == 2:
            body.update(amount="41600", lines=cake)
        if i == 6:
            body["amount"] = "500"  # earns nothing
        if i == 9:
            body["occurred_at"] = "2025-01-02T10:00:00+09:00"  # backdated: expired at once
        if i == 11:
            body["occurred_at"] = "2026-03-01T23:30:00+09:00"
        out.append((i * 7, body))
    out += [
        (100, {"external_id": "O-1", "member": ref["lee"], "amount": "25800", "store": "mapo"}),
        (101, {"external_id": "O-1", "member": ref["lee"], "amount": "99000"}),  # duplicate
        (
            102,
            {
                "external_id": "bad-store",
                "member": ref["kim"],
                "amount": "1000",
                "store": "nowhere",
            },
        ),
        (
            103,
            {
                "external_id": "spend",
                "member": ref["kim"],
                "amount": "5000",
                "points_to_spend": 1000,
            },
        ),
        (200 * 24 * 60, {"external_id": "late", "member": ref["kim"], "amount": "13000"}),
        (400 * 24 * 60, {"external_id": "later", "member": ref["park"], "amount": "13000"}),
    ]
    return out


def _run(db: Database, code: str, people: dict[str, int], start, *, alone: bool) -> list[Any]:
    """The timeline's sales at their times: each through the till's call (`alone`), or each
    as a batch of one through the batch ingestion."""
    from patron.sales import batch

    answers: list[Any] = []
    for minutes, body in _sales(people, code):
        now = start + timedelta(minutes=minutes)
        clock.freeze(now)
        req = PurchaseRequest.model_validate(body)
        if not alone:
            item = batch.ingest(db, code, [req], actor=CLI, now=now).items[0]
            answers.append(
                {"error": item.error, "detail": item.detail}
                if item.status == "error"
                else {"points_earned": item.points_earned, "points_spent": item.points_spent}
            )
            continue
        try:
            with db.unit_of_work() as session:
                program = programs.get_program(session, code)
                answer = purchases.purchase(session, program, req, actor=CLI, now=now)
                answers.append(
                    {
                        "points_earned": answer["points_earned"],
                        "points_spent": answer["points_spent"],
                    }
                )
        except PatronError as exc:
            answers.append({"error": exc.code, "detail": exc.detail})
    return answers


def _plain(value: Any) -> Any:
    """Ids differ between the two programs: drop them (and the order ids' program prefix)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in ("id", "member_id")}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return value.replace("slow", "fast").replace("SLOW", "FAST")
    return value


def _rows(db: Database, code: str) -> dict[str, Any]:
    with db.unit_of_work(readonly=True) as session:
        program = programs.get_program(session, code)
        accounts = session.scalars(
            select(Account).where(Account.program_id == program.id).order_by(Account.id)
        ).all()
        out: dict[str, Any] = {
            "totals": [],
            "entries": [],
            "lots": [],
            "purchases": [],
            "tiers": [],
            "events": [],
        }
        for account in accounts:
            entry_ids: list[int] = []
            out["totals"].append(views.totals(session, account, clock.now()).model_dump())
            out["tiers"].append((account.tier, account.tier_valid_until))
            for e in session.scalars(
                select(Entry).where(Entry.account_id == account.id).order_by(Entry.id)
            ):
                entry_ids.append(e.id)
                out["entries"].append(
                    (
                        e.kind,
                        e.points,
                        e.qualifying,
                        e.occurred_at,
                        e.created_at,
                        e.reason,
                        e.channel,
                        e.actor,
                        e.external_ref,
                        e.rule_version,
                        e.breakdown,
                        e.details,
                        e.lot_id is not None,
                        e.purchase_id is not None,
                    )
                )
            for lot in session.scalars(
                select(Lot).where(Lot.account_id == account.id).order_by(Lot.id)
            ):
                out["lots"].append(
                    (
                        lot.points,
                        lot.remaining,
                        lot.earned_at,
                        lot.pending_until,
                        lot.pending,
                        lot.expires_at,
                    )
                )
            for p in session.scalars(
                select(Purchase).where(Purchase.account_id == account.id).order_by(Purchase.id)
            ):
                out["purchases"].append(
                    (
                        p.external_id,
                        p.channel,
                        p.occurred_at,
                        p.amount_minor,
                        p.lines,
                        p.points_earned,
                        p.points_spent,
                        p.earn_entry_id is not None,
                        _plain(p.response),
                    )
                )
            # The member's events in the program: each entry's event, placed by its entry (ids
            # differ between the programs), and the others (member.enrolled, tier.changed).
            for ev in session.scalars(
                select(DomainEvent)
                .where(
                    DomainEvent.program_id == program.id,
                    DomainEvent.member_id == account.member_id,
                )
                .order_by(DomainEvent.id)
            ):
                payload = {
                    k: v for k, v in ev.payload.items() if k not in ("entry_id", "account_id")
                }
                if ev.entry_id is not None:
                    assert ev.payload["entry_id"] == ev.entry_id
                    assert ev.payload["member_id"] == account.member_id
                out["events"].append(
                    (
                        entry_ids.index(ev.entry_id) if ev.entry_id is not None else None,
                        ev.kind,
                        _plain(payload),
                        ev.at,
                        ev.dispatched,
                    )
                )
            out["tiers"] += [
                (c.from_tier, c.to_tier, c.reason, c.period, c.metric_value)
                for c in session.scalars(
                    select(TierChange).where(TierChange.account_id == account.id)
                )
            ]
        report = run_check(session)
        assert report.ok, report.violations
        return out


@pytest.mark.parametrize("pending_days", [0, 3])
def test_a_sale_at_the_till_and_a_batch_of_one_write_the_same(db, frozen, pending_days):
    fast_people = _setup(db, "fast", frozen, pending_days=pending_days)
    slow_people = _setup(db, "slow", frozen, pending_days=pending_days)
    start = frozen + timedelta(minutes=1)
    fast = _run(db, "fast", fast_people, start, alone=True)
    slow = _run(db, "slow", slow_people, start, alone=False)
    assert _plain(fast) == _plain(slow)
    fast_rows = _rows(db, "fast")
    assert fast_rows == _rows(db, "slow")
    # Every entry reported once (patron check proves it too), earns and redemptions included.
    kinds = [e[1] for e in fast_rows["events"] if e[0] is not None]
    assert len(kinds) == len(fast_rows["entries"])
    assert {"points.earned", "points.adjusted", "points.expired"} <= set(kinds)
    if not pending_days:  # with pending points the sale that spends has nothing to spend
        assert "points.redeemed" in kinds
    errors = [a["error"] for a in fast if "error" in a]
    assert errors[:2] == ["duplicate_order", "store_not_found"]
    assert any(t[1] == "silver" for t in _rows(db, "fast")["tiers"] if len(t) == 5)


def test_a_blocked_member_still_gets_the_replay_of_an_earlier_sale(db, frozen):
    people = _setup(db, "fast", frozen)
    body = {"external_id": "B-1", "member": {"id": people["kim"]}, "amount": "10000"}
    with db.unit_of_work() as session:
        program = programs.get_program(session, "fast")
        first = purchases.purchase(
            session, program, PurchaseRequest.model_validate(body), actor=CLI, now=frozen
        )
        members.set_status(
            session,
            members.get_member(session, people["kim"]),
            "blocked",
            reason="fraud",
            actor=CLI,
            now=frozen,
        )
    with db.unit_of_work() as session:
        again = purchases.purchase(
            session, program, PurchaseRequest.model_validate(body), actor=CLI, now=frozen
        )
        assert again == first
        with pytest.raises(PatronError) as refused:
            purchases.purchase(
                session,
                program,
                PurchaseRequest.model_validate({**body, "external_id": "B-2"}),
                actor=CLI,
                now=frozen,
            )
    assert refused.value.code == "member_blocked"


@pytest.fixture
def statements(db: Database, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """SQL statements sent: SQLAlchemy's, and on PostgreSQL also those the sale pipeline sends on
    the driver (the lock and the read go together in one psycopg pipeline)."""
    seen: list[str] = []
    if db.dialect == "postgresql":
        import psycopg

        original = psycopg.Cursor.execute
        original_pipeline = psycopg.Connection.pipeline

        def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(str(query).split(None, 1)[0].upper())
            return original(self, query, *args, **kwargs)

        def pipeline(self: Any) -> Any:
            seen.append("PIPELINE")
            return original_pipeline(self)

        monkeypatch.setattr(psycopg.Cursor, "execute", execute)
        monkeypatch.setattr(psycopg.Connection, "pipeline", pipeline)
        yield seen
        return

    # The SQLite hot path runs its reads and writes on the driver's cursor, past SQLAlchemy's
    # events: sqlite3's own trace callback sees every statement the library runs.
    def trace(statement: str) -> None:
        seen.append(statement.split(None, 1)[0].upper())

    def checkout(dbapi_connection: Any, *_rest: Any) -> None:
        dbapi_connection.set_trace_callback(trace)

    def checkin(dbapi_connection: Any, *_rest: Any) -> None:
        dbapi_connection.set_trace_callback(None)

    event.listen(db.engine, "checkout", checkout)
    event.listen(db.engine, "checkin", checkin)
    yield seen
    event.remove(db.engine, "checkout", checkout)
    event.remove(db.engine, "checkin", checkin)


def test_a_steady_state_earn_costs_two_round_trips_on_postgresql(db, frozen, statements):
    """The snapshot's reads (lock, figures, replays, ids), then the plan's rows, and
    BEGIN/COMMIT: on PostgreSQL the four reads go together in one pipeline with BEGIN and the
    rows in one statement. SQLite runs each read and writes each table with its own statement
    (a statement there costs no round trip)."""
    people = _setup(db, "fast", frozen, plain=True)
    body = {"member": {"id": people["kim"]}, "amount": "13000", "store": "mapo"}
    for n in range(3):
        with db.unit_of_work() as session:
            program = programs.get_program(session, "fast")
            purchases.purchase(
                session,
                program,
                PurchaseRequest.model_validate({**body, "external_id": f"W{n}"}),
                actor=CLI,
                now=frozen,
            )
    statements.clear()
    with db.unit_of_work() as session:
        purchases.purchase_by_code(
            session,
            "fast",
            PurchaseRequest.model_validate({**body, "external_id": "X"}),
            actor=CLI,
            now=frozen,
        )
    body_statements = [s for s in statements if s not in ("BEGIN", "COMMIT")]
    reads = ["SELECT"] * 4
    if db.dialect == "postgresql":
        assert body_statements == ["PIPELINE", *reads, "WITH"], statements
    else:
        # purchase, lot, entry, the entry's outbox event; then the account totals
        writes = ["INSERT", "INSERT", "INSERT", "INSERT", "UPDATE"]
        assert body_statements == [*reads, *writes], body_statements


@pytest.mark.postgresql_only
def test_concurrent_earns_pay_a_debt_back_exactly_once(db, frozen):
    """Each earn reads the debt under the account's row lock; without it two earns would both
    pay back the same debt and leave it negative (patron check would fail)."""
    from tests.test_concurrency import run_together

    people = _setup(db, "fast", frozen, plain=True, negative_balance="allow_debt")
    kim = {"id": people["kim"]}
    with db.unit_of_work() as session:
        program = programs.get_program(session, "fast")
        for body in (
            {"external_id": "EARN", "member": kim, "amount": "100000"},  # +1,000
            {"external_id": "SPEND", "member": kim, "amount": "20000", "points_to_spend": 1_000},
        ):
            purchases.purchase(
                session, program, PurchaseRequest.model_validate(body), actor=CLI, now=frozen
            )
        # Refunding the first sale takes back 1,000 points, mostly spent already: a debt.
        purchases.refund(
            session,
            program,
            "EARN",
            RefundRequest(refund_id="R", full=True),
            actor=CLI,
            now=frozen,
        )
        account = session.scalars(select(Account).where(Account.member_id == people["kim"])).one()
        debt = account.debt
        assert debt > 100

    def call(n: int):
        def run() -> Any:
            with db.unit_of_work() as session:
                return purchases.purchase_by_code(
                    session,
                    "fast",
                    PurchaseRequest.model_validate(
                        {
                            "external_id": f"C-{n}",
                            "member": {"id": people["kim"]},
                            "amount": "10000",
                        }
                    ),
                    actor=CLI,
                    now=frozen,
                )

        return run

    results = run_together([call(n) for n in range(20)], workers=20)
    assert all(isinstance(r, dict) for r in results), results
    settled = sorted(r["entries"][0]["details"].get("debt_settled", 0) for r in results)
    assert sum(settled) == debt
    with db.unit_of_work(readonly=True) as session:
        account = session.scalars(select(Account).where(Account.member_id == people["kim"])).one()
        assert account.debt == 0
        assert run_check(session).ok


# --- batches: set-based chunks against one sale at a time --------------------------------


def _batch_bodies(people: dict[str, int], code: str, newcomer: int) -> list[dict[str, Any]]:
    ref = {
        "kim": {"id": people["kim"]},
        "lee": {"card": f"{code.upper()}-CARD-1"},
        "park": {"phone": f"010{_area(code)}2002"},
        "choi": {"email": f"CHOI@{code}.example "},
    }
    bodies: list[dict[str, Any]] = []
    for i in range(40):
        who = ("kim", "lee", "park", "choi")[i % 4]
        body: dict[str, Any] = {"external_id": f"B-{i}", "member": ref[who], "amount": "25800"}
        if i % 6 == 1:
            body["store"] = "yeonnam"
        if i == 5:
            body["store"] = "nowhere"
        if i == 9:
            body["occurred_at"] = "2025-01-02T10:00:00+09:00"  # expired at once
        if i == 13:
            body["points_to_spend"] = 1000
        if i == 17:
            body = {"external_id": "B-3", "member": ref["choi"], "amount": "25800"}  # replay
        if i == 18:
            body = {"external_id": "B-2", "member": ref["park"], "amount": "1"}  # duplicate
        if i in (21, 22):
            body["member"] = {"id": newcomer}  # no account yet: the first sale opens it
        if i == 25:
            body["member"] = {"id": 10**9}
        bodies.append(body)
    return bodies


@pytest.mark.parametrize("pending_days", [0, 2])
def test_a_batch_writes_what_one_sale_at_a_time_writes(db, frozen, pending_days):
    from patron.sales import batch

    results: dict[str, list[list[Any]]] = {}
    for code in ("fast", "slow"):
        people = _setup(db, code, frozen, plain=True, pending_days=pending_days)
        with db.unit_of_work() as session:
            newcomer = make_member(session, now=frozen).id
        reqs = [PurchaseRequest.model_validate(b) for b in _batch_bodies(people, code, newcomer)]
        runs: list[list[Any]] = []
        for now, chunk in ((frozen, 16), (frozen + timedelta(days=3), 7)):
            clock.freeze(now)
            if code == "fast":
                report = batch.ingest(db, code, reqs, actor=CLI, now=now, chunk_size=chunk)
                runs.append(
                    [(i.status, i.error, i.points_earned, i.points_spent) for i in report.items]
                )
                continue
            items: list[Any] = []
            for req in reqs:
                try:
                    with db.unit_of_work() as session:
                        program = programs.get_program(session, code)
                        answer, created = purchases.record(
                            session, program.id, req, actor=CLI, now=now
                        )
                    items.append(
                        (
                            "created" if created else "replayed",
                            None,
                            answer["points_earned"],
                            answer["points_spent"],
                        )
                    )
                except PatronError as exc:
                    items.append(("error", exc.code, 0, 0))
            runs.append(items)
        clock.freeze(frozen)
        results[code] = runs
    assert results["fast"] == results["slow"]
    assert _rows(db, "fast") == _rows(db, "slow")
    first = results["fast"][0]
    statuses = [item[0] for item in first]
    assert statuses.count("created") > 25 and statuses.count("error") >= 4
    assert statuses.count("replayed") == 1
    again = [item[0] for item in results["fast"][1]]
    assert again.count("replayed") == statuses.count("created") + 1


def test_a_value_postgresql_refuses_is_a_422_on_both_engines(client, keys, db, frozen):
    """Text PostgreSQL cannot hold (NUL) is refused at the edge on both engines, before the
    pipeline reads or writes anything (patron.text, decision 0030): the same answer everywhere."""
    from tests.conftest import auth

    _setup(db, "fast", frozen, plain=True)
    body = {"external_id": "NUL-1", "member": {"card": "FAST-\x00"}, "amount": "1000"}
    answer = client.post("/api/v1/programs/fast/purchases", json=body, headers=auth(keys["pos"]))
    assert (answer.status_code, answer.json()["error"]) == (422, "validation_error")
    assert "NUL" in answer.json()["detail"]
