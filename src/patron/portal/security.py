"""The member pages' Content-Security-Policy: scripts, styles and images only from this server
(the one script registers the offline card's service worker), no framing, forms only here."""

from __future__ import annotations

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'self'"
)


def csp_with_image_origin(origin: str) -> str:
    """The policy with one more image origin: a program logo served from another https host."""
    return CSP.replace("img-src 'self' data:", f"img-src 'self' data: {origin}")
