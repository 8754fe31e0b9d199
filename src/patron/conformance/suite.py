"""The conformance checks: what someone trusting a Patron ledger needs to see hold, asked of a
live deployment through its public API and nothing else.

Everything runs in scratch programs the suite creates (codes `conformance-<run>` and
`conformance-<run>-pe`). The API has no way to delete a program — the ledger is append-only —
so at the end the suite retires them instead: the programs are renamed "… (finished)", their
members blocked and the program-limited `pos` key it made for itself revoked.

Each check returns its evidence (one line per fact looked at, passed or not) so a failure says
exactly which answer broke which promise.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from typing import Any

import httpx

API = "/api/v1"
RETRIES_ON_503 = 5  # `database_unavailable` asks the caller to retry with the same key


class SetupError(Exception):
    """The suite could not start: the server is unreachable or the key cannot do what it needs."""


@dataclass
class CheckResult:
    name: str
    title: str
    passed: bool
    seconds: float
    evidence: list[str]
    failures: list[str]


@dataclass
class SuiteReport:
    url: str
    run_id: str
    programs: list[str]
    started_at: datetime
    results: list[CheckResult] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.results) and all(r.passed for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]


class Evidence:
    """What a check looked at: each expectation is kept, met or not; the check goes on after a
    miss so one run shows every broken promise."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failures: list[str] = []

    def note(self, text: str) -> None:
        self.lines.append(f"· {text}")

    def expect(self, ok: bool, text: str) -> bool:
        self.lines.append(("✓ " if ok else "✗ ") + text)
        if not ok:
            self.failures.append(text)
        return ok

    def expect_error(self, response: httpx.Response, status: int | None, code: str | None) -> bool:
        """A refusal: the given status (any 4xx when None) with {"error": code, "detail": …}."""
        body = _json(response)
        shaped = (
            isinstance(body, dict)
            and isinstance(body.get("error"), str)
            and isinstance(body.get("detail"), str)
        )
        status_ok = response.status_code == status if status else 400 <= response.status_code < 500
        code_ok = code is None or (shaped and body["error"] == code)
        want = f"{status or '4xx'} {code or '{error, detail}'}"
        said = f"{body['error']}: {body['detail'][:60]}" if shaped else _short(response, 80)
        return self.expect(
            status_ok and shaped and code_ok,
            f"{_req(response)} → {response.status_code} {said} (want {want})",
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _short(response: httpx.Response, limit: int = 140) -> str:
    text = response.text.replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _req(response: httpx.Response) -> str:
    request = response.request
    return f"{request.method} {request.url.path}"


class Api:
    """The deployment's API with two keys: the operator's admin key and the scratch `pos` key."""

    def __init__(self, url: str, admin_key: str, *, timeout: float) -> None:
        self.url = url.rstrip("/")
        self.admin_key = admin_key
        self.pos_key = ""
        # Enough connections that every racer of --concurrency (90 at most) has its own.
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
        self.http = httpx.Client(base_url=self.url, timeout=timeout, limits=limits)

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None,
        body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if content is not None:
            sent.setdefault("Content-Type", "application/json")
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        for attempt in range(RETRIES_ON_503 + 1):
            response = self.http.request(
                method,
                API + path,
                json=body if content is None else None,
                content=content,
                headers=sent,
                **extra,
            )
            if response.status_code != 503 or attempt == RETRIES_ON_503:
                return response
            time.sleep(0.2 * (attempt + 1))  # what a till does: same request, same key, later
        raise AssertionError("unreachable")

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.call(method, path, key=self.admin_key, **kw)

    def pos(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.call(method, path, key=self.pos_key, **kw)


@dataclass
class Scratch:
    api: Api
    run_id: str
    program: str  # earns 10 points per 1,000 KRW, no pending, 12-month expiry
    program_pe: str  # pending 1 day, expiry 3 days (UTC): pending and expiry in one afternoon
    concurrency: int
    pos_key_id: int = 0
    created: list[str] = field(default_factory=list)
    members: list[int] = field(default_factory=list)
    _seq: int = 0

    def ref(self, what: str) -> str:
        """A fresh order id / idempotency key, unique to this run."""
        self._seq += 1
        return f"{self.run_id}-{what}-{self._seq}"

    def member(self, program: str | None = None) -> int:
        program = program or self.program
        response = self.api.pos(
            "POST",
            "/members",
            body={"name": f"Conformance {len(self.members) + 1}", "program": program},
        )
        _must(response, 201, "enroll a scratch member")
        member_id = int(response.json()["id"])
        self.members.append(member_id)
        return member_id

    def fund(self, member_id: int, points: int, program: str | None = None) -> None:
        response = self.api.admin(
            "POST",
            f"/programs/{program or self.program}/adjustments",
            body={"member": {"id": member_id}, "points": points, "reason": "conformance funding"},
            headers={"Idempotency-Key": self.ref("fund")},
        )
        _must(response, 201, "fund a scratch member")

    def totals(self, member_id: int, program: str | None = None) -> dict[str, int]:
        response = self.api.pos(
            "GET", f"/programs/{program or self.program}/members/{member_id}/account"
        )
        _must(response, 200, "read an account")
        return dict(response.json()["totals"])

    def purchase(
        self, member_id: int, amount: str, *, spend: int = 0, program: str | None = None, **extra
    ) -> httpx.Response:
        body = {
            "external_id": self.ref("order"),
            "member": {"id": member_id},
            "amount": amount,
            "points_to_spend": spend,
            **extra,
        }
        return self.api.pos("POST", f"/programs/{program or self.program}/purchases", body=body)


class StepFailed(Exception):
    """A call a check depends on did not answer as it must; the check stops there."""


def _must(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        raise StepFailed(f"{what}: {_req(response)} → {response.status_code} {_short(response)}")


def run_together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run the calls on threads released together by a barrier; results or exceptions."""
    barrier = threading.Barrier(len(calls), timeout=60)

    def outcome(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except Exception as exc:  # each caller's own outcome, judged by the check
            return exc

    with ThreadPoolExecutor(max_workers=len(calls), initializer=barrier.wait) as pool:
        return list(pool.map(outcome, calls))


# ---------------------------------------------------------------------------------------------
# The checks


def check_key_reach(s: Scratch, ev: Evidence) -> None:
    """Calls without a key, or with a key that lacks the scope or the program, are refused."""
    api = s.api
    ev.expect_error(api.call("GET", f"/programs/{s.program}", key=None), 401, None)
    ev.expect_error(api.call("GET", "/check", key="ptr_nothing_here"), 401, None)
    ev.expect_error(api.pos("GET", "/check"), 403, None)
    ev.expect_error(
        api.pos(
            "POST",
            f"/programs/{s.program}/adjustments",
            body={"member": {"id": 1}, "points": 1, "reason": "conformance reach"},
        ),
        403,
        None,
    )
    ev.note(f"the scratch key is `pos`, limited to {s.program} and {s.program_pe}")


def check_double_spend(s: Scratch, ev: Evidence) -> None:
    """N concurrent redemptions of a balance that covers one: exactly one succeeds."""
    member = s.member()
    s.fund(member, 1000)
    n = s.concurrency
    path = f"/programs/{s.program}/purchases"

    def redeem(i: int) -> Callable[[], httpx.Response]:
        ref = s.ref(f"race{i}")
        body = {
            "external_id": ref,
            "member": {"id": member},
            "amount": "1000",
            "points_to_spend": 1000,
        }
        return lambda: s.api.pos("POST", path, body=body, headers={"Idempotency-Key": ref})

    outcomes = run_together([redeem(i) for i in range(n)])
    crashed = [o for o in outcomes if isinstance(o, Exception)]
    answers = [o for o in outcomes if isinstance(o, httpx.Response)]
    statuses = Counter(r.status_code for r in answers)
    ev.note(f"{n} concurrent redemptions of 1,000 points from a balance of 1,000: {dict(statuses)}")
    ev.expect(not crashed, f"every request answered ({len(crashed)} transport errors)")
    accepted = [r for r in answers if r.status_code == 201]
    ev.expect(len(accepted) == 1, f"exactly one accepted ({len(accepted)} were)")
    refused = [r for r in answers if r.status_code != 201]
    codes = Counter((_json(r) or {}).get("error") for r in refused)
    ev.expect(
        set(codes) <= {"insufficient_points"},
        f"every other one refused 409 insufficient_points ({dict(codes)})",
    )
    ev.expect(all(r.status_code == 409 for r in refused), "the refusals are 409s")
    balances = [(_json(r) or {}).get("totals", {}).get("balance") for r in accepted]
    ev.expect(
        all(isinstance(b, int) and b >= 0 for b in balances),
        f"no answer shows a negative balance ({balances})",
    )
    totals = s.totals(member)
    ev.expect(
        (totals["balance"], totals["redeemed"], totals["debt"]) == (0, 1000, 0),
        f"afterwards balance 0, redeemed 1000, debt 0 (balance {totals['balance']}, "
        f"redeemed {totals['redeemed']}, debt {totals['debt']})",
    )
    entries = s.api.pos(
        "GET", f"/programs/{s.program}/members/{member}/entries?kind=redeem&limit=500"
    )
    _must(entries, 200, "read the history")
    ev.expect(
        len(entries.json()["items"]) == 1,
        f"one redeem entry in the history ({len(entries.json()['items'])})",
    )


def check_idempotent_replays(s: Scratch, ev: Evidence) -> None:
    """Same key, same answer (also when sent concurrently); same key, other body: 409."""
    member = s.member()
    path = f"/programs/{s.program}/adjustments"
    key = s.ref("idem")
    body = {"member": {"id": member}, "points": 50, "reason": "conformance replay"}
    first = s.api.admin("POST", path, body=body, headers={"Idempotency-Key": key})
    again = s.api.admin("POST", path, body=body, headers={"Idempotency-Key": key})
    ev.expect(first.status_code == 201, f"first adjustment → {first.status_code}")
    ev.expect(
        (again.status_code, _json(again)) == (first.status_code, _json(first)),
        f"the replay answers the same status and body ({again.status_code})",
    )
    ev.expect(
        again.headers.get("Idempotent-Replayed") == "true",
        f"the replay says Idempotent-Replayed: {again.headers.get('Idempotent-Replayed')}",
    )
    other = {**body, "points": 51}
    ev.expect_error(
        s.api.admin("POST", path, body=other, headers={"Idempotency-Key": key}),
        409,
        "idempotency_conflict",
    )

    key2 = s.ref("idem-concurrent")
    body2 = {"member": {"id": member}, "points": 30, "reason": "conformance concurrent replay"}
    n = min(s.concurrency, 10)
    answers = run_together(
        [lambda: s.api.admin("POST", path, body=body2, headers={"Idempotency-Key": key2})] * n
    )
    responses = [a for a in answers if isinstance(a, httpx.Response)]
    ev.expect(
        len(responses) == n and all(r.status_code == 201 for r in responses),
        f"{n} concurrent sends of one key all answer 201 "
        f"({Counter(getattr(a, 'status_code', type(a).__name__) for a in answers)})",
    )
    bodies = {json.dumps(_json(r), sort_keys=True) for r in responses}
    ev.expect(len(bodies) == 1, f"…with one body ({len(bodies)} different)")
    fresh = [r for r in responses if r.headers.get("Idempotent-Replayed") != "true"]
    ev.expect(len(fresh) == 1, f"…of which exactly one is not a replay ({len(fresh)})")

    order = {"external_id": s.ref("order"), "member": {"id": member}, "amount": "12000"}
    purchases = f"/programs/{s.program}/purchases"
    one = s.api.pos("POST", purchases, body=order)
    two = s.api.pos("POST", purchases, body=order)
    ev.expect(one.status_code == 201, f"an order → {one.status_code}")
    ev.expect(
        (two.status_code, _json(two)) == (one.status_code, _json(one)),
        "the same order sent again (same external_id, no key) gets the first answer",
    )
    ev.expect_error(
        s.api.pos("POST", purchases, body={**order, "amount": "13000"}), 409, "duplicate_order"
    )
    totals = s.totals(member)
    ev.expect(
        (totals["adjusted"], totals["earned"]) == (80, 120),
        f"the account holds each write once: adjusted 80, earned 120 "
        f"(adjusted {totals['adjusted']}, earned {totals['earned']})",
    )


def check_partial_refunds(s: Scratch, ev: Evidence) -> None:
    """Three partial refunds give back exactly what the purchase spent and take back exactly
    what it earned — no rounding drift — and a fourth is refused."""
    member = s.member()
    s.fund(member, 2000)
    sale = s.purchase(member, "25800", spend=1000)
    _must(sale, 201, "a purchase spending 1,000 points")
    order = sale.json()
    earned, spent = order["points_earned"], order["points_spent"]
    ev.note(f"purchase of 25,800 KRW: earned {earned}, spent {spent}")
    ev.expect(
        (earned, spent) == (240, 1000),
        f"earned 240 (10 per full 1,000 paid in money), spent 1000 ({earned}, {spent})",
    )
    path = f"/programs/{s.program}/purchases/{order['external_id']}/refunds"
    reversed_, restored = [], []
    last: httpx.Response | None = None
    for i in range(3):
        body = {"refund_id": f"r{i + 1}", "amount": "8600"}
        last = s.api.pos("POST", path, body=body)
        _must(last, 201, f"partial refund {i + 1} of 3")
        reversed_.append(last.json()["points_reversed"])
        restored.append(last.json()["points_restored"])
    ev.note(f"refunds of 8,600 ×3: reversed {reversed_}, restored {restored}")
    ev.expect(sum(reversed_) == earned, f"reversed sums to earned: {sum(reversed_)} = {earned}")
    ev.expect(sum(restored) == spent, f"restored sums to spent: {sum(restored)} = {spent}")
    assert last is not None
    replay = s.api.pos("POST", path, body={"refund_id": "r3", "amount": "8600"})
    ev.expect(
        (replay.status_code, _json(replay)) == (201, _json(last)),
        f"refund r3 sent again gets its first answer ({replay.status_code})",
    )
    ev.expect_error(
        s.api.pos("POST", path, body={"refund_id": "r4", "amount": "1"}),
        409,
        "refund_exceeds_purchase",
    )
    totals = s.totals(member)
    ev.expect(
        (totals["balance"], totals["earned"], totals["redeemed"]) == (2000, 0, 0),
        f"the member is back where she was: balance 2000, earned 0, redeemed 0 "
        f"({totals['balance']}, {totals['earned']}, {totals['redeemed']})",
    )


def _expires_at(earned_at: datetime, days: int) -> datetime:
    """The `days` policy in UTC: valid through the day `days` days on, over at its midnight."""
    last: date = earned_at.astimezone(UTC).date() + timedelta(days=days)
    return datetime.combine(last + timedelta(days=1), dtime(0), tzinfo=UTC)


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_pending_and_expiry(s: Scratch, ev: Evidence) -> None:
    """Pending points cannot be spent, matured ones can, expired ones count as expired at once.

    The server's clock cannot be moved from outside, so time is driven the one way the API
    allows: sales dated in the past (`occurred_at`, as an offline till sends them)."""
    p = s.program_pe
    member = s.member(p)
    now = s.purchase(member, "10000", program=p)
    _must(now, 201, "a sale now")
    t = now.json()["totals"]
    ev.expect(
        (t["pending"], t["available"]) == (100, 0),
        f"a sale now: 100 points pending, 0 available ({t['pending']}, {t['available']})",
    )
    lots = s.api.pos("GET", f"/programs/{p}/members/{member}/lots")
    _must(lots, 200, "read the lots")
    lot = lots.json()[0]
    earned_at = _instant(lot["earned_at"])
    ev.expect(
        lot["pending"] is True
        and _instant(lot["pending_until"]) == earned_at + timedelta(days=1)
        and _instant(lot["expires_at"]) == _expires_at(earned_at, 3),
        f"its lot: pending until earned + 1 day, expires at midnight after day +3 "
        f"(pending_until {lot['pending_until']}, expires_at {lot['expires_at']})",
    )
    ev.expect_error(s.purchase(member, "100", spend=100, program=p), 409, "insufficient_points")

    clock = datetime.now(UTC)
    matured = s.purchase(
        member, "10000", program=p, occurred_at=(clock - timedelta(hours=30)).isoformat()
    )
    _must(matured, 201, "a sale 30 hours ago")
    t = matured.json()["totals"]
    ev.expect(
        (t["available"], t["pending"]) == (100, 100),
        f"a sale 30 h ago (past its pending day): 100 available, 100 pending "
        f"({t['available']}, {t['pending']})",
    )
    old = s.purchase(
        member, "10000", program=p, occurred_at=(clock - timedelta(days=10)).isoformat()
    )
    _must(old, 201, "a sale 10 days ago")
    t = old.json()["totals"]
    ev.expect(
        (t["expired"], t["available"], t["balance"]) == (100, 100, 100),
        f"a sale 10 days ago (past its 3 days): its 100 points count as expired at once "
        f"(expired {t['expired']}, available {t['available']}, balance {t['balance']})",
    )
    spend = s.purchase(member, "100", spend=100, program=p)
    ev.expect(
        spend.status_code == 201 and spend.json()["points_spent"] == 100,
        f"the 100 matured points can be spent ({spend.status_code})",
    )
    ev.expect_error(s.purchase(member, "100", spend=100, program=p), 409, "insufficient_points")
    entries = s.api.pos("GET", f"/programs/{p}/members/{member}/entries?kind=expire")
    _must(entries, 200, "read the expire entries")
    items = entries.json()["items"]
    old_at = _instant(old.json()["occurred_at"])
    ev.expect(
        [(e["points"], _instant(e["occurred_at"])) for e in items]
        == [(-100, _expires_at(old_at, 3))],
        "the write brought the account up to date: one expire entry of −100 dated at the "
        f"lot's expiry ({[(e['points'], e['occurred_at']) for e in items]})",
    )
    ev.note(
        "the server clock cannot be set from outside: time was moved with backdated sales; "
        "POST /expire (deployment-wide) is not run"
    )


def _bad_inputs(s: Scratch, member: int) -> Iterator[tuple[str, httpx.Response]]:
    purchases = f"/programs/{s.program}/purchases"
    ok = {"external_id": s.ref("bad"), "member": {"id": member}, "amount": "1000"}

    def raw(text: str, path: str = purchases) -> httpx.Response:
        return s.api.pos("POST", path, content=text.encode("utf-8", "surrogatepass"))

    yield "malformed JSON", raw('{"external_id": ')
    yield "a JSON array for an object", raw("[]")
    yield (
        "a form body",
        s.api.pos(
            "POST",
            purchases,
            content=b"external_id=x&amount=1",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
    )
    yield (
        "wrong types",
        s.api.pos("POST", purchases, body={**ok, "member": {"id": "abc"}, "amount": [1]}),
    )
    yield (
        "a NUL byte in external_id",
        s.api.pos("POST", purchases, body={**ok, "external_id": "A\u0000B"}),
    )
    yield (
        "a NUL byte in a member's name",
        s.api.pos("POST", "/members", body={"name": "Kim\u0000", "program": s.program}),
    )
    yield (
        "a lone surrogate",
        raw(f'{{"external_id": "X\\ud800", "member": {{"id": {member}}}, "amount": "1000"}}'),
    )

    def with_literal(name: str, literal: str) -> str:
        """A valid order with one field set to a number JSON can write but no machine holds."""
        fields = {"external_id": s.ref("bad"), "member": {"id": member}, "amount": "1000"}
        fields.pop(name, None)
        return json.dumps(fields)[:-1] + f', "{name}": {literal}}}'

    yield "a 400-digit integer", raw(with_literal("points_to_spend", "9" * 400))
    yield "a 41-digit amount", s.api.pos("POST", purchases, body={**ok, "amount": "1" + "0" * 40})
    yield "an overflowing float", raw(with_literal("amount", "1e400"))
    yield "a negative amount", s.api.pos("POST", purchases, body={**ok, "amount": "-100"})
    yield (
        "a member id past 64 bits",
        s.api.pos("POST", purchases, body={**ok, "member": {"id": 2**64}}),
    )
    yield (
        "2^63 points",
        s.api.admin(
            "POST",
            f"/programs/{s.program}/adjustments",
            body={"member": {"id": member}, "points": 2**63, "reason": "conformance overflow"},
        ),
    )
    yield (
        "a 10,000-character order id",
        s.api.pos("POST", purchases, body={**ok, "external_id": "L" * 10_000}),
    )


def check_bad_input(s: Scratch, ev: Evidence) -> None:
    """Malformed or absurd input gets a 4xx with {error, detail}, never a 5xx, and writes nothing."""
    member = s.member()
    for label, response in _bad_inputs(s, member):
        body = _json(response)
        shaped = (
            isinstance(body, dict)
            and isinstance(body.get("error"), str)
            and isinstance(body.get("detail"), str)
        )
        said = f"{body['error']}: {body['detail'][:80]}" if shaped else _short(response, 80)
        ev.expect(
            400 <= response.status_code < 500 and shaped,
            f"{label} → {response.status_code} {said}",
        )
    totals = s.totals(member)
    ev.expect(
        not any(totals[k] for k in ("earned", "redeemed", "adjusted", "pending", "balance")),
        f"nothing was written to the member's account ({totals})",
    )


def check_invariants(s: Scratch, ev: Evidence) -> None:
    """The deployment's own ledger check (GET /check) is clean after everything above."""
    response = s.api.admin("GET", "/check", timeout=600)
    _must(response, 200, "run the ledger check")
    report = response.json()
    violations = report.get("violations") or []
    ev.note(
        f"checked {report.get('accounts')} accounts, {report.get('entries')} entries, "
        f"{report.get('lots')} lots"
    )
    ev.expect(report.get("ok") is True and not violations, f"ok, {len(violations)} violations")
    for line in violations[:10]:
        ev.note(f"violation: {line}")


CHECKS: dict[str, tuple[str, Callable[[Scratch, Evidence], None]]] = {
    "key_reach": ("keys reach only what they should", check_key_reach),
    "double_spend": ("concurrent redemptions spend a balance once", check_double_spend),
    "idempotent_replays": (
        "replays get the first answer; changed bodies 409",
        check_idempotent_replays,
    ),
    "partial_refunds": ("partial refunds sum exactly to the purchase", check_partial_refunds),
    "pending_and_expiry": ("pending and expired points cannot be spent", check_pending_and_expiry),
    "bad_input": ("bad input: 4xx with {error, detail}, never 5xx", check_bad_input),
    "invariants": ("the ledger invariant check is clean", check_invariants),
}


# ---------------------------------------------------------------------------------------------
# Set-up, run, clean-up


def _program(code: str, name: str, *, pending_days: int, expiry: dict[str, Any]) -> dict[str, Any]:
    return {
        "code": code,
        "name": name,
        "currency": "KRW",
        "timezone": "UTC",
        "earning": {"mode": "per_full_unit", "points": 10, "per_amount": "1000"},
        "expiry": expiry,
        "pending_days": pending_days,
        "redemption": {"min_points": 0, "step": 1, "max_share": "1"},
        "negative_balance": "allow_debt",
    }


def _setup(api: Api, scratch: Scratch) -> None:
    try:
        health = api.http.get("/health")
    except httpx.HTTPError as exc:
        raise SetupError(f"{api.url} is not reachable: {exc}") from exc
    if health.status_code != 200:
        raise SetupError(f"GET /health answered {health.status_code}: {_short(health)}")
    name = f"conformance run {scratch.run_id}"
    for code, body in (
        (
            scratch.program,
            _program(
                scratch.program, name, pending_days=0, expiry={"kind": "months", "months": 12}
            ),
        ),
        (
            scratch.program_pe,
            _program(
                scratch.program_pe,
                name + " (pending, expiry)",
                pending_days=1,
                expiry={"kind": "days", "days": 3},
            ),
        ),
    ):
        response = api.admin("POST", "/programs", body=body)
        if response.status_code in (401, 403):
            raise SetupError(
                "the key cannot create programs: it needs the admin scope and no program limit "
                f"({response.status_code} {_short(response)})"
            )
        if response.status_code != 201:
            raise SetupError(f"creating program {code}: {response.status_code} {_short(response)}")
        scratch.created.append(code)
    key = api.admin(
        "POST",
        "/api-keys",
        body={
            "name": f"conformance {scratch.run_id}",
            "scopes": ["pos"],
            "programs": [scratch.program, scratch.program_pe],
        },
    )
    if key.status_code != 201:
        raise SetupError(f"creating the scratch pos key: {key.status_code} {_short(key)}")
    api.pos_key = key.json()["key"]
    scratch.pos_key_id = int(key.json()["id"])


def _retire(api: Api, scratch: Scratch) -> list[str]:
    """No program can be deleted; leave the scratch ones inert and say so."""
    notes: list[str] = []
    if scratch.pos_key_id:
        r = api.admin("DELETE", f"/api-keys/{scratch.pos_key_id}")
        notes.append(f"revoked scratch key {scratch.pos_key_id}: {r.status_code}")
    blocked = Counter(
        api.admin(
            "POST", f"/members/{m}/block", body={"reason": "conformance scratch member"}
        ).status_code
        for m in scratch.members
    )
    notes.append(f"blocked {len(scratch.members)} scratch members: {dict(blocked)}")
    for code in scratch.created:
        r = api.admin(
            "PATCH",
            f"/programs/{code}",
            body={"name": f"conformance run {scratch.run_id} (finished; scratch, no deletion API)"},
        )
        notes.append(f"renamed program {code} as finished: {r.status_code}")
    return notes


@contextmanager
def _timer() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    yield lambda: time.perf_counter() - start


def run_suite(
    url: str,
    admin_key: str,
    *,
    only: list[str] | None = None,
    concurrency: int = 20,
    timeout: float = 30.0,
    on_result: Callable[[CheckResult], None] | None = None,
) -> SuiteReport:
    """Create the scratch programs, run the checks (all, or `only` those), retire the programs.
    Raises SetupError when the suite cannot start."""
    unknown = sorted(set(only or ()) - set(CHECKS))
    if unknown:
        raise SetupError(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
    started = datetime.now(UTC)
    run_id = f"{started:%Y%m%d%H%M%S}-{secrets.token_hex(3)}"
    api = Api(url, admin_key, timeout=timeout)
    scratch = Scratch(
        api=api,
        run_id=run_id,
        program=f"conformance-{run_id}",
        program_pe=f"conformance-{run_id}-pe",
        concurrency=max(2, concurrency),
    )
    report = SuiteReport(
        url=api.url,
        run_id=run_id,
        programs=[scratch.program, scratch.program_pe],
        started_at=started,
    )
    try:
        _setup(api, scratch)
        for name, (title, check) in CHECKS.items():
            if only and name not in only:
                continue
            ev = Evidence()
            with _timer() as elapsed:
                try:
                    check(scratch, ev)
                except StepFailed as exc:
                    ev.expect(False, str(exc))
                except httpx.HTTPError as exc:
                    ev.expect(False, f"transport error: {type(exc).__name__}: {exc}")
                except (KeyError, TypeError, ValueError, IndexError) as exc:
                    ev.expect(False, f"unexpected answer shape: {type(exc).__name__}: {exc}")
                seconds = elapsed()
            result = CheckResult(name, title, not ev.failures, seconds, ev.lines, ev.failures)
            report.results.append(result)
            if on_result:
                on_result(result)
        return report
    finally:
        if scratch.created:
            try:
                report.cleanup = _retire(api, scratch)
            except httpx.HTTPError as exc:
                report.cleanup = [f"clean-up failed: {exc}"]
        api.close()
