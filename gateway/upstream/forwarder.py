"""Forwarding one request to one upstream target, streaming both ways.

The last stage of every route. It owns nothing per request but a target choice:
the upstream's ``ClientSession`` (one keep-alive pool, ``max_connections`` per target)
lives as long as the configuration that defines it.

What it guarantees:
- request and response bodies stream; small responses with a known length are read
  in one go because that is cheaper than a chunked relay, never because it must;
- bytes pass as sent: no transparent decompression, ``Content-Encoding`` untouched;
- connection-scoped headers never cross; the gateway's own forwarding headers are set
  from what the edge decided (client IP chain, request id);
- a body over ``max_body_size`` stops at the limit and is answered 413; an upstream
  that cannot be reached, resets or answers garbage is a 502, one that goes silent
  past ``timeouts.response`` a 504;
- a response that breaks after its head was sent is cut off (connection closed), so
  the client sees a truncated response rather than a complete-looking short one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractCookieJar
from multidict import CIMultiDict
from yarl import URL

from gateway.config.models import UpstreamConfig
from gateway.exchange import EXCHANGE, Exchange
from gateway.headers import RequestHeaderFilter, response_headers
from gateway.metrics import Metrics
from gateway.problem import Problem
from gateway.upstream.balancer import Balancer, RoundRobin, Target

__all__ = ["Upstream", "Forwarder", "BodyTooLarge"]

log = logging.getLogger("gateway.upstream")

# Responses with a known length up to this size are read whole and sent with one
# write; larger or unknown-length ones are relayed chunk by chunk.
_SMALL_BODY = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
# Headers aiohttp's client would add on its own; the upstream must see only what the
# client sent plus what the gateway adds deliberately.
_SKIP_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class BodyTooLarge(Exception):
    """The client's body passed ``server.max_body_size`` while streaming."""


class _BodyState:
    __slots__ = ("too_large",)

    def __init__(self) -> None:
        self.too_large = False


async def _limited_body(content: aiohttp.StreamReader, limit: int, state: _BodyState) -> AsyncIterator[bytes]:
    seen = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            return
        seen += len(chunk)
        if seen > limit:
            state.too_large = True
            raise BodyTooLarge()
        yield chunk


