"""The admin UI for people who use a keyboard, a screen reader or low vision: axe-core finds no
serious or critical violation on the pages staff use every day, and the focus ring stands out
at least 3:1 from what is around it (WCAG 2.2, 1.4.11). Engine-independent: SQLite only."""

from __future__ import annotations

import re

import pytest

from tests.support.axe import serious_violations

pytestmark = [
    pytest.mark.browser,
    pytest.mark.parametrize("db", ["sqlite"], indirect=True),
]

PAGES = (
    "/admin/",
    "/admin/members",
    "/admin/rules",
    "/admin/tiers",
    "/admin/rewards",
    "/admin/reports",
    "/admin/reports/liability",
    "/admin/messages",
    "/admin/audit",
    "/admin/staff",
    "/admin/program",
)


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: tuple[int, int, int], b: tuple[int, int, int]) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def rgb(css: str) -> tuple[int, int, int]:
    found = re.match(r"rgba?\((\d+), (\d+), (\d+)", css)
    assert found, css
    return int(found[1]), int(found[2]), int(found[3])


def test_the_daily_pages_have_no_serious_accessibility_violation(page, staff, seeded, sign_in_as):
    sign_in_as("owner")
    found = {}
    for path in PAGES:
        page.goto(path)
        violations = serious_violations(page)
        if violations:
            found[path] = violations
    member = page.goto(f"/admin/members/{seeded.member_id}")
    assert member is not None and member.ok
    if violations := serious_violations(page):
        found["member"] = violations
    assert found == {}


def test_the_focus_ring_stands_out_from_the_page(page, staff, seeded, sign_in_as):
    sign_in_as("support")
    page.goto("/admin/members")
    box = page.get_by_label("Card, phone, e-mail or name")
    box.focus()
    page.keyboard.press("Tab")  # keyboard focus, so :focus-visible applies
    style = page.evaluate(
        """() => {
            const el = document.activeElement;
            const ring = getComputedStyle(el);
            let node = el.parentElement, bg = 'rgba(0, 0, 0, 0)';
            while (node && /rgba\\(0, 0, 0, 0\\)|transparent/.test(bg)) {
                bg = getComputedStyle(node).backgroundColor;
                node = node.parentElement;
            }
            return {
                tag: el.tagName, outline: ring.outlineColor, style: ring.outlineStyle,
                width: ring.outlineWidth, around: bg,
            };
        }"""
    )
    assert style["style"] != "none" and float(style["width"].removesuffix("px")) >= 2, style
    ratio = contrast(rgb(style["outline"]), rgb(style["around"]))
    assert ratio >= 3, (style, ratio)
    # Against white too (cards), whatever the element sits on.
    assert contrast(rgb(style["outline"]), (255, 255, 255)) >= 3
