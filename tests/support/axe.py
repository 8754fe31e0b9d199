"""axe-core (bundled by axe-playwright-python) run on the page a test is looking at.

`serious_violations(page)` answers the axe rule ids with "serious" or "critical" impact, each
with the elements it flags, so a failing assert says what to fix."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from axe_playwright_python.sync_playwright import Axe

BLOCKING = frozenset({"serious", "critical"})
# WCAG 2.1 A and AA plus axe's best practices (landmarks, headings, …).
RULES = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa",
                                              "best-practice"]}}  # fmt: skip


@lru_cache(maxsize=1)
def _axe() -> Axe:
    return Axe()


def serious_violations(page: Any) -> dict[str, list[str]]:
    results = _axe().run(page, options={"resultTypes": ["violations"], **RULES})
    return {
        violation["id"]: [", ".join(node["target"]) for node in violation["nodes"]]
        for violation in results.response["violations"]
        if violation.get("impact") in BLOCKING
    }


def all_violations(page: Any) -> dict[str, str]:
    """Every violation id with its impact (for reports, not for asserts)."""
    results = _axe().run(page, options={"resultTypes": ["violations"], **RULES})
    return {v["id"]: str(v.get("impact")) for v in results.response["violations"]}
