"""Response headers of every console page and of /api/docs: a strict CSP (scripts and
styles only from this origin, no inline script, no eval), no framing, no sniffing."""

from __future__ import annotations

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)

HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def secure_headers(response):
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response
