"""One keep-alive HTTP/1.1 connection to an upstream target.

Why not aiohttp's ``ClientSession``: per request it builds a ``ClientRequest``, a
``ClientResponse``, cookie and redirect machinery, auto headers and URL objects the
gateway never uses. That was most of the proxy's CPU. A connection here is an
``asyncio.Protocol`` that writes a request head built from bytes the gateway already
has, and parses the response with llhttp (``httptools``) in strict mode, so a
malformed response is an error (-> 502), never a guess.

One exchange at a time per connection (no pipelining). The response body is handed
over as chunks with flow control: reading from the upstream pauses while the client
is slower than the upstream.

Framing cases handled here rather than by llhttp: a response to ``HEAD`` has no body
whatever its headers say (llhttp cannot be told so, so the exchange ends at the head
and the next one starts a fresh parser), informational 1xx responses are skipped, and
a body with neither ``Content-Length`` nor chunked encoding runs until the upstream
closes.

A connection is reused only when both directions ended cleanly: the request was
written whole (:meth:`UpstreamConnection.end_request`) and exactly one response was
read whole. Bytes after the response (llhttp would happily parse them as a second
response and merge its headers and body into the first) stop the parser and close
the connection: an upstream that talks out of turn is not trusted with the next
caller's request.
"""

from __future__ import annotations

import asyncio
from collections import deque

import httptools

from gateway.deadlines import deadlines_for

__all__ = [
    "UpstreamError",
    "ConnectError",
    "ConnectTimeout",
    "ResponseTimeout",
    "UpstreamReset",
    "BadResponse",
    "ResponseHead",
    "UpstreamConnection",
]

_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class UpstreamError(Exception):
    """A failure talking to a target. ``code`` is the metrics label."""

    code = "error"
    status = 502


class ConnectError(UpstreamError):
    code = "connect_error"


class ConnectTimeout(UpstreamError):
    code = "connect_timeout"


class ResponseTimeout(UpstreamError):
    code = "timeout"
    status = 504


class UpstreamReset(UpstreamError):
    """The connection closed or reset. ``before_response``: no response byte had arrived,
    so for a request the upstream never saw, a retry is safe."""

    code = "reset"

    def __init__(self, message: str, *, before_response: bool) -> None:
        super().__init__(message)
        self.before_response = before_response


class BadResponse(UpstreamError):
    code = "bad_response"


class _Unsolicited(Exception):
    """Raised from an llhttp callback to stop parsing bytes that follow the response."""


