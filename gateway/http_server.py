"""The proxy port's HTTP/1.1 server: one ``asyncio.Protocol`` per client connection.

Why not aiohttp's server here: per request it builds a ``BaseRequest`` (a
``CIMultiDict``, a yarl URL, a ``StreamReader``), a ``StreamResponse`` with its
``StreamWriter``, and runs the handler through several coroutine layers; that was
most of the gateway's CPU per request. Here the connection feeds its bytes to
llhttp (``httptools``, strict: no lenient flags), builds one
:class:`~gateway.edge_request.EdgeRequest` from the raw head in one pass, and
writes responses straight to the transport. aiohttp still serves the admin
listener.

What a connection guarantees:

- **Framing.** llhttp refuses what is ambiguous (CL with TE, repeated lengths, bad
  chunk sizes, bare LF, obs-fold...); the refusal is a 400 problem document and the
  connection is closed, after answering any request parsed before it. The head is
  bounded here, since llhttp has no limit: the request target by
  ``max(8190, server.max_header_size)`` (414), the header lines together by
  ``server.max_header_size`` and 256 lines (431).
- **Pipelining.** Requests are answered one at a time, in order; heads parsed ahead
  wait in a queue (reading pauses past a few), each with its own body stream.
- **Keep-alive** as llhttp decides from the version and ``Connection``; a connection
  whose request body was not read to its end is closed after the answer, never
  parsed on from the middle of a body. An upgrade request (``Upgrade``, ``CONNECT``)
  is answered as a plain request and the connection closed: the gateway does not
  tunnel, and the bytes after the head belong to a protocol it does not speak.
- **Backpressure both ways.** A slow reader pauses the forwarder's writes (``drain``);
  a request body waiting for the upstream pauses reading from the client.
- **Lingering close**, as nginx's ``lingering_close``: when the gateway closes a
  connection the client may still be sending on (an answer before the body ended, a
  refusal, an upgrade), it sends its FIN after the answer and reads and discards for up
  to ``_LINGER`` seconds before closing. Closing at once with unread bytes would send a
  reset, which can destroy the answer (a 413, a 401) before the client reads it.
- **Deadlines, swept.** A request head must arrive within ``server.header_timeout``
  once its first byte has (slowloris: a 408, or a silent close if nothing came), and
  an idle keep-alive connection is closed after ``_KEEPALIVE_TIMEOUT``. Rather than a
  timer per connection, deadlines sit in one dict that a single callback sweeps (at
  most once a second, and only while the dict is not empty).

The requests themselves are handed to ``handler(request)`` (the edge,
``edge.py``), one task per request; it writes the answer with :meth:`EdgeConnection.write`
and calls :meth:`EdgeConnection.finished`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections import deque
from collections.abc import Awaitable, Callable
import httptools

from gateway.edge_request import BodyStream, EdgeRequest, MalformedBody
from gateway.problem import Problem
from gateway.raw_response import encode_problem
from gateway.rate_limited_log import RateLimitedLog

__all__ = ["EdgeServer", "EdgeConnection", "ParserUnavailable", "require_strict_parser"]

log = logging.getLogger("gateway.http")

_MAX_SWEEP_INTERVAL = 1.0
_KEEPALIVE_TIMEOUT = 75.0
_LINGER = 2.0
# What a connection's deadline is for (EdgeServer's sweep).
_HEAD, _IDLE, _LINGERING = range(3)
_MAX_HEADERS = 256
_MIN_LINE = 8190
_QUEUE_PAUSE = 8
"""Heads parsed ahead of the answer in progress before reading pauses."""

_VERSIONS = {"1.1": (1, 1), "1.0": (1, 0)}


class ParserUnavailable(RuntimeError):
    """The request parser on the proxy port is not llhttp's compiled extension."""


