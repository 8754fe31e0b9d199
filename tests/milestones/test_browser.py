"""In Chromium at 390 px (a phone): the public survey page /s/{token} in ko, zh and en (no
sideways scroll, the answer submits), the member page's badges, progress bars and survey
invitation, and /admin/milestones — none wider than the screen. SQLite only (the flows on both
engines are the HTTP tests)."""

from __future__ import annotations

import re

import pytest

from patron import clock
from patron.portal import service as portal_service
from tests.admin.helpers import PASSWORD, STAFF
from tests.milestones.conftest import P, buy, goal, run, seoul
from tests.surveys.conftest import SURVEY

pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True}  # fmt: skip
TITLES = {
    "ko": "오늘 방문은 어떠셨나요?",
    "zh": "오늘 방문은 어떠셨나요?",
    "en": "How was your visit?",
}


def _narrow(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"{page.url} scrolls sideways: {width} px"


def test_survey_page_member_page_and_admin_at_390px(
    browser,
    live_server,
    client,
    admin,
    pos,
    staff,
    kim,
    monkeypatch,
):
    clock.freeze(seoul(2026, 3, 10, 12, 0))
    goal(client, admin, code="first-visit", kind="visits", target=1,
         names={"ko": "첫 방문 기념 배지 (아주 긴 이름도 줄바꿈됩니다)", "en": "First visit"})  # fmt: skip
    goal(client, admin, code="ten-visits", kind="visits", target=10, window="month", repeat=True,
         names={"ko": "단골손님", "en": "Regular"}, points=500)  # fmt: skip
    buy(client, pos, "010-1234-5678", "K1", seoul(2026, 3, 9, 12, 0))
    run(client, admin)
    assert client.post(f"{P}/surveys", json=SURVEY, headers=admin).status_code == 201
    made = client.post(f"{P}/surveys/after-visit/invitations",
                       json={"member": {"id": kim["id"]}}, headers=admin)  # fmt: skip
    token = made.json()["token"]

    context = browser.new_context(base_url=live_server.url, locale="ko-KR", **PHONE)
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        for lang, title in TITLES.items():
            page.goto(f"/s/{token}?lang={lang}")
            assert page.locator("h1").inner_text() == title
            _narrow(page)
        page.goto(f"/s/{token}?lang=en")
        page.locator("input[name=overall][value='4']").check()
        page.get_by_label("Yes").check()
        page.get_by_label("Bread").check()
        page.locator("textarea").fill("맛있어요 " * 40)
        page.get_by_role("button", name="Send").click()
        assert "Thank you" in page.locator("#thanks").inner_text()
        _narrow(page)

        # The member page: badges and a progress bar, in Korean, within the screen.
        sent: list[portal_service.CodeMessage] = []
        monkeypatch.setattr("patron.portal.views.send_code", sent.append)
        page.goto("/m/bakery/sign-in")
        page.get_by_label("휴대폰 번호 또는 이메일").fill("minji@example.com")
        page.get_by_role("button", name="코드 받기").click()
        page.get_by_label("6자리 코드").wait_for()  # the code was sent once its form shows
        code = re.search(r"\b(\d{6})\b", sent[-1].body)
        assert code is not None
        page.get_by_label("6자리 코드").fill(code.group(1))
        page.get_by_role("button", name="로그인").click()
        page.wait_for_url("**/m/bakery/")
        assert "첫 방문 기념 배지" in page.locator("#badge-first-visit").inner_text()
        bar = page.locator("#goal-ten-visits progress")
        assert bar.get_attribute("value") == "1" and bar.get_attribute("max") == "10"
        assert (bar.bounding_box() or {}).get("width", 0) > 250
        assert page.locator("#survey-invitations").count() == 0  # answered: no invitation
        _narrow(page)

        page.goto("/admin/sign-in")
        page.get_by_label("이메일").or_(page.get_by_label("E-mail")).first.fill(
            STAFF["marketer"][0]
        )
        page.locator("input[type=password]").fill(PASSWORD)
        page.locator("form button[type=submit]").first.click()
        page.wait_for_url("**/admin/")
        page.goto("/admin/milestones?program=bakery")
        assert page.locator("#milestone-first-visit .achievers").inner_text() == "1"
        _narrow(page)
    finally:
        context.close()
    assert errors == []