class ResponseHead:
    __slots__ = ("status", "reason", "headers", "content_length", "chunked")

    def __init__(self, status: int, reason: str, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.content_length: int | None = None
        self.chunked = False


class UpstreamConnection(asyncio.Protocol):
    """Created by the pool; ``request()`` / ``read()`` are driven by the forwarder."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, max_header_bytes: int = 65536) -> None:
        self._loop = self.loop = loop
        self._deadlines = deadlines_for(loop)
        self._max_header_bytes = max_header_bytes
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        """The response was read whole and the upstream keeps the connection open."""
        self.request_done = False
        """The request (head and body) was written whole; see :meth:`end_request`."""
        self.reused = False
        """True once it has served an exchange: a reset before any response byte on a
        reused connection usually means the upstream closed it while idle."""
        self._parser: httptools.HttpResponseParser | None = None
        self._expecting = False
        """An exchange is in progress; bytes arriving otherwise are a protocol error."""
        self._head_waiter: asyncio.Future[ResponseHead] | None = None
        self._status_reason = ""
        self._headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._head: ResponseHead | None = None
        self._head_only = False
        self._complete = False
        """This exchange's response has ended; any further byte is unsolicited."""
        self._body: deque[bytes] = deque()
        self._body_size = 0
        self._body_done = False
        self._body_error: UpstreamError | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self._got_bytes = False
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        parser = self._parser
        if parser is None or not self._expecting:
            # Bytes nobody asked for (e.g. after a HEAD response): the stream is unusable.
            self.reusable = False
            self._close()
            return
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # Includes _Unsolicited raised by a callback (httptools wraps it).
            self._fail(BadResponse(f"malformed response: {exc}"))
            self._close()

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost finishes the exchange

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        if self._head is not None and not self._body_done:
            head = self._head
            if head.content_length is None and not head.chunked and self._body_error is None:
                self._finish_body()  # close-delimited body: EOF is its end
            else:
                self._fail(UpstreamReset("upstream closed mid-body", before_response=False))
        elif self._head_waiter is not None and not self._head_waiter.done():
            self._fail(UpstreamReset(f"upstream closed the connection: {exc or 'EOF'}", before_response=not self._got_bytes))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(UpstreamReset("upstream closed while sending", before_response=True))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- llhttp callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._complete:
            raise _Unsolicited("bytes after the end of the response")

    def on_status(self, status: bytes) -> None:
        self._status_reason = status.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self._max_header_bytes:
            raise BadResponse("response headers too large")
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        assert self._parser is not None
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise BadResponse("unexpected protocol switch")
            # Informational (e.g. 103 Early Hints): not the answer; wait for the next.
            self._headers = []
            self._header_bytes = 0
            return
        head = ResponseHead(status, self._status_reason, self._headers)
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                try:
                    head.content_length = int(value)
                except ValueError:
                    raise BadResponse("invalid Content-Length") from None
            elif lower == b"transfer-encoding" and b"chunked" in value.lower():
                head.chunked = True
        self._head = head
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(head)
        if self._head_only:
            # llhttp would wait for the body the headers announce; none is coming, and
            # it cannot be told so: the exchange ends here, and this parser (which
            # still counts on a body) is dropped so the next exchange starts clean. A
            # body byte arriving anyway is unsolicited (on_body) and closes the connection.
            self.reusable = self._keep_alive(head)
            self._parser = None
            self._complete = True
            self._finish_body()

    def on_body(self, body: bytes) -> None:
        if self._complete:
            raise _Unsolicited("a body after a response to HEAD")
        self._body.append(body)
        self._body_size += len(body)
        if self._body_size > _HIGH_WATER and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()
        self._wake_body()

    def on_message_complete(self) -> None:
        if self._head is None:
            return  # the end of a skipped 1xx
        parser = self._parser
        self.reusable = parser is not None and parser.should_keep_alive()
        self._complete = True
        self._finish_body()

    def _keep_alive(self, head: ResponseHead) -> bool:
        """Will the upstream keep the connection after this head (for a HEAD answer,
        where llhttp's own verdict still counts on the body it announced)?"""
        assert self._parser is not None
        tokens = [
            token.strip().lower()
            for name, value in head.headers
            if name.lower() == b"connection"
            for token in value.split(b",")
        ]
        if b"close" in tokens:
            return False
        return self._parser.get_http_version() != "1.0" or b"keep-alive" in tokens

    # -- driving an exchange ----------------------------------------------------------

    def _finish_body(self) -> None:
        self._body_done = True
        self._expecting = False
        self._wake_body()

    def _wake_body(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        self.reusable = False
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)
        elif self._head is not None and not self._body_done:
            self._body_error = error
            self._wake_body()

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        self.reusable = False
        if self.transport is not None:
            self.transport.abort()

    @property
    def head_waiter(self) -> asyncio.Future[ResponseHead]:
        assert self._head_waiter is not None
        return self._head_waiter

    def begin(self, head: bytes, *, head_only: bool) -> None:
        """Send a request head (and start expecting its response)."""
        assert self.transport is not None
        if self.closed:
            # Closed between the pool handing it out and now (a target killed right
            # after accepting it, or while it sat idle): nothing of this request was
            # sent, and writing would hit a dead transport handle.
            if self.reused:
                raise UpstreamReset("upstream closed the idle connection", before_response=True)
            raise ConnectError("upstream closed the connection as soon as it opened")
        if self._parser is None:
            self._parser = httptools.HttpResponseParser(self)
        self._expecting = True
        self._head_waiter = self._loop.create_future()
        # The upstream may fail it while nobody awaits it any more (the request already
        # ended another way): that is not an error worth a "never retrieved" log line.
        self._head_waiter.add_done_callback(_retrieve)
        self._headers = []
        self._header_bytes = 0
        self._head = None
        self._head_only = head_only
        self._complete = False
        self.request_done = False
        self._body.clear()
        self._body_size = 0
        self._body_done = False
        self._body_error = None
        self._got_bytes = False
        self.reusable = False
        self.transport.write(head)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def end_request(self) -> None:
        """The whole request is written. Until then the upstream may still be reading a
        body, and whatever is sent next on this connection would become part of it."""
        self.request_done = True

    async def drain(self) -> None:
        if self.closed:
            raise UpstreamReset("upstream closed while sending", before_response=not self._got_bytes)
        if self._write_paused:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter

    async def response_head(self, timeout: float) -> ResponseHead:
        waiter = self._head_waiter
        assert waiter is not None
        if not waiter.done():
            deadlines = self._deadlines
            deadlines.add(waiter, timeout, _timed_out)  # type: ignore[arg-type]
            try:
                return await waiter
            finally:
                deadlines.discard(waiter)  # type: ignore[arg-type]
        return waiter.result()

    def body_ready(self) -> bool:
        """The whole body has arrived (the common case for small responses)."""
        return self._body_done and self._body_error is None

    @property
    def buffered(self) -> int:
        """Body bytes received and not yet taken."""
        return self._body_size

    def take_body(self) -> bytes:
        data = b"".join(self._body)
        self._body.clear()
        self._body_size = 0
        return data

    async def read(self, timeout: float) -> bytes:
        """The next body chunk; ``b""`` at the end. Raises :class:`UpstreamError`."""
        while True:
            if self._body:
                chunk = self._body.popleft()
                self._body_size -= len(chunk)
                if self._reading_paused and self._body_size < _LOW_WATER and self.transport is not None:
                    self._reading_paused = False
                    self.transport.resume_reading()
                return chunk
            if self._body_error is not None:
                raise self._body_error
            if self._body_done:
                return b""
            waiter = self._body_waiter = self._loop.create_future()
            deadlines = self._deadlines
            deadlines.add(waiter, timeout, _timed_out)  # type: ignore[arg-type]
            try:
                await waiter
            finally:
                deadlines.discard(waiter)  # type: ignore[arg-type]
                self._body_waiter = None


def _retrieve(future: asyncio.Future[ResponseHead]) -> None:
    if not future.cancelled():
        future.exception()


def _timed_out() -> ResponseTimeout:
    return ResponseTimeout("the upstream did not answer in time")
