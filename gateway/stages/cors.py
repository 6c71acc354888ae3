"""CORS: preflights answered at the edge, response headers for allowed origins.

Right after the firewall (a denied address gets no CORS answer), so a preflight
(``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered before
authentication and throttling (browsers never send credentials on a preflight, so it
would always fail auth) and never reaches the upstream. The edge routes a preflight by the method it asks about,
so it meets the chain of the route that will serve the real request (see
:mod:`gateway.edge`). On every other request of the route, this stage queues the CORS
response headers on ``ex.extra_response_headers`` before going on, so they are on
whatever answers -- the upstream's response or a gateway 401/403/429.

Why not aiohttp-cors: it hooks ``Application.on_response_prepare`` and the
``UrlDispatcher``'s resources, and the gateway runs aiohttp's low-level
``web.Server`` with neither (its own router, streaming responses prepared inside the
forwarder). It would also reflect any ``Origin`` for a ``"*"`` entry with
``allow_credentials``, and it does not send ``Vary: Origin``. What it does is small
enough to do correctly here, compiled once per route. See docs/security.md.

Decisions, all made at build time except the origin lookup:
- listed origins are matched exactly; a credentialed answer always names the one
  origin (``"*"`` with credentials is a config error, never reflected);
- ``Vary: Origin`` on every response of the route whose answer depends on the
  origin (all but ``"*"`` without credentials, where every answer is the same);
- a preflight for an origin, method or header that is not allowed is a 403 problem,
  so it is visible in logs and metrics rather than a silent browser failure.
"""

from __future__ import annotations

import re

from aiohttp import web

from gateway.config.cors import CorsConfig, effective_cors
from gateway.config.models import RouteConfig
from gateway.edge_request import EdgeRequest
from gateway.exchange import Exchange
from gateway.pipeline import Stage, StageDeps
from gateway.problem import Problem

__all__ = ["build", "CorsPolicy", "is_preflight"]

_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9a-z]+")  # RFC 9110 token, lower-cased


def is_preflight(request: EdgeRequest) -> bool:
    return (
        request.method == "OPTIONS"
        and "Origin" in request.headers
        and "Access-Control-Request-Method" in request.headers
    )


class CorsPolicy:
    """One route's CORS decisions, precomputed: per request, one dict lookup."""

    __slots__ = ("any_origin", "methods", "headers", "any_header", "_actual", "_other", "_preflight_base")

    def __init__(self, config: CorsConfig) -> None:
        self.any_origin = config.allow_origins == ("*",)
        self.methods = frozenset(config.allow_methods)
        self.any_header = config.allow_headers == ("*",)
        self.headers = frozenset(h.lower() for h in config.allow_headers)
        # The answer depends on Origin unless any origin gets the same "*" (which the
        # config guarantees is never combined with credentials).
        vary: tuple[tuple[str, str], ...] = () if self.any_origin else (("Vary", "Origin"),)
        extra: list[tuple[str, str]] = []
        if config.allow_credentials:
            extra.append(("Access-Control-Allow-Credentials", "true"))
        exposed = (("Access-Control-Expose-Headers", ", ".join(config.expose_headers)),) if config.expose_headers else ()
        if self.any_origin:
            self._actual = {"*": (("Access-Control-Allow-Origin", "*"), *extra, *exposed)}
        else:
            self._actual = {
                origin: (*vary, ("Access-Control-Allow-Origin", origin), *extra, *exposed)
                for origin in config.allow_origins
            }
        self._other = vary
        """Headers for a request without Origin or from an origin not allowed."""
        self._preflight_base = (
            *extra,
            ("Access-Control-Allow-Methods", ", ".join(config.allow_methods)),
            *((("Access-Control-Allow-Headers", ", ".join(config.allow_headers)),) if not self.any_header else ()),
            ("Access-Control-Max-Age", str(int(config.max_age))),
            ("Vary", _PREFLIGHT_VARY),
        )

    def allows(self, origin: str) -> bool:
        return self.any_origin or origin in self._actual

    def actual_headers(self, origin: str | None) -> tuple[tuple[str, str], ...]:
        """Response headers for a non-preflight request."""
        if origin is None:
            return self._actual["*"] if self.any_origin else self._other
        return self._actual.get("*" if self.any_origin else origin, self._other)

    def preflight(self, request: EdgeRequest) -> web.Response:
        headers = request.headers
        origin = headers["Origin"]
        refused = {"Vary": _PREFLIGHT_VARY}
        if not self.allows(origin):
            raise Problem(403, "CORS preflight refused: origin not allowed", headers=refused)
        method = headers["Access-Control-Request-Method"].strip()
        if method not in self.methods:
            raise Problem(403, "CORS preflight refused: method not allowed", headers=refused)
        requested = [h for h in (p.strip().lower() for p in headers.get("Access-Control-Request-Headers", "").split(",")) if h]
        if self.any_header:
            if not all(_TOKEN_RE.fullmatch(h) for h in requested):
                raise Problem(403, "CORS preflight refused: malformed header list", headers=refused)
        elif not self.headers.issuperset(requested):
            raise Problem(403, "CORS preflight refused: header not allowed", headers=refused)
        response = web.Response(status=204, headers=self._preflight_base)
        response.headers["Access-Control-Allow-Origin"] = "*" if self.any_origin else origin
        if self.any_header and requested:
            # "*" would not cover Authorization (Fetch standard): name what was asked.
            response.headers["Access-Control-Allow-Headers"] = ", ".join(requested)
        return response


def build(route: RouteConfig, deps: StageDeps) -> Stage | None:
    config = effective_cors(deps.config.cors, route.cors)
    if config is None:
        return None
    policy = CorsPolicy(config)

    def cors(request: EdgeRequest, ex: Exchange) -> web.Response | None:
        if request.method == "OPTIONS" and is_preflight(request):
            return policy.preflight(request)
        extra = policy.actual_headers(request.headers.get("Origin"))
        if extra:
            ex.extra_response_headers.extend(extra)
        return None

    return cors
