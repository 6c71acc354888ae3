"""``GET /`` on the admin listener: the status page's HTML shell.

One self-contained document: gateway/status_page.html with the stylesheet
(status_page.css) and the script (status_page.js) inlined into it once, at import,
so the page loads no external asset and needs no CDN. The script fetches
``status/live`` (gateway/status_live.py) every two seconds and updates the page in
place. The shell holds no data, so it is served without the admin token; the page
asks for the token and sends it as an ``Authorization`` header on its own requests
(see the script's opening comment).

The Content-Security-Policy allows exactly that inline script and style (by hash),
requests to the page's own origin, and nothing else: no external asset can load,
nothing can frame the page, and no form can submit anywhere (so a token typed into
the page cannot end up in a URL even if the script failed).
"""

from __future__ import annotations

import base64
import hashlib
from importlib import resources

from aiohttp import web

__all__ = ["STATUS_PAGE", "CONTENT_SECURITY_POLICY", "status_page_response"]


def _resource(name: str) -> str:
    return resources.files("gateway").joinpath(name).read_text(encoding="utf-8")


def _fill(template: str, marker: str, content: str) -> str:
    if template.count(marker) != 1:  # the policy below allows exactly one of each
        raise RuntimeError(f"status_page.html must hold {marker} exactly once")
    return template.replace(marker, content)


def _source_hash(content: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(content.encode("utf-8")).digest()).decode("ascii") + "'"


_STYLE = _resource("status_page.css")
_SCRIPT = _resource("status_page.js")
STATUS_PAGE = _fill(_fill(_resource("status_page.html"), "{style}", _STYLE), "{script}", _SCRIPT)

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    f"script-src {_source_hash(_SCRIPT)}",
    f"style-src {_source_hash(_STYLE)}",
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
])

_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def status_page_response(request: web.Request) -> web.Response:
    return web.Response(text=STATUS_PAGE, content_type="text/html", charset="utf-8", headers=_HEADERS)
