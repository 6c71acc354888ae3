"""Forwarding one request to the targets of its upstream, streaming both ways.

The last stage of every route. What it guarantees:

- the request head sent upstream is built from the client's raw header bytes minus
  connection-scoped and gateway-owned headers, plus the gateway's own forwarding
  headers; the path is the normalised one every earlier stage decided on;
- request and response bodies stream with flow control; a response that has fully
  arrived with its head is sent with one write, because that is cheaper; any other
  is forwarded as it arrives, never held back until complete;
- bytes pass as sent in both directions: no transparent decompression,
  ``Content-Encoding`` untouched (the edge turns aiohttp's request inflation off: an
  inflated body sent under the client's Content-Length would smuggle a request);
- a body over ``max_body_size`` stops at the limit and is answered 413; an upstream
  that cannot be reached, resets or answers garbage is a 502, one that goes silent
  past ``timeouts.response`` a 504; no available target is an immediate 503, and so
  is a target whose pool stays full for ``timeouts.queue`` (the gateway's own
  congestion: counted apart and never held against the target's health);
- retries (``retries: N``) go to a *different* target, spend the upstream's retry
  budget, and happen only when the upstream cannot have acted on the request: any
  request whose connection was never established; an idempotent one that was reset
  before any response byte or answered 502/503/504 (its body, if any, small enough
  to have been kept for replay). A timeout is not retried: it would multiply latency;
- a request without a body that finds its reused keep-alive connection closed by the
  upstream (before any response byte) is sent once more on a fresh connection to the
  same target, the race every keep-alive client must handle; not counted as a retry;
- a response that breaks after its head was sent is cut off (connection aborted), so
  the client sees a truncated response rather than a complete-looking short one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from gateway.edge_request import EdgeRequest
from gateway.exchange import Exchange
from gateway.headers import RequestHeaderFilter
from gateway.problem import Problem
from gateway.raw_response import RawResponse, Streamed, encode_head
from gateway.upstream.balancer import Target
from gateway.upstream.connection import (
    ConnectError,
    ConnectTimeout,
    ResponseHead,
    UpstreamConnection,
    UpstreamError,
    UpstreamReset,
)
from gateway.upstream.group import Upstream
from gateway.upstream.pool import QueueTimeout

__all__ = ["Forwarder", "UpstreamResult", "BodyTee", "BodyTooLarge", "IDEMPOTENT", "forwarded_host_proto"]

log = logging.getLogger("gateway.upstream")

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Idempotent request bodies up to this size are kept in memory so a retry can resend them.
_REPLAYABLE_BODY = 64 * 1024
_RETRY_STATUSES = frozenset({502, 503, 504})
_NO_BODY_STATUSES = frozenset({204, 304})
_NEEDS_LENGTH = frozenset({"POST", "PUT", "PATCH"})
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_UNSAFE_VALUE = frozenset("\r\n\x00")
# Client preconditions dropped when the gateway revalidates its own cache entry with
# its own validators: the upstream must answer *our* question.
_CONDITIONAL = frozenset({b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since", b"if-range"})


class BodyTooLarge(Exception):
    """The client's body passed ``server.max_body_size`` while streaming."""


class BodyTimeout(Exception):
    """The client went silent for ``server.body_timeout`` in the middle of its body."""


class _Failed(Exception):
    """One attempt failed in a way that may allow a retry elsewhere."""

    def __init__(self, problem: Problem, *, never_connected: bool = False, before_response: bool = False) -> None:
        super().__init__(problem.detail)
        self.problem = problem
        self.never_connected = never_connected
        self.before_response = before_response


class _RetryStatus(Exception):
    """The upstream answered 502/503/504 and the request may go to another target."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _b(text: str) -> bytes:
    # aiohttp decodes request bytes as UTF-8 with surrogateescape; this restores them.
    return text.encode("utf-8", "surrogateescape")


def forwarded_host_proto(request: EdgeRequest, ex: Exchange) -> tuple[str | None, str]:
    """The ``X-Forwarded-Host`` and ``-Proto`` the upstream is told: a trusted proxy's
    values, else the client's ``Host`` and ``http``. The cache keys on these too."""
    if ex.trusted_peer:
        headers = request.headers
        return headers.get("X-Forwarded-Host") or request.host, headers.get("X-Forwarded-Proto") or "http"
    return request.host, "http"


