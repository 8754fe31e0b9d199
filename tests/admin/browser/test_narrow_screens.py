"""The admin UI on a phone (360 px, the narrowest common screen): with a year of demo history
(long tables, big figures) no page scrolls sideways, in English, Korean and Chinese. A table
wider than the screen scrolls by itself; the page stays put. Engine-independent: SQLite only."""

from __future__ import annotations

from datetime import timedelta

import pytest

from patron import clock, demo
from patron.admin import service

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("db", ["sqlite"], indirect=True),
]

WIDTH = 360
PAGES = (
    "/admin/",
    "/admin/members/{member}",
    "/admin/members/{member}/privacy",
    "/admin/members/{member}/moves",
    "/admin/rules",
    "/admin/tiers",
    "/admin/rewards",
    "/admin/reports",
    "/admin/reports/liability",
    "/admin/reports/members",
    "/admin/messages",
    "/admin/program",
    "/admin/program/transfers",
    "/admin/staff",
    "/admin/audit",
    "/admin/fraud",
    "/admin/privacy",
)

# What sticks out past the right edge, outside any box that scrolls by itself.
WIDE = """(width) => {
  const scrolls = (el) => {
    for (let p = el.parentElement; p; p = p.parentElement) {
      if (getComputedStyle(p).overflowX !== 'visible') return true;
    }
    return false;
  };
  const out = [];
  for (const el of document.querySelectorAll('main *')) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 1 && !scrolls(el)) {
      out.push(el.tagName + '.' + (el.getAttribute('class') || '') + ' '
        + (el.innerText || '').slice(0, 40));
    }
  }
  return out.slice(0, 3);
}"""


def test_no_admin_page_scrolls_sideways_at_360_px(db, browser, live_server):
    loaded = demo.load(db, now=clock.now() - timedelta(minutes=1), members_count=12, days=365)
    _role, email, password = next(s for s in loaded.staff if s[0] == "owner")
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": WIDTH, "height": 800}, locale="en-GB"
    )
    context.set_default_timeout(10_000)
    page = context.new_page()
    page.goto("/admin/sign-in")
    page.locator("input[name=email]").fill(email)
    page.locator("input[name=password]").fill(password)
    page.locator("button[type=submit]").click()
    page.wait_for_url("**/admin/")
    member = 1  # the walk-through member: the longest history
    too_wide: dict[str, object] = {}
    for language in ("en", "ko", "zh"):
        with db.unit_of_work() as session:
            user = service.find_user(session, email)
            service.set_language(session, user, language, now=clock.now())
        for path in PAGES:
            answer = page.goto(path.format(member=member))
            assert answer is not None and answer.ok, f"{path}: {answer and answer.status}"
            assert page.evaluate("document.documentElement.lang") == language
            scroll = page.evaluate("document.documentElement.scrollWidth")
            if scroll > WIDTH:
                too_wide[f"{language} {path}"] = (scroll, page.evaluate(WIDE, WIDTH))
    context.close()
    assert too_wide == {}
