"""The member pages through HTTP: sign-in, every page, and isolation between members."""

from __future__ import annotations

import re
from datetime import date

import pytest
from fastapi.testclient import TestClient

from patron import clock
from patron.portal import service
from tests.portal.conftest import A_EMAIL, B_EMAIL, code_from

BASE = "/m/bakery"


@pytest.fixture
def outbox(monkeypatch) -> list[service.CodeMessage]:
    sent: list[service.CodeMessage] = []
    monkeypatch.setattr("patron.portal.views.send_code", sent.append)
    return sent


def csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: TestClient, outbox, contact: str = A_EMAIL) -> str:
    page = client.get(f"{BASE}/sign-in")
    assert page.status_code == 200
    r = client.post(f"{BASE}/sign-in", data={"contact": contact, "csrf_token": csrf(page.text)})
    assert r.status_code == 200
    code = code_from(outbox[-1].body)
    r = client.post(
        f"{BASE}/sign-in/code",
        data={"contact": contact, "code": code, "csrf_token": csrf(r.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    assert r.headers["location"] == f"{BASE}/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and f"Path={BASE}" in cookie
    assert client.get(f"{BASE}/").status_code == 200
    return csrf(client.get(f"{BASE}/profile").text)


def test_pages_redirect_to_sign_in_when_signed_out(client, portal):
    for path in ("/", "/history", "/card", "/rewards", "/rewards/americano", "/coupons",
                 f"/coupons/{portal.a_coupon}", "/profile"):  # fmt: skip
        r = client.get(BASE + path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"] == f"{BASE}/sign-in"
    r = client.get("/m/nowhere/sign-in")
    assert r.status_code == 404


def test_cookies_are_secure_on_https(app, portal):
    with TestClient(app, base_url="https://testserver") as secure:
        r = secure.get(f"{BASE}/sign-in")
    cookie = r.headers["set-cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie


def test_the_same_answer_for_a_member_and_a_stranger(client, portal, outbox):
    page = client.get(f"{BASE}/sign-in")
    token = csrf(page.text)
    known = client.post(f"{BASE}/sign-in", data={"contact": A_EMAIL, "csrf_token": token})
    unknown = client.post(
        f"{BASE}/sign-in", data={"contact": "nobody@example.com", "csrf_token": token}
    )
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace(A_EMAIL, "X") == unknown.text.replace("nobody@example.com", "X")
    assert len(outbox) == 1 and outbox[0].to == A_EMAIL


def test_forms_need_the_csrf_token(client, portal, outbox):
    client.get(f"{BASE}/sign-in")
    r = client.post(f"{BASE}/sign-in", data={"contact": A_EMAIL})
    assert r.status_code == 403 and outbox == []
    sign_in(client, outbox)
    r = client.post(f"{BASE}/profile/language", data={"language": "en"})
    assert r.status_code == 403


def test_a_wrong_code_says_so_without_signing_in(client, portal, outbox):
    page = client.get(f"{BASE}/sign-in")
    r = client.post(f"{BASE}/sign-in", data={"contact": A_EMAIL, "csrf_token": csrf(page.text)})
    code = code_from(outbox[-1].body)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    r = client.post(
        f"{BASE}/sign-in/code", data={"contact": A_EMAIL, "code": wrong, "csrf_token": csrf(r.text)}
    )
    assert r.status_code == 422
    assert client.get(f"{BASE}/", follow_redirects=False).status_code == 303


def test_home_card_history_in_her_language(client, portal, outbox):
    sign_in(client, outbox)
    home = client.get(f"{BASE}/").text
    assert 'lang="ko"' in home and "내 포인트" in home
    assert "8,500" in home  # 10,000 less the americano coupon
    card = client.get(f"{BASE}/card").text
    assert "BKR100000" in card and "<svg" in card
    history = client.get(f"{BASE}/history").text
    assert "적립" in history or "조정" in history


def test_redeem_with_confirmation_is_not_repeated_by_a_double_submit(client, portal, outbox):
    token = sign_in(client, outbox)
    assert "americano" in client.get(f"{BASE}/rewards").text
    confirm = client.get(f"{BASE}/rewards/americano").text
    nonce = re.search(r'name="nonce" value="([^"]+)"', confirm)
    assert nonce
    form = {"csrf_token": token, "nonce": nonce.group(1)}
    first = client.post(f"{BASE}/rewards/americano", data=form, follow_redirects=False)
    second = client.post(f"{BASE}/rewards/americano", data=form, follow_redirects=False)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == f"{BASE}/coupons"
    coupons = client.get(f"{BASE}/coupons").text
    assert coupons.count("/coupons/") == 2  # the fixture's coupon and this one
    assert "7,000" in client.get(f"{BASE}/").text


def test_her_coupon_shows_its_qr(client, portal, outbox):
    sign_in(client, outbox)
    page = client.get(f"{BASE}/coupons/{portal.a_coupon}")
    assert page.status_code == 200 and "<svg" in page.text


def test_profile_language_consent_and_sessions(client, portal, outbox):
    token = sign_in(client, outbox)
    r = client.post(f"{BASE}/profile/consent", data={"csrf_token": token, "email": "on"})
    assert r.status_code == 200
    assert 'name="email" checked' in r.text
    r = client.post(f"{BASE}/profile/language", data={"csrf_token": token, "language": "zh"})
    assert 'lang="zh"' in r.text and "语言" in r.text
    session_ids = re.findall(r"/profile/sessions/(\d+)/revoke", r.text)
    assert len(session_ids) == 1
    r = client.post(
        f"{BASE}/profile/sessions/{session_ids[0]}/revoke",
        data={"csrf_token": token},
        follow_redirects=False,
    )
    assert r.headers["location"] == f"{BASE}/sign-in"
    assert client.get(f"{BASE}/", follow_redirects=False).status_code == 303


def test_sign_out(client, portal, outbox):
    token = sign_in(client, outbox)
    r = client.post(f"{BASE}/sign-out", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get(f"{BASE}/", follow_redirects=False).status_code == 303


def test_member_a_cannot_reach_member_bs_rows(app, client, portal, outbox):
    # B signs in on her own browser, so she has a session id A could try to end.
    with TestClient(app) as other:
        sign_in(other, outbox, B_EMAIL)
        b_profile = other.get(f"{BASE}/profile").text
    b_session = re.findall(r"/profile/sessions/(\d+)/revoke", b_profile)[0]
    token = sign_in(client, outbox)
    assert client.get(f"{BASE}/coupons/{portal.b_coupon}").status_code == 404
    assert portal.b_coupon not in client.get(f"{BASE}/coupons").text
    r = client.post(f"{BASE}/profile/sessions/{b_session}/revoke", data={"csrf_token": token})
    assert r.status_code == 404
    # A's session cookie does not work for another program's pages.
    assert client.get("/m/other/", follow_redirects=False).status_code == 404


def test_page_weights(client, portal, outbox, capsys):
    sign_in(client, outbox)
    weights = {}
    for path in ("/", "/history", "/card", "/rewards", "/rewards/americano", "/coupons",
                 f"/coupons/{portal.a_coupon}", "/profile"):  # fmt: skip
        body = client.get(BASE + path).content
        weights[path] = len(body)
        assert len(body) < 30_000, path
    print("portal page weights:", weights)


def test_home_says_what_keeps_her_tier_and_by_when(client, db, portal, outbox):
    from patron.audit.service import CLI
    from patron.tiers import service as tiers
    from patron.tiers.schemas import ManualTierRequest
    from tests.portal.conftest import bakery

    with db.unit_of_work() as s:
        tiers.set_manual(
            s, bakery(s), portal.a, ManualTierRequest(tier="gold", reason="appeal"),
            actor=CLI, now=clock.now(),
        )  # fmt: skip
    sign_in(client, outbox)
    home = client.get(f"{BASE}/").text
    assert "<h1>김민지님, 안녕하세요</h1>" in home
    assert "등급: 골드" in home
    # Given by hand with no end date, gold is hers until changed: nothing to earn to keep it.
    assert 'id="to-keep"' not in home

    with db.unit_of_work() as s:
        tiers.set_manual(
            s, bakery(s), portal.a,
            ManualTierRequest(tier="gold", reason="appeal", until=date(2026, 6, 30)),
            actor=CLI, now=clock.now(),
        )  # fmt: skip
    home = client.get(f"{BASE}/").text
    # Kept by hand until 30 June: gold needs 3,000 points in the half-year to stay after it.
    assert re.search(r'id="to-keep">2026년 6월 30일까지 3,000 포인트 더 모으면 골드 등급이', home)


def test_history_words_money_and_tiers_her_way(client, db, portal, outbox):
    """Money as Korean readers see it (₩3,800, CLDR) and her tier by its Korean name, where the
    API shows "3,800 KRW" and the code "gold"."""
    from patron.audit.service import CLI
    from patron.tiers import service as tiers
    from patron.tiers.schemas import ManualTierRequest
    from tests.portal.conftest import bakery
    from tests.tiers._tier_helpers import buy

    with db.unit_of_work() as s:
        tiers.set_manual(
            s, bakery(s), portal.a, ManualTierRequest(tier="gold", reason="appeal"),
            actor=CLI, now=clock.now(),
        )  # fmt: skip
        buy(s, bakery(s), portal.a, 3800, now=clock.now())
    sign_in(client, outbox)
    history = client.get(f"{BASE}/history").text
    assert "₩3,800: ₩1,000당 10포인트 = 30" in history
    assert "골드 등급 ×2 = 60" in history
    assert "KRW" not in history and "gold" not in history


def test_history_filters_by_kind_and_month(client, portal, outbox):
    sign_in(client, outbox)

    def shown(**params: str) -> list[str]:
        page = client.get(f"{BASE}/history", params=params)
        assert page.status_code == 200
        return re.findall(r'<div class="entry"><b>([^<]+)</b>', page.text)

    assert shown() == ["-1,500포인트", "+10,000포인트"]
    assert shown(kind="redeem") == ["-1,500포인트"]
    assert shown(kind="adjust") == ["+10,000포인트"]
    assert shown(month="2026-03") == ["-1,500포인트", "+10,000포인트"]
    assert shown(month="2026-04") == []
    assert shown(month="2026-03", kind="expire") == []
    # Nonsense is ignored, not an error page.
    assert shown(kind="steal", month="2026-13") == ["-1,500포인트", "+10,000포인트"]
    page = client.get(f"{BASE}/history", params={"kind": "redeem", "month": "2026-03"}).text
    assert '<option value="redeem" selected>' in page and 'value="2026-03"' in page
