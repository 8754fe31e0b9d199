"""The admin UI on phones and tablets: with a year of demo history (long tables, big figures) no
page scrolls sideways at 360 px (the narrowest common phone), 390 px (a common phone) or 768 px
(a tablet held upright), in English, Korean and Chinese, and a header that stays on screen takes
at most one line of sections under the brand (on a phone it scrolls away with the page). A table wider than the screen scrolls
by itself; the page stays put. Each page is loaded once per language and measured at every
width (resizing re-lays the page out). Engine-independent: SQLite only."""

from __future__ import annotations

from datetime import timedelta

import pytest

from patron import clock, demo
from patron.admin import service

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("db", ["sqlite"], indirect=True),
]

WIDTHS = (360, 390, 768)
# Every page a staff member opens (downloads, print sheets and htmx fragments aside).
PAGES = (
    "/admin/",
    "/admin/account",
    "/admin/members",
    "/admin/members/{member}",
    "/admin/members/{member}/privacy",
    "/admin/members/{member}/moves",
    "/admin/rules",
    "/admin/rules/new",
    "/admin/rules/settings",
    "/admin/rules/versions",
    "/admin/rules/versions/1",
    "/admin/tiers",
    "/admin/rewards",
    "/admin/rewards/coupons",
    "/admin/segments",
    "/admin/segments/new",
    "/admin/surveys",
    "/admin/surveys/new",
    "/admin/reports",
    "/admin/reports/liability",
    "/admin/reports/members",
    "/admin/reports/period",
    "/admin/reports/promotions",
    "/admin/reports/journal",
    "/admin/messages",
    "/admin/deliveries",
    "/admin/webhooks",
    "/admin/jobs",
    "/admin/program",
    "/admin/program/transfers",
    "/admin/program/bakery/branding",
    "/admin/program/bakery/signup",
    "/admin/program/bakery/stores",
    "/admin/staff",
    "/admin/staff/new",
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
  for (const el of document.querySelectorAll('body *')) {
    const box = el.getBoundingClientRect();
    if (box.right > width + 1 && !scrolls(el)) {
      out.push(el.tagName + '.' + (el.getAttribute('class') || '') + ' '
        + (el.innerText || '').slice(0, 40));
    }
  }
  return out.slice(0, 3);
}"""

# The height a header that stays on screen takes from the page (0 when it scrolls away).
HEADER = """() => {
  const bar = document.querySelector('.topbar');
  if (!bar) return 0;
  const where = getComputedStyle(bar).position;
  return where === 'sticky' || where === 'fixed' ? Math.round(bar.getBoundingClientRect().height) : 0;
}"""
MAX_HEADER = 110  # px: the brand and user line plus one line of sections
# Phone-width pictures for docs/admin/ (refreshed by `make screenshots`), in English at 390 px.
PHONE_SHOTS = {
    "/admin/": "phone-home",
    "/admin/members/{member}": "phone-member-360",
    "/admin/rules": "phone-rules-list",
    "/admin/reports": "phone-dashboard",
    "/admin/audit": "phone-audit-log",
}


def test_no_admin_page_scrolls_sideways_on_phones_and_tablets(db, browser, live_server, shot):
    loaded = demo.load(db, now=clock.now() - timedelta(minutes=1), members_count=12, days=365)
    _role, email, password = next(s for s in loaded.staff if s[0] == "owner")
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": WIDTHS[0], "height": 800}, locale="en-GB"
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
            page.set_viewport_size({"width": WIDTHS[0], "height": 800})
            answer = page.goto(path.format(member=member))
            assert answer is not None and answer.ok, f"{path}: {answer and answer.status}"
            assert page.evaluate("document.documentElement.lang") == language
            for width in WIDTHS:
                if width != WIDTHS[0]:
                    page.set_viewport_size({"width": width, "height": 800})
                scroll = page.evaluate("document.documentElement.scrollWidth")
                if scroll > width:
                    too_wide[f"{language} {width} {path}"] = (scroll, page.evaluate(WIDE, width))
                if width == 390 and language == "en" and path in PHONE_SHOTS:
                    shot(page, PHONE_SHOTS[path], full_page=False)
                header = page.evaluate(HEADER)
                if header > MAX_HEADER:
                    too_wide[f"{language} {width} {path} header"] = header
    context.close()
    assert too_wide == {}
