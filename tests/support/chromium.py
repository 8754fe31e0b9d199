"""One Chromium per test process, shared by every browser test directory.

Playwright's sync API runs one event loop per thread: a second `sync_playwright()` in the same
process (the admin's and the member page's session fixtures, say) fails. So the browser is
started once, here, on first use, and stopped when the process exits.
"""

from __future__ import annotations

import atexit
from typing import Any

_started: dict[str, Any] = {}


def shared_browser(executable: str) -> Any:
    if "browser" not in _started:
        from playwright.sync_api import sync_playwright

        playwright = sync_playwright().start()
        browser = playwright.chromium.launch(executable_path=executable, headless=True)
        _started.update(playwright=playwright, browser=browser)
        atexit.register(_stop)
    return _started["browser"]


def _stop() -> None:
    browser, playwright = _started.pop("browser", None), _started.pop("playwright", None)
    if browser is not None:
        browser.close()
    if playwright is not None:
        playwright.stop()