class Upstream:
    """A named group of targets with its connection pool."""

    def __init__(self, name: str, config: UpstreamConfig, *, metrics: Metrics) -> None:
        self.name = name
        self.config = config
        self.metrics = metrics
        self.targets = tuple(Target.from_url(t.url) for t in config.targets)
        self.balancer: Balancer = RoundRobin(self.targets)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"upstream {self.name!r} used before start()")
        return self._session

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0,
            limit_per_host=self.config.max_connections,
            keepalive_timeout=30.0,
            ttl_dns_cache=10,
        )
        cookie_jar: AbstractCookieJar = aiohttp.DummyCookieJar()  # never share cookies between callers
        self._session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=cookie_jar,
            timeout=aiohttp.ClientTimeout(
                total=None,
                sock_connect=self.config.timeouts.connect,
                sock_read=self.config.timeouts.response,
            ),
            auto_decompress=False,
            skip_auto_headers=_SKIP_AUTO_HEADERS,
            trust_env=False,
            raise_for_status=False,
            max_line_size=65536,
            max_field_size=65536,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class Forwarder:
    """The terminal handler of one route: send the request to a target of its upstream."""

    __slots__ = ("upstream", "route_name", "header_filter", "max_body_size", "_preserve_host", "_strip")

    def __init__(
        self,
        *,
        upstream: Upstream,
        route_name: str,
        strip_prefix: str | None,
        header_filter: RequestHeaderFilter,
        max_body_size: int,
    ) -> None:
        self.upstream = upstream
        self.route_name = route_name
        self.header_filter = header_filter
        self.max_body_size = max_body_size
        self._preserve_host = upstream.config.host_header == "preserve"
        self._strip = strip_prefix if strip_prefix and strip_prefix != "/" else None

    def _upstream_path(self, path: str) -> str:
        if self._strip is None:
            return path
        rest = path[len(self._strip) :]
        return rest if rest.startswith("/") else "/" + rest

    def _request_headers(self, request: web.BaseRequest, ex: Exchange, target: Target) -> CIMultiDict[str]:
        headers = self.header_filter.forwardable(request.headers)
        client_host = request.headers.get("Host")
        if self._preserve_host and client_host:
            headers["Host"] = client_host
        else:
            headers["Host"] = target.host_header
        length = request.headers.get("Content-Length")
        if length is not None:
            headers["Content-Length"] = length
        headers["X-Forwarded-For"] = ex.forwarded_for
        incoming = request.headers
        if ex.trusted_peer and "X-Forwarded-Proto" in incoming:
            headers["X-Forwarded-Proto"] = incoming["X-Forwarded-Proto"]
        else:
            headers["X-Forwarded-Proto"] = "http"
        if ex.trusted_peer and "X-Forwarded-Host" in incoming:
            headers["X-Forwarded-Host"] = incoming["X-Forwarded-Host"]
        elif client_host:
            headers["X-Forwarded-Host"] = client_host
        headers["X-Request-ID"] = ex.request_id
        for name, value in ex.upstream_headers:
            headers[name] = value
        return headers

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        ex = request[EXCHANGE]
        upstream = self.upstream
        target = upstream.balancer.pick()
        ex.target = target.label
        headers = self._request_headers(request, ex, target)

        body: AsyncIterator[bytes] | None = None
        state = _BodyState()
        if request.body_exists:
            if request.headers.get("Expect", "").lower() == "100-continue" and request.version >= (1, 1):
                # Only now, with every stage passed, is the client told to send its body.
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            body = _limited_body(request.content, self.max_body_size, state)

        url = URL(target.url + self._upstream_path(ex.path) + ex.query, encoded=True)
        started = time.perf_counter()
        target.in_flight += 1
        try:
            try:
                response = await upstream.session.request(
                    request.method, url, headers=headers, data=body, allow_redirects=False
                )
            except Exception as exc:
                raise self._failure(exc, state, target, started) from None
            upstream.metrics.observe_upstream(
                upstream.name, target.label, str(response.status), time.perf_counter() - started
            )
            try:
                return await self._relay(request, ex, response, state, target, started)
            finally:
                response.release()
        finally:
            target.in_flight -= 1

    def _failure(self, exc: BaseException, state: _BodyState, target: Target, started: float) -> Problem:
        """Map a failure before the response head arrived to the client's answer."""
        metrics, name = self.upstream.metrics, self.upstream.name
        if state.too_large or isinstance(exc, BodyTooLarge):
            return Problem(413, f"request body exceeds {self.max_body_size} bytes")
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            code, status, detail = "connect_timeout", 502, "timed out connecting to the upstream"
        elif isinstance(exc, aiohttp.ClientConnectorError):
            code, status, detail = "connect_error", 502, "the upstream refused the connection"
        elif isinstance(exc, (aiohttp.SocketTimeoutError, asyncio.TimeoutError)):
            code, status, detail = "timeout", 504, "the upstream did not answer in time"
        elif isinstance(exc, aiohttp.ClientResponseError):
            code, status, detail = "bad_response", 502, "the upstream sent a malformed response"
        elif isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError)):
            code, status, detail = "reset", 502, "the upstream closed the connection"
        elif isinstance(exc, aiohttp.ClientError):
            code, status, detail = "error", 502, "the upstream request failed"
        else:
            raise exc
        log.info("upstream %s target %s failed: %s: %s", name, target.label, code, exc)
        metrics.observe_upstream(name, target.label, code, None)
        return Problem(status, detail)

    async def _relay(
        self,
        request: web.BaseRequest,
        ex: Exchange,
        response: aiohttp.ClientResponse,
        state: _BodyState,
        target: Target,
        started: float,
    ) -> web.StreamResponse:
        headers = response_headers(response.headers)
        headers["X-Request-ID"] = ex.request_id
        for name, value in ex.extra_response_headers:
            headers[name] = value
        status = response.status
        length = response.content_length

        if request.method == "HEAD" or status in _NO_BODY_STATUSES or status < 200:
            out = web.StreamResponse(status=status, reason=response.reason, headers=headers)
            if length is not None and status not in _NO_BODY_STATUSES:
                out.headers["Content-Length"] = str(length)
            await out.prepare(request)
            await out.write_eof()
            return out

        if length is not None and length <= _SMALL_BODY:
            try:
                payload = await response.read()
            except Exception as exc:
                raise self._failure(exc, state, target, started) from None
            return web.Response(status=status, reason=response.reason, body=payload, headers=headers)

        out = web.StreamResponse(status=status, reason=response.reason, headers=headers)
        if length is not None:
            out.content_length = length
        await out.prepare(request)
        try:
            async for chunk in response.content.iter_any():
                await out.write(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # The head is out: the only honest signal left is to cut the connection.
            log.info("upstream %s target %s broke mid-body: %r", self.upstream.name, target.label, exc)
            _abort(request)
            return out
        except ConnectionError:
            # The client went away; the upstream connection is dropped by release().
            _abort(request)
            return out
        await out.write_eof()
        return out


def _abort(request: web.BaseRequest) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
