"""The edge handler: what applies to every request before and after its route's chain.

parsed head (http_server.py) -> request id -> header limits -> normalise path
       -> client IP -> route -> [the route's chain] -> the answer written,
       metrics, access log

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

from gateway.access_log import AccessLog
from gateway.edge_request import EdgeRequest, MalformedBody
from gateway.exchange import Exchange
from gateway.metrics import Metrics
from gateway.path import PathError, normalise_path
from gateway.pipeline import Answer
from gateway.problem import Problem
from gateway.raw_response import RawResponse, Streamed, encode_problem, encode_web_response
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
        self._logging = access_log.enabled

    async def __call__(self, request: EdgeRequest) -> None:
        started = time.perf_counter()
        runtime = self.runtime
        request_id = request.request_id
        if request_id is None or _SANE_REQUEST_ID.fullmatch(request_id) is None:
            request_id = f"{self._id_prefix}{next(self._id_counter):012x}"
        ex = request.exchange = Exchange(request_id=request_id, started=started)
        resolver = runtime.resolver
        ex.client_ip, ex.forwarded_for, ex.trusted_peer = resolver.resolve(
            request.remote, request.headers if resolver.trusts_any else None  # type: ignore[arg-type]
        )
        conn = request.conn
        assert conn is not None
        try:
            response = await self._dispatch(request, ex, runtime)
        except Problem as problem:
            response = problem
        except MalformedBody as exc:
            response = Problem(400, f"malformed request body: {exc}", close=True)
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            # The client went away mid-request; nobody is left to answer (nginx's 499).
            response = None
        except Exception:
            log.exception("unhandled error on %s %s (request id %s)", request.method, ex.path or "?", request_id)
            response = Problem(500, "the gateway failed to handle this request")
        if type(response) is Streamed:
            status = response.status
            keep_alive = response.keep_alive
        elif response is None:
            status = 499
            keep_alive = False
        else:
            status = response.status
            keep_alive = conn.keeps_alive(request) and (
                not response.closes if isinstance(response, Problem) else response.keep_alive is not False
            )
            added = ex.extra_response_headers
            if ex.cache_status is None and ex.route is not None and ex.route.cache_bypass is not None:
                # Refused before the cache stage (401, 403, 429...): not from the cache.
                ex.route.cache_bypass.inc()
                added.append(("X-Cache", "BYPASS"))
                added.append(("Cache-Status", "gateway; fwd=bypass"))
            added.append(("X-Request-ID", request_id))
            head_only = request.method == "HEAD"
            if type(response) is RawResponse:
                data = response.encode(keep_alive, added)
            elif isinstance(response, Problem):
                data = encode_problem(response, added, keep_alive=keep_alive, head_only=head_only)
            else:
                data = encode_web_response(response, added, keep_alive=keep_alive, head_only=head_only)
            try:
                conn.write(data)
            except ConnectionError:
                status = 499
                keep_alive = False
        conn.finished(request, keep_alive)
        elapsed = time.perf_counter() - started
        route_name = ex.route.name if ex.route is not None else "none"
        self.metrics.observe_request(route_name, request.method, status, elapsed)
        if self._logging:
            self.access_log.record(
                request_id, ex.client_ip, request.method, ex.path or request.raw_path.partition("?")[0][:512],
                route_name, status, elapsed * 1000, ex.target, ex.cache_status, self._pid,
            )

    async def _dispatch(self, request: EdgeRequest, ex: Exchange, runtime: Runtime) -> Answer:
        if request.head_size > runtime.max_header_size:
            raise Problem(431, f"request headers exceed {runtime.max_header_size} bytes")
        if request.host_count > 1:
            raise Problem(400, "more than one Host header")
        if not request.host_count and request.version >= (1, 1):
            raise Problem(400, "missing Host header (required from HTTP version 1.1 on)")
        if request.authorization_count > 1:
            # Which one would the backend believe? Refuse rather than guess (SPEC §4a).
            raise Problem(400, "more than one Authorization header")
        codings = request.codings
        if codings and (len(codings) > 1 or codings[0].strip().lower() != b"chunked"):
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

        host = request.host
        method = request.method
        match = None
        if method == "OPTIONS" and runtime.preflight_routes and "Origin" in request.headers:
            # A CORS preflight is routed by the method it asks about, so the route that
            # will serve the real request (and its CORS policy) answers it.
            asked = request.headers.get("Access-Control-Request-Method")
            if asked is not None:
                candidate = runtime.router.match(asked, host, ex.path)
                if candidate.route is not None and candidate.route.name in runtime.preflight_routes:
                    match = candidate
        if match is None:
            match = runtime.router.match(method, host, ex.path)
        route = match.route
        if route is None:
            if match.allow:
                raise Problem(405, f"{method} is not allowed here", headers={"Allow": ", ".join(match.allow)})
            raise Problem(404, "no route matches this request")
        ex.route = route
        assert route.handler is not None
        return await route.handler.run(request, ex)
