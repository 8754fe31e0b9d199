"""A member on her phone: signs in with the code from her e-mail, sees her balance and card,
redeems a reward and shows its coupon QR."""

from __future__ import annotations

import re
from pathlib import Path

from tests.portal.conftest import A_EMAIL


def test_sign_in_balance_card_redeem_coupon(phone, portal, smtp_server, monkeypatch, tmp_path):
    monkeypatch.setattr("patron.portal.web.get_settings", lambda: smtp_server.settings())
    page = phone
    page.goto("/m/bakery/")
    page.wait_for_url("**/m/bakery/sign-in")
    page.get_by_label("휴대폰 번호 또는 이메일").fill(A_EMAIL)
    page.get_by_role("button", name="코드 받기").click()
    (mail,) = smtp_server.wait_for(1)
    assert mail.subject.endswith("로그인 코드")
    code = re.search(r"\b(\d{6})\b", mail.text)
    assert code is not None
    page.get_by_label("6자리 코드").fill(code.group(1))
    page.get_by_role("button", name="로그인").click()
    page.wait_for_url("**/m/bakery/")
    assert page.locator("#balance").inner_text().startswith("8,500")
    # Nothing wider than the phone: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    page.get_by_role("link", name="카드", exact=True).click()
    assert page.locator("#card-number").inner_text() == "BKR100000"
    box = page.locator(".qr svg").bounding_box()
    assert box is not None and box["width"] >= 250

    page.get_by_role("link", name="혜택", exact=True).click()
    page.get_by_role("link", name="교환하기").click()
    page.get_by_role("button", name="교환하기").click()
    page.wait_for_url("**/m/bakery/coupons")
    page.locator("main a").first.click()
    qr = page.locator("#coupon-qr svg")
    assert qr.is_visible()
    shot = Path(tmp_path) / "coupon.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 5_000
    page.get_by_role("link", name="홈", exact=True).click()
    assert page.locator("#balance").inner_text().startswith("7,000")
