"""The member page's point tiles add up to the balance: every component is shown (issue 19)."""

from __future__ import annotations

import html
import re

import pytest
from fastapi.testclient import TestClient

from tests.admin.helpers import STAFF, sign_in


@pytest.fixture
def web(app, staff, seeded):
    with TestClient(app) as test_client:
        yield test_client


def tile(page: str, name: str) -> int:
    found = re.search(rf'data-testid="{name}">([^<]*)<', page)
    assert found, f"no {name} tile"
    text = html.unescape(found.group(1))
    sign = -1 if text.strip().startswith(("-", "−")) else 1
    return sign * int(re.sub(r"\D", "", text) or 0)


@pytest.mark.parametrize("points", ["500", "-200"])
def test_the_tiles_reconcile_with_the_balance_adjustments_included(web, seeded, points):
    token = sign_in(web, STAFF["support"][0])
    answer = web.post(
        f"/admin/members/{seeded.member_id}/adjust",
        data={"csrf_token": token, "program": "bakery", "points": points, "reason": "goodwill"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    page = web.get(f"/admin/members/{seeded.member_id}?program=bakery").text
    figures = {
        name: tile(page, name)
        for name in (
            "balance",
            "tile-earned",
            "tile-adjusted",
            "tile-used",
            "tile-expired",
            "tile-pending",
        )
    }
    assert figures["tile-adjusted"] == int(points)
    assert figures["tile-earned"] > 0
    assert figures["balance"] == (
        figures["tile-earned"]
        + figures["tile-adjusted"]
        - figures["tile-used"]
        - figures["tile-expired"]
        - figures["tile-pending"]
    ), figures
    sentence = re.search(r'data-testid="reconcile">([^<]*)<', page)
    assert sentence and f"{figures['balance']:,} points balance" in html.unescape(sentence[1])


def test_a_manual_tier_without_an_end_date_says_it_holds_until_changed(web, seeded):
    token = sign_in(web, STAFF["support"][0])
    appeal = {"csrf_token": token, "program": "bakery", "tier": "gold", "reason": "VIP"}
    answer = web.post(
        f"/admin/members/{seeded.member_id}/tier",
        data={**appeal, "until": ""},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    page = web.get(f"/admin/members/{seeded.member_id}?program=bakery").text
    tier = page[page.index('id="tier"') :]
    tier = tier[: tier.index("</section>")]
    assert 'data-testid="tier-open-ended"' in tier and "Until staff change it" in tier
    assert "Valid until</dt><dd>" not in tier  # no date from the normal validity
    assert "more by the end of the period to keep" not in tier

    # With an end date, the page shows it, and what keeping the tier after it takes.
    dated = web.post(
        f"/admin/members/{seeded.member_id}/tier",
        data={**appeal, "csrf_token": token, "until": "2026-06-30"},
        follow_redirects=False,
    )
    assert dated.status_code == 303, dated.text
    page = web.get(f"/admin/members/{seeded.member_id}?program=bakery").text
    assert "Kept by hand until" in page and 'data-testid="tier-open-ended"' not in page
