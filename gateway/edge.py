"""The edge handler: what applies to every request before and after its route's chain.

accept -> request id -> header limits -> normalise path -> client IP -> route
       -> [the route's chain] -> error rendering, metrics, access log

This is the only app-wide code on the request path (DESIGN: request id, error
rendering, metrics); everything route-specific lives in the route's compiled chain.
It reads the current :class:`~gateway.runtime.Runtime` once per request, so a reload
never changes the rules under a request already in flight.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time

from aiohttp import web

from gateway.access_log import AccessLog
from gateway.exchange import EXCHANGE, Exchange
from gateway.headers import add_response_headers
from gateway.metrics import Metrics
from gateway.path import PathError, normalise_path
from gateway.problem import Problem, problem_response
from gateway.runtime import Runtime

__all__ = ["EdgeHandler"]

log = logging.getLogger("gateway.edge")

# A client-supplied request id is kept only if it is short and boring: it is echoed in
# logs and headers, so it must not smuggle separators, spaces or control characters.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


class EdgeHandler:
    def __init__(self, runtime: Runtime, *, metrics: Metrics, access_log: AccessLog) -> None:
        self.runtime = runtime
        self.metrics = metrics
        self.access_log = access_log
        # Request ids: a random per-process prefix and a counter. Unique across
        # processes and restarts without a getrandom() syscall per request; they are
        # correlation ids, not secrets.
        self._id_prefix = os.urandom(10).hex()
        self._id_counter = itertools.count(1)
        self._pid = os.getpid()  # "worker" in the access log: which process answered

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        runtime = self.runtime
        headers = request.headers
        request_id = headers.get("X-Request-ID")
        if request_id is None or _SANE_REQUEST_ID.fullmatch(request_id) is None:
            request_id = f"{self._id_prefix}{next(self._id_counter):012x}"
        ex = Exchange(request_id=request_id, started=started)
        request[EXCHANGE] = ex
        ex.client_ip, ex.forwarded_for, ex.trusted_peer = runtime.resolver.resolve(request.remote, headers)
        try:
            response = await self._dispatch(request, ex, runtime)
        except Problem as problem:
            response = problem.response()
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            # The client went away mid-request; nobody is left to answer (nginx's 499).
            response = web.Response(status=499)
        except Exception:
            log.exception("unhandled error on %s %s (request id %s)", request.method, ex.path or "?", request_id)
            response = problem_response(500, "the gateway failed to handle this request")
        if not response.prepared:
            response.headers["X-Request-ID"] = request_id
            if ex.cache_status is None and ex.route is not None and ex.route.cache_bypass is not None:
                # Refused before the cache stage (401, 403, 429...): not from the cache.
                ex.route.cache_bypass.inc()
                ex.extra_response_headers.append(("X-Cache", "BYPASS"))
                ex.extra_response_headers.append(("Cache-Status", "gateway; fwd=bypass"))
            if ex.extra_response_headers:
                add_response_headers(response.headers, ex.extra_response_headers)
        elapsed = time.perf_counter() - started
        route_name = ex.route.name if ex.route is not None else "none"
        self.metrics.observe_request(route_name, request.method, response.status, elapsed)
        if self.access_log.enabled:
            self.access_log.write(
                {
                    "request_id": request_id,
                    "client_ip": ex.client_ip,
                    "method": request.method,
                    "path": ex.path or request.raw_path.partition("?")[0][:512],
                    "route": route_name,
                    "status": response.status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "upstream": ex.target,
                    "cache": ex.cache_status,
                    "worker": self._pid,
                }
            )
        return response

    async def _dispatch(self, request: web.BaseRequest, ex: Exchange, runtime: Runtime) -> web.StreamResponse:
        headers = request.headers
        size = 0
        for name, value in request.raw_headers:
            size += len(name) + len(value) + 4
        if size > runtime.max_header_size:
            raise Problem(431, f"request headers exceed {runtime.max_header_size} bytes")
        hosts = headers.getall("Host", ())
        if len(hosts) > 1:
            raise Problem(400, "more than one Host header")
        if not hosts and request.version >= (1, 1):
            raise Problem(400, "HTTP/1.1 request without a Host header")
        if "Authorization" in headers and len(headers.getall("Authorization")) > 1:
            # Which one would the backend believe? Refuse rather than guess (SPEC §4a).
            raise Problem(400, "more than one Authorization header")
        codings = headers.getall("Transfer-Encoding", ())
        if codings and (len(codings) > 1 or codings[0].strip().lower() != "chunked"):
            # llhttp accepts "gzip, chunked"; the forwarder re-frames the body as plain
            # chunked, so the upstream would read coded bytes as the body. Only chunked
            # alone crosses (RFC 9112 §6.1 lets a server refuse other codings).
            raise Problem(400, "Transfer-Encoding other than chunked is not accepted", close=True)
        length = request.content_length
        if length is not None and length > runtime.max_body_size:
            raise Problem(413, f"request body exceeds {runtime.max_body_size} bytes")

        raw = request.raw_path
        path, mark, query = raw.partition("?")
        if "#" in raw:
            raise Problem(400, "fragment in request target")
        try:
            ex.path = normalise_path(path)
        except PathError as exc:
            raise Problem(400, str(exc)) from None
        ex.query = mark + query

        host = hosts[0] if hosts else None
        match = None
        if request.method == "OPTIONS" and runtime.preflight_routes and "Origin" in headers:
            # A CORS preflight is routed by the method it asks about, so the route that
            # will serve the real request (and its CORS policy) answers it.
            asked = headers.get("Access-Control-Request-Method")
            if asked is not None:
                candidate = runtime.router.match(asked, host, ex.path)
                if candidate.route is not None and candidate.route.name in runtime.preflight_routes:
                    match = candidate
        if match is None:
            match = runtime.router.match(request.method, host, ex.path)
        route = match.route
        if route is None:
            if match.allow:
                raise Problem(405, f"{request.method} is not allowed here", headers={"Allow": ", ".join(match.allow)})
            raise Problem(404, "no route matches this request")
        ex.route = route
        assert route.handler is not None
        return await route.handler(request)
