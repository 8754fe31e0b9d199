"""Points over HTTP: the README walk-through, history, exports, lots, idempotency, expiry."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from typing import Any

import pytest
from openpyxl import load_workbook

from patron import clock
from tests.api.helpers import enroll

P = "/api/v1/programs/bakery"


@pytest.fixture
def kim(client, pos, bakery, frozen) -> dict[str, Any]:
    return enroll(
        client, pos, name="Kim Minji", phone="010-1234-5678", cards=[{"number": "CARD-0001"}]
    )


def sale(client, headers, external_id: str, amount: int | str, **extra: Any):
    body = {
        "external_id": external_id,
        "member": {"phone": "010-1234-5678"},
        "amount": amount,
        **extra,
    }
    return client.post(f"{P}/purchases", json=body, headers=headers)


def bonus(client, headers, points: int, reason: str = "welcome bonus", **extra: Any):
    return client.post(
        f"{P}/adjustments",
        headers={**headers, **extra},
        json={"member": {"card": "CARD-0001"}, "points": points, "reason": reason},
    )


def totals(client, headers, member_id: int) -> dict[str, int]:
    response = client.get(f"{P}/members/{member_id}/account", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["totals"]


def entries(client, headers, member_id: int, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"{P}/members/{member_id}/entries", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["items"]


def check_ok(client, admin) -> dict[str, Any]:
    report = client.get("/api/v1/check", headers=admin).json()
    assert report["ok"] is True, report["violations"]
    assert report["violations"] == []
    return report


def test_readme_walk_through(client, admin, pos, reader, kim):
    # A 25,800 KRW sale by a basic member earns 250 points (10 per full 1,000 KRW).
    first = sale(client, pos, "A-1", 25800, store="mapo")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["points_earned"] == 250
    assert body["points_spent"] == 0
    assert body["amount"] == "25800"
    assert body["member_id"] == kim["id"]
    [earn] = body["entries"]
    assert (earn["kind"], earn["points"], earn["store"], earn["external_ref"]) == (
        "earn",
        250,
        "mapo",
        "A-1",
    )
    assert earn["breakdown"][0]["kind"] == "base_rate"
    assert earn["breakdown"][0]["result"] == 250
    # Valid through 2 March 2027 in Seoul: expires at local midnight starting 3 March.
    assert earn["details"]["expires_at"] == "2027-03-02T15:00:00+00:00"
    assert body["totals"]["balance"] == 250

    # Give enough points to pay with them.
    given = bonus(client, admin, 1000)
    assert given.status_code == 201, given.text
    assert given.json()["totals"]["balance"] == 1250
    assert given.json()["entry"]["kind"] == "adjust"

    # Pay 1,000 KRW of a 5,000 KRW bill with points: only the 4,000 KRW paid in money earns.
    second = sale(client, pos, "A-2", 5000, points_to_spend=1000)
    assert second.status_code == 201, second.text
    body = second.json()
    assert (body["points_spent"], body["spend_value"], body["points_earned"]) == (1000, "1000", 40)
    assert [(e["kind"], e["points"]) for e in body["entries"]] == [("redeem", -1000), ("earn", 40)]
    assert body["totals"]["balance"] == 290

    # Soonest-to-expire first, ties by age: A-1's 250 went first, then 750 of the bonus.
    lots = client.get(f"{P}/members/{kim['id']}/lots", headers=pos).json()
    assert [(lot["points"], lot["remaining"]) for lot in lots] == [(1000, 250), (40, 40)]

    # Refund half the bill by amount: half the earned points go back, half the spent come back.
    half = client.post(
        f"{P}/purchases/A-2/refunds", json={"refund_id": "R-1", "amount": 2500}, headers=pos
    )
    assert half.status_code == 201, half.text
    body = half.json()
    assert (body["amount"], body["refunded_total"]) == ("2500", "2500")
    assert (body["points_reversed"], body["points_restored"]) == (20, 500)
    assert (body["points_written_off"], body["debt_added"], body["note"]) == (0, 0, None)
    assert sorted((e["kind"], e["points"]) for e in body["entries"]) == [
        ("reverse", -20),
        ("reverse", 500),
    ]
    assert body["totals"]["balance"] == 290 + 500 - 20

    # The other half: the two partial refunds add up exactly to a full refund.
    rest = client.post(
        f"{P}/purchases/A-2/refunds", json={"refund_id": "R-2", "amount": 2500}, headers=pos
    )
    assert rest.status_code == 201, rest.text
    assert (rest.json()["points_reversed"], rest.json()["points_restored"]) == (20, 500)
    assert rest.json()["refunded_total"] == "5000"

    assert totals(client, reader, kim["id"]) == {
        "balance": 1250,
        "available": 1250,
        "pending": 0,
        "debt": 0,
        "earned": 250,
        "redeemed": 0,
        "expired": 0,
        "adjusted": 1000,
        "expiring_30_days": 0,
    }
    lots = client.get(f"{P}/members/{kim['id']}/lots", headers=pos).json()
    assert [(lot["points"], lot["remaining"]) for lot in lots] == [(250, 250), (1000, 1000)]

    done = client.post(
        f"{P}/purchases/A-2/refunds", json={"refund_id": "R-3", "full": True}, headers=pos
    )
    assert done.status_code == 409
    assert done.json()["error"] == "already_refunded"
    check_ok(client, admin)


def test_refund_rules(client, admin, pos, kim):
    assert sale(client, pos, "A-1", 25800).status_code == 201
    too_much = client.post(
        f"{P}/purchases/A-1/refunds", json={"refund_id": "R-1", "amount": 25801}, headers=pos
    )
    assert too_much.status_code == 409
    assert too_much.json() == {
        "error": "refund_exceeds_purchase",
        "detail": "only 25800 KRW of this purchase is left to refund",
    }
    missing = client.post(
        f"{P}/purchases/NOPE/refunds", json={"refund_id": "R-1", "full": True}, headers=pos
    )
    assert missing.status_code == 404
    assert missing.json()["error"] == "purchase_not_found"
    both = client.post(
        f"{P}/purchases/A-1/refunds",
        headers=pos,
        json={"refund_id": "R-1", "full": True, "amount": 100},
    )
    assert both.status_code == 422
    assert both.json()["error"] == "validation_error"
    fraction = client.post(
        f"{P}/purchases/A-1/refunds", headers=pos, json={"refund_id": "R-1", "amount": "100.5"}
    )
    assert fraction.status_code == 422
    assert fraction.json()["error"] == "invalid_amount"

    first = client.post(
        f"{P}/purchases/A-1/refunds", json={"refund_id": "R-1", "amount": 10000}, headers=pos
    )
    assert first.status_code == 201
    assert first.json()["points_reversed"] == 97  # round_half_up(250 × 10000 / 25800) = 96.9
    replay = client.post(
        f"{P}/purchases/A-1/refunds", json={"refund_id": "R-1", "amount": 10000}, headers=pos
    )
    assert replay.status_code == 201
    assert replay.json() == first.json()
    other = client.post(
        f"{P}/purchases/A-1/refunds", json={"refund_id": "R-1", "amount": 9000}, headers=pos
    )
    assert other.status_code == 409
    assert other.json()["error"] == "duplicate_refund"
    assert totals(client, admin, kim["id"])["balance"] == 250 - 97
    check_ok(client, admin)


def test_purchase_replay_returns_the_first_answer(client, admin, pos, reader, kim):
    first = sale(client, pos, "A-1", 25800)
    replay = sale(client, pos, "A-1", 25800)
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    stored = client.get(f"{P}/purchases/A-1", headers=reader)
    assert stored.status_code == 200
    assert stored.json() == first.json()

    changed = sale(client, pos, "A-1", 30000)
    assert changed.status_code == 409
    assert changed.json() == {
        "error": "duplicate_order",
        "detail": "order 'A-1' was already recorded with different details",
    }
    assert len(entries(client, reader, kim["id"])) == 1
    assert totals(client, reader, kim["id"])["balance"] == 250

    absent = client.get(f"{P}/purchases/A-9", headers=reader)
    assert absent.status_code == 404
    assert absent.json()["error"] == "purchase_not_found"


def test_idempotency_key_on_adjustments_writes_one_entry(client, admin, reader, kim):
    headers = {"Idempotency-Key": "adj-7f3"}
    first = bonus(client, admin, 500, **headers)
    again = bonus(client, admin, 500, **headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert [e["points"] for e in entries(client, reader, kim["id"])] == [500]

    conflict = bonus(client, admin, 600, **headers)
    assert conflict.status_code == 409
    assert conflict.json() == {
        "error": "idempotency_conflict",
        "detail": "Idempotency-Key 'adj-7f3' was used for a different request; use a new key",
    }
    assert totals(client, reader, kim["id"])["adjusted"] == 500
    # A different key is a different request.
    assert bonus(client, admin, 500, **{"Idempotency-Key": "adj-other"}).status_code == 201
    assert totals(client, reader, kim["id"])["adjusted"] == 1000


def test_negative_adjustment_beyond_balance_leaves_debt_where_the_program_allows_it(
    client, admin, reader, kim
):
    bonus(client, admin, 30)
    response = bonus(client, admin, -100, reason="fraudulent return")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["entry"]["points"] == -100
    assert body["entry"]["details"] == {"debt_added": 70}
    assert body["totals"]["balance"] == -70 and body["totals"]["debt"] == 70
    assert totals(client, reader, kim["id"])["debt"] == 70
    # The next credit pays the debt first.
    assert bonus(client, admin, 50).json()["totals"]["balance"] == -20


def test_negative_adjustment_beyond_balance_is_409_where_the_program_writes_off(client, admin, kim):
    changed = client.patch(
        "/api/v1/programs/bakery", json={"negative_balance": "write_off"}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    response = bonus(client, admin, -10, reason="correction")
    assert response.status_code == 409
    assert response.json() == {
        "error": "insufficient_points",
        "detail": "10 points needed but only 0 are left",
    }


def test_quote_changes_nothing(client, admin, pos, reader, kim):
    bonus(client, admin, 3000)
    before_entries = entries(client, reader, kim["id"])
    before_totals = totals(client, reader, kim["id"])
    response = client.post(
        f"{P}/quote",
        headers=pos,
        json={"member": {"card": "CARD-0001"}, "amount": 25800, "points_to_spend": 2000},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["points_earned"] == 230  # 23,800 KRW paid in money
    assert body["balance"] == 3000
    assert body["max_points_to_spend"] == 3000
    assert (body["spend_value"], body["amount_due"]) == ("2000", "23800")
    assert [b["kind"] for b in body["breakdown"]] == ["paid_with_points", "base_rate"]
    assert entries(client, reader, kim["id"]) == before_entries
    assert totals(client, reader, kim["id"]) == before_totals


@pytest.mark.parametrize(
    "extra, status, code",
    [
        ({"points_to_spend": 500}, 422, "below_minimum_redemption"),
        ({"points_to_spend": 1005}, 422, "invalid_redemption_step"),
        ({"points_to_spend": 5000}, 409, "insufficient_points"),
        ({"points_to_spend": 1000, "amount": 900}, 422, "exceeds_max_share"),
        ({"currency": "CNY"}, 422, "currency_mismatch"),
        ({"store": "gangnam"}, 422, "store_not_found"),
        ({"amount": "100.50"}, 422, "invalid_amount"),
        ({"lines": [{"amount": 1000}]}, 422, "lines_total_mismatch"),
    ],
)
def test_purchase_rejections_change_nothing(client, admin, pos, reader, kim, extra, status, code):
    bonus(client, admin, 3000)
    body = {"amount": 10000, **extra}
    response = sale(client, pos, "X-1", body.pop("amount"), **body)
    assert response.status_code == status, response.text
    assert response.json()["error"] == code
    assert [e["kind"] for e in entries(client, reader, kim["id"])] == ["adjust"]
    assert client.get(f"{P}/purchases/X-1", headers=reader).status_code == 404


def test_currency_mismatch_detail(client, pos, kim):
    response = sale(client, pos, "X-1", 100, currency="USD")
    assert response.status_code == 422
    assert response.json() == {
        "error": "currency_mismatch",
        "detail": "program bakery runs in KRW, not USD; convert the amount before sending it",
    }
    same = sale(client, pos, "X-2", 1000, currency="KRW")
    assert same.status_code == 201
    assert same.json()["points_earned"] == 10


SEOUL_EDGES = [
    ("E-1", "2026-03-02T14:59:00Z"),  # 2 March 23:59 in Seoul
    ("E-2", "2026-03-02T15:00:00Z"),  # 3 March 00:00 in Seoul
    ("E-3", "2026-03-03T14:59:00Z"),  # 3 March 23:59 in Seoul
    ("E-4", "2026-03-03T15:00:00Z"),  # 4 March 00:00 in Seoul
]


@pytest.fixture
def dated(client, admin, pos, kim) -> dict[str, Any]:
    """Four 1,000 KRW sales around the Seoul day boundaries and one adjustment, seen on 10 March."""
    clock.freeze(datetime.fromisoformat("2026-03-10T03:00:00+00:00"))
    for external_id, at in SEOUL_EDGES:
        response = sale(client, pos, external_id, 1000 * int(external_id[-1]), occurred_at=at)
        assert response.status_code == 201, response.text
    assert bonus(client, admin, 5).status_code == 201
    return kim


def test_history_by_local_date_range(client, reader, dated):
    def refs(**params):
        return [e["external_ref"] for e in entries(client, reader, dated["id"], **params)]

    assert refs() == [None, "E-4", "E-3", "E-2", "E-1"]  # newest first
    assert refs(**{"from": "2026-03-03", "to": "2026-03-03"}) == ["E-3", "E-2"]
    assert refs(**{"from": "2026-03-02", "to": "2026-03-02"}) == ["E-1"]
    assert refs(**{"from": "2026-03-04"}) == [None, "E-4"]
    assert refs(to="2026-03-03") == ["E-3", "E-2", "E-1"]
    assert refs(**{"from": "2026-03-05", "to": "2026-03-09"}) == []
    bad = client.get(
        f"{P}/members/{dated['id']}/entries",
        headers=reader,
        params={"from": "2026-03-04", "to": "2026-03-03"},
    )
    assert bad.status_code == 422
    assert bad.json() == {"error": "invalid_range", "detail": "'from' must not be after 'to'"}
    bad_date = client.get(
        f"{P}/members/{dated['id']}/entries", headers=reader, params={"from": "2026-02-30"}
    )
    assert bad_date.status_code == 422
    assert bad_date.json()["detail"].startswith("query.from: ")


def test_history_by_kind(client, reader, dated):
    earn = entries(client, reader, dated["id"], kind="earn")
    assert [e["points"] for e in earn] == [40, 30, 20, 10]
    adjust = entries(client, reader, dated["id"], kind="adjust")
    assert [(e["kind"], e["points"], e["reason"]) for e in adjust] == [
        ("adjust", 5, "welcome bonus")
    ]
    both = entries(client, reader, dated["id"], kind=["adjust", "earn"])
    assert len(both) == 5
    assert entries(client, reader, dated["id"], kind="expire") == []
    bad = client.get(f"{P}/members/{dated['id']}/entries", params={"kind": "gift"}, headers=reader)
    assert bad.status_code == 422


def test_history_cursor_walks_every_entry_once(client, reader, dated):
    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = client.get(
            f"{P}/members/{dated['id']}/entries", params=params, headers=reader
        ).json()
        pages += 1
        seen += [e["id"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [e["id"] for e in entries(client, reader, dated["id"])]
    assert len(set(seen)) == 5
    bad = client.get(
        f"{P}/members/{dated['id']}/entries", params={"cursor": "bm9wZQ=="}, headers=reader
    )
    assert bad.status_code == 422
    assert bad.json()["error"] == "invalid_cursor"


def test_csv_export(client, reader, dated):
    response = client.get(
        f"{P}/members/{dated['id']}/entries/export", params={"format": "csv"}, headers=reader
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == (
        f'attachment; filename="bakery-member-{dated["id"]}-history.csv"'
    )
    assert response.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert rows[0] == [
        "entry",
        "date",
        "kind",
        "points",
        "running_total",
        "reason",
        "store",
        "channel",
        "order",
        "valid_until",
    ]
    # "valid_until" is the last local day the points can be used
    # (points earned on 2 March are valid through 2 March next year).
    assert [[*r[1:5], r[8], r[9]] for r in rows[1:]] == [
        ["2026-03-02 23:59", "earn", "10", "10", "E-1", "2027-03-02"],
        ["2026-03-03 00:00", "earn", "20", "30", "E-2", "2027-03-03"],
        ["2026-03-03 23:59", "earn", "30", "60", "E-3", "2027-03-03"],
        ["2026-03-04 00:00", "earn", "40", "100", "E-4", "2027-03-04"],
        ["2026-03-10 12:00", "adjust", "5", "105", "", "2027-03-10"],
    ]
    assert rows[-1][5] == "welcome bonus"
    assert rows[1][7] == "pos"

    # Filtered: the running total still counts what came before.
    ranged = client.get(
        f"{P}/members/{dated['id']}/entries/export",
        headers=reader,
        params={"from": "2026-03-03", "to": "2026-03-03"},
    )
    rows = list(csv.reader(io.StringIO(ranged.content.decode("utf-8-sig"))))
    assert [(r[8], r[4]) for r in rows[1:]] == [("E-2", "30"), ("E-3", "60")]
    kinds = client.get(
        f"{P}/members/{dated['id']}/entries/export", headers=reader, params={"kind": "adjust"}
    )
    rows = list(csv.reader(io.StringIO(kinds.content.decode("utf-8-sig"))))
    assert [(r[2], r[3], r[4]) for r in rows[1:]] == [("adjust", "5", "105")]


def test_xlsx_export(client, reader, dated):
    response = client.get(
        f"{P}/members/{dated['id']}/entries/export", params={"format": "xlsx"}, headers=reader
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    book = load_workbook(io.BytesIO(response.content))
    sheet = book.active
    assert sheet.title == f"member {dated['id']}"
    values = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert values[0] == [
        "entry",
        "date",
        "kind",
        "points",
        "running_total",
        "reason",
        "store",
        "channel",
        "order",
        "valid_until",
    ]
    assert len(values) == 6
    assert values[1][1:5] == ["2026-03-02 23:59", "earn", 10, 10]
    assert values[4][1:5] == ["2026-03-04 00:00", "earn", 40, 100]
    assert values[5][2:6] == ["adjust", 5, 105, "welcome bonus"]
    assert sheet.freeze_panes == "A2"


def test_export_needs_read_scope_and_a_known_format(client, pos, reader, dated):
    assert client.get(f"{P}/members/{dated['id']}/entries/export", headers=pos).status_code == 403
    bad = client.get(
        f"{P}/members/{dated['id']}/entries/export", params={"format": "pdf"}, headers=reader
    )
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("query.format: ")


def test_lots_expiring_within_days(client, admin, pos, reader, kim):
    # Earned a year ago, so they expire soon after T0 (2 March 2026).
    assert sale(client, pos, "OLD-1", 3000, occurred_at="2025-03-20T03:00:00Z").status_code == 201
    assert sale(client, pos, "OLD-2", 7000, occurred_at="2025-04-20T03:00:00Z").status_code == 201
    assert sale(client, pos, "NEW-1", 11000).status_code == 201

    def lots(**params):
        response = client.get(f"{P}/members/{kim['id']}/lots", params=params, headers=reader)
        assert response.status_code == 200, response.text
        return [(lot["points"], lot["expires_at"]) for lot in response.json()]

    assert lots(expiring_within_days=30) == [(30, "2026-03-20T15:00:00Z")]
    assert lots(expiring_within_days=60) == [
        (30, "2026-03-20T15:00:00Z"),
        (70, "2026-04-20T15:00:00Z"),
    ]
    assert lots() == [
        (30, "2026-03-20T15:00:00Z"),
        (70, "2026-04-20T15:00:00Z"),
        (110, "2027-03-02T15:00:00Z"),
    ]
    assert totals(client, reader, kim["id"])["expiring_30_days"] == 30
    bad = client.get(
        f"{P}/members/{kim['id']}/lots", params={"expiring_within_days": 0}, headers=reader
    )
    assert bad.status_code == 422


def test_expire_dry_run_then_for_real(client, admin, pos, reader, kim, frozen):
    sale(client, pos, "OLD-1", 3000, occurred_at="2025-03-20T03:00:00Z")
    sale(client, {**pos, "Idempotency-Key": "till-1-0001"}, "NEW-1", 11000)
    clock.freeze(datetime.fromisoformat("2026-03-20T15:00:00+00:00"))  # 21 March 00:00 in Seoul

    dry = client.post("/api/v1/expire", json={"dry_run": True}, headers=admin)
    assert dry.status_code == 200
    assert dry.json() == {
        "dry_run": True,
        "lots": 1,
        "points": 30,
        "accounts": 1,
        "released_lots": 0,
        "released_points": 0,
        "idempotency_keys_purged": 0,
        "rolled_lots": 0,
        "rolled_accounts": 0,
    }
    assert [e["kind"] for e in entries(client, reader, kim["id"])] == ["earn", "earn"]
    # The account already reads as of now, before the job writes anything.
    assert totals(client, reader, kim["id"])["balance"] == 110
    assert totals(client, reader, kim["id"])["expired"] == 30

    real = client.post("/api/v1/expire", json={}, headers=admin)
    # The one Idempotency-Key, 18 days old, is past the 7-day retention.
    assert real.json() == {
        "dry_run": False,
        "lots": 1,
        "points": 30,
        "accounts": 1,
        "released_lots": 0,
        "released_points": 0,
        "idempotency_keys_purged": 1,
        "rolled_lots": 0,
        "rolled_accounts": 0,
    }
    expired = entries(client, reader, kim["id"], kind="expire")
    assert [(e["points"], e["occurred_at"]) for e in expired] == [(-30, "2026-03-20T15:00:00Z")]
    again = client.post("/api/v1/expire", json={}, headers=admin)
    assert again.json()["lots"] == 0
    assert totals(client, reader, kim["id"]) == {
        "balance": 110,
        "available": 110,
        "pending": 0,
        "debt": 0,
        "earned": 140,
        "redeemed": 0,
        "expired": 30,
        "adjusted": 0,
        "expiring_30_days": 0,
    }
    report = check_ok(client, admin)
    assert (report["accounts"], report["entries"], report["lots"]) == (1, 3, 2)


def test_a_minute_before_expiry_nothing_expires(client, admin, pos, kim):
    sale(client, pos, "OLD-1", 3000, occurred_at="2025-03-20T03:00:00Z")
    clock.freeze(datetime.fromisoformat("2026-03-20T15:00:00+00:00") - timedelta(minutes=1))
    dry = client.post("/api/v1/expire", json={"dry_run": True}, headers=admin).json()
    assert (dry["lots"], dry["points"]) == (0, 0)


def test_check_reports_counts(client, admin, pos, kim):
    sale(client, pos, "A-1", 25800)
    bonus(client, admin, 1000)
    report = check_ok(client, admin)
    assert (report["accounts"], report["entries"], report["lots"]) == (1, 2, 2)


def test_unknown_account_is_404(client, admin, reader, bakery):
    response = client.get(f"{P}/members/999/account", headers=reader)
    assert response.status_code == 404
    assert response.json() == {
        "error": "account_not_found",
        "detail": "member 999 is not in program bakery",
    }


def test_sale_dated_before_1970_is_422(client, pos, kim):
    """Year 1 at +14:00 cannot be converted to UTC at all (was a 500)."""
    for at in ("0001-01-01T00:00:00+14:00", "1969-12-31T23:59:59Z"):
        response = sale(client, pos, "OLD-0", 1000, occurred_at=at)
        assert response.status_code == 422, response.text
        assert response.json() == {
            "error": "occurred_at_out_of_range",
            "detail": "occurred_at is before 1970",
        }
    assert sale(client, pos, "OLD-0", 1000, occurred_at="1970-01-01T00:00:00Z").status_code == 201


def test_history_range_at_the_ends_of_the_calendar(client, reader, dated):
    """0001-01-01 and 9999-12-31 overflow in Seoul time; they mean "no bound" (was a 500)."""
    every = [e["id"] for e in entries(client, reader, dated["id"])]
    wide = entries(client, reader, dated["id"], **{"from": "0001-01-01", "to": "9999-12-31"})
    assert [e["id"] for e in wide] == every
    export = client.get(
        f"{P}/members/{dated['id']}/entries/export",
        headers=reader,
        params={"from": "0001-01-01", "to": "9999-12-31"},
    )
    assert export.status_code == 200
    assert len(list(csv.reader(io.StringIO(export.content.decode("utf-8-sig"))))) == 6


def test_xlsx_export_with_control_characters_in_text(client, admin, reader, kim):
    """XLSX cells cannot hold control characters; they are replaced (was a 500)."""
    assert bonus(client, admin, 10, reason="fix\x0b for\x01 till").status_code == 201
    response = client.get(
        f"{P}/members/{kim['id']}/entries/export", params={"format": "xlsx"}, headers=reader
    )
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet["F2"].value == "fix\ufffd for\ufffd till"
    as_csv = client.get(f"{P}/members/{kim['id']}/entries/export", headers=reader)
    rows = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert rows[1][5] == "fix\x0b for\x01 till"  # CSV keeps the text as it was given


def test_exports_do_not_let_free_text_run_as_a_formula():
    from patron.ledger.views import to_csv, to_xlsx

    rows = [[1, "2026-03-02 12:00", "adjust", 5, 5, '=HYPERLINK("x")', "", "", "@cmd", ""]]
    text = to_csv(rows).decode("utf-8-sig")
    assert "'=HYPERLINK" in text and "'@cmd" in text
    book = load_workbook(io.BytesIO(to_xlsx(rows, title="t")))
    assert book.active.cell(row=2, column=6).value == '\'=HYPERLINK("x")'
    assert book.active.cell(row=2, column=4).value == 5


def test_a_till_back_online_syncs_a_sale_that_spent_points_expired_since(
    client, admin, pos, reader, kim, frozen
):
    """docs/concepts.md, "Sales recorded late": judged as of when the sale happened."""
    assert sale(client, pos, "OLD-1", 100000, occurred_at="2025-03-20T03:00:00Z").status_code == 201
    clock.freeze(datetime.fromisoformat("2026-03-21T00:00:00+00:00"))
    assert client.post("/api/v1/expire", json={}, headers=admin).json()["points"] == 1000
    assert totals(client, reader, kim["id"])["balance"] == 0

    on_time = sale(client, pos, "NOW-1", 5000, points_to_spend=1000)
    assert on_time.status_code == 409, on_time.text
    assert on_time.json()["error"] == "insufficient_points"

    late = sale(
        client, pos, "OFFLINE-1", 5000, points_to_spend=1000, occurred_at="2026-03-10T03:00:00Z"
    )
    assert late.status_code == 201, late.text
    assert [(e["kind"], e["points"]) for e in late.json()["entries"]][:2] == [
        ("adjust", 1000),
        ("redeem", -1000),
    ]
    given = next(e for e in entries(client, reader, kim["id"]) if e["kind"] == "adjust")
    assert given["details"]["late_sale"] is True and "OFFLINE-1" in given["reason"]
    # The expiry gave back all it took: a second late sale finds nothing more.
    again = sale(
        client, pos, "OFFLINE-2", 5000, points_to_spend=1000, occurred_at="2026-03-11T03:00:00Z"
    )
    assert again.json()["error"] == "insufficient_points"
    check_ok(client, admin)