class UpstreamResult:
    """A response head from a target, with the connection its body will come from.

    Made by :meth:`Forwarder.fetch`; whoever holds it renders it or reads its body,
    then must call :meth:`Forwarder.finish` exactly once (it gives the connection back
    and ends the target's in-flight count).
    """

    __slots__ = ("target", "conn", "head", "sender")

    def __init__(
        self, target: Target, conn: UpstreamConnection, head: ResponseHead, sender: asyncio.Task[None] | None
    ) -> None:
        self.target = target
        self.conn = conn
        self.head = head
        self.sender = sender


class BodyTee:
    """Collects a copy of the body :meth:`Forwarder.render` relays, up to ``limit``
    bytes; ``complete`` only when the whole body reached the client untruncated."""

    __slots__ = ("limit", "parts", "size", "overflow", "complete")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.parts: list[bytes] = []
        self.size = 0
        self.overflow = False
        self.complete = False

    def add(self, chunk: bytes) -> None:
        if self.overflow:
            return
        self.size += len(chunk)
        if self.size > self.limit:
            # Past max_entry_size: keep streaming, stop copying.
            self.overflow = True
            self.parts = []
        else:
            self.parts.append(chunk)

    @property
    def body(self) -> bytes | None:
        return b"".join(self.parts) if self.complete and not self.overflow else None