def require_strict_parser(parser_class: type = httptools.HttpRequestParser) -> None:
    """Refuse to serve unless requests are parsed by llhttp compiled in (SPEC §4a:
    never a pure-Python parser). httptools ships no Python fallback today; this keeps
    a future one, or a stand-in module on the path, from being used silently."""
    module = sys.modules.get(parser_class.__module__)
    path = getattr(module, "__file__", None) or ""
    if not path.endswith((".so", ".pyd")):
        raise ParserUnavailable(
            f"the proxy port's HTTP parser ({parser_class.__module__}) is not llhttp's compiled extension; "
            "refusing to start"
        )


class _Refused(Exception):
    """Raised from a parser callback: the head breaks one of our own limits."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _request_id() -> str:
    return os.urandom(16).hex()


class EdgeConnection(asyncio.Protocol):
    __slots__ = (
        "server", "loop", "transport", "parser", "remote", "active", "queue", "closing", "refusal",
        "head_started", "url", "url_size", "raw_headers", "head_size", "parsing", "reading_paused", "reading_done",
        "body_paused", "write_paused", "drain_waiter", "task", "idle_waiter", "client_eof", "lingering",
    )

    def __init__(self, server: EdgeServer) -> None:
        self.server = server
        self.loop = server.loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.remote = ""
        self.active: EdgeRequest | None = None
        """The request being answered."""
        self.queue: deque[EdgeRequest] = deque()
        """Requests parsed ahead (pipelined), answered after the active one."""
        self.parsing: EdgeRequest | None = None
        """The request whose body the parser is reading."""
        self.closing = False
        """Close after the answer in progress (shutdown, or a failure)."""
        self.reading_done = False
        """Nothing more is parsed (half-close, upgrade, refusal): the queued requests
        are answered, then the connection closes."""
        self.refusal: tuple[int, str] | None = None
        """The parser refused the bytes after the queued requests: answered after them."""
        self.head_started = False
        self.url: list[bytes] = []
        self.url_size = 0
        self.raw_headers: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.reading_paused = False
        self.body_paused = False
        self.write_paused = False
        self.drain_waiter: asyncio.Future[None] | None = None
        self.task: asyncio.Task[None] | None = None
        """The connection's one serving task (see :meth:`_serve`), made at its first request."""
        self.idle_waiter: asyncio.Future[EdgeRequest | None] | None = None
        """Set while the serving task waits for the next request."""
        self.client_eof = False
        """The client shut down its sending side: nothing more can arrive."""
        self.lingering = False
        """Our FIN is sent; what still arrives is drained until the client closes."""

    # -- transport events ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not an asyncio.Transport subclass
        peer = transport.get_extra_info("peername")
        self.remote = peer[0] if isinstance(peer, tuple) and peer else ""
        server = self.server
        server.connections.add(self)
        if server.closing:
            transport.close()
            return
        # The first head is due within header_timeout of the accept.
        self.head_started = False
        server.set_deadline(self, server.header_timeout)

    def connection_lost(self, exc: BaseException | None) -> None:
        server = self.server
        server.connections.discard(self)
        server.clear_deadline(self)
        gone = ConnectionResetError("the client closed the connection")
        if self.parsing is not None:
            self.parsing.content.fail(gone)
            self.parsing = None
        waiter = self.drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(gone)
        self.queue.clear()
        self.transport = None
        idle = self.idle_waiter
        if idle is not None:
            self.idle_waiter = None
            if not idle.done():
                idle.set_result(None)  # the serving task ends

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self.drain_waiter
        if waiter is not None:
            self.drain_waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def eof_received(self) -> bool:
        self.client_eof = True
        if self.lingering:
            return False  # the client has stopped sending: close now
        # A half-close ends what the client sends, not what it reads: answer what was
        # asked, then close (returning True keeps our side open until then).
        if self.parsing is not None:
            self.parsing.content.fail(ConnectionResetError("the client closed before sending its body"))
            self.parsing = None
        self.reading_done = True
        if self.active is None and not self.queue:
            self._close()
        return True

    def data_received(self, data: bytes) -> None:
        if self.reading_done or self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Answer the upgrade request as a plain one, read nothing after it.
            self._stop_reading()
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Refused):
                self._refuse(cause.status, cause.detail)
            else:
                log.error("error parsing a request from %s", self.remote, exc_info=cause or exc)
                self._refuse(400, "malformed HTTP request")
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed HTTP request: {exc}")

    # -- parser callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = []
        self.url_size = 0
        self.raw_headers = []
        self.head_size = 0
        if not self.head_started:
            self.head_started = True
            if self.active is None:
                # A head pipelined behind an answer in progress is timed from when that
                # answer is done (finished()), not from now.
                self.server.set_deadline(self, self.server.header_timeout)

    def on_url(self, url: bytes) -> None:
        self.url_size += len(url)
        if self.url_size > self.server.max_line_size:
            raise _Refused(414, "request target too long")
        self.url.append(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self.raw_headers
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.server.max_header_size:
            raise _Refused(431, f"request headers exceed {self.server.max_header_size} bytes")
        if len(headers) >= _MAX_HEADERS:
            raise _Refused(431, f"more than {_MAX_HEADERS} request header lines")
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        version = _VERSIONS.get(parser.get_http_version())
        if version is None:
            raise _Refused(505, "HTTP version not supported")
        url = self.url[0] if len(self.url) == 1 else b"".join(self.url)
        request = EdgeRequest(
            conn=self,
            method=parser.get_method().decode("ascii"),
            version=version,
            raw_path=url.decode("utf-8", "surrogateescape"),
            raw_headers=self.raw_headers,
            remote=self.remote,
            keep_alive=parser.should_keep_alive() and not parser.should_upgrade(),
        )
        if request.chunked or request.content_length:
            request.content = BodyStream(self)
        # llhttp reports a chunked body's trailer fields through on_header too. They
        # must never join the request's headers (a trailer "Authorization" or identity
        # header would reach the upstream in the head): they go to a list nobody reads,
        # still counted against max_header_size.
        self.raw_headers = []
        self.parsing = request
        self.head_started = False
        server = self.server
        if self.active is None:
            server.clear_deadline(self)
            self._start(request)
        else:
            self.queue.append(request)
            if len(self.queue) >= _QUEUE_PAUSE:
                self._pause_reading()

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        if request is not None:
            request.content.feed(body)

    def on_message_complete(self) -> None:
        request = self.parsing
        if request is not None:
            request.content.feed_eof()
            self.parsing = None

    # -- answering ----------------------------------------------------------------------

    def _start(self, request: EdgeRequest) -> None:
        self.active = request
        idle = self.idle_waiter
        if idle is not None:
            self.idle_waiter = None
            idle.set_result(request)
        elif self.task is None:
            self.task = self.loop.create_task(self._serve(request))

    async def _serve(self, request: EdgeRequest | None) -> None:
        """Answer this connection's requests one after another. One task per
        connection, woken by a future per request, rather than a task per request
        (each a context copy and a registration in asyncio's task set)."""
        handler = self.server.handler
        try:
            while request is not None:
                await handler(request)
                request = self.active  # finished() started the next one, if queued
                if request is None:
                    if self.transport is None or self.closing:
                        return
                    idle = self.idle_waiter = self.loop.create_future()
                    request = await idle
        except BaseException:
            log.exception("the serving task of a connection from %s failed", self.remote)
            self.abort()
            raise
        finally:
            self.task = None

    def write(self, data: bytes) -> None:
        """Write to the client; ``ConnectionResetError`` once it has gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        transport.write(data)

    async def drain(self) -> None:
        if self.write_paused and self.transport is not None:
            waiter = self.drain_waiter
            if waiter is None:
                waiter = self.drain_waiter = self.loop.create_future()
            await waiter

    def abort(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.abort()

    def keeps_alive(self, request: EdgeRequest) -> bool:
        """Whether the answer to ``request`` may leave the connection open: asked for,
        not shutting down, and the request's body read to its end (else the next
        bytes are the middle of a body, not a request)."""
        return request.keep_alive and not self.closing and not self.server.closing and request.content.is_eof()

    def finished(self, request: EdgeRequest, keep_alive: bool) -> None:
        """The answer to ``request`` is written: go on with the next request, or close."""
        self.active = None
        if self.transport is None:
            return
        if not keep_alive:
            self._close()
            return
        # Whatever of its body was left unread no longer holds reading back.
        self.body_paused = False
        if self.queue:
            self._start(self.queue.popleft())
            if self.reading_paused and len(self.queue) < _QUEUE_PAUSE // 2:
                self._resume_reading()
            return
        if self.refusal is not None:
            status, detail = self.refusal
            self._answer_refusal(status, detail)
            return
        if self.reading_done or self.closing:
            self._close()
            return
        if self.reading_paused:
            self._resume_reading()
        server = self.server
        if self.head_started:
            server.set_deadline(self, server.header_timeout)
        else:
            server.set_deadline(self, _KEEPALIVE_TIMEOUT, kind=_IDLE)

    # -- refusals and closing -----------------------------------------------------------

    def _refuse(self, status: int, detail: str) -> None:
        self._stop_reading()
        if self.parsing is not None:
            # A body that turned out malformed mid-way: that request is the one refused
            # (its handler reads MalformedBody and answers 400), nothing after it is read.
            self.parsing.content.fail(MalformedBody(detail))
            self.parsing = None
            self.server.refusal_log.log("refused a request body from %s: %s", self.remote, detail)
            return
        if self.active is None and not self.queue:
            self._answer_refusal(status, detail)
        else:
            self.refusal = (status, detail)

    def _answer_refusal(self, status: int, detail: str) -> None:
        server = self.server
        server.refusal_log.log("refused request from %s: %s %s", self.remote, status, detail)
        if server.on_refused is not None:
            server.on_refused(status)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            # Every response carries a request id, even one for a request we could not parse.
            transport.write(encode_problem(Problem(status, detail), [("X-Request-ID", _request_id())], keep_alive=False))
        self._close()

    def head_timed_out(self, timeout: float) -> None:
        """Called by the sweep: this connection's head is late. Answer 408 if the
        client sent part of one (a silent connection is just closed, as nginx does)."""
        server = self.server
        if self.head_started and self.active is None:
            transport = self.transport
            if transport is not None and not transport.is_closing():
                problem = Problem(408, f"the request head did not arrive within {timeout:g}s")
                transport.write(encode_problem(problem, [("X-Request-ID", _request_id())], keep_alive=False))
            if server.on_refused is not None:
                server.on_refused(408)
        server.slow_head_log.log("closed a connection from %s: no complete request head within %gs", self.remote, timeout)
        self._close()

    def _stop_reading(self) -> None:
        self.reading_done = True
        self._pause_reading()

    def _pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()
            if self.head_started:
                # A head cut short by our own pause is not the client's slowness.
                self.server.clear_deadline(self)

    def _resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None and not self.reading_done:
            self.reading_paused = False
            self.transport.resume_reading()
            if self.head_started:
                self.server.set_deadline(self, self.server.header_timeout)

    def pause_body(self) -> None:
        """A request body is arriving faster than the upstream takes it."""
        self.body_paused = True
        self._pause_reading()

    def resume_body(self) -> None:
        if self.body_paused:
            self.body_paused = False
            if len(self.queue) < _QUEUE_PAUSE // 2:
                self._resume_reading()

    def _close(self) -> None:
        self.closing = True
        server = self.server
        server.clear_deadline(self)
        transport = self.transport
        if transport is None or self.lingering:
            return
        may_still_send = self.parsing is not None or self.head_started or self.reading_done or self.refusal is not None
        if self.client_eof or not may_still_send or not transport.can_write_eof():
            transport.close()
            return
        self.lingering = True
        transport.write_eof()
        if self.reading_paused:
            self.reading_paused = False
            transport.resume_reading()
        server.set_deadline(self, _LINGER, kind=_LINGERING)

    def linger_over(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.close()

    def close_if_idle(self) -> bool:
        if self.active is None and not self.queue:
            self._close()
            return True
        self.closing = True
        return False


class EdgeServer:
    """The protocol factory of the proxy listeners, and what their connections share:
    limits (changed by a reload), the deadline sweep, the sampled logs, shutdown.

    ``on_refused(status)`` is told of every request refused before it became a
    request (parser refusals, late heads) so that they are counted like any other
    answer; ``refusal_log`` and ``slow_head_log`` write a sample of them.
    """

    def __init__(
        self,
        handler: Callable[[EdgeRequest], Awaitable[None]],
        *,
        loop: asyncio.AbstractEventLoop | None = None,
        on_refused: Callable[[int], None] | None = None,
        header_timeout: float = 10.0,
        max_header_size: int = 8192,
    ) -> None:
        self.handler = handler
        self.loop: asyncio.AbstractEventLoop = loop  # type: ignore[assignment]  # set by the first connection
        self.on_refused = on_refused
        self.header_timeout = header_timeout
        self.max_header_size = max_header_size
        self.max_line_size = max(_MIN_LINE, max_header_size)
        self.refusal_log = RateLimitedLog(log)
        self.slow_head_log = RateLimitedLog(log)
        self.connections: set[EdgeConnection] = set()
        self.closing = False
        self._deadlines: dict[EdgeConnection, tuple[float, int]] = {}
        """Connections with a head due, idle between requests, or lingering, and until when."""
        self._sweep_handle: asyncio.TimerHandle | None = None

    def __call__(self) -> EdgeConnection:
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        return EdgeConnection(self)

    def apply_limits(self, *, max_header_size: int, header_timeout: float) -> None:
        """Take ``server.max_header_size`` and ``server.header_timeout`` (at start-up
        and on every reload); they apply to every head parsed from then on."""
        self.max_header_size = max_header_size
        # A request line is not a header: keep a floor of 8190 bytes for it, as aiohttp does.
        self.max_line_size = max(_MIN_LINE, max_header_size)
        self.header_timeout = header_timeout

    # -- the deadline sweep -------------------------------------------------------------

    def set_deadline(self, conn: EdgeConnection, after: float, *, kind: int = _HEAD) -> None:
        self._deadlines[conn] = (self.loop.time() + after, kind)
        if self._sweep_handle is None:
            self._sweep_handle = self.loop.call_later(self._sweep_interval(), self._sweep)

    def clear_deadline(self, conn: EdgeConnection) -> None:
        self._deadlines.pop(conn, None)

    def _sweep_interval(self) -> float:
        # Late by at most one interval: a second, or less for a test's tiny timeout.
        return min(_MAX_SWEEP_INTERVAL, self.header_timeout / 2)

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = self.loop.time()
        late = [(conn, kind) for conn, (deadline, kind) in self._deadlines.items() if deadline <= now]
        for conn, kind in late:
            del self._deadlines[conn]
            if kind == _IDLE:
                conn.close_if_idle()
            elif kind == _LINGERING:
                conn.linger_over()
            else:
                conn.head_timed_out(self.header_timeout)
        if self._deadlines:
            self._sweep_handle = self.loop.call_later(self._sweep_interval(), self._sweep)

    # -- shutdown -----------------------------------------------------------------------

    async def shutdown(self, timeout: float) -> None:
        """Close idle connections now, the others after their answer in progress;
        abort what is still open after ``timeout``."""
        self.closing = True
        if self.loop is None:
            return
        for conn in list(self.connections):
            conn.close_if_idle()
        deadline = self.loop.time() + timeout
        while self.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        self._deadlines.clear()
