"""Group commit (patron.sales.till_route.GroupCommit): concurrent sales of one worker share a
transaction, a commit and one sale-pipeline batch, and each still gets exactly the answer it
would get alone."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.api.helpers import enroll

P = "/api/v1/programs/bakery"


@pytest.fixture
def grouped(db) -> Any:
    """The app with group commit on, whatever the engine."""
    from patron.app import create_app

    app = create_app(db=db, group_commit=True)
    assert app.state.group_commit is not None
    return app


def sale(external_id: str, phone: str, amount: int = 25800) -> dict[str, Any]:
    return {"external_id": external_id, "member": {"phone": phone}, "amount": amount}


def post_all(app: Any, headers: dict[str, str], bodies: list[Any]) -> list[httpx.Response]:
    """The requests sent at once, on an event loop of their own in a thread of its own (the
    browser tests leave one running in the main thread of their pytest worker)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _post_all(app, headers, bodies)).result()


async def _post_all(app: Any, headers: dict[str, str], bodies: list[Any]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://till") as client:
        # The first request authenticates the key (the framework's path); the rest go direct.
        await client.get(f"{P}/members", headers=headers)
        return list(
            await asyncio.gather(
                *(client.post(f"{P}/purchases", json=b, headers=headers) for b in bodies)
            )
        )


PHONES = [f"010-2000-{i:04d}" for i in range(8)]


@pytest.fixture
def members(client, pos, bakery, frozen) -> list[dict[str, Any]]:
    return [enroll(client, pos, name=f"Member {i}", phone=p) for i, p in enumerate(PHONES)]


def test_concurrent_sales_share_commits_and_all_count(grouped, client, pos, reader, admin, members):
    app = grouped
    bodies = [sale(f"G-{i}", PHONES[i % len(PHONES)], 1000 * (1 + i % 5)) for i in range(60)]
    answers = post_all(app, pos, bodies)

    assert [a.status_code for a in answers] == [201] * 60
    groups = app.state.group_commit
    assert groups.sales == 60
    assert groups.groups < 60, "every sale was committed alone: nothing was grouped"
    for member_no, member in enumerate(members):
        mine = [b for i, b in enumerate(bodies) if i % len(PHONES) == member_no]
        expected = sum(10 * (b["amount"] // 1000) for b in mine)
        account = client.get(f"{P}/members/{member['id']}/account", headers=reader).json()
        assert account["totals"]["balance"] == expected
        assert account["totals"]["earned"] == expected
    report = client.get("/api/v1/check", headers=admin).json()
    assert report["ok"] is True, report["violations"]


def test_a_failing_sale_in_a_group_harms_no_other(grouped, client, pos, reader, members):
    app = grouped
    client.post(f"{P}/purchases", json=sale("D-0", PHONES[0]), headers=pos)
    bodies: list[Any] = []
    for i in range(30):
        if i % 3 == 0:
            bodies.append(sale(f"F-{i}", "010-9999-0000"))  # nobody: 404
        elif i % 3 == 1:
            bodies.append(sale("D-0", PHONES[0], 999_000))  # order recorded with other details
        else:
            bodies.append(sale(f"F-{i}", PHONES[1]))
    answers = post_all(app, pos, bodies)

    codes = [(a.status_code, a.json().get("error")) for a in answers]
    for i, code in enumerate(codes):
        if i % 3 == 0:
            assert code == (404, "member_not_found"), (i, answers[i].text)
        elif i % 3 == 1:
            assert code == (409, "duplicate_order"), (i, answers[i].text)
        else:
            assert code == (201, None), (i, answers[i].text)
    groups = app.state.group_commit
    assert groups.groups < groups.sales == 30
    assert groups.retried == 0  # the pipeline answered each refused sale alone
    kim = client.get(f"{P}/members/{members[1]['id']}/account", headers=reader).json()
    assert kim["totals"]["balance"] == 10 * 250  # the ten good sales, each 250 points
    entries = client.get(f"{P}/members/{members[1]['id']}/entries", headers=reader).json()
    assert len(entries["items"]) == 10


def test_replays_inside_one_group_record_one_sale(grouped, client, pos, reader, members):
    app = grouped
    bodies = [sale("R-1", PHONES[2])] * 12
    answers = post_all(app, pos, bodies)
    assert {a.status_code for a in answers} == {201}
    first = answers[0].json()
    assert all(a.json() == first for a in answers)  # every replay is the first answer
    entries = client.get(f"{P}/members/{members[2]['id']}/entries", headers=reader).json()
    assert len(entries["items"]) == 1


def test_concurrent_spends_in_groups_never_spend_a_point_twice(
    grouped, client, admin, pos, reader, members
):
    app = grouped
    grant = client.post(
        f"{P}/adjustments",
        json={"member": {"phone": PHONES[3]}, "points": 10_000, "reason": "opening balance"},
        headers=admin,
    )
    assert grant.status_code == 201, grant.text
    bodies = [{**sale(f"S-{i}", PHONES[3], 1000), "points_to_spend": 1000} for i in range(40)]
    answers = post_all(app, pos, bodies)

    accepted = [a for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(accepted) == 10  # 10,000 points buy exactly ten 1,000-point redemptions
    assert {(a.status_code, a.json()["error"]) for a in refused} == {(409, "insufficient_points")}
    account = client.get(f"{P}/members/{members[3]['id']}/account", headers=reader).json()
    assert account["totals"]["redeemed"] == 10_000
    report = client.get("/api/v1/check", headers=admin).json()
    assert report["ok"] is True, report["violations"]


# --- one pipeline batch per group, each answer as the sale alone gets it --------------------


@pytest.fixture
def batches(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The external ids of every `pipeline.record` call, in order (the real one runs)."""
    from patron.sales import pipeline

    seen: list[list[str]] = []
    original = pipeline.record

    def spy(session: Any, program_id: int, items: Any, **kw: Any) -> Any:
        seen.append([req.external_id for req, _digest in items])
        return original(session, program_id, items, **kw)

    monkeypatch.setattr(pipeline, "record", spy)
    return seen


def test_a_group_is_one_pipeline_batch(grouped, client, pos, reader, admin, members, batches):
    bodies = [sale(f"B-{i}", PHONES[i % len(PHONES)], 1000 * (1 + i % 3)) for i in range(24)]
    answers = post_all(grouped, pos, bodies)

    assert [a.status_code for a in answers] == [201] * 24
    groups = grouped.state.group_commit
    # Every sale went through exactly one pipeline call, one call per group (one program and
    # one caller here), and at least one call held several sales.
    assert sorted(x for batch in batches for x in batch) == sorted(b["external_id"] for b in bodies)
    assert len(batches) == groups.batches == groups.groups < 24
    assert max(len(batch) for batch in batches) > 1
    assert groups.sales == 24 and groups.retried == 0
    report = client.get("/api/v1/check", headers=admin).json()
    assert report["ok"] is True, report["violations"]


def test_a_group_whose_transaction_fails_runs_each_sale_alone(
    grouped, client, pos, reader, members, monkeypatch
):
    from sqlalchemy.exc import OperationalError

    from patron.sales import pipeline

    original = pipeline.record
    failed: list[int] = []

    def flaky(session: Any, program_id: int, items: Any, **kw: Any) -> Any:
        if len(items) > 1:  # a group's batch meets a database error; a sale alone does not
            failed.append(len(items))
            raise OperationalError("INSERT …", {}, Exception("deadlock detected"))
        return original(session, program_id, items, **kw)

    monkeypatch.setattr(pipeline, "record", flaky)
    bodies = [sale(f"A-{i}", PHONES[i % 4]) for i in range(12)]
    answers = post_all(grouped, pos, bodies)

    assert [a.status_code for a in answers] == [201] * 12, [a.text for a in answers]
    groups = grouped.state.group_commit
    assert failed and groups.retried == len(failed)
    entries = 0
    for member in members[:4]:
        items = client.get(f"{P}/members/{member['id']}/entries", headers=reader).json()["items"]
        entries += len(items)
    assert entries == 12  # each sale once: nothing of a failed group was kept


PLAIN = "010-3000-"


def _world(db: Any) -> tuple[Any, dict[str, str], dict[str, str]]:
    """A bakery with six members, one holding 10,000 points, an order D-0 and a keyed order
    K-1 already recorded: (the app with group commit on, the pos and admin headers)."""
    from fastapi.testclient import TestClient

    from patron import clock, http
    from patron.app import create_app
    from patron.audit.service import CLI
    from patron.auth.service import create_key
    from tests.conftest import auth
    from tests.factories import BAKERY

    http.forget_keys()
    keys = {}
    with db.unit_of_work() as session:
        for scope in ("admin", "pos", "read"):
            _row, keys[scope] = create_key(
                session, name=f"{scope} key", scopes=[scope], actor=CLI, now=clock.now()
            )
    admin, pos = auth(keys["admin"]), auth(keys["pos"])
    app = create_app(db=db, group_commit=True)
    with TestClient(app) as c:
        assert c.post("/api/v1/programs", json=BAKERY, headers=admin).status_code == 201
        for i in range(6):
            enroll(c, pos, name=f"Member {i}", phone=f"{PLAIN}{i:04d}")
        grant = {"member": {"phone": f"{PLAIN}0000"}, "points": 10_000, "reason": "opening"}
        assert c.post(f"{P}/adjustments", json=grant, headers=admin).status_code == 201
        assert c.post(f"{P}/purchases", json=_sale("D-0", 1), headers=pos).status_code == 201
        keyed = {**pos, "Idempotency-Key": "till-1"}
        assert c.post(f"{P}/purchases", json=_sale("K-1", 2), headers=keyed).status_code == 201
    return app, pos, admin


def _sale(external_id: str, member: int, amount: int = 25800, spend: int = 0) -> dict[str, Any]:
    body = {"external_id": external_id, "member": {"phone": f"{PLAIN}{member:04d}"}}
    return {**body, "amount": amount, **({"points_to_spend": spend} if spend else {})}


# (body, Idempotency-Key, the answer expected): good sales and every kind of refusal mixed.
GROUP: list[tuple[dict[str, Any], str | None, tuple[int, str | None]]] = [
    (_sale("G-1", 1), None, (201, None)),
    ({**_sale("U-1", 1), "member": {"phone": "010-9999-0000"}}, None, (404, "member_not_found")),
    (_sale("G-2", 2), None, (201, None)),
    (_sale("D-0", 1, 999_000), None, (409, "duplicate_order")),
    (_sale("S-1", 3, 10_000, spend=5000), None, (409, "insufficient_points")),
    (_sale("K-1", 2), "till-1", (201, None)),  # the key's stored answer, replayed
    (_sale("G-9", 2), "till-1", (409, "idempotency_conflict")),  # the key, another sale
    (_sale("S-2", 0, 10_000, spend=3000), None, (201, None)),
    (_sale("S-3", 4, 10_000, spend=5000), "till-2", (409, "insufficient_points")),
    (_sale("G-3", 5), "till-3", (201, None)),
    (_sale("G-3", 5), "till-3", (201, None)),  # the same key twice in one group: a replay
    (_sale("G-4", 0), None, (201, None)),
    (_sale("G-1", 1), None, (201, None)),  # an order sent twice in one group: a replay
    (_sale("S-4", 0, 10_000, spend=8000), None, (409, "insufficient_points")),
    (_sale("S-3", 4, 10_000, spend=5000), "till-2", (409, "insufficient_points")),  # key freed
    (_sale("G-5", 3, 5000), None, (201, None)),
]
HEADERS = ("content-type", "content-length", "idempotent-replayed")


def _answer(response: httpx.Response, exact: bool) -> tuple[Any, ...]:
    """Status, headers and body bytes. Not `exact` (PostgreSQL): the body parsed and its entry
    ids left out, as the ids a sequence hands out depend on what else took numbers from it
    (a refused sale alone takes some, in a batch fewer), and a replayed answer comes back from
    JSONB with its keys in JSONB's order where a repeat inside one batch gives the first
    answer's order."""
    headers = {h: response.headers.get(h) for h in HEADERS}
    if exact:
        return response.status_code, headers, response.content
    body = response.json()
    for entry in body.get("entries", []):
        entry.pop("id")
    headers.pop("content-length")
    return response.status_code, headers, body


def _post_group(app: Any, pos: dict[str, str]) -> list[httpx.Response]:
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, _send_group(app, pos)).result()


async def _send_group(app: Any, pos: dict[str, str]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://till") as client:
        await client.get(f"{P}/members", headers=pos)  # the key, cached: the rest go direct
        sent = [
            client.post(
                f"{P}/purchases",
                json=body,
                headers={**pos, **({"Idempotency-Key": key} if key else {})},
            )
            for body, key, _expected in GROUP
        ]
        return list(await asyncio.gather(*sent))


def _fresh(db: Any, tmp_path: Any, sqlite_template: Any) -> Any:
    """An empty database of `db`'s engine for the reference run (a new engine: new caches)."""
    import shutil

    from patron.db.engine import Database
    from tests.conftest import empty_all

    if db.dialect == "sqlite":
        path = tmp_path / "alone.db"
        shutil.copy(sqlite_template, path)
        return Database(f"sqlite:///{path}")
    empty_all(db)
    return Database(str(db.engine.url.render_as_string(hide_password=False)), pool_size=5)


def test_each_sale_of_a_group_gets_the_answer_it_gets_alone(
    db, frozen, batches, monkeypatch, tmp_path, sqlite_template
):
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from patron.app import create_app
    from patron.sales.till_route import GroupCommit

    order: list[tuple[str, str | None]] = []
    next_group = GroupCommit._next_group

    def spy(self: GroupCommit) -> Any:
        group = next_group(self)
        order.extend((s.req.external_id, s.idempotency_key) for s, _job, _done in group)
        return group

    monkeypatch.setattr(GroupCommit, "_next_group", spy)
    app, pos, admin = _world(db)
    batches.clear()
    order.clear()
    statements = [0]

    def count(*_args: Any) -> None:
        statements[0] += 1

    event.listen(db.engine, "before_cursor_execute", count)
    grouped = _post_group(app, pos)
    event.remove(db.engine, "before_cursor_execute", count)
    in_group = statements[0]
    taken = list(order)
    groups = app.state.group_commit

    for (body, key, expected), answer in zip(GROUP, grouped, strict=True):
        got = (answer.status_code, answer.json().get("error"))
        assert got == expected, (body["external_id"], key, answer.text)
    replayed = [a.headers.get("idempotent-replayed") for a in grouped]
    assert replayed[5] == replayed[10] == "true" and replayed[9] is None
    assert max(len(b) for b in batches) > 1, batches  # some sales really were batched
    assert groups.retried == 0
    with TestClient(app) as c:
        check = c.get("/api/v1/check", headers=admin).json()
    assert check["ok"] is True, check["violations"]

    # The reference: the same requests, in the order the groups took them, each alone.
    alone_db = _fresh(db, tmp_path, sqlite_template)
    try:
        _app, alone_pos, _admin = _world(alone_db)
        reference = create_app(db=alone_db, group_commit=False)
        answers: dict[int, httpx.Response] = {}
        left = list(range(len(GROUP)))
        with TestClient(reference) as c:
            c.get(f"{P}/members", headers=alone_pos)
            statements[0] = 0
            event.listen(alone_db.engine, "before_cursor_execute", count)
            for external_id, key in taken:
                i = next(
                    j
                    for j in left
                    if (GROUP[j][0]["external_id"], GROUP[j][1]) == (external_id, key)
                )
                left.remove(i)
                headers = {**alone_pos, **({"Idempotency-Key": key} if key else {})}
                answers[i] = c.post(f"{P}/purchases", json=GROUP[i][0], headers=headers)
            event.remove(alone_db.engine, "before_cursor_execute", count)
        alone = statements[0]
    finally:
        alone_db.dispose()
    assert not left
    exact = db.dialect == "sqlite"
    for i, (body, key, _expected) in enumerate(GROUP):
        label = (i, body["external_id"], key)
        assert _answer(grouped[i], exact) == _answer(answers[i], exact), label
    assert in_group < alone, (in_group, alone)  # fewer statements for the same sales


# --- the wait for a fuller group (decision 0017, second addendum) ------------------------------


def _gatherer(wait: float) -> Any:
    """A GroupCommit whose waiting sales are placeholders: `_gather` only counts them."""
    from patron.sales.till_route import GroupCommit

    return GroupCommit(None, limit=8, wait=wait)  # type: ignore[arg-type]


def _waiting(groups: Any, n: int) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(n):
        groups._arrive((None, None, loop.create_future()))


def test_the_writer_waits_for_the_tills_it_answered_and_no_longer():
    async def scenario() -> tuple[float, float, float]:
        loop = asyncio.get_running_loop()
        groups = _gatherer(wait=5.0)
        _waiting(groups, 2)
        # A group of 3 was answered; 2 sales waited meanwhile: the writer waits for 5. Three
        # more arrive 20 ms later, one by one: the wait ends with the fifth, not at 5 s.
        for delay in (0.02, 0.021, 0.022):
            loop.call_later(delay, _waiting, groups, 1)
        start = loop.time()
        await groups._gather(3)
        filled = loop.time() - start
        assert len(groups._waiting) == 5 and groups.waits == 1 and groups.waits_timed_out == 0

        # Bounded: the answered tills never come back; the waiting sale goes after `wait`.
        bounded = _gatherer(wait=0.05)
        _waiting(bounded, 1)
        start = loop.time()
        await bounded._gather(4)
        timed_out = loop.time() - start
        assert bounded.waits == bounded.waits_timed_out == 1

        # No wait: nothing answered yet (the first group), or a whole group already waits.
        eager = _gatherer(wait=5.0)
        _waiting(eager, 8)
        start = loop.time()
        await eager._gather(0)
        await eager._gather(4)  # 4 answered + 8 waiting, but a group holds 8 (`limit`)
        none = loop.time() - start
        assert eager.waits == 0
        return filled, timed_out, none

    filled, timed_out, none = asyncio.run(scenario())
    assert 0.015 < filled < 1.0, filled
    assert 0.04 < timed_out < 1.0, timed_out
    assert none < 1.0, none


def test_no_wait_when_nothing_waits_or_the_wait_is_off():
    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        idle = _gatherer(wait=5.0)
        await idle._gather(6)  # a group was answered but no sale waits: nothing to delay
        off = _gatherer(wait=0.0)
        _waiting(off, 1)
        await off._gather(6)
        assert idle.waits == off.waits == 0
        return loop.time() - start

    assert asyncio.run(scenario()) < 1.0


def test_tills_selling_in_turn_are_grouped_and_every_sale_counts(
    db, client, pos, reader, admin, members
):
    """Eight tills, each sending its next sale when the last is answered: with the wait, their
    sales go in groups of several, and each is recorded once with its points."""
    from patron.app import create_app

    app = create_app(db=db, group_commit=True)
    groups = app.state.group_commit
    groups.wait = 0.5  # generous: the test machine may be slow; the wait ends on arrival

    async def tills() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://till") as c:
            await c.get(f"{P}/members", headers=pos)

            async def till(n: int) -> list[int]:
                if n:  # the others start while the first till's sale is being written
                    await asyncio.sleep(0.001)
                codes = []
                for k in range(5):
                    r = await c.post(
                        f"{P}/purchases", json=sale(f"T-{n}-{k}", PHONES[n], 1000), headers=pos
                    )
                    codes.append(r.status_code)
                return codes

            done = await asyncio.gather(*(till(n) for n in range(len(PHONES))))
            return [code for codes in done for code in codes]

    from prometheus_client import REGISTRY

    def counted(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    waits = ("patron_group_commit_waits_total", "ended")
    before = [counted(f"patron_group_commit_{c}_total") for c in ("groups", "sales")]
    before_waits = [counted(waits[0], ended=e) for e in ("arrived", "bound")]
    with ThreadPoolExecutor(1) as pool:
        codes = pool.submit(asyncio.run, tills()).result()
    after = [counted(f"patron_group_commit_{c}_total") for c in ("groups", "sales")]
    after_waits = [counted(waits[0], ended=e) for e in ("arrived", "bound")]
    # What /metrics shows (the same registry): the counters moved with the writer's own.
    assert [a - b for a, b in zip(after, before, strict=True)] == [groups.groups, 40]
    assert sum(after_waits) - sum(before_waits) == groups.waits >= 1
    assert after_waits[1] - before_waits[1] == groups.waits_timed_out

    assert codes == [201] * 40
    assert groups.sales == 40 and groups.retried == 0
    # Without the wait the first till's sales go alone, each between the other seven's: 10
    # groups. With it, that till's next sale joins the seven.
    assert groups.groups <= 7, (groups.groups, groups.waits, groups.waits_timed_out)
    for member in members:
        account = client.get(f"{P}/members/{member['id']}/account", headers=reader).json()
        assert account["totals"]["earned"] == 5 * 10
    report = client.get("/api/v1/check", headers=admin).json()
    assert report["ok"] is True, report["violations"]
