"""The member page's screenshots in docs/portal/ at phone width (390 px), from a running demo.

    .venv/bin/patron serve --demo            # in a scratch directory, so its messages.log is there
    .venv/bin/python scripts/portal_screenshots.py --log /path/to/messages.log

Signs in as 김민지 with the code the demo writes to its message log, then saves the pages.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

OUT = Path(__file__).resolve().parent.parent / "docs" / "portal"
EMAIL = "minji@example.com"


def latest_code(log: Path, after: int) -> str:
    for _ in range(50):
        lines = log.read_text(encoding="utf-8").splitlines()[after:]
        for line in reversed(lines):
            message = json.loads(line)
            if message.get("to") == EMAIL:
                found = re.search(r"\b(\d{6})\b", message.get("body", ""))
                if found:
                    return found.group(1)
        time.sleep(0.2)
    raise SystemExit(f"no sign-in code for {EMAIL} in {log}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="http://127.0.0.1:8000")
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_context(
            base_url=args.base, viewport={"width": 390, "height": 844}, device_scale_factor=2,
            is_mobile=True, has_touch=True, locale="ko-KR",
        ).new_page()  # fmt: skip

        def shot(name: str) -> None:
            page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)

        page.goto("/m/bakery/join")
        shot("join")
        page.goto("/m/bakery/sign-in")
        shot("sign-in")
        seen = len(args.log.read_text(encoding="utf-8").splitlines()) if args.log.exists() else 0
        page.get_by_label("휴대폰 번호 또는 이메일").fill(EMAIL)
        page.get_by_role("button", name="코드 받기").click()
        page.get_by_label("6자리 코드").fill(latest_code(args.log, seen))
        page.get_by_role("button", name="로그인").click()
        page.wait_for_url("**/m/bakery/")
        shot("home")
        for name in ("history", "card", "rewards", "coupons", "profile", "privacy"):
            page.goto(f"/m/bakery/{name}")
            shot(name)
        browser.close()
    print(f"saved in {OUT}")


if __name__ == "__main__":
    main()
