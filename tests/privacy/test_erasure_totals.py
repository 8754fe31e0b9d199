"""Erasure keeps every amount: on the demo's year of sales, redemptions, refunds, expiry and
tiers, erasing members leaves `patron check` clean and the reports (liability, period, journal,
members) and each erased member's account totals unchanged to the point — on both engines.
And a redacted audit record is accepted by `patron audit verify`, an edited one is not."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text

from patron import clock, demo
from patron.audit import chain
from patron.audit.service import CLI
from patron.check import run_check
from patron.ledger import views as ledger_views
from patron.ledger.models import Account, Entry, Lot
from patron.members.models import Member
from patron.privacy import erasure
from patron.privacy.models import AuditRedaction
from patron.programs.service import get_program
from tests.conftest import T0, auth

REPORTS = ("liability", "period?from=2025-03-01&to=2026-03-02", "journal?from=2025-03-01&to=2026-03-02",
           "members")  # fmt: skip


def _totals(db, client, key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for report in REPORTS:
        answer = client.get(f"/api/v1/programs/bakery/reports/{report}", headers=auth(key))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        body.pop("generated_at", None)
        out[report] = body
    with db.unit_of_work(readonly=True) as s:
        out["entries"] = s.execute(
            select(Entry.kind, func.count(), func.sum(Entry.points)).group_by(Entry.kind)
            .order_by(Entry.kind)
        ).all()  # fmt: skip
        out["lots"] = s.execute(select(func.count(), func.sum(Lot.remaining))).one()
        program = get_program(s, "bakery")
        out["accounts"] = {
            a.member_id: ledger_views.totals(s, a, clock.now()).model_dump(mode="json")
            for a in s.scalars(select(Account).where(Account.program_id == program.id))
        }
        check = run_check(s)
        assert check.ok, check.violations
    return out


@pytest.fixture
def loaded(db, frozen):
    started = time.perf_counter()
    result = demo.load(db, now=T0, members_count=15, days=420)
    return result, time.perf_counter() - started


def test_erasure_keeps_every_amount_and_check_clean(db, loaded, client):
    result, _seconds = loaded
    before = _totals(db, client, result.admin_key)
    with db.unit_of_work(readonly=True) as s:
        # The walk-through member (most history, a tier, a coupon) and the four busiest others.
        busiest = s.execute(
            select(Account.member_id).join(Entry, Entry.account_id == Account.id)
            .group_by(Account.member_id).order_by(func.count().desc(), Account.member_id).limit(5)
        ).scalars().all()  # fmt: skip
        program_id = get_program(s, "bakery").id
    assert len(busiest) == 5
    clock.freeze(T0 + timedelta(minutes=1))
    with db.unit_of_work() as s:
        program = get_program(s, "bakery")
        for member_id in busiest:
            erasure.erase(s, member_id, program=program, reason="test", source="cli", actor=CLI,
                          now=clock.now())  # fmt: skip
    after = _totals(db, client, result.admin_key)
    assert {k for k, _n, _sum in before["entries"]} >= {"earn", "redeem", "expire", "reverse"}
    assert sum(before["accounts"][m]["balance"] for m in busiest) > 0
    assert after == before
    liability = after["liability"]
    print(  # the figures quoted in docs/privacy.md (pytest -s)
        f"\n[{db.dialect}] erased {len(busiest)} members; entries by kind "
        f"{[(k, n, p) for k, n, p in before['entries']]}; lots {tuple(before['lots'])}; "
        f"liability { ({k: v for k, v in liability.items() if not isinstance(v, (list, dict))}) }"
    )
    with db.unit_of_work(readonly=True) as s:
        erased = s.scalars(select(Member).where(Member.id.in_(busiest))).all()
        assert {m.status for m in erased} == {"erased"}
        assert program_id


def test_a_redacted_record_verifies_and_an_edited_one_is_still_caught(db, frozen, client, keys):
    admin = auth(keys["admin"])
    assert client.post("/api/v1/programs", json=_bakery(), headers=admin).status_code == 201
    ids = []
    for n, name in enumerate(("Kim", "Lee")):
        answer = client.post(
            "/api/v1/members",
            json={"name": name, "phone": f"010-1111-000{n}", "program": "bakery"},
            headers=admin,
        )
        assert answer.status_code == 201
        ids.append(answer.json()["id"])
    report = chain.seal_pending(db, now=T0 + timedelta(minutes=1), block_size=3)
    assert report.records > 0
    erased = client.post(
        f"/api/v1/programs/bakery/members/{ids[0]}/privacy/erasure", json={}, headers=admin
    )
    assert erased.status_code == 200, erased.text
    with db.unit_of_work(readonly=True) as s:
        verified = chain.verify(s)
        redactions = s.scalar(select(func.count()).select_from(AuditRedaction))
    assert verified.ok, [str(f) for f in verified.findings]
    assert verified.redacted_records == redactions == erased.json()["audit_redacted"] >= 2
    over_http = client.get("/api/v1/audit/verify", headers=admin).json()
    assert (over_http["ok"], over_http["redacted_records"]) == (True, redactions)
    # A plain SQL edit of a sealed record of the other member is caught as before.
    with db.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET actor = 'cli:forged' WHERE subject_id = :m"),
            {"m": str(ids[1])},
        )
    with db.unit_of_work(readonly=True) as s:
        tampered = chain.verify(s)
    assert not tampered.ok and {f.kind for f in tampered.findings} == {chain.EDITED}
    assert tampered.redacted_records == verified.redacted_records


def test_editing_a_redacted_record_or_faking_a_redaction_is_caught(db, frozen, client, keys):
    admin = auth(keys["admin"])
    assert client.post("/api/v1/programs", json=_bakery(), headers=admin).status_code == 201
    answer = client.post(
        "/api/v1/members", json={"name": "Kim", "phone": "010-1111-0000", "program": "bakery"},
        headers=admin,
    )  # fmt: skip
    member_id = answer.json()["id"]
    chain.seal_pending(db, now=T0 + timedelta(minutes=1))
    erased = client.post(
        f"/api/v1/programs/bakery/members/{member_id}/privacy/erasure", json={}, headers=admin
    )
    assert erased.status_code == 200
    with db.engine.begin() as conn:
        # Someone rewrites a redacted record's actor: its digest no longer matches the redaction.
        first = conn.execute(text("SELECT min(record_id) FROM audit_redactions")).scalar()
        conn.execute(text("UPDATE audit_log SET actor = 'x' WHERE id = :i"), {"i": first})
    with db.unit_of_work(readonly=True) as s:
        assert [f.record_id for f in chain.verify(s).findings] == [first]


def _bakery() -> dict[str, Any]:
    from tests.factories import BAKERY

    return dict(BAKERY)


@pytest.mark.postgresql_only
def test_a_hold_and_an_erasure_at_once_never_both_succeed(db, seeded):
    """Both take the member's row lock first: either the hold lands and the erasure is refused
    (legal_hold), or the erasure lands and the hold is refused (member_erased)."""
    import threading

    from patron.errors import PatronError

    barrier = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def act(name: str) -> None:
        barrier.wait()
        try:
            with db.unit_of_work() as s:
                if name == "hold":
                    erasure.place_hold(s, seeded.member_id, reason="dispute", program_id=None,
                                       actor=CLI, now=clock.now())  # fmt: skip
                else:
                    erasure.erase(s, seeded.member_id, program=get_program(s, "bakery"),
                                  reason=None, source="cli", actor=CLI, now=clock.now())  # fmt: skip
            outcomes[name] = "ok"
        except PatronError as exc:
            outcomes[name] = exc.code

    threads = [threading.Thread(target=act, args=(n,)) for n in ("hold", "erase")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes in (
        {"hold": "ok", "erase": "legal_hold"},
        {"hold": "member_erased", "erase": "ok"},
    )
