"""The member page as an installable app: its manifest, icons and service worker, and the
program's branding as CSS custom properties (brand.css).

The service worker (static/sw.js, served from /m/{program}/sw.js so that its scope is the
program's pages) keeps the last card page the member opened, for a till when the phone is
offline. Nothing here is personal: these answers are the same for everyone.
"""

from __future__ import annotations

import json
from functools import lru_cache
from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import Response

from patron.portal.templating import brand_of, brand_version, browser_language, path_for
from patron.portal.web import STATIC, ProgramCode, load_program
from patron.programs import branding
from patron.wallet.images import badge_png
from patron.wallet.pkpass import parse_hex

router = APIRouter(prefix="/{program}")
ICON_SIZES = (192, 512)
DARK_TEXT = "#1b1b1b"


def on_primary(brand: branding.Branding) -> str:
    """White or near-black, whichever reads better on the primary colour."""
    white = branding.contrast_ratio(branding.WHITE, brand.primary_color)
    dark = branding.contrast_ratio(DARK_TEXT, brand.primary_color)
    return branding.WHITE if white >= dark else DARK_TEXT


def brand_css_text(brand: branding.Branding) -> str:
    properties = {
        "primary": brand.primary_color,
        "on-primary": on_primary(brand),
        "accent": brand.accent_color,
        "card-bg": brand.card_background,
        "card-text": brand.card_text,
    }
    body = ";".join(f"--brand-{name}:{value}" for name, value in properties.items())
    return f":root{{{body}}}\n"


@router.get("/brand.css", name="brand_css")
def brand_css(request: Request, program: str = ProgramCode) -> Response:
    """The program's colours; revalidated by ETag, cached for good under its ?v= version."""
    brand = brand_of(request, load_program(request, program))
    version = brand_version(brand)
    etag = f'"{version}"'
    cache = (
        "public, max-age=31536000, immutable"
        if request.query_params.get("v") == version
        else "no-cache"
    )
    headers = {"ETag": etag, "Cache-Control": cache}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    return Response(brand_css_text(brand), media_type="text/css", headers=headers)


@router.get("/manifest.webmanifest", name="manifest")
def manifest(request: Request, program: str = ProgramCode) -> Response:
    """The web app manifest: the program's name and colours; opens on the member's home."""
    info = load_program(request, program)
    brand = brand_of(request, info)
    name = brand.name_in(browser_language(request), info.name)
    version = brand_version(brand)
    icons = [
        {
            "src": f"{path_for(request, 'app_icon_png', program=program, size=size)}?v={version}",
            "sizes": f"{size}x{size}",
            "type": "image/png",
            "purpose": "any",
        }
        for size in ICON_SIZES
    ]
    icons.append(
        {
            "src": f"{path_for(request, 'app_icon', program=program)}?v={version}",
            "sizes": "any",
            "type": "image/svg+xml",
            "purpose": "any",
        }
    )
    document = {
        "name": name,
        "short_name": name[:12],
        "id": path_for(request, "home", program=program),
        "start_url": path_for(request, "home", program=program),
        "scope": path_for(request, "home", program=program),
        "display": "standalone",
        "theme_color": brand.primary_color,
        "background_color": brand.card_background,
        "icons": icons,
    }
    return Response(
        json.dumps(document, ensure_ascii=False),
        media_type="application/manifest+json",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/icon.svg", name="app_icon")
def app_icon(request: Request, program: str = ProgramCode) -> Response:
    """The app's icon: the program's initial in the card's colours."""
    info = load_program(request, program)
    brand = brand_of(request, info)
    initial = escape(brand.name_in("en", info.name)[:1].upper() or "P")
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 512 512">'
        f'<rect width="512" height="512" rx="96" fill="{brand.card_background}"/>'
        f'<text x="256" y="256" dy=".35em" text-anchor="middle" font-family="sans-serif" '
        f'font-size="300" font-weight="700" fill="{brand.card_text}">{initial}</text></svg>'
    )
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-cache"})


@lru_cache(maxsize=32)
def _icon_png(size: int, background: str, foreground: str) -> bytes:
    return badge_png(size, size, parse_hex(background), parse_hex(foreground))


@router.get("/icon-{size}.png", name="app_icon_png")
def app_icon_png(request: Request, size: int, program: str = ProgramCode) -> Response:
    """A PNG icon (192 or 512 px): a disc in the card's colours, as on the wallet pass."""
    info = load_program(request, program)
    if size not in ICON_SIZES:
        return Response(status_code=404)
    brand = brand_of(request, info)
    return Response(
        _icon_png(size, brand.card_background, brand.card_text),
        media_type="image/png",
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/sw.js", name="service_worker")
def service_worker(request: Request, program: str = ProgramCode) -> Response:
    """The service worker, from the program's path so that its scope is /m/{program}/."""
    load_program(request, program)
    return Response(
        (STATIC / "sw.js").read_bytes(),
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache"},
    )
