"""Browser tests: Debian's Chromium driven by Playwright through a real uvicorn server.

- `browser`: one Chromium per test process (session scope), launched from /usr/bin/chromium
  (PATRON_CHROMIUM overrides). Playwright's own browser download is never used.
- `live_server`: create_app(db=...) on a free loopback port in a thread, per test, so every
  flow runs once on SQLite and once on PostgreSQL (the `db` fixture).
- `page`: a new browser context (fresh cookies) per test, 1280×800, failing on any page error.
- `shot(page, name)`: a screenshot into the test's tmp dir, proving the page renders; with
  PATRON_SCREENSHOTS=1 (and on SQLite) it also refreshes docs/admin/<name>.png.
- `sign_in_as(page, role)`: signs in as one of tests.admin.helpers.STAFF.

Without Chromium the tests skip, except with CI=true, where a missing browser fails the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from patron.db.engine import Database
from tests.admin.helpers import PASSWORD, STAFF
from tests.conftest import IN_CI
from tests.support.chromium import shared_browser

CHROMIUM = os.environ.get("PATRON_CHROMIUM", "/usr/bin/chromium")
DOCS = Path(__file__).resolve().parents[3] / "docs" / "admin"
UPDATE_DOCS = os.environ.get("PATRON_SCREENSHOTS", "") == "1"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"CI=true: {message}", pytrace=False)
        pytest.skip(message)
    # Shared with the member page's browser tests (tests/support/chromium.py says why).
    yield shared_browser(CHROMIUM)


class LiveServer:
    def __init__(self, db: Database) -> None:
        import uvicorn

        from patron.app import create_app

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            create_app(db=db), log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def live_server(db: Database) -> Iterator[LiveServer]:
    with LiveServer(db) as server:
        yield server


@pytest.fixture
def page(browser, live_server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(
        base_url=live_server.url, viewport={"width": 1280, "height": 800}, locale="en-GB"
    )
    context.set_default_timeout(10_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    # Anything the page loads must come from Patron itself.
    outside: list[str] = []
    pg.on(
        "request",
        lambda req: None if req.url.startswith(live_server.url) else outside.append(req.url),
    )
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not outside, f"the page loaded something from outside Patron: {outside}"


@pytest.fixture
def shot(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Path]:
    engine = request.node.callspec.params.get("db", "sqlite")

    def take(pg: Any, name: str, *, full_page: bool = True) -> Path:
        path = tmp_path / f"{name}.png"
        pg.evaluate("window.scrollTo(0, 0)")  # else the sticky header lands mid-page
        pg.screenshot(path=str(path), full_page=full_page)
        assert path.stat().st_size > 5_000, f"{name}: the screenshot is nearly empty"
        if UPDATE_DOCS and engine == "sqlite":
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, DOCS / f"{name}.png")
        return path

    return take


@pytest.fixture
def sign_in_as(page: Any) -> Callable[[str], None]:
    def go(role: str) -> None:
        email = STAFF[role][0]
        page.goto("/admin/sign-in")
        page.get_by_label("E-mail").fill(email)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url("**/admin/")

    return go
