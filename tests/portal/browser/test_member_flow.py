"""A member on her phone (390 px) and on a desktop (1280 px): signs in with the code from her
e-mail, sees her balance and card, redeems a reward and shows its coupon QR, switches the page
to English and downloads her data. axe-core checks every page on the way: no serious or
critical violation."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.portal.conftest import A_EMAIL
from tests.support.axe import serious_violations


def accessible(page) -> None:
    found = serious_violations(page)
    assert found == {}, f"{page.url}: {found}"


def test_sign_in_balance_card_redeem_coupon_language_data(
    screen, portal, smtp_server, monkeypatch, tmp_path
):
    monkeypatch.setattr("patron.portal.web.get_settings", lambda: smtp_server.settings())
    page = screen
    width = page.viewport_size["width"]
    page.goto("/m/bakery/")
    page.wait_for_url("**/m/bakery/sign-in")
    accessible(page)
    page.get_by_label("휴대폰 번호 또는 이메일").fill(A_EMAIL)
    page.get_by_role("button", name="코드 받기").click()
    accessible(page)
    (mail,) = smtp_server.wait_for(1)
    assert mail.subject.endswith("로그인 코드")
    code = re.search(r"\b(\d{6})\b", mail.text)
    assert code is not None
    page.get_by_label("6자리 코드").fill(code.group(1))
    page.get_by_role("button", name="로그인").click()
    page.wait_for_url("**/m/bakery/")
    assert page.locator("#balance").inner_text().startswith("8,500")
    accessible(page)
    # Nothing wider than the screen: no sideways scrolling.
    assert page.evaluate("document.documentElement.scrollWidth") <= width

    page.get_by_role("link", name="카드", exact=True).click()
    assert page.locator("#card-number").inner_text() == "BKR100000"
    box = page.locator(".qr svg").first.bounding_box()
    assert box is not None and box["width"] >= 250
    accessible(page)

    page.get_by_role("link", name="내역", exact=True).click()
    assert page.get_by_text("직원이 10,000포인트 지급").is_visible()
    accessible(page)

    page.get_by_role("link", name="혜택", exact=True).click()
    accessible(page)
    page.get_by_role("link", name="교환하기").click()
    accessible(page)
    page.get_by_role("button", name="교환하기").click()
    page.wait_for_url("**/m/bakery/coupons")
    accessible(page)
    page.locator("main a").first.click()
    qr = page.locator("#coupon-qr svg")
    assert qr.is_visible()
    accessible(page)
    shot = Path(tmp_path) / "coupon.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 5_000
    page.get_by_role("link", name="홈", exact=True).click()
    assert page.locator("#balance").inner_text().startswith("7,000")

    # Her page in English, from her profile; it stays English on every page.
    page.get_by_role("link", name="내 정보", exact=True).click()
    accessible(page)
    language = page.get_by_label("언어", exact=True)
    language.select_option("en")
    page.locator("form", has=language).get_by_role("button").click()
    page.wait_for_url("**/m/bakery/profile")
    assert page.locator("html").get_attribute("lang") == "en"
    page.get_by_role("link", name="Home", exact=True).click()
    assert page.locator("#balance").inner_text().startswith("7,000 points")

    # Her data, as the JSON file the privacy page hands out.
    page.get_by_role("link", name="Profile", exact=True).click()
    page.get_by_role("link", name=re.compile("privacy|data", re.I)).first.click()
    accessible(page)
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile("Download", re.I)).click()
    saved = Path(tmp_path) / "my-data.json"
    download.value.save_as(saved)
    data = json.loads(saved.read_text(encoding="utf-8"))
    text = json.dumps(data, ensure_ascii=False)
    assert "김민지" in text and "BKR100000" in text and "BKR100001" not in text
