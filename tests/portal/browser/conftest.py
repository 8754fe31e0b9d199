"""The admin browser fixtures (Chromium from /usr/bin, a live uvicorn server per test) and the
SMTP catcher; `phone` is a page at 390×844, the size the member pages are designed for, and
`screen` the same walk at both sizes: the phone and a 1280×800 desktop."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.admin.browser.conftest import browser, live_server  # noqa: F401
from tests.support.mail import (  # noqa: F401
    make_smtp_server_fixture,
    smtp_server_fixture,
    smtp_tls_fixture,
)

PHONE: dict[str, Any] = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}
DESKTOP: dict[str, Any] = {"viewport": {"width": 1280, "height": 800}}


@pytest.fixture
def phone(browser, live_server) -> Iterator[Any]:  # noqa: F811
    yield from _page(browser, live_server, PHONE)


@pytest.fixture(params=["phone", "desktop"])
def screen(request, browser, live_server) -> Iterator[Any]:  # noqa: F811
    yield from _page(browser, live_server, PHONE if request.param == "phone" else DESKTOP)


def _page(browser, live_server, device: dict[str, Any]) -> Iterator[Any]:  # noqa: F811
    context = browser.new_context(base_url=live_server.url, locale="ko-KR", **device)
    context.set_default_timeout(10_000)
    pg = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on(
        "request",
        lambda req: None if req.url.startswith(live_server.url) else outside.append(req.url),
    )
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"
    assert not outside, f"the page loaded something from outside Patron: {outside}"