class Forwarder:
    """The terminal handler of one route: send the request to a target of its upstream."""

    __slots__ = (
        "upstream", "header_filter", "max_body_size", "body_timeout", "_preserve_host", "_strip", "_retries",
        "_queue_wait", "_queue_timeouts", "on_write",
    )

    def __init__(
        self,
        *,
        upstream: Upstream,
        strip_prefix: str | None,
        header_filter: RequestHeaderFilter,
        max_body_size: int,
        body_timeout: float = 60.0,
    ) -> None:
        self.upstream = upstream
        self.header_filter = header_filter
        self.max_body_size = max_body_size
        self.body_timeout = body_timeout
        self._preserve_host = upstream.config.host_header == "preserve"
        self._strip = strip_prefix if strip_prefix and strip_prefix != "/" else None
        self._retries = upstream.config.retries
        self.on_write: Callable[[EdgeRequest, Exchange, ResponseHead], Awaitable[None]] | None = None
        """Told of every successful write (2xx/3xx answer to POST, PUT, PATCH,
        DELETE) before it is relayed: the cache invalidates what it changed."""
        self._queue_wait = upstream.config.timeouts.queue
        self._queue_timeouts = {
            t.label: upstream.metrics.upstream_queue_timeouts_total.labels(upstream.name, t.label) for t in upstream.targets
        }

    def _upstream_path(self, path: str) -> str:
        if self._strip is None:
            return path
        rest = path[len(self._strip) :]
        return rest if rest.startswith("/") else "/" + rest

    def _request_head(
        self,
        request: EdgeRequest,
        ex: Exchange,
        target: Target,
        chunked: bool,
        method: str,
        conditional: Sequence[tuple[bytes, bytes]] | None,
    ) -> bytes:
        path = target.base_path + _b(self._upstream_path(ex.path) + ex.query)
        # llhttp admits only token characters in a method: ASCII.
        lines = [method.encode("ascii") + b" " + path + b" HTTP/1.1\r\n"]
        dropped = request.connection_tokens
        if conditional is not None:
            dropped = dropped | _CONDITIONAL
        self.header_filter.forward(request.raw_headers, lines, dropped)
        if conditional:
            for name, value in conditional:
                lines.append(name + b": " + value + b"\r\n")
        client_host = request.host_bytes
        host = client_host if (self._preserve_host and client_host) else target.host_header
        lines.append(b"Host: " + host + b"\r\n")
        if chunked:
            lines.append(b"Transfer-Encoding: chunked\r\n")
        else:
            length = request.content_length
            if length is not None:
                lines.append(b"Content-Length: %d\r\n" % length)
            elif request.method in _NEEDS_LENGTH:
                lines.append(b"Content-Length: 0\r\n")
        lines.append(b"X-Forwarded-For: " + ex.forwarded_for.encode("ascii", "replace") + b"\r\n")
        forwarded_host, proto = forwarded_host_proto(request, ex)
        lines.append(b"X-Forwarded-Proto: " + _b(proto) + b"\r\n")
        if forwarded_host:
            lines.append(b"X-Forwarded-Host: " + _b(forwarded_host) + b"\r\n")
        lines.append(b"X-Request-ID: " + ex.request_id.encode("ascii") + b"\r\n")
        for name, value in ex.upstream_headers:
            if not _UNSAFE_VALUE.isdisjoint(value):
                # A claim value that would split the header block: refuse, never inject.
                raise Problem(400, f"value for {name} cannot be sent as a header")
            lines.append(name.encode("ascii") + b": " + value.encode("utf-8") + b"\r\n")
        lines.append(b"\r\n")
        return b"".join(lines)

    async def __call__(self, request: EdgeRequest) -> RawResponse | Streamed:
        ex = request.exchange
        assert ex is not None
        result = await self.fetch(request, ex)
        try:
            if self.on_write is not None and result.head.status < 400 and request.method in _WRITES:
                await self.on_write(request, ex, result.head)
            return await self.render(request, ex, result)
        finally:
            self.finish(result)

    async def fetch(
        self,
        request: EdgeRequest,
        ex: Exchange,
        *,
        method: str | None = None,
        conditional: Sequence[tuple[bytes, bytes]] | None = None,
    ) -> UpstreamResult:
        """Send the request to a target (retrying elsewhere where that is safe) and
        return once a response head has arrived. Raises :class:`Problem` for 502,
        503, 504 and the client-side 408/413.

        ``method`` replaces the client's (a cache refresh sends GET for a HEAD);
        ``conditional`` replaces the client's preconditions with the cache's own
        validators.
        """
        upstream = self.upstream
        candidates = upstream.available
        if not candidates or not upstream.admits():
            raise Problem(
                503, f"no healthy target in upstream {upstream.name!r}", headers={"Retry-After": str(upstream.retry_after())}
            )
        upstream.deposit()
        method = method or request.method
        idempotent = method in IDEMPOTENT
        has_body = request.body_exists
        chunked = request.chunked
        if has_body:
            # A body refused in the very read that brought its head must not start an
            # upstream exchange it can never complete.
            request.content.check()
        if has_body and request.expect_continue and not request.content.is_eof():
            # Only now, with every stage passed, is the client told to send its body.
            request.send_continue()
        replay: bytes | None = None
        length = request.content_length
        if has_body and idempotent and self._retries and not chunked and length is not None and length <= _REPLAYABLE_BODY:
            # Kept for a retry: exactly the Content-Length bytes on the wire (the edge
            # never inflates bodies), so this buffer cannot outgrow what was announced.
            try:
                async with asyncio.timeout(self.body_timeout):
                    replay = await request.content.readexactly(length)
            except TimeoutError:
                raise Problem(408, "the request body did not arrive in time") from None
            except asyncio.IncompleteReadError:
                raise ConnectionResetError("the client closed before sending its body") from None
        body_started = False

        retries_left = self._retries
        tried: list[Target] = []
        while True:
            target = upstream.pick(request, ex, candidates)
            ex.target = target.label
            others = retries_left > 0 and len(candidates) > 1 and upstream.can_retry()
            retry_on_status = others and idempotent and (not has_body or replay is not None)
            try:
                return await self._attempt(request, ex, target, method, conditional, has_body, chunked, replay, retry_on_status)
            except (_Failed, _RetryStatus) as failure:
                if has_body and replay is None:
                    body_started = body_started or not (isinstance(failure, _Failed) and failure.never_connected)
                safe = isinstance(failure, _RetryStatus) or (
                    failure.never_connected and not body_started
                ) or (failure.before_response and idempotent and (not has_body or replay is not None))
                tried.append(target)
                if safe and retries_left > 0:
                    candidates = tuple(t for t in upstream.available if t not in tried)
                    if candidates and upstream.take_retry():
                        retries_left -= 1
                        log.info("upstream %s: retrying %s %s on another target", upstream.name, method, ex.path)
                        continue
                if isinstance(failure, _RetryStatus):
                    # Another target looked available when the answer was discarded, but
                    # none is left now (ejected meanwhile, or the budget ran out).
                    raise Problem(failure.status, f"the upstream answered {failure.status}") from None
                raise failure.problem from None

    async def _attempt(
        self,
        request: EdgeRequest,
        ex: Exchange,
        target: Target,
        method: str,
        conditional: Sequence[tuple[bytes, bytes]] | None,
        has_body: bool,
        chunked: bool,
        replay: bytes | None,
        retry_on_status: bool,
    ) -> UpstreamResult:
        upstream = self.upstream
        metrics = upstream.metrics
        head_bytes = self._request_head(request, ex, target, chunked, method, conditional)
        timeout = upstream.response_timeout
        target.in_flight += 1
        handed_over = False
        try:
            stale_retries = 0
            while True:
                started = time.perf_counter()
                conn: UpstreamConnection | None = None
                sender: asyncio.Task[None] | None = None
                try:
                    pool = target.pool
                    conn = None if pool.closed else pool.take_idle()
                    if conn is None:
                        conn = await pool.acquire(self._queue_wait)
                    conn.begin(head_bytes, head_only=method == "HEAD")
                    if replay is not None:
                        conn.write(replay)
                        conn.end_request()
                    elif not has_body:
                        conn.end_request()
                    else:
                        sender = asyncio.get_running_loop().create_task(self._send_body(conn, request, chunked))
                        await asyncio.wait((sender, conn.head_waiter), return_when=asyncio.FIRST_COMPLETED)
                        if sender.done():
                            sender.result()  # raises BodyTooLarge / client disconnects
                    head = await conn.response_head(timeout)
                except QueueTimeout:
                    # Our own queue, not the target's fault: no health verdict, no
                    # upstream answer counted; another target may have room.
                    self._queue_timeouts[target.label].inc()
                    raise _Failed(
                        Problem(
                            503,
                            f"no connection to a target of upstream {upstream.name!r} became free in time",
                            headers={"Retry-After": "1"},
                        ),
                        never_connected=True,
                    ) from None
                except BodyTooLarge:
                    self._discard(target, conn, sender)
                    metrics.observe_upstream(upstream.name, target.label, "aborted", None)
                    raise Problem(413, f"request body exceeds {self.max_body_size} bytes") from None
                except BodyTimeout:
                    # The upstream got a partial request and the connection is dropped, so
                    # it never acts on it; the pool slot is free for callers that are awake.
                    self._discard(target, conn, sender)
                    metrics.observe_upstream(upstream.name, target.label, "aborted", None)
                    raise Problem(408, "the request body did not arrive in time") from None
                except UpstreamError as exc:
                    self._discard(target, conn, sender)
                    metrics.observe_upstream(upstream.name, target.label, exc.code, None)
                    stale = isinstance(exc, UpstreamReset) and exc.before_response and conn is not None and conn.reused
                    if stale and not has_body and method in IDEMPOTENT and stale_retries < 2:
                        stale_retries += 1
                        continue  # the idle connection died under us; the upstream never saw this
                    upstream.record_failure(target, reason=exc.code)
                    log.info("upstream %s target %s: %s", upstream.name, target.label, exc)
                    raise _Failed(
                        Problem(exc.status, str(exc)),
                        never_connected=isinstance(exc, (ConnectError, ConnectTimeout)),
                        before_response=isinstance(exc, UpstreamReset) and exc.before_response,
                    ) from None
                except BaseException:
                    self._discard(target, conn, sender)
                    raise
                status = head.status
                metrics.observe_upstream(upstream.name, target.label, str(status), time.perf_counter() - started)
                if status >= 500:
                    upstream.record_failure(target, reason=f"HTTP {status}")
                    if retry_on_status and status in _RETRY_STATUSES:
                        self._discard(target, conn, sender)
                        raise _RetryStatus(status)
                else:
                    upstream.record_success(target)
                handed_over = True
                return UpstreamResult(target, conn, head, sender)
        finally:
            if not handed_over:
                target.in_flight -= 1

    def finish(self, result: UpstreamResult) -> None:
        """The exchange with the target is over: the connection goes back to the pool
        (which keeps it only after a clean exchange both ways)."""
        conn, sender = result.conn, result.sender
        if sender is not None:
            if not sender.done():
                # The upstream answered before taking the whole body.
                sender.cancel()
                conn.abort()
            elif not sender.cancelled() and sender.exception() is not None:
                # The body failed after the answer began (too large, client gone): the
                # request was never completed, so the pool drops this connection
                # (request_done is False).
                log.info("request body to %s ended early: %r", result.target.label, sender.exception())
        result.target.pool.release(conn)
        result.target.in_flight -= 1

    async def collect(self, result: UpstreamResult, limit: int) -> bytes | None:
        """The whole body of a response nobody is waiting for (a background cache
        refresh), or None when it passes ``limit`` or breaks."""
        conn = result.conn
        if conn.body_ready():
            body = conn.take_body()
            return body if len(body) <= limit else None
        parts: list[bytes] = []
        size = 0
        try:
            while chunk := await conn.read(self.upstream.response_timeout):
                size += len(chunk)
                if size > limit:
                    conn.abort()
                    return None
                parts.append(chunk)
        except UpstreamError:
            conn.abort()
            return None
        return b"".join(parts)

    @staticmethod
    def _discard(target: Target, conn: UpstreamConnection | None, sender: asyncio.Task[None] | None) -> None:
        if sender is not None and not sender.done():
            sender.cancel()
        if conn is not None:
            conn.abort()
            target.pool.release(conn)

    async def _send_body(self, conn: UpstreamConnection, request: EdgeRequest, chunked: bool) -> None:
        content = request.content
        limit = self.max_body_size
        seen = 0
        while True:
            try:
                async with asyncio.timeout(self.body_timeout):
                    chunk = await content.readany()
            except TimeoutError:
                raise BodyTimeout() from None
            if not chunk:
                break
            seen += len(chunk)
            if seen > limit:
                raise BodyTooLarge()
            if chunked:
                conn.write(b"%x\r\n" % len(chunk))
                conn.write(chunk)
                conn.write(b"\r\n")
            else:
                conn.write(chunk)
            await conn.drain()
        if chunked:
            conn.write(b"0\r\n\r\n")
        conn.end_request()

    async def render(self, request: EdgeRequest, ex: Exchange, result: UpstreamResult, *, tee: BodyTee | None = None) -> RawResponse | Streamed:
        """Relay the upstream's response to the client: one write when it is complete
        already (returned for the edge to write), else streamed as it arrives.
        ``tee`` gets a copy of the body."""
        conn, head = result.conn, result.head
        status = head.status
        no_body = request.method == "HEAD" or status in _NO_BODY_STATUSES
        if not no_body and conn.body_ready():
            # The common case: a complete small response. The edge adds X-Request-ID and
            # the stages' headers to the upstream's header bytes and writes it in one go.
            body = conn.take_body()
            if tee is not None:
                tee.add(body)
                tee.complete = True
            return RawResponse(status=status, reason=head.reason, raw_headers=head.headers, body=body)

        client = request.conn
        assert client is not None
        added = [*ex.extra_response_headers, ("X-Request-ID", ex.request_id)]
        length = head.content_length
        keep_alive = client.keeps_alive(request)
        if no_body:
            # HEAD keeps the upstream's Content-Length; a 204/304 has none.
            announced = length if status not in _NO_BODY_STATUSES else None
            client.write(encode_head(status, head.reason, head.headers, added, length=announced, keep_alive=keep_alive))
            if tee is not None and status in _NO_BODY_STATUSES:
                tee.complete = True  # a 204 is whole without a body
            return Streamed(status, keep_alive)

        # A body of unknown length is chunked to an HTTP/1.1 client, and runs until the
        # connection closes for an HTTP/1.0 one.
        chunked = length is None and request.version >= (1, 1)
        if length is None and not chunked:
            keep_alive = False
        timeout = self.upstream.response_timeout
        try:
            client.write(encode_head(status, head.reason, head.headers, added, length=length, chunked=chunked, keep_alive=keep_alive))
            while chunk := await conn.read(timeout):
                if tee is not None:
                    tee.add(chunk)
                if chunked:
                    client.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                else:
                    client.write(chunk)
                await client.drain()
            if chunked:
                client.write(b"0\r\n\r\n")
        except UpstreamError as exc:
            # The head is out: the only honest signal left is to cut the connection.
            log.info("upstream %s target %s broke mid-body: %s", self.upstream.name, ex.target, exc)
            conn.abort()
            client.abort()
            return Streamed(status, False)
        except ConnectionError:
            # The client went away; the upstream connection cannot be reused mid-body.
            conn.abort()
            client.abort()
            return Streamed(status, False)
        if tee is not None:
            tee.complete = True
        return Streamed(status, keep_alive)
