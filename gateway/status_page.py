"""``GET /`` on the admin listener: the status page's HTML shell.

One self-contained document (gateway/status_page.html: inline CSS and JavaScript,
no external asset, no CDN) that fetches ``status/live`` (gateway/status_live.py)
every two seconds and updates itself in place. The shell holds no data, so it is
served without the admin token; the page asks for the token and sends it as an
``Authorization`` header on its own requests (see the script's comment).

The Content-Security-Policy allows exactly the page's own inline script and style
(by hash), requests to its own origin, and nothing else: no external asset can
load, nothing can frame the page, and no form can submit anywhere (so a token
typed into the page cannot end up in a URL even if the script failed).
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from aiohttp import web

__all__ = ["STATUS_PAGE", "CONTENT_SECURITY_POLICY", "status_page_response"]

STATUS_PAGE = resources.files("gateway").joinpath("status_page.html").read_text(encoding="utf-8")


def _inline_hash(tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", STATUS_PAGE, flags=re.DOTALL)
    if len(blocks) != 1:  # the policy below allows exactly one of each
        raise RuntimeError(f"status_page.html must have exactly one inline <{tag}>, found {len(blocks)}")
    digest = hashlib.sha256(blocks[0].encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'none'",
    f"script-src {_inline_hash('script')}",
    f"style-src {_inline_hash('style')}",
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
