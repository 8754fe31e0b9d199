"""The member page as an installable app: manifest, icons, service worker, the program's
branding as CSS, and the page's Content-Security-Policy."""

from __future__ import annotations

import json
import re

from patron import clock
from patron.audit.service import CLI
from patron.programs import branding
from patron.programs.service import get_program
from tests.portal.test_pages import outbox, sign_in  # noqa: F401 - a fixture

BASE = "/m/bakery"
BRAND = branding.Branding(
    display_name=branding.DisplayNames(ko="동네 빵집", en="Corner Bakery"),
    logo_url="/static/logo.svg",
    primary_color="#7a1f5c",
    accent_color="#ffcc00",
    card_background="#102030",
    card_text="#fafafa",
)


def brand(db, value: branding.Branding = BRAND) -> None:
    with db.unit_of_work() as s:
        branding.save(s, get_program(s, "bakery"), value, actor=CLI, now=clock.now())


def test_manifest_carries_the_programs_name_and_colours(client, db, portal):
    brand(db)
    r = client.get(f"{BASE}/manifest.webmanifest", headers={"Accept-Language": "ko"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/manifest+json")
    manifest = json.loads(r.text)
    assert manifest["name"] == "동네 빵집"
    assert manifest["theme_color"] == "#7a1f5c" and manifest["background_color"] == "#102030"
    assert manifest["scope"] == manifest["start_url"] == f"{BASE}/"
    assert manifest["display"] == "standalone"
    for icon in manifest["icons"]:
        got = client.get(icon["src"])
        assert got.status_code == 200 and got.headers["content-type"] == icon["type"], icon
        if icon["type"] == "image/png":
            assert got.content.startswith(b"\x89PNG")
        else:
            assert 'fill="#102030"' in got.text and ">C<" in got.text  # English initial
    assert {i["sizes"] for i in manifest["icons"]} >= {"192x192", "512x512"}
    assert client.get(f"{BASE}/icon-64.png").status_code == 404
    assert client.get("/m/nowhere/manifest.webmanifest").status_code == 404


def test_the_service_worker_is_served_for_the_programs_scope(client, portal):
    r = client.get(f"{BASE}/sw.js")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/javascript")
    assert r.headers["cache-control"] == "no-cache"
    # Its scope is its own path's folder, /m/bakery/: no Service-Worker-Allowed needed.
    assert "service-worker-allowed" not in r.headers
    assert "self.registration.scope" in r.text and "sign-in" in r.text
    assert 'request.method !== "GET"' in r.text  # never a POST
    assert client.get("/m/nowhere/sw.js").status_code == 404


def test_brand_css_follows_a_branding_change(client, db, portal):
    first = client.get(f"{BASE}/brand.css")
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/css")
    assert "--brand-primary:#1a56db" in first.text  # the defaults without a branding
    etag = first.headers["etag"]
    assert client.get(f"{BASE}/brand.css", headers={"If-None-Match": etag}).status_code == 304
    brand(db)
    second = client.get(f"{BASE}/brand.css", headers={"If-None-Match": etag})
    assert second.status_code == 200 and second.headers["etag"] != etag
    css = second.text
    for prop in ("--brand-primary:#7a1f5c", "--brand-card-bg:#102030",
                 "--brand-card-text:#fafafa", "--brand-on-primary:#ffffff"):  # fmt: skip
        assert prop in css
    # Light primary colour: dark text on it reads better than white.
    brand(db, BRAND.model_copy(update={"primary_color": "#ffe066"}))
    third = client.get(f"{BASE}/brand.css")
    assert "--brand-on-primary:#1b1b1b" in third.text
    # Under its version, cached for good; any other address revalidates.
    version = third.headers["etag"].strip('"')
    assert "immutable" in client.get(f"{BASE}/brand.css?v={version}").headers["cache-control"]
    assert client.get(f"{BASE}/brand.css?v=old").headers["cache-control"] == "no-cache"


def test_pages_link_branding_manifest_and_script(client, db, portal, outbox):  # noqa: F811
    brand(db)
    sign_in(client, outbox)
    page = client.get(f"{BASE}/card")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "script-src 'none'" not in csp and "img-src 'self' data:;" in csp
    html = page.text
    version = client.get(f"{BASE}/brand.css").headers["etag"].strip('"')
    assert f'href="{BASE}/brand.css?v={version}"' in html
    assert f'rel="manifest" href="{BASE}/manifest.webmanifest"' in html
    assert re.search(r'<script src="/m/static/portal\.js\?v=[^"]+" defer></script>', html)
    assert "<script>" not in html  # no inline script: the CSP allows none
    assert 'class="cardface"' in html and 'src="/static/logo.svg"' in html
    assert "동네 빵집" in html  # her language's display name, header and card
    assert client.get("/m/static/portal.js").status_code == 200
    # Every page well under 100 KB, the card page with both its QR codes included.
    for path in ("/card", "/card?plain=1", "/", "/sign-in"):
        assert len(client.get(BASE + path).content) < 100_000


def test_an_https_logo_is_allowed_by_its_host_only(client, db, portal, outbox):  # noqa: F811
    brand(db, BRAND.model_copy(update={"logo_url": "https://cdn.example.com/bakery.png"}))
    page = client.get(f"{BASE}/sign-in")
    csp = page.headers["content-security-policy"]
    assert "img-src 'self' data: https://cdn.example.com;" in csp
    assert 'src="https://cdn.example.com/bakery.png"' in page.text
