"""The member card offline: once she has opened her card page signed in, the service worker
shows it again with the phone offline (the card number's QR code, which never expires, opened
by portal.js), and forgets it when she signs out (the sign-in page is opened)."""

from __future__ import annotations

import re
import time

from tests.portal.conftest import A_EMAIL


def test_the_card_page_is_shown_offline_from_the_cache(phone, portal, smtp_server, monkeypatch):
    monkeypatch.setattr("patron.portal.web.get_settings", lambda: smtp_server.settings())
    page = phone
    page.goto("/m/bakery/sign-in")
    page.get_by_label("휴대폰 번호 또는 이메일").fill(A_EMAIL)
    page.get_by_role("button", name="코드 받기").click()
    (mail,) = smtp_server.wait_for(1)
    code = re.search(r"\b(\d{6})\b", mail.text)
    assert code is not None
    page.get_by_label("6자리 코드").fill(code.group(1))
    page.get_by_role("button", name="로그인").click()
    page.wait_for_url("**/m/bakery/")

    page.get_by_role("link", name="카드", exact=True).click()
    page.wait_for_url("**/m/bakery/card")
    scope = page.evaluate("navigator.serviceWorker.ready.then(r => r.active && r.scope)")
    assert scope.endswith("/m/bakery/")
    # The first visit may have come before the worker took over; this one goes through it.
    page.reload()
    page.wait_for_function("navigator.serviceWorker.controller !== null")
    assert page.locator("#token-qr").is_visible()
    assert not page.locator("#plain-card .qr svg").is_visible()

    page.context.set_offline(True)
    page.reload()
    assert page.locator("#token-qr").get_attribute("data-kept") == "1"  # the kept copy
    assert page.locator("#card-number").inner_text() == "BKR100000"
    # Offline, the signed code may have run out: the card number's QR code is shown instead.
    assert page.locator("#plain-card .qr svg").is_visible()
    assert not page.locator("#token-qr").is_visible()
    # Its styles came from the cache too: the card is drawn in the program's colours.
    background = page.locator(".cardface").evaluate("e => getComputedStyle(e).backgroundColor")
    assert background == "rgb(31, 41, 55)"
    # Any other of her pages, offline: the kept card rather than the browser's error page
    # (which also shows the worker's own fetches are offline, not only the page's).
    page.goto("/m/bakery/history")
    assert page.locator("#card-number").inner_text() == "BKR100000"

    # Signing out (which lands on the sign-in page) forgets the kept card.
    page.context.set_offline(False)
    page.goto("/m/bakery/profile")
    assert page.evaluate("caches.keys().then(k => k.length)") == 1
    page.get_by_role("button", name="이 기기에서 로그아웃").click()
    page.wait_for_url("**/m/bakery/sign-in")
    deadline = time.monotonic() + 5
    while page.evaluate("caches.keys().then(k => k.length)") and time.monotonic() < deadline:
        page.wait_for_timeout(100)
    assert page.evaluate("caches.keys().then(k => k.length)") == 0
