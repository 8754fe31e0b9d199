"""Crash safety: SIGKILL the whole server (every worker) under concurrent earns, redemptions and
adjustments, restart it, and prove that every write it acknowledged (a 2xx) is there — by the
order's external_id and by the adjustment's Idempotency-Key — that nothing it refused was
written, that the requests cut off in flight can be retried to exactly one outcome, and that
`patron check` is clean. Both engines, several workers, bounded well under a minute each."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
from typer.testing import CliRunner

from patron.cli import app as cli_app
from patron.config import get_settings
from tests.conformance.live_server import LiveServer
from tests.conftest import auth

THREADS = 8
MEMBERS = 6
FUNDING = 5000
LOAD_SECONDS_MAX = 15  # kill once enough writes were acknowledged, at the latest after this
ACKED_BEFORE_KILL = 120
PROGRAM = {
    "code": "crash",
    "name": "Crash test",
    "currency": "KRW",
    "timezone": "UTC",
    "earning": {"mode": "per_full_unit", "points": 10, "per_amount": "1000"},
    "redemption": {"min_points": 0, "step": 1, "max_share": "1"},
}


@dataclass
class Write:
    ref: str
    member: int
    kind: str  # earn | redeem | adjust
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    status: int | None = None  # None: cut off, outcome unknown to the client
    answer: Any = None


def _plan(thread: int, i: int, members: list[int], keys: dict[str, str]) -> Write:
    """Earns and redemptions from a till (`pos`), every fifth write a back-office adjustment."""
    ref = f"T{thread}-{i}"
    member = members[(thread + i) % len(members)]
    headers = auth(keys["pos"])
    if i % 5 == 4:
        body = {"member": {"id": member}, "points": 7, "reason": f"crash test {ref}"}
        headers = {**auth(keys["admin"]), "Idempotency-Key": ref}
        return Write(ref, member, "adjust", "/api/v1/programs/crash/adjustments", body, headers)
    # Every seventh sale asks for more points than anyone holds: a refusal the server must
    # acknowledge (409) without leaving anything behind.
    spend = 1_000_000 if i % 7 == 6 else 100 if i % 3 == 2 else 0
    body = {
        "external_id": ref,
        "member": {"id": member},
        "amount": str(spend) if spend else "5000",
        "points_to_spend": spend,
    }
    kind = "redeem" if spend else "earn"
    return Write(ref, member, kind, "/api/v1/programs/crash/purchases", body, headers)


def _setup(base: str, admin: dict[str, str]) -> list[int]:
    with httpx.Client(base_url=base, headers=admin, timeout=30) as http:
        assert http.post("/api/v1/programs", json=PROGRAM).status_code == 201
        members = []
        for n in range(MEMBERS):
            r = http.post("/api/v1/members", json={"name": f"Crash {n}", "program": "crash"})
            assert r.status_code == 201, r.text
            members.append(r.json()["id"])
            body = {"member": {"id": members[-1]}, "points": FUNDING, "reason": "opening"}
            assert http.post("/api/v1/programs/crash/adjustments", json=body).status_code == 201
        return members


def _load(base: str, members: list[int], keys: dict[str, str], server: LiveServer) -> list[Write]:
    """THREADS clients write until ACKED_BEFORE_KILL are acknowledged, then the server dies
    under them; each client records what it sent and what (if anything) came back."""
    writes: list[Write] = []
    lock = threading.Lock()
    acked = Counter[str]()
    dead = threading.Event()

    def client(t: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as http:
            i = 0
            while not dead.is_set():
                w = _plan(t, i, members, keys)
                with lock:
                    writes.append(w)
                try:
                    r = http.post(w.path, json=w.body, headers=w.headers)
                except httpx.HTTPError:
                    return  # cut off: the outcome is unknown to this client
                w.status = r.status_code  # anything but 2xx or 409 fails the test below
                with contextlib.suppress(ValueError):
                    w.answer = r.json()
                if r.is_success:
                    with lock:
                        acked["ok"] += 1
                i += 1

    threads = [threading.Thread(target=client, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + LOAD_SECONDS_MAX
    while acked["ok"] < ACKED_BEFORE_KILL and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill9()  # mid-load: the clients still have requests in flight
    dead.set()
    for thread in threads:
        thread.join(30)
    return writes


def test_every_acknowledged_write_survives_kill_9(db, keys, tmp_path, monkeypatch):
    admin = auth(keys["admin"])
    log = tmp_path / "serve.log"
    first = LiveServer(db.url, log, workers=2).start()
    try:
        members = _setup(first.base, admin)
        writes = _load(first.base, members, keys, first)
    finally:
        first.kill9()
    acked = [w for w in writes if w.status is not None and 200 <= w.status < 300]
    refused = [w for w in writes if w.status is not None and w.status >= 400]
    cut_off = [w for w in writes if w.status is None]
    assert len(acked) >= ACKED_BEFORE_KILL // 2, f"only {len(acked)} writes acknowledged"
    assert refused and {w.status for w in refused} == {409}, Counter(w.status for w in refused)
    assert cut_off, "the server was killed with nothing in flight: the test proved nothing"

    with (
        LiveServer(db.url, log, workers=2) as second,
        httpx.Client(base_url=second.base, headers=admin, timeout=30) as http,
    ):
        for w in acked:
            if w.kind == "adjust":
                again = http.post(w.path, json=w.body, headers=w.headers)
                assert again.headers.get("Idempotent-Replayed") == "true", (w.ref, again.text)
                assert (again.status_code, again.json()) == (w.status, w.answer), w.ref
            else:
                stored = http.get(f"/api/v1/programs/crash/purchases/{w.ref}")
                assert stored.status_code == 200, (w.ref, stored.text)
                kept = {k: stored.json()[k] for k in ("member_id", "points_earned", "points_spent")}
                assert kept == {k: w.answer[k] for k in kept}, w.ref
        for w in refused:
            assert w.answer["error"] == "insufficient_points", w.answer
            if w.kind != "adjust":
                gone = http.get(f"/api/v1/programs/crash/purchases/{w.ref}")
                assert gone.status_code == 404, (w.ref, gone.text)
        # A till retries what it never got an answer for: each lands exactly once.
        for w in cut_off:
            retry = http.post(w.path, json=w.body, headers=w.headers)
            assert retry.status_code in (201, 409), (w.ref, retry.text)
            if retry.status_code == 409:
                assert retry.json()["error"] == "insufficient_points", retry.text
            w.status, w.answer = retry.status_code, retry.json()
        # Each balance is the opening plus exactly the answers the clients hold, no more.
        for member in members:
            expected = FUNDING + sum(
                (
                    w.answer["entry"]["points"]
                    if w.kind == "adjust"
                    else w.answer["points_earned"] - w.answer["points_spent"]
                )
                for w in writes
                if w.member == member and w.status == 201
            )
            account = http.get(f"/api/v1/programs/crash/members/{member}/account").json()
            assert account["totals"]["balance"] == expected, (member, account)
        check = http.get("/api/v1/check").json()
        assert check["ok"] is True and check["violations"] == [], check
    # `patron check` itself, in this process (the same command an operator runs after a crash).
    monkeypatch.setenv("PATRON_DATABASE_URL", db.url)  # --database-url sets it; undone after
    get_settings.cache_clear()
    try:
        done = CliRunner().invoke(cli_app, ["check", "--database-url", db.url])
    finally:
        get_settings.cache_clear()
    assert done.exit_code == 0 and "ledger consistent" in done.output, done.output
